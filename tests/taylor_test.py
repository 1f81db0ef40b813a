"""Tests of afterkernel.taylor: the second-order Taylor models.

The nested-JVP terms are checked against (a) finite differences of the
network along delta, (b) tape-based Hessian-vector products, and (c) a
network that is exactly quadratic in theta, where H_full is exact.
"""

import dataclasses
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel import taylor

def _smooth_net(seed=0, dtype='float64'):
  """A tiny tanh network (smooth, so finite differences are accurate)."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((5,))
  hidden = keras.layers.Dense(6, activation='tanh', dtype=dtype)(inputs)
  hidden = keras.layers.Dense(4, activation='tanh', dtype=dtype)(hidden)
  outputs = keras.layers.Dense(1, dtype=dtype)(hidden)
  return keras.Model(inputs, outputs)


def _quadratic_net(seed=0):
  """a^T (W x + b) + c: exactly quadratic (bilinear) in theta."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((3,))
  hidden = keras.layers.Dense(4, dtype='float64')(inputs)
  outputs = keras.layers.Dense(1, dtype='float64')(hidden)
  return keras.Model(inputs, outputs)


def _random_deltas(model, scale, seed=1):
  rng = np.random.default_rng(seed)
  return [scale * rng.standard_normal(d.shape) for d in model.deltas]


def _network_at(network, weights, inputs):
  network.set_weights(weights)
  return keras.ops.convert_to_numpy(network(inputs))[:, 0]


