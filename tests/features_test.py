"""Tests for afterkernel.kernels.features against plain per-example tape.gradient."""

import contextlib
import logging
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
from gradient_fixture import perturb_weights as _perturb_weights
from gradient_fixture import reference_features as _reference_features


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


class _SubclassedNet(keras.Model):
  """A subclassed model (no Keras-known input shape or layer graph)."""

  def __init__(self, dtype=None):
    super().__init__(dtype=dtype)
    self.hidden = keras.layers.Dense(5, activation='tanh', dtype=dtype)
    self.out = keras.layers.Dense(1, dtype=dtype)

  def call(self, x):
    return self.out(self.hidden(keras.ops.reshape(x, (-1, 12))))


def _keras_model(kind, dtype=None):
  """Model kinds users bring; `dtype` builds a float64 twin for references."""
  if kind == 'subclassed':
    return _SubclassedNet(dtype)
  if kind == 'none_dims':  # conv net on images of any size
    inputs = keras.Input((None, None, 1), dtype=dtype)
    h = keras.layers.GlobalAveragePooling2D(dtype=dtype)(keras.layers.Conv2D(
        2, 3, activation='tanh', dtype=dtype)(inputs))
    return keras.Model(inputs, keras.layers.Dense(1, dtype=dtype)(h))
  # 'rank3': a Dense applied to (positions, channels) inputs.
  return keras.Sequential([
      keras.Input((4, 3), dtype=dtype), keras.layers.Dense(
          5, activation='tanh', dtype=dtype),
      keras.layers.Flatten(dtype=dtype), keras.layers.Dense(1, dtype=dtype)])


def _float64_reference(kind, model, images):
  """Per-example tape.jacobian of a float64 twin with the same weights."""
  twin = _keras_model(kind, 'float64')
  twin(images[:1].astype(np.float64))
  twin.set_weights([w.astype(np.float64) for w in model.get_weights()])
  rows = []
  for image in images.astype(np.float64):
    with tf.GradientTape() as tape:
      output = tf.reshape(twin(image[None]), [])
    rows.append(np.concatenate([np.ravel(j) for j in tape.jacobian(
        output, twin.trainable_variables)]))
  return np.stack(rows)


class KerasModelKindsTest(parameterized.TestCase):
  """Issue 14: every kind of Keras model users bring, against float64."""

  def _model_and_images(self, kind, shape):
    keras.utils.set_random_seed(5)
    model = _keras_model(kind)
    images = np.random.default_rng(5).random((5,) + shape).astype(np.float32)
    model(images[:1])
    _perturb_weights(model, np.random.default_rng(6))
    return model, images

  @parameterized.product(
      case=(('subclassed', (4, 3)), ('none_dims', (7, 6, 1)),
            ('rank3', (4, 3))),
      method=('auto', 'per_layer', 'vectorized'))
  def test_features_match_float64_jacobian(self, case, method):
    kind, shape = case
    model, images = self._model_and_images(kind, shape)
    # Dense on rank-3 inputs takes the per_layer path ('auto' too).
    self.assertEqual(features.supports_per_layer(model), kind != 'subclassed')
    if method == 'per_layer' and kind == 'subclassed':
      return
    batches = [(images, 2)]
    if kind == 'none_dims':  # another concrete size, same model
      batches.append((np.random.default_rng(7).random(
          (3, 5, 9, 1)).astype(np.float32), 256))
    for inputs, batch_size in batches:
      np.testing.assert_allclose(
          features.gradient_features(model, inputs, batch_size, method),
          _float64_reference(kind, model, inputs), rtol=1e-5, atol=1e-6)

  def test_mixed_float16_policy_gives_float32_features(self):
    keras.mixed_precision.set_global_policy('mixed_float16')
    try:
      model, images = self._model_and_images('rank3', (4, 3))
      self.assertEqual(model.layers[0].compute_dtype, 'float16')
      got = {m: features.gradient_features(model, images, method=m)
             for m in ('auto', 'per_layer', 'vectorized', 'loop')}
      self.assertEqual(model.layers[0].compute_dtype, 'float16')  # restored
    finally:
      keras.mixed_precision.set_global_policy('float32')
    expected = _float64_reference('rank3', model, images)
    for method, value in got.items():
      self.assertEqual(value.dtype, np.float32, method)
      # float16 compute would be off by ~1e-3.
      np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6,
                                 err_msg=method)

  def test_multi_input_and_dataset_get_one_clear_error(self):
    first, second = keras.Input((3,)), keras.Input((2,))
    two_inputs = keras.Model([first, second], keras.layers.Dense(1)(
        keras.layers.Concatenate()([first, second])))
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'takes 2 inputs.*one input tensor'):
      features.gradient_features(two_inputs, [np.zeros((4, 3)),
                                              np.zeros((4, 2))])
    model, images = self._model_and_images('rank3', (4, 3))
    dataset = tf.data.Dataset.from_tensor_slices(images).batch(2)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'tf.data.Dataset.*one .n, .... array'):
      features.gradient_features(model, dataset)
    with self.assertRaisesRegex(errors.AfterKernelError, 'list of arrays'):
      features.gradient_features(model, [images, images])

  def test_non_finite_inputs_and_features_are_named(self):
    model, images = self._model_and_images('rank3', (4, 3))
    for bad in (np.nan, np.inf):
      corrupt = images.copy()
      corrupt[3, 1, 2] = bad
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  r'images have NaN/inf .*example 3'):
        features.gradient_features(model, corrupt)
    model.layers[0].kernel.assign(np.full((3, 5), np.nan, np.float32))
    for method in ('per_layer', 'vectorized'):
      with self.assertRaisesRegex(errors.AfterKernelError, 'gradient features'
                                  ' .* NaN/inf .*non-finite weights .*kernel'):
        features.gradient_features(model, images, method=method)


