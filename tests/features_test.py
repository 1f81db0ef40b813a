"""Tests for afterkernel.kernels.features against plain per-example tape.gradient."""

import time

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import _blocks
from afterkernel.kernels import features
from afterkernel import kernels
from afterkernel import models


def _reference_features(model, images):
  """One example at a time, eager tape.gradient: the obvious computation."""
  rows = []
  for image in images:
    with tf.GradientTape() as tape:
      logit = tf.reduce_sum(model(image[None], training=False))
    grads = tape.gradient(logit, model.trainable_variables)
    rows.append(np.concatenate([
        np.ravel(np.zeros(v.shape) if g is None else g.numpy())
        for g, v in zip(grads, model.trainable_variables)]))
  return np.stack(rows)


def _perturb_weights(model, rng, scale=0.1):
  """Non-zero biases, so every parameter's gradient is exercised."""
  for v in model.trainable_variables:
    v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(
        np.float32))


_ARCHITECTURES = tuple(
    (f'{name}_{method}', architecture, shape, method)
    for name, architecture, shape in (
        ('vgg', 'vgg', (12, 12, 1)), ('mega_vgg', 'mega_vgg', (8, 8, 1)),
        ('fully_connected', 'fully_connected', (10, 10, 1)),
        ('sum', 'sum', (6, 6, 3)), ('vgg_rgb', 'vgg', (8, 8, 3)))
    for method in ('per_layer', 'vectorized'))


class GradientFeaturesTest(parameterized.TestCase):

  @parameterized.named_parameters(*_ARCHITECTURES)
  def test_matches_per_example_tape_gradient(self, architecture, input_shape,
                                             method):
    keras.utils.set_random_seed(1)
    model = models.build_model(architecture, input_shape)
    rng = np.random.default_rng(0)
    _perturb_weights(model, rng)
    images = rng.random((7,) + input_shape).astype(np.float32)
    expected = _reference_features(model, images)
    # batch_size 3 exercises a ragged last block.
    got = features.gradient_features(model, images, batch_size=3,
                                     method=method)
    self.assertEqual(got.shape, (7, models.count_parameters(model)))
    self.assertEqual(got.dtype, np.float32)
    relative = (np.linalg.norm(got - expected, axis=1) /
                np.linalg.norm(expected, axis=1))
    self.assertLess(relative.max(), 1e-5)

  def test_unsupported_models_fall_back_or_refuse(self):
    inputs = keras.Input((4, 4, 1))
    flat = keras.layers.Flatten()(inputs)
    branch = keras.layers.Dense(3)(flat)
    merged = keras.layers.Concatenate()([flat, branch])
    model = keras.Model(inputs, keras.layers.Dense(1)(merged))
    self.assertFalse(features.supports_per_layer(model))
    images = np.random.default_rng(8).random((3, 4, 4, 1)).astype(np.float32)
    np.testing.assert_allclose(features.gradient_features(model, images),
                               _reference_features(model, images), rtol=1e-5,
                               atol=1e-6)
    with self.assertRaisesRegex(errors.AfterKernelError, "'per_layer'"):
      features.gradient_features(model, images, method='per_layer')
    normalized = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(2),
        keras.layers.LayerNormalization(), keras.layers.Dense(1)])
    self.assertFalse(features.supports_per_layer(normalized))

  def test_loop_method_matches_vectorized(self):
    keras.utils.set_random_seed(2)
    model = models.build_model('vgg', (8, 8, 1))
    images = np.random.default_rng(1).random((5, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        features.gradient_features(model, images, method='loop'),
        features.gradient_features(model, images), rtol=1e-4, atol=1e-6)

  def test_directional_derivative_matches_finite_difference(self):
    # Independent of any flattening code: f(theta + eps v) - f(theta - eps v)
    # ~= 2 eps phi(x).v, with v laid out in `parameter_vector` order.
    keras.utils.set_random_seed(3)
    model = models.build_model('fully_connected', (6, 6, 1))
    images = np.random.default_rng(2).random((4, 6, 6, 1)).astype(np.float32)
    phi = features.gradient_features(model, images).astype(np.float64)
    theta = features.parameter_vector(model)
    direction = np.random.default_rng(3).standard_normal(theta.size)
    direction /= np.linalg.norm(direction)
    eps = 1e-2

    def logits_at(vector):
      offset = 0
      for v in model.trainable_variables:
        size = int(np.prod(v.shape))
        v.assign(vector[offset:offset + size].reshape(v.shape))
        offset += size
      return keras.ops.convert_to_numpy(model(images))[:, 0].astype(
          np.float64)

    difference = (logits_at(theta + eps * direction) -
                  logits_at(theta - eps * direction)) / (2 * eps)
    logits_at(theta)
    np.testing.assert_allclose(difference, phi @ direction, rtol=2e-2,
                               atol=1e-4)

  def test_blocks_concatenate_to_full_matrix(self):
    keras.utils.set_random_seed(4)
    model = models.build_model('sum', (4, 4, 1))
    images = np.random.default_rng(4).random((10, 4, 4, 1)).astype(np.float32)
    blocks = list(features.iter_feature_blocks(model, images, batch_size=4))
    self.assertEqual([len(b) for b in blocks], [4, 4, 2])
    np.testing.assert_array_equal(np.concatenate(blocks),
                                  features.gradient_features(model, images, 4))


class AutoMethodTest(absltest.TestCase):

  def test_choose_fastest_picks_the_quicker_candidate(self):
    calls = {'slow': 0, 'fast': 0}

    def slow():
      calls['slow'] += 1
      time.sleep(0.03)

    def fast():
      calls['fast'] += 1

    self.assertEqual(features.choose_fastest({'slow': slow, 'fast': fast},
                                             repeats=2), 'fast')
    self.assertEqual(calls, {'slow': 3, 'fast': 3})  # 1 untimed + 2 timed

  def test_auto_resolution_and_cache(self):
    model = models.build_model('fully_connected', (8, 8, 1), num_layers=1,
                               width=6)
    images = np.random.default_rng(0).random((40, 8, 8, 1), np.float32)
    # Small jobs: per_layer without timing.
    self.assertEqual(features.resolve_method(model, images, batch_size=16),
                     'per_layer')
    # Large enough (4 blocks of 8): timed once, then cached.
    choice = features.resolve_method(model, images, batch_size=8)
    self.assertIn(choice, ('per_layer', 'vectorized'))
    self.assertEqual(_blocks._BLOCK_FNS[model][('auto_choice', 8)], choice)
    self.assertEqual(features.resolve_method(model, images, batch_size=8),
                     choice)
    self.assertEqual(features.resolve_method(model, images, 8, 'loop'), 'loop')
    # Whatever 'auto' picks, the features are the per-example gradients.
    np.testing.assert_allclose(
        features.gradient_features(model, images, batch_size=8),
        features.gradient_features(model, images, batch_size=8,
                                   method='loop'), rtol=1e-5, atol=1e-6)

  def test_vectorized_ragged_last_block_of_a_branching_model(self):
    # A last block of one example used to fail in pfor for functional
    # models with branches (InvalidArgumentError); it is padded now.
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3, 2, 1))
    hidden = keras.layers.Dense(5, activation='relu')(
        keras.layers.Flatten()(inputs))
    hidden = keras.layers.Add()([hidden, keras.layers.Dense(5)(hidden)])
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    x = np.random.default_rng(0).random((7, 3, 2, 1)).astype(np.float32)
    np.testing.assert_allclose(
        features.gradient_features(model, x, 3, 'vectorized'),
        features.gradient_features(model, x, 3, 'loop'), rtol=1e-5, atol=1e-6)

  def test_auto_without_per_layer_support_is_vectorized(self):
    inputs = keras.Input((4,))
    hidden = keras.layers.Dense(3)(inputs)
    outputs = keras.layers.Dense(1)(keras.layers.Add()([hidden, hidden]))
    model = keras.Model(inputs, outputs)
    self.assertFalse(features.supports_per_layer(model))
    self.assertEqual(
        features.resolve_method(model, np.zeros((64, 4), np.float32), 8),
        'vectorized')