class TermsTest(parameterized.TestCase):

  def test_terms_match_finite_differences_along_delta(self):
    network = _smooth_net()
    x = np.random.default_rng(0).standard_normal((7, 5))
    model = taylor.taylor_expand(network, 'full')
    deltas = _random_deltas(model, 0.3)
    for delta, value in zip(model.deltas, deltas):
      delta.assign(value)
    f0, first, second = [keras.ops.convert_to_numpy(t)[:, 0]
                         for t in model.terms(x)]
    theta0 = network.get_weights()
    h = 1e-4

    def f(t):
      return _network_at(network, [w + t * d for w, d in zip(theta0, deltas)],
                         x)

    np.testing.assert_allclose(f0, f(0.0), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(first, (f(h) - f(-h)) / (2 * h), rtol=1e-6,
                               atol=1e-8)
    np.testing.assert_allclose(second, (f(h) - 2 * f(0.0) + f(-h)) / h**2,
                               rtol=1e-4, atol=1e-6)
    self.assertGreater(np.abs(second).max(), 1e-3)  # Not trivially zero.

  def test_second_order_term_matches_tape_hessian_vector_product(self):
    network = _smooth_net(seed=3, dtype='float32')
    x = np.random.default_rng(1).standard_normal((5, 5)).astype(np.float32)
    model = taylor.taylor_expand(network, 'full')
    deltas = [d.astype(np.float32) for d in _random_deltas(model, 0.5, 2)]
    for delta, value in zip(model.deltas, deltas):
      delta.assign(value)
    _, _, second = model.terms(x)
    variables = [v.value for v in network.trainable_variables]
    expected = []
    for row in range(len(x)):  # delta^T H delta per example, by two tapes.
      with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
          output = tf.reduce_sum(network(x[row:row + 1]))
        gradients = inner.gradient(output, variables)
        directional = tf.add_n([tf.reduce_sum(g * d)
                                for g, d in zip(gradients, deltas)])
      hvp = outer.gradient(directional, variables,
                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
      expected.append(sum(float(tf.reduce_sum(h * d))
                          for h, d in zip(hvp, deltas)))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(second)[:, 0],
                               expected, rtol=1e-4, atol=1e-5)

  def test_gradient_wrt_delta_is_jacobian_plus_hessian_delta(self):
    network = _smooth_net(seed=4)
    x = np.random.default_rng(2).standard_normal((3, 5))
    model = taylor.taylor_expand(network, 'full')
    deltas = _random_deltas(model, 0.2, 5)
    for delta, value in zip(model.deltas, deltas):
      delta.assign(value)
    with tf.GradientTape() as tape:
      total = tf.reduce_sum(model(x))
    got = tape.gradient(total, [d.value for d in model.deltas])
    variables = [v.value for v in network.trainable_variables]
    with tf.GradientTape() as outer:
      with tf.GradientTape() as inner:
        output = tf.reduce_sum(network(x))
      jacobian = inner.gradient(output, variables)
      directional = tf.add_n([tf.reduce_sum(g * d)
                              for g, d in zip(jacobian, deltas)])
    hessian_delta = outer.gradient(
        directional, variables,
        unconnected_gradients=tf.UnconnectedGradients.ZERO)
    for g, j, hd in zip(got, jacobian, hessian_delta):
      np.testing.assert_allclose(g.numpy(), j.numpy() + hd.numpy(),
                                 rtol=1e-9, atol=1e-10)

  @parameterized.parameters(False, True)
  def test_full_model_is_exact_for_a_quadratic_network(self, unbiased):
    network = _quadratic_net()
    x = np.random.default_rng(3).standard_normal((6, 3))
    model = taylor.taylor_expand(network, 'full', unbiased=unbiased)
    only = taylor.taylor_expand(network, 'hessian_only', unbiased=unbiased)
    theta0 = network.get_weights()
    deltas = _random_deltas(model, 2.0, 7)  # Far from theta_0: still exact.
    for m in (model, only):
      for delta, value in zip(m.deltas, deltas):
        delta.assign(value)
    f0 = _network_at(network, theta0, x)
    exact = _network_at(network, [w + d for w, d in zip(theta0, deltas)], x)
    got = keras.ops.convert_to_numpy(model(x))[:, 0]
    np.testing.assert_allclose(got, exact - f0 if unbiased else exact,
                               rtol=1e-10, atol=1e-10)
    # H_only = H_full - J delta, with J delta the exact directional
    # derivative of the quadratic t -> f(theta0 + t delta) at 0.
    half = _network_at(network, [w + 0.5 * d for w, d in zip(theta0, deltas)],
                       x)
    quadratic = 2 * (exact - 2 * half + f0)  # = 1/2 delta^T H delta
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(only(x))[:, 0],
        quadratic if unbiased else f0 + quadratic, rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(model.parameters()[0], theta0[0] + deltas[0])

  def test_starts_at_network_and_hessian_only_needs_a_random_start(self):
    network = _smooth_net(seed=5)
    x = np.random.default_rng(4).standard_normal((4, 5))
    f0 = keras.ops.convert_to_numpy(network(x))
    full = taylor.taylor_expand(network, 'full')
    np.testing.assert_allclose(keras.ops.convert_to_numpy(full(x)), f0,
                               rtol=1e-12)
    at_zero = taylor.taylor_expand(network, 'hessian_only')
    with tf.GradientTape() as tape:
      total = tf.reduce_sum(at_zero(x))
    gradients = tape.gradient(total, [d.value for d in at_zero.deltas])
    # The saddle at delta = 0: H delta = 0, so no gradient at all.
    self.assertEqual(max(float(np.abs(g.numpy()).max()) for g in gradients
                         if g is not None), 0.0)
    started = taylor.taylor_expand(network, 'hessian_only',
                                   delta_init_scale=0.1, seed=0)
    initial = [d.numpy().copy() for d in started.deltas]
    self.assertGreater(np.abs(initial[0]).max(), 0.0)
    rms = np.sqrt(np.mean(network.get_weights()[0]**2))
    self.assertAlmostEqual(np.std(initial[0]) / rms, 0.1, delta=0.05)
    started.deltas[0].assign(np.zeros_like(initial[0]))
    started.reset()
    np.testing.assert_array_equal(started.deltas[0].numpy(), initial[0])
    # The network itself was copied, not frozen.
    self.assertTrue(network.trainable)

  def test_save_and_load_round_trip(self):
    network = _smooth_net(seed=7, dtype='float32')
    x = np.random.default_rng(8).standard_normal((6, 5)).astype(np.float32)
    model = taylor.taylor_expand(network, 'hessian_only',
                                 delta_init_scale=0.1, seed=3)
    path = os.path.join(self.enter_context(tempfile.TemporaryDirectory()),
                        'quadratic.keras')
    model.save(path)
    loaded = keras.models.load_model(path)
    self.assertIsInstance(loaded, taylor.QuadraticModel)
    self.assertEqual((loaded.variant, loaded.delta_init_scale, loaded.seed),
                     ('hessian_only', 0.1, 3))
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(loaded(x)),
                                  keras.ops.convert_to_numpy(model(x)))
    for before, after in zip(model.deltas, loaded.deltas):
      np.testing.assert_array_equal(before.numpy(), after.numpy())

  def test_fit_decreases_loss_and_keeps_theta0(self):
    network = _smooth_net(seed=6, dtype='float32')
    rng = np.random.default_rng(5)
    x = rng.standard_normal((64, 5)).astype(np.float32)
    y = np.sign(x[:, :1] * x[:, 1:2]).astype(np.float32)
    model = taylor.taylor_expand(network, 'full')
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss='mse')
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    losses = history.history['loss']
    self.assertLess(losses[-1], losses[0])
    np.testing.assert_array_equal(model.base_parameters()[0],
                                  network.get_weights()[0])

  def test_bad_arguments_raise(self):
    network = _smooth_net()
    with self.assertRaisesRegex(errors.AfterKernelError, 'variant'):
      taylor.taylor_expand(network, 'cubic')
    with self.assertRaisesRegex(errors.AfterKernelError, 'delta_init_scale'):
      taylor.taylor_expand(network, 'hessian_only', delta_init_scale=-1.0)
    with self.assertRaisesRegex(errors.AfterKernelError, 'base_weights'):
      taylor.taylor_expand(network, base_weights=[np.zeros(1)])
    unbuilt = keras.Sequential([keras.layers.Dense(1)])
    with self.assertRaisesRegex(errors.AfterKernelError, 'not built'):
      taylor.taylor_expand(unbuilt)