@contextlib.contextmanager
def _tf_log_messages():
  """Collects the messages TF's logger emits inside the block."""
  seen = []
  handler = logging.Handler()
  handler.emit = lambda record: seen.append(record.getMessage())
  tf.get_logger().addHandler(handler)
  try:
    yield seen
  finally:
    tf.get_logger().removeHandler(handler)


class QuietAndTracedOnceTest(absltest.TestCase):

  def test_pfor_conv_warning_is_filtered_and_others_pass(self):
    keras.utils.set_random_seed(4)
    model = models.build_model('vgg', (8, 8, 1))
    images = np.random.default_rng(4).random((3, 8, 8, 1)).astype(np.float32)
    with _tf_log_messages() as seen:
      features.gradient_features(model, images, method='vectorized')
      tf.get_logger().warning('an unrelated warning')
    self.assertFalse([m for m in seen if 'Conv2DBackpropFilter' in m], seen)
    self.assertIn('an unrelated warning', seen)
    self.assertEqual(logging.getLogger().level, logging.WARNING)

  def test_a_model_is_traced_once_per_method(self):
    model = models.build_model('vgg', (8, 8, 1))
    rng = np.random.default_rng(9)
    # vectorized pads ragged blocks, per_layer takes any batch size.
    for method in ('vectorized', 'per_layer'):
      for n in (8, 8, 5, 11):
        features.gradient_features(model, rng.random((n, 8, 8, 1)).astype(
            np.float32), batch_size=4, method=method)
      traced = _blocks.block_fn(model, method, (8, 8, 1))
      self.assertEqual(traced.experimental_get_tracing_count(), 1, method)

  def test_many_models_do_not_warn_of_retracing(self):
    # A sweep traces each new model once; TF counts those traces per Python
    # function (over all models) and used to warn after five.
    images = np.random.default_rng(10).random((6, 6, 6, 1), np.float32)
    with _tf_log_messages() as seen:
      for model in [models.build_model('fully_connected', (6, 6, 1))
                    for _ in range(7)]:
        features.gradient_features(model, images, batch_size=4)
        kernels.empirical.model_gram(model, images[:3], images[3:])
    self.assertFalse([m for m in seen if 'retracing' in m], seen)


if __name__ == '__main__':
  absltest.main()