def _chain_model(num_outputs, seed=10, dtype='float32'):
  """A conv + dense chain with L outputs, biases perturbed."""
  keras.utils.set_random_seed(seed)
  model = keras.Sequential([
      keras.Input((6, 6, 1)),
      keras.layers.Conv2D(2, 3, activation='relu', dtype=dtype),
      keras.layers.Flatten(dtype=dtype),
      keras.layers.Dense(5, activation='tanh', dtype=dtype),
      keras.layers.Dense(num_outputs, dtype=dtype)])
  _perturb_weights(model, np.random.default_rng(seed))
  return model


def _tape_jacobian(model, images, output_index):
  """d f_l(x_i) / d theta for all i from one `tape.jacobian` of the batch,
  computed in float64 on a float64 twin of the model: an independent
  computation (no per-example loop, no pfor, no float32 rounding)."""
  num_outputs = int(np.prod(model.output_shape[1:]))
  twin = _chain_model(num_outputs, dtype='float64')
  twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
  variables = twin.trainable_variables
  x = tf.constant(images.astype(np.float64))
  with tf.GradientTape(persistent=True) as tape:
    outputs = tf.reshape(twin(x, training=False), [len(images), -1])
    column = outputs[:, output_index]
  jacobians = tape.jacobian(column, variables, experimental_use_pfor=False)
  return np.concatenate([np.reshape(j.numpy(), (len(images), -1))
                         for j in jacobians], axis=1)


