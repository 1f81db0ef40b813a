"""Tests for afterkernel.kernels.grams against direct numpy formulas."""

from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import grams
from afterkernel import models


class GramTest(parameterized.TestCase):

  @parameterized.parameters((1, False), (3, False), (64, False), (7, True))
  def test_symmetric_gram_equals_dense_product(self, block_size, use_float64):
    features = np.random.default_rng(0).standard_normal((23, 40)).astype(
        np.float32)
    expected = features.astype(np.float64) @ features.T.astype(np.float64)
    got = grams.gram(features, block_size=block_size,
                       accumulate_float64=use_float64)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(got, got.T)
    self.assertEqual(got.dtype, np.float64 if use_float64 else np.float32)

  def test_cross_gram(self):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((9, 15)).astype(np.float32)
    b = rng.standard_normal((4, 15)).astype(np.float32)
    np.testing.assert_allclose(grams.gram(a, b, block_size=2),
                               a.astype(np.float64) @ b.T, rtol=1e-5,
                               atol=1e-5)

  def test_streamed_blocks_equal_dense_gram(self):
    features = np.random.default_rng(2).standard_normal((31, 12))
    blocks = [features[i:i + 8] for i in range(0, 31, 8)]
    np.testing.assert_allclose(
        grams.gram_from_blocks(blocks, accumulate_float64=True),
        features @ features.T, rtol=1e-12, atol=1e-12)

  def test_rejects_nonfinite_and_bad_shapes(self):
    bad = np.ones((3, 4), np.float32)
    bad[1, 2] = np.nan
    with self.assertRaisesRegex(errors.AfterKernelError, '1 NaN/inf'):
      grams.gram(bad)
    with self.assertRaisesRegex(errors.AfterKernelError, '2-D'):
      grams.gram(np.ones(5))
    with self.assertRaisesRegex(errors.AfterKernelError, 'widths differ'):
      grams.gram(np.ones((2, 3)), np.ones((2, 4)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'no feature blocks'):
      grams.gram_from_blocks([])


class StreamedGramTest(parameterized.TestCase):
  """Streamed Grams (features never all held) equal the dense Gram."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(6)
    self.projection = rng.standard_normal((5, 64)).astype(np.float32)
    self.inputs = rng.standard_normal((37, 5)).astype(np.float32)
    self.other = rng.standard_normal((11, 5)).astype(np.float32)
    self.calls = []

  def feature_fn(self, x):
    self.calls.append(len(x))
    return np.tanh(x @ self.projection)

  @parameterized.parameters(None, 1000, 20, 12)
  def test_symmetric(self, budget_rows):
    dense = grams.gram(self.feature_fn(self.inputs), accumulate_float64=True)
    budget_gb = budget_rows and budget_rows * 64 * 8 / 1024**3
    got = grams.streamed_gram(self.feature_fn, 64, self.inputs,
                                memory_budget_gb=budget_gb, stream_block=4,
                                accumulate_float64=True)
    # float32 features may differ in the last bit with the batch size.
    np.testing.assert_allclose(got, dense, rtol=1e-6, atol=1e-5)
    np.testing.assert_array_equal(got, got.T)

  def test_cross_and_recompute_count(self):
    dense = grams.gram(self.feature_fn(self.inputs),
                         self.feature_fn(self.other), accumulate_float64=True)
    self.calls = []
    budget_rows = 16  # chunk = 16 - 2 x stream_block(4) = 8 rows
    got = grams.streamed_gram(
        self.feature_fn, 64, self.inputs, self.other,
        memory_budget_gb=budget_rows * 64 * 4 / 1024**3, stream_block=4)
    np.testing.assert_allclose(got, dense, rtol=1e-5, atol=1e-5)
    # 5 row chunks (8, 8, 8, 8, 5), each streaming 11 columns in 3 blocks.
    self.assertEqual(self.calls, [8, 4, 4, 3] * 4 + [5, 4, 4, 3])

  def test_nan_found_by_the_sliced_check(self):
    features = np.ones((50, 64), np.float32)
    features[47, 3] = np.nan
    with mock.patch.object(grams, '_FINITE_CHECK_VALUES', 100):
      with self.assertRaisesRegex(errors.AfterKernelError, '1 NaN/inf'):
        grams.gram(features)
      # The row is named, across slices of 100 values (row 47 in slice 24).
      features[12, 0] = np.inf
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  '2 NaN/inf values in 2 rows .first: row 12'):
        grams.gram(features)

  def test_budget_too_small(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'raise it'):
      grams.streamed_gram(self.feature_fn, 64, self.inputs,
                            memory_budget_gb=1e-9, stream_block=4)


class StructuredGramTest(parameterized.TestCase):
  """Factored Dense-layer Grams equal the Gram of the full features."""

  @parameterized.named_parameters(
      ('fully_connected', 'fully_connected', (6, 6, 1)),
      ('vgg', 'vgg', (8, 8, 1)), ('sum', 'sum', (5, 5, 2)))
  def test_equals_gram_of_materialized_features(self, architecture, shape):
    keras.utils.set_random_seed(9)
    model = models.build_model(architecture, shape)
    rng = np.random.default_rng(9)
    for v in model.trainable_variables:  # non-zero biases
      v.assign(v.numpy() + 0.1 * rng.standard_normal(v.shape).astype(
          np.float32))
    a = rng.random((13,) + shape).astype(np.float32)
    b = rng.random((5,) + shape).astype(np.float32)
    phi_a = features.gradient_features(model, a, method='loop')
    phi_b = features.gradient_features(model, b, method='loop')
    factors_a = features.structured_features(model, a, batch_size=4)
    np.testing.assert_allclose(
        grams.structured_gram(factors_a),
        grams.gram(phi_a, accumulate_float64=True), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        grams.structured_gram(factors_a,
                                features.structured_features(model, b)),
        grams.gram(phi_a, phi_b, accumulate_float64=True),
        rtol=1e-4, atol=1e-5)

  def test_unsupported_model(self):
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2)(inputs)
    merged = keras.layers.Concatenate()([inputs, hidden])
    model = keras.Model(inputs, keras.layers.Dense(1)(merged))
    with self.assertRaisesRegex(errors.AfterKernelError, 'chain model'):
      features.structured_features(model, np.zeros((2, 3), np.float32))


class ScaleTest(absltest.TestCase):

  def test_scale_from_features_and_from_gram_agree(self):
    features = np.random.default_rng(3).standard_normal((10, 6))
    expected = np.mean(np.linalg.norm(features, axis=1))
    self.assertAlmostEqual(grams.feature_scale(features), expected)
    self.assertAlmostEqual(
        grams.feature_scale(features @ features.T, is_gram=True), expected)
    rescaled = features / expected
    self.assertAlmostEqual(grams.feature_scale(rescaled), 1.0)

  def test_zero_features(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'mean norm'):
      grams.feature_scale(np.zeros((3, 2)))


class TracedGramTest(absltest.TestCase):

  def test_traced_gram_is_gram_of_concatenated_outputs(self):
    rng = np.random.default_rng(11)
    jac_a = rng.standard_normal((6, 3, 10)).astype(np.float32)
    jac_b = rng.standard_normal((4, 3, 10)).astype(np.float32)
    expected = np.einsum('ilp,jlp->ij', jac_a.astype(np.float64),
                         jac_b.astype(np.float64))
    traced = grams.traced_gram(
        grams.gram(jac_a[:, l], jac_b[:, l]) for l in range(3))
    np.testing.assert_allclose(traced, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(grams.gram_from_jacobians(jac_a, jac_b),
                               expected, rtol=1e-5, atol=1e-5)
    full = grams.gram_from_jacobians(jac_a, jac_b, 'full')
    self.assertEqual(full.shape, (18, 12))
    np.testing.assert_allclose(
        np.einsum('iljl->ij', full.reshape(6, 3, 4, 3)), expected,
        rtol=1e-5, atol=1e-5)
    with self.assertRaisesRegex(errors.AfterKernelError, 'at least one'):
      grams.traced_gram([])
    with self.assertRaisesRegex(errors.AfterKernelError, 'kernel kind'):
      grams.gram_from_jacobians(jac_a, kind='diag')

  def test_require_finite_gram_names_the_matrix(self):
    grams.require_finite_gram(np.eye(3), 'train_gram')
    with self.assertRaisesRegex(errors.AfterKernelError, 'cross_gram has 1'):
      grams.require_finite_gram(np.array([[1.0, np.nan]]), 'cross_gram')


class ConsistencyTest(parameterized.TestCase):
  """The Gram's forms agree: streamed = dense, cross = block of the full."""

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(12)
    self.weights = rng.standard_normal((5, 48)).astype(np.float32)
    self.inputs = rng.standard_normal((37, 5)).astype(np.float32)

  def feature_fn(self, x):
    # An elementwise product summed over its axis, not a BLAS matmul: a
    # BLAS may round a 1-row block (gemv) differently from a many-row one
    # (gemm) (seen on an AMD EPYC machine), and the streamed forms here
    # feed blocks of other sizes than the dense one; the features must not
    # depend on the block for "same products" to hold.
    products = x[:, :, None] * self.weights[None, :, :]
    return np.tanh(products.sum(axis=1)).astype(np.float32)

  @parameterized.parameters(None, 20, 12)
  def test_streamed_equals_dense_to_the_bit_in_float64(self, budget_rows):
    # Products of float32 features accumulated in float64: every form sums
    # the same 48 products per entry, so they agree to float64 rounding.
    dense = grams.gram(self.feature_fn(self.inputs), accumulate_float64=True)
    budget = None if budget_rows is None else budget_rows * 48 * 8 / 2**30
    streamed = grams.streamed_gram(self.feature_fn, 48, self.inputs,
                                   memory_budget_gb=budget, stream_block=4,
                                   accumulate_float64=True)
    np.testing.assert_allclose(streamed, dense, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(streamed, streamed.T)

  def test_cross_gram_is_a_block_of_the_full_gram(self):
    phi = self.feature_fn(self.inputs)
    full = grams.gram(phi, accumulate_float64=True)
    cross = grams.gram(phi[25:], phi[:25], accumulate_float64=True)
    np.testing.assert_allclose(cross, full[25:, :25], rtol=1e-12,
                               atol=1e-12)
    train, test_cross = grams.train_and_cross_gram(
        self.feature_fn, 48, self.inputs[:25], self.inputs[25:])
    np.testing.assert_allclose(train, full[:25, :25], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(test_cross, full[25:, :25], rtol=1e-5,
                               atol=1e-5)
    # Streamed under a budget too small for all features: same blocks.
    train_s, cross_s = grams.train_and_cross_gram(
        self.feature_fn, 48, self.inputs[:25], self.inputs[25:],
        memory_budget_gb=30 * 48 * 4 / 2**30)
    np.testing.assert_allclose(train_s, train, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(cross_s, test_cross, rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  absltest.main()