def _explicit_hessians(network, x):
  """(n, P, P) float64 Hessians d^2 f(theta, x_i) / d theta^2 by two tapes.

  Reverse over reverse on the flattened weights: independent of the nested
  forward-mode JVPs of `QuadraticModel`.
  """
  variables = [v.value for v in network.trainable_variables]
  hessians = []
  for row in range(len(x)):
    with tf.GradientTape(persistent=True) as outer:
      with tf.GradientTape() as inner:
        output = tf.reduce_sum(network(x[row:row + 1]))
      gradient = tf.concat([tf.reshape(g, [-1]) for g in
                            inner.gradient(output, variables)], 0)
    blocks = outer.jacobian(gradient, variables,
                            unconnected_gradients=tf.UnconnectedGradients.ZERO)
    hessians.append(np.concatenate(
        [np.reshape(b.numpy(), (len(gradient), -1)) for b in blocks], 1))
  return np.array(hessians, np.float64)


def _set_deltas(model, deltas):
  for delta, value in zip(model.deltas, deltas):
    delta.assign(value)


class PaperDefinitionsTest(absltest.TestCase):
  """g2^only and g2^full of Vyas et al. against independent float64 math."""

  def test_g2_only_is_half_delta_h_delta_of_an_explicit_hessian(self):
    network = _smooth_net(seed=11)
    x = np.random.default_rng(12).standard_normal((4, 5))
    hessians = _explicit_hessians(network, x)
    num_parameters = sum(int(np.prod(w.shape)) for w in network.get_weights())
    self.assertEqual(hessians.shape, (4, num_parameters, num_parameters))
    np.testing.assert_allclose(hessians, np.transpose(hessians, (0, 2, 1)),
                               atol=1e-12)  # A Hessian is symmetric.
    model = taylor.paper_model(network, 'hessian_only')
    self.assertTrue(model.unbiased)
    deltas = _random_deltas(model, 0.4, 13)
    _set_deltas(model, deltas)
    flat = np.concatenate([d.ravel() for d in deltas])
    expected = 0.5 * np.einsum('p,npq,q->n', flat, hessians, flat)
    got = keras.ops.convert_to_numpy(model(x))[:, 0]
    np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
    self.assertGreater(np.abs(expected).min(), 1e-4)  # Not trivially zero.
    # No f(w0, x) and no J delta: 0 at delta = 0, even where f(w0, x) != 0.
    _set_deltas(model, [np.zeros_like(d) for d in deltas])
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(x)), 0.0)

  def test_g2_full_matches_the_network_to_third_order(self):
    network = _smooth_net(seed=14)
    x = np.random.default_rng(15).standard_normal((6, 5))
    # w0: weights moved away from initialization (a trained-like point).
    rng = np.random.default_rng(16)
    w0 = [w + 0.3 * rng.standard_normal(w.shape)
          for w in network.get_weights()]
    model = taylor.paper_model(network, 'full', base_weights=w0)
    self.assertFalse(model.unbiased)
    linear = taylor.taylor_expand(network, 'full', base_weights=w0)
    direction = _random_deltas(model, 1.0, 17)
    quadratic_errors, linear_errors = [], []
    for scale in (0.1, 0.05, 0.025, 0.0125):
      deltas = [scale * d for d in direction]
      _set_deltas(model, deltas)
      exact = _network_at(network, [w + d for w, d in zip(w0, deltas)], x)
      got = keras.ops.convert_to_numpy(model(x))[:, 0]
      quadratic_errors.append(np.abs(got - exact).max())
      _set_deltas(linear, deltas)
      f0, first, _ = [keras.ops.convert_to_numpy(t)[:, 0]
                      for t in linear.terms(x)]
      linear_errors.append(np.abs(f0 + first - exact).max())
    ratios = np.array(quadratic_errors[:-1]) / quadratic_errors[1:]
    # Halving delta divides an O(|delta|^3) error by 8 (4 for first order).
    np.testing.assert_allclose(ratios, 8.0, rtol=0.2)
    np.testing.assert_allclose(np.array(linear_errors[:-1]) /
                               linear_errors[1:], 4.0, rtol=0.2)
    self.assertLess(quadratic_errors[-1], 0.1 * linear_errors[-1])
    # At delta = 0, g2^full is the network at w0 (not at initialization).
    _set_deltas(model, [np.zeros_like(d) for d in direction])
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x))[:, 0],
                               _network_at(network, w0, x), rtol=1e-12)

  def test_paper_model_rejects_unknown_variant(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'variant'):
      taylor.paper_model(_smooth_net(), 'cubic')

if __name__ == '__main__':
  absltest.main()
