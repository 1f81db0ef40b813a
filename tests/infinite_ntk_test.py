"""Tests for afterkernel.infinite_ntk: the closed forms against finite networks.

The infinite-width kernels are checked against things computed without them:
the empirical NTK (Gram of `features.gradient_features`) of increasingly wide
networks of `models.ntk.build_ntk_fully_connected`, the Monte-Carlo covariance of the
outputs of many randomly drawn networks, and hand-computed depth-1 values.
"""

import math
import os
import tracemalloc

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import infinite_ntk
from afterkernel import kernels
from afterkernel import models
from afterkernel.models import ntk

# Non-default stds so a dropped sigma_b or a wrong sigma_w shows.
WEIGHT_STD = 1.5
BIAS_STD = 0.5
INPUT_SHAPE = (3, 4)  # flattened to d_0 = 12 values
NUM_INPUTS = 8
SEEDS = (0, 1, 2, 3)
# Hanin & Nica (2019): at width n and depth L the NTK's relative variance is
# about exp(5 L / n) - 1 ~ 5 L / n, so the relative error of an entry, and
# the relative Frobenius gap, scale as sqrt(5 L / n). Measured over 8 seeds,
# gap / sqrt(5 L / n) averaged 0.6-0.9 (single seeds up to 1.6) for depths
# 1-3 and widths 64-16384; 1.5 leaves room for the 4-seed mean to fluctuate,
# while a wrong kernel (tested below) misses by far more.
GAP_TOLERANCE_FACTOR = 1.5


def _reference_gram(x_a, x_b, depth, weight_std, bias_std, want_ntk):
  """The pre-review implementation in one block: every entry, then symmetrized.

  Kept to check that the triangular, in-place, budget-blocked version
  returns the same numbers.
  """
  a = np.asarray(x_a, np.float64).reshape(len(x_a), -1)
  symmetric = x_b is None
  b = a if symmetric else np.asarray(x_b, np.float64).reshape(len(x_b), -1)
  d0 = a.shape[1]
  w2, b2 = weight_std**2, bias_std**2

  def variances(x):
    var = w2 * np.sum(x * x, axis=1) / d0 + b2
    out = [var]
    for _ in range(depth - 1):
      var = w2 * var / 2 + b2
      out.append(var)
    return out

  vars_a, vars_b = variances(a), variances(b)
  cov = w2 * (a @ b.T) / d0 + b2
  if symmetric:
    np.fill_diagonal(cov, vars_a[0])
  ntk = cov.copy()
  for layer in range(depth):
    norm = np.sqrt(vars_a[layer][:, None] * vars_b[layer][None, :])
    positive = norm > 0
    rho = np.clip(np.divide(cov, norm, out=np.zeros_like(cov),
                            where=positive), -1, 1)
    if symmetric:
      np.fill_diagonal(rho, np.where(np.diag(positive), 1.0, 0.0))
    theta = np.arccos(rho)
    relu = norm * (np.sqrt(np.maximum(1 - rho * rho, 0)) +
                   (np.pi - theta) * rho) / (2 * np.pi)
    step = np.where(positive, (np.pi - theta) / (2 * np.pi), 0.0)
    cov = w2 * relu + b2
    ntk = cov + ntk * (w2 * step)
  out = ntk if want_ntk else cov
  return (out + out.T) / 2 if symmetric else out


def _inputs(n=NUM_INPUTS, seed=0):
  return np.random.default_rng(seed).normal(
      size=(n,) + INPUT_SHAPE).astype(np.float32)


def _relative_gap(estimate, exact):
  return float(np.linalg.norm(estimate - exact) / np.linalg.norm(exact))


def _empirical_ntk(model, x, method='auto'):
  return kernels.gram(features.gradient_features(model, x, method=method),
                      accumulate_float64=True)


def _mean_gap(x, width, depth, exact):
  gaps = []
  for seed in SEEDS:
    model = ntk.build_ntk_fully_connected(
        INPUT_SHAPE, width, depth, WEIGHT_STD, BIAS_STD, seed=seed)
    gaps.append(_relative_gap(_empirical_ntk(model, x), exact))
  return float(np.mean(gaps))