class OneEngineTest(parameterized.TestCase):
  """Scalar and L-output models go through one code path."""

  @parameterized.parameters('per_layer', 'vectorized', 'loop')
  def test_scalar_equals_single_output_jacobian_and_tape_jacobian(
      self, method):
    model = _chain_model(1)
    images = np.random.default_rng(1).random((7, 6, 6, 1)).astype(np.float32)
    scalar = features.gradient_features(model, images, 3, method)
    # L = 1 through the multi-output entry points: the same code, same bits.
    np.testing.assert_array_equal(
        features.gradient_features(model, images, 3, method, output_index=0),
        scalar)
    np.testing.assert_array_equal(
        features.per_example_jacobians(model, images, 3, method)[:, 0],
        scalar)
    reference = _tape_jacobian(model, images, 0)
    np.testing.assert_allclose(scalar.astype(np.float64), reference,
                               rtol=1e-5, atol=1e-6)

  def test_methods_agree_on_every_output(self):
    model = _chain_model(3)
    self.assertTrue(features.supports_per_layer(model))
    images = np.random.default_rng(2).random((5, 6, 6, 1)).astype(np.float32)
    per_method = {
        method: features.per_example_jacobians(model, images, 2, method)
        for method in ('per_layer', 'vectorized', 'loop', 'auto')}
    for index in range(3):
      reference = _tape_jacobian(model, images, index)
      for method, jacobians in per_method.items():
        np.testing.assert_allclose(jacobians[:, index], reference, rtol=1e-5,
                                   atol=1e-6, err_msg=method)

  def test_structured_factors_of_each_output(self):
    model = _chain_model(2)
    images = np.random.default_rng(3).random((4, 6, 6, 1)).astype(np.float32)
    for index in range(2):
      factors = features.structured_features(model, images,
                                             output_index=index)
      phi = _tape_jacobian(model, images, index)
      np.testing.assert_allclose(kernels.structured_gram(factors),
                                 phi @ phi.T, rtol=1e-4, atol=1e-5)
    with self.assertRaisesRegex(errors.AfterKernelError, 'one scalar output'):
      features.structured_features(model, images)

  def test_structured_is_not_a_feature_row_method(self):
    model = _chain_model(1)
    with self.assertRaisesRegex(errors.AfterKernelError, 'not feature rows'):
      features.gradient_features(model, np.zeros((2, 6, 6, 1), np.float32),
                                 method='structured')
    self.assertEqual(set(features.METHODS) - set(features.FEATURE_METHODS),
                     {'structured'})

  def test_one_cache_serves_scalar_and_indexed_calls(self):
    model = _chain_model(1)
    images = np.random.default_rng(4).random((3, 6, 6, 1)).astype(np.float32)
    features.gradient_features(model, images, method='per_layer')
    cached = _blocks._BLOCK_FNS[model]['per_layer']
    features.gradient_features(model, images, method='per_layer',
                               output_index=0)
    self.assertIs(_blocks._BLOCK_FNS[model]['per_layer'], cached)


class ConjugateFeaturesTest(absltest.TestCase):

  def test_is_input_of_last_dense(self):
    keras.utils.set_random_seed(5)
    model = models.build_model('fully_connected', (5, 5, 1))
    images = np.random.default_rng(5).random((6, 5, 5, 1)).astype(np.float32)
    h = features.conjugate_features(model, images, batch_size=4)
    self.assertEqual(h.shape, (6, models.FC_WIDTH))
    phi = features.gradient_features(model, images)
    # d f / d (last kernel) = h, so those feature coordinates equal h.
    last_kernel_size = models.FC_WIDTH
    np.testing.assert_allclose(phi[:, -last_kernel_size - 1:-1], h,
                               rtol=1e-5, atol=1e-6)


class BadInputTest(absltest.TestCase):

  def test_shape_mismatch(self):
    model = models.build_model('sum', (4, 4, 1))
    with self.assertRaisesRegex(errors.AfterKernelError, 'expects'):
      features.gradient_features(model, np.zeros((2, 5, 5, 1), np.float32))

  def test_unknown_method(self):
    model = models.build_model('sum', (4, 4, 1))
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown feature'):
      features.gradient_features(model, np.zeros((2, 4, 4, 1), np.float32),
                                 method='magic')

  def test_bad_batch_size(self):
    model = models.build_model('sum', (4, 4, 1))
    with self.assertRaisesRegex(errors.AfterKernelError, 'batch_size'):
      features.gradient_features(model, np.zeros((2, 4, 4, 1), np.float32),
                                 batch_size=0)

  def test_multi_output_model_rejected(self):
    inputs = keras.Input((3,))
    model = keras.Model(inputs, keras.layers.Dense(2)(inputs))
    with self.assertRaisesRegex(errors.AfterKernelError, 'one scalar output'):
      features.gradient_features(model, np.zeros((2, 3), np.float32))


if __name__ == '__main__':
  absltest.main()
