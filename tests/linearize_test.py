"""Tests for afterkernel.linearize: the first-order Taylor model."""

import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel.models import architectures
from afterkernel import errors
from afterkernel.kernels import jacobians
from afterkernel import linearize

_SHAPE = (6, 6, 1)


class _Subclassed(keras.Model):

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.hidden = keras.layers.Dense(5, activation='tanh')
    self.head = keras.layers.Dense(2)

  def call(self, inputs):
    flat = keras.ops.reshape(inputs, (keras.ops.shape(inputs)[0], -1))
    return self.head(self.hidden(flat))


def _network(kind='functional', num_outputs=2, seed=0):
  keras.utils.set_random_seed(seed)
  if kind == 'subclassed':
    model = _Subclassed()
  elif kind == 'sequential':
    model = keras.Sequential([
        keras.Input(_SHAPE), keras.layers.Flatten(),
        keras.layers.Dense(6, activation='tanh'),
        keras.layers.Dense(num_outputs)])
  else:
    inputs = keras.Input(_SHAPE)
    x = keras.layers.Conv2D(3, 3, activation='tanh')(inputs)
    x = keras.layers.Flatten()(x)
    model = keras.Model(inputs, keras.layers.Dense(num_outputs)(x))
  model(np.zeros((1,) + _SHAPE, np.float32))
  return model


def _images(n, seed=0):
  return np.random.default_rng(seed).random((n,) + _SHAPE).astype(np.float32)


def _outputs(model, images):
  return keras.ops.convert_to_numpy(model(images, training=False))


def _set_flat(model, vector):
  offset = 0
  for v in model.trainable_variables:
    size = int(np.prod(v.shape))
    v.assign(vector[offset:offset + size].reshape(v.shape).astype(np.float32))
    offset += size


def _flat(arrays):
  return np.concatenate([np.ravel(a) for a in arrays])