class ModelTest(absltest.TestCase):

  def test_feature_methods_agree(self):
    # The empirical NTK comes from these features: the per-layer path (which
    # applies the layers' NTK scales), pfor and the structured Gram must all
    # match the eager one-example-at-a-time reference.
    model = ntk.build_ntk_fully_connected(
        INPUT_SHAPE, 32, 2, WEIGHT_STD, BIAS_STD, seed=0)
    self.assertTrue(features.supports_per_layer(model))
    x = _inputs(5)
    loop = features.gradient_features(model, x, method='loop')
    self.assertEqual(loop.shape, (5, models.count_parameters(model)))
    for method in ('auto', 'per_layer', 'vectorized'):
      np.testing.assert_allclose(
          features.gradient_features(model, x, method=method), loop,
          rtol=1e-4, atol=1e-5, err_msg=method)
    structured = kernels.structured_gram(features.structured_features(model,
                                                                      x))
    np.testing.assert_allclose(structured, kernels.gram(loop), rtol=1e-4,
                               atol=1e-5)

  def test_empirical_ntk_matches_hand_gradient(self):
    # Depth 1, f = (s_w/sqrt(n)) v.relu(z) + s_b c, z = (s_w/sqrt(d0)) W x +
    # s_b b, so summing the squared-gradient products by hand:
    # K = s_w^2/n h.h' + s_b^2
    #     + s_w^2/n sum_k v_k^2 1[z_k>0] 1[z'_k>0] (s_w^2 x.x'/d0 + s_b^2).
    width, d0 = 16, 12
    model = ntk.build_ntk_fully_connected(
        INPUT_SHAPE, width, 1, WEIGHT_STD, BIAS_STD, seed=2)
    w, b, v, _ = [np.asarray(a, np.float64) for a in model.get_weights()]
    x = _inputs(4).reshape(4, d0).astype(np.float64)
    z = WEIGHT_STD / math.sqrt(d0) * x @ w + BIAS_STD * b
    h = np.maximum(z, 0)
    gates = (z > 0) * v[:, 0] ** 2
    s_w2, s_b2 = WEIGHT_STD ** 2, BIAS_STD ** 2
    expected = (s_w2 / width * h @ h.T + s_b2 + s_w2 / width *
                (gates @ (z > 0).T) * (s_w2 * x @ x.T / d0 + s_b2))
    np.testing.assert_allclose(
        _empirical_ntk(model, x.reshape((4,) + INPUT_SHAPE).astype(
            np.float32)), expected, rtol=2e-5)


class ConvergenceTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('depth1', 1, (64, 1024, 16384)),
      ('depth2', 2, (64, 256, 1024)),
  )
  def test_empirical_ntk_approaches_infinite_ntk(self, depth, widths):
    x = _inputs()
    exact = infinite_ntk.ntk_gram(x, depth=depth, weight_std=WEIGHT_STD,
                                  bias_std=BIAS_STD)
    gaps = [_mean_gap(x, width, depth, exact) for width in widths]
    # Strictly shrinking, and by at least half the 1/sqrt(width) rate.
    self.assertTrue(all(a > b for a, b in zip(gaps, gaps[1:])), gaps)
    self.assertGreater(gaps[0] / gaps[-1],
                       0.5 * math.sqrt(widths[-1] / widths[0]), gaps)
    tolerance = GAP_TOLERANCE_FACTOR * math.sqrt(5 * depth / widths[-1])
    self.assertLess(gaps[-1], tolerance, gaps)
    # The test has power: kernels of a neighbouring family miss the widest
    # network's empirical NTK by several tolerances.
    wrong = {
        'no bias': infinite_ntk.ntk_gram(x, depth=depth,
                                         weight_std=WEIGHT_STD),
        'depth + 1': infinite_ntk.ntk_gram(x, depth=depth + 1,
                                           weight_std=WEIGHT_STD,
                                           bias_std=BIAS_STD),
        'nngp': infinite_ntk.nngp_gram(x, depth=depth, weight_std=WEIGHT_STD,
                                       bias_std=BIAS_STD),
    }
    model = ntk.build_ntk_fully_connected(
        INPUT_SHAPE, widths[-1], depth, WEIGHT_STD, BIAS_STD, seed=0)
    empirical = _empirical_ntk(model, x)
    for name, gram in wrong.items():
      self.assertGreater(_relative_gap(empirical, gram), 2 * tolerance, name)

  @absltest.skipUnless(os.environ.get('AFTERKERNEL_SLOW_TESTS'),
                       'slow; set AFTERKERNEL_SLOW_TESTS=1')
  def test_width_4096_depth_2(self):
    # 16.8M parameters: about 25 s and 5 GB for the four seeds.
    x = _inputs()
    exact = infinite_ntk.ntk_gram(x, depth=2, weight_std=WEIGHT_STD,
                                  bias_std=BIAS_STD)
    self.assertLess(_mean_gap(x, 4096, 2, exact),
                    GAP_TOLERANCE_FACTOR * math.sqrt(10 / 4096))

  @parameterized.named_parameters(
      # Depth 1: E[f f'] = Sigma_2 exactly at any width (layer-1
      # pre-activations are exactly Gaussian), so a narrow net suffices.
      ('depth1', 1, 16, 16000),
      # Depth 2: an O(1/width) bias, well under the Monte-Carlo error here.
      ('depth2', 2, 128, 6000),
  )
  def test_nngp_matches_monte_carlo_output_covariance(self, depth, width,
                                                      draws):
    x = _inputs(6, seed=1)
    x[5] = 0.0  # a zero input: only the biases reach it
    model = ntk.build_ntk_fully_connected(
        INPUT_SHAPE, width, depth, WEIGHT_STD, BIAS_STD, seed=0)
    generator = tf.random.Generator.from_seed(7)
    inputs = tf.constant(x)

    @tf.function
    def outputs_of_fresh_networks(count):
      # Redraws every weight from N(0, 1), the layers' initializer.
      out = tf.TensorArray(tf.float32, size=count)
      for i in tf.range(count):
        for variable in model.trainable_variables:
          variable.assign(generator.normal(variable.shape))
        out = out.write(i, model(inputs, training=False)[:, 0])
      return out.stack()

    f = outputs_of_fresh_networks(tf.constant(draws)).numpy().astype(
        np.float64)
    products = f[:, :, None] * f[:, None, :]  # E f = 0: no centering
    estimate = products.mean(axis=0)
    standard_error = products.std(axis=0) / math.sqrt(draws)
    exact = infinite_ntk.nngp_gram(x, depth=depth, weight_std=WEIGHT_STD,
                                   bias_std=BIAS_STD)
    self.assertLess(np.max(np.abs(estimate - exact) / standard_error), 4.5)
    wrong = infinite_ntk.nngp_gram(x, depth=depth + 1, weight_std=WEIGHT_STD,
                                   bias_std=BIAS_STD)
    self.assertGreater(np.max(np.abs(estimate - wrong) / standard_error), 10)