class LinearizeTest(parameterized.TestCase):

  @parameterized.parameters('functional', 'sequential', 'subclassed')
  def test_equals_network_at_base_weights(self, kind):
    network = _network(kind)
    linear = linearize.linearize(network)
    images = _images(4)
    np.testing.assert_allclose(_outputs(linear, images),
                               _outputs(network, images), rtol=1e-6)
    # The caller's network is copied, not frozen.
    self.assertNotEmpty(network.trainable_variables)
    self.assertLen(linear.trainable_variables,
                   len(network.trainable_variables))
    unbiased = linearize.linearize(network, unbiased=True)
    np.testing.assert_array_equal(_outputs(unbiased, images), 0.0)

  def test_top_level_name_is_callable_like_neural_tangents(self):
    import afterkernel as ak  # pylint: disable=g-import-not-at-top
    network = _network('functional')
    images = _images(3)
    linear = ak.linearize(network, unbiased=True)  # 0.1.0: a TypeError.
    self.assertIsInstance(linear, ak.LinearizedModel)
    np.testing.assert_array_equal(_outputs(linear, images), 0.0)
    # Still the module of 0.1.0 code: its names are there.
    self.assertIs(ak.linearize.LinearizedModel, linearize.LinearizedModel)
    self.assertIs(ak.linearize, linearize)
    self.assertIs(ak.taylor_expand, ak.taylor.taylor_expand)

  @parameterized.parameters('functional', 'subclassed')
  def test_gradient_features_equal_network_jacobian(self, kind):
    network = _network(kind)
    linear = linearize.linearize(network)
    images = _images(3, seed=1)
    np.testing.assert_allclose(
        jacobians.per_example_jacobians(linear, images),
        jacobians.per_example_jacobians(network, images), rtol=1e-5,
        atol=1e-6)
    # Linear in delta: the Jacobian does not change when delta does.
    for delta in linear.deltas:
      delta.assign(np.full(delta.shape, 0.3, np.float32))
    np.testing.assert_allclose(
        jacobians.per_example_jacobians(linear, images),
        jacobians.per_example_jacobians(network, images), rtol=1e-5,
        atol=1e-6)

  def test_equals_explicit_first_order_taylor_model(self):
    network = _network('functional')
    images = _images(4, seed=2)
    theta0 = _flat(network.get_weights())
    delta = 0.05 * np.random.default_rng(3).standard_normal(theta0.size)
    linear = linearize.linearize(network)
    _set_flat(linear, delta)  # Its trainable variables are the deltas.
    jac = jacobians.per_example_jacobians(network, images).astype(np.float64)
    expected = _outputs(network, images) + jac @ delta
    np.testing.assert_allclose(_outputs(linear, images), expected, rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(_flat(linear.parameters()), theta0 + delta,
                               rtol=1e-6, atol=1e-7)

  def test_tracks_network_for_tiny_steps(self):
    # f(theta_0 + eps d) - f_lin(theta_0 + eps d) = O(eps^2): the error ratio
    # for eps and eps / 4 is ~16.
    network = _network('functional', seed=4)
    images = _images(5, seed=5)
    theta0 = _flat(network.get_weights()).astype(np.float64)
    direction = np.random.default_rng(6).standard_normal(theta0.size)
    linear = linearize.linearize(network)
    moved = _network('functional', seed=4)
    errors_by_eps = []
    for eps in (0.2, 0.05):
      _set_flat(linear, eps * direction)
      _set_flat(moved, theta0 + eps * direction)
      errors_by_eps.append(np.abs(_outputs(moved, images) -
                                  _outputs(linear, images)).max())
    self.assertGreater(errors_by_eps[0] / errors_by_eps[1], 8.0)
    self.assertLess(errors_by_eps[1], 0.05)

  def test_fit_trains_only_deltas_and_tracks_network(self):
    network = _network('sequential', num_outputs=1, seed=7)
    images = _images(32, seed=8)
    targets = np.random.default_rng(9).standard_normal((32, 1)).astype(
        np.float32)
    linear = linearize.linearize(network)
    base = [w.copy() for w in linear.base_parameters()]
    initial = _outputs(network, images)
    trained = _network('sequential', num_outputs=1, seed=7)
    for model in (linear, trained):
      keras.utils.set_random_seed(10)
      model.compile(optimizer=keras.optimizers.SGD(1e-3), loss='mse')
      model.fit(images, targets, batch_size=32, epochs=1, shuffle=False,
                verbose=0)
    for before, after in zip(base, linear.base_parameters()):
      np.testing.assert_array_equal(before, after)
    # One small full-batch step: the same gradient at theta_0, so the same
    # parameters; outputs agree up to the second-order term.
    np.testing.assert_allclose(_flat(linear.parameters()),
                               _flat(trained.get_weights()), atol=1e-6)
    moved = np.abs(_outputs(trained, images) - initial).max()
    self.assertGreater(moved, 1e-4)
    self.assertLess(np.abs(_outputs(linear, images) -
                           _outputs(trained, images)).max(), 0.05 * moved)

  def test_base_weights_from_checkpoint(self):
    network = _network('sequential')
    checkpoint = [w + 0.1 for w in network.get_weights()]
    linear = linearize.linearize(network, base_weights=checkpoint)
    other = _network('sequential')
    other.set_weights(checkpoint)
    images = _images(3, seed=11)
    np.testing.assert_allclose(_outputs(linear, images),
                               _outputs(other, images), rtol=1e-6)
    with self.assertRaisesRegex(errors.AfterKernelError, 'base_weights'):
      linearize.linearize(network, base_weights=checkpoint[:1])

  @parameterized.parameters('functional', 'sequential')
  def test_save_and_load_round_trip(self, kind):
    # A trained linearization reloads from a .keras file with the same
    # theta_0, the same deltas and hence the same outputs, and keeps
    # training only its deltas.
    network = _network(kind, num_outputs=1, seed=14)
    linear = linearize.linearize(network, unbiased=(kind == 'sequential'))
    images = _images(16, seed=15)
    targets = np.random.default_rng(16).standard_normal((16, 1)).astype(
        np.float32)
    linear.compile(optimizer=keras.optimizers.SGD(1e-2), loss='mse')
    linear.fit(images, targets, batch_size=8, epochs=2, verbose=0)
    path = os.path.join(
        self.enter_context(tempfile.TemporaryDirectory()), 'linearized.keras')
    linear.save(path)
    loaded = keras.models.load_model(path)
    self.assertIsInstance(loaded, linearize.LinearizedModel)
    self.assertEqual(loaded.unbiased, linear.unbiased)
    np.testing.assert_array_equal(_outputs(loaded, images),
                                  _outputs(linear, images))
    for before, after in zip(linear.base_parameters(),
                             loaded.base_parameters()):
      np.testing.assert_array_equal(before, after)
    self.assertLen(loaded.trainable_variables, len(linear.deltas))
    base = [w.copy() for w in loaded.base_parameters()]
    loaded.fit(images, targets, batch_size=8, epochs=1, verbose=0)
    for before, after in zip(base, loaded.base_parameters()):
      np.testing.assert_array_equal(before, after)
    self.assertGreater(np.abs(_outputs(loaded, images) -
                              _outputs(linear, images)).max(), 0)

  def test_bad_base_weight_indices(self):
    network = _network('sequential')
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'base_weight_indices'):
      linearize.LinearizedModel(network, base_weight_indices=[99])

  def test_ntk_parameterized_lenet(self):
    keras.utils.set_random_seed(12)
    network = architectures.build_lenet5((16, 16, 1), num_outputs=3,
                                         width_multiplier=0.5,
                                         parameterization='ntk')
    linear = linearize.linearize(network)
    images = np.random.default_rng(13).random((2, 16, 16, 1)).astype(
        np.float32)
    np.testing.assert_allclose(_outputs(linear, images),
                               _outputs(network, images), rtol=1e-5)


if __name__ == '__main__':
  absltest.main()