class ClosedFormTest(parameterized.TestCase):

  def test_depth_one_by_hand(self):
    # d0 = 2, x = (sqrt 2, 0), x' = (0, sqrt 2), x'' = -x.
    x = np.array([[math.sqrt(2), 0.0], [0.0, math.sqrt(2)],
                  [-math.sqrt(2), 0.0]])
    # sigma_w = 1, sigma_b = 0: Sigma_1 = I-like (1, 0, -1 correlations).
    # x, x': t = pi/2: Sigma_2 = 1/(2 pi), Sigma'_2 = 1/4, Theta_2 =
    # 1/(2 pi) + 0 * 1/4. Diagonal: Sigma_2 = 1/2, Theta_2 = 1/2 + 1 * 1/2.
    # x, -x: t = pi: Sigma_2 = 0, Sigma'_2 = 0, Theta_2 = 0.
    nngp = infinite_ntk.nngp_gram(x, depth=1, weight_std=1.0, bias_std=0.0)
    ntk = infinite_ntk.ntk_gram(x, depth=1, weight_std=1.0, bias_std=0.0)
    np.testing.assert_allclose(nngp[0], [0.5, 1 / (2 * math.pi), 0.0],
                               atol=1e-15)
    np.testing.assert_allclose(ntk[0], [1.0, 1 / (2 * math.pi), 0.0],
                               atol=1e-15)
    # sigma_w = 1, sigma_b = 1: Sigma_1(x,x) = 2, Sigma_1(x,x') = 1, so
    # rho = 1/2, t = pi/3: E[relu relu] = (2 / 2 pi)(sqrt3/2 + (2pi/3)/2)
    # = sqrt3/(2 pi) + 1/3; Sigma_2 = that + 1; Sigma'_2 = 1/3;
    # Theta_2 = Sigma_2 + 1 * 1/3. Diagonal: Sigma_2 = 2/2 + 1 = 2,
    # Theta_2 = 2 + 2 * 1/2 = 3.
    nngp = infinite_ntk.nngp_gram(x[:2], depth=1, weight_std=1.0,
                                  bias_std=1.0)
    ntk = infinite_ntk.ntk_gram(x[:2], depth=1, weight_std=1.0, bias_std=1.0)
    off = math.sqrt(3) / (2 * math.pi) + 4 / 3
    np.testing.assert_allclose(nngp, [[2.0, off], [off, 2.0]], rtol=1e-14)
    np.testing.assert_allclose(ntk, [[3.0, off + 1 / 3], [off + 1 / 3, 3.0]],
                               rtol=1e-14)

  def test_symmetric_psd_and_consistent_blocks(self):
    x = _inputs(10)
    for fn in (infinite_ntk.ntk_gram, infinite_ntk.nngp_gram):
      gram = fn(x, depth=3, weight_std=WEIGHT_STD, bias_std=BIAS_STD)
      self.assertEqual(gram.dtype, np.float64)
      np.testing.assert_array_equal(gram, gram.T)
      eigenvalues = np.linalg.eigvalsh(gram)
      self.assertGreater(eigenvalues.min(), -1e-12 * eigenvalues.max())
      cross = fn(x[:4], x[4:], depth=3, weight_std=WEIGHT_STD,
                 bias_std=BIAS_STD)
      np.testing.assert_allclose(cross, gram[:4, 4:], rtol=1e-12)

  def test_row_blocks_do_not_change_the_result(self):
    x = _inputs(10)
    whole = infinite_ntk.ntk_gram(x, depth=2, bias_std=0.3)
    saved = infinite_ntk.ROW_BLOCK
    infinite_ntk.ROW_BLOCK = 3
    try:
      blocked = infinite_ntk.ntk_gram(x, depth=2, bias_std=0.3)
      blocked_cross = infinite_ntk.ntk_gram(x, x, depth=2, bias_std=0.3)
    finally:
      infinite_ntk.ROW_BLOCK = saved
    np.testing.assert_allclose(blocked, whole, rtol=1e-13)
    # A cross Gram cannot know x_a[i] is x_b[i]: its diagonal goes through
    # arccos(1 - rounding), ~1e-8 relative (see test_homogeneous_without_bias).
    np.testing.assert_allclose(blocked_cross, whole, rtol=1e-7)

  @parameterized.parameters((1024, 0.0), (1024, 0.4), (5, 0.0), (5, 0.4))
  def test_matches_the_one_block_reference(self, row_block, bias_std):
    # The triangular, in-place, budget-blocked computation returns what the
    # plain one-block formulas return: symmetric (with a row block of 5 the
    # 23 rows give 5 passes, mirrored blocks and a ragged last block) and
    # cross, NTK and NNGP.
    x = _inputs(23, seed=4)
    z = _inputs(7, seed=5)
    saved = infinite_ntk.ROW_BLOCK
    infinite_ntk.ROW_BLOCK = row_block
    try:
      for want_ntk, fn in ((True, infinite_ntk.ntk_gram),
                           (False, infinite_ntk.nngp_gram)):
        gram = fn(x, depth=3, weight_std=WEIGHT_STD, bias_std=bias_std)
        np.testing.assert_array_equal(gram, gram.T)
        np.testing.assert_allclose(
            gram, _reference_gram(x, None, 3, WEIGHT_STD, bias_std, want_ntk),
            rtol=1e-14)
        cross = fn(z, x, depth=3, weight_std=WEIGHT_STD, bias_std=bias_std)
        np.testing.assert_allclose(
            cross, _reference_gram(z, x, 3, WEIGHT_STD, bias_std, want_ntk),
            rtol=1e-14)
    finally:
      infinite_ntk.ROW_BLOCK = saved

  def test_temporaries_stay_within_the_budget(self):
    # Rows per pass shrink with the number of columns so the block
    # temporaries stay under TEMPORARY_BYTES (the old code used 1024 rows
    # whatever n_b and ~12 float64 temporaries per entry: 1 GB at n_b=10k).
    self.assertEqual(infinite_ntk._row_block(100), infinite_ntk.ROW_BLOCK)
    self.assertEqual(infinite_ntk._row_block(10_000), 479)
    self.assertEqual(infinite_ntk._row_block(10**7), infinite_ntk.MIN_ROW_BLOCK)
    rng = np.random.default_rng(0)
    a, b = rng.uniform(size=(400, 6)), rng.uniform(size=(6000, 6))
    saved = infinite_ntk.TEMPORARY_BYTES
    infinite_ntk.TEMPORARY_BYTES = 8 * 2**20
    tracemalloc.start()
    try:
      gram = infinite_ntk.ntk_gram(a, b, depth=3)
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
      infinite_ntk.TEMPORARY_BYTES = saved
    # Beyond the output and the float64 input copies: the block temporaries.
    temporaries = peak - gram.nbytes - a.nbytes - b.nbytes
    self.assertLess(temporaries, 8 * 2**20)
    self.assertGreater(temporaries, 2 * 2**20)  # the budget is used

  def test_homogeneous_without_bias(self):
    # sigma_b = 0: Theta(c x, x') = c Theta(x, x') for c > 0 (ReLU is
    # positively homogeneous), including the parallel pair (x, 3x) whose
    # rounded correlation may exceed 1 before clipping. arccos is
    # ill-conditioned at 1 (t ~ sqrt(2 (1 - rho))), so a rounding error of
    # 1e-16 in rho moves such pairs by ~1e-8 relative; others match to 1e-12.
    x = _inputs(4).astype(np.float64)
    scaled = np.concatenate([x, 3.0 * x])
    gram = infinite_ntk.ntk_gram(scaled, depth=3)
    self.assertTrue(np.all(np.isfinite(gram)))
    np.testing.assert_allclose(gram[:4, 4:], 3.0 * gram[:4, :4], rtol=1e-7)
    off_diagonal = ~np.eye(4, dtype=bool)
    np.testing.assert_allclose(gram[:4, 4:][off_diagonal],
                               3.0 * gram[:4, :4][off_diagonal], rtol=1e-12)
    np.testing.assert_allclose(gram[4:, 4:], 9.0 * gram[:4, :4], rtol=1e-12)

  def test_zero_input(self):
    x = _inputs(3)
    x[1] = 0.0
    gram = infinite_ntk.ntk_gram(x, depth=2)
    self.assertTrue(np.all(np.isfinite(gram)))
    np.testing.assert_array_equal(gram[1], 0.0)
    # The network agrees: without biases f(0) = 0 with zero gradient.
    model = ntk.build_ntk_fully_connected(INPUT_SHAPE, 32, 2, seed=0)
    np.testing.assert_array_equal(_empirical_ntk(model, x)[1], 0.0)
    # With biases a zero input is an ordinary point.
    with_bias = infinite_ntk.ntk_gram(x, depth=2, bias_std=0.5)
    self.assertGreater(with_bias[1, 1], 0.0)

  def test_near_duplicates_are_finite_and_continuous(self):
    x = _inputs(2).reshape(2, -1).astype(np.float64)
    pair = np.stack([x[0], x[0] + 1e-9])
    gram = infinite_ntk.ntk_gram(pair, depth=4, bias_std=0.1)
    self.assertTrue(np.all(np.isfinite(gram)))
    np.testing.assert_allclose(gram, gram[0, 0], rtol=1e-6)


class BadInputTest(parameterized.TestCase):

  def _assert_one_line_error(self, fn, pattern):
    with self.assertRaisesRegex(errors.AfterKernelError, pattern) as caught:
      fn()
    self.assertNotIn('\n', str(caught.exception))

  @parameterized.parameters(infinite_ntk.ntk_gram, infinite_ntk.nngp_gram)
  def test_bad_kernel_arguments(self, fn):
    x = _inputs(3)
    self._assert_one_line_error(lambda: fn(x, depth=0), 'depth')
    self._assert_one_line_error(lambda: fn(x, depth=1.5), 'depth')
    self._assert_one_line_error(lambda: fn(x, depth=1, weight_std=0.0),
                                'weight_std')
    self._assert_one_line_error(lambda: fn(x, depth=1, bias_std=-1.0),
                                'bias_std')
    self._assert_one_line_error(
        lambda: fn(x, np.zeros((2, 5)), depth=1), '12 vs 5 values')
    self._assert_one_line_error(lambda: fn(np.ones(4), depth=1),
                                r'shape \(n, \.\.\.\)')
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    self._assert_one_line_error(lambda: fn(bad, depth=1), 'NaN')


if __name__ == '__main__':
  absltest.main()
