"""Tests for afterkernel.kernels.empirical: model -> Gram in every form."""

from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel import callbacks
from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel import models
from afterkernel.kernels import empirical
from afterkernel.kernels import features
from afterkernel.kernels import grams
from afterkernel.kernels import jacobians
from afterkernel.kernels import per_layer


def _model(num_outputs, chain=True, seed=3):
  keras.utils.set_random_seed(seed)
  inputs = keras.Input((5, 5, 1))
  hidden = keras.layers.Flatten()(inputs)
  hidden = keras.layers.Dense(6, activation='tanh')(hidden)
  if not chain:  # A branch: neither per_layer nor structured applies.
    hidden = keras.layers.Add()([hidden, keras.layers.Dense(6)(hidden)])
  model = keras.Model(inputs, keras.layers.Dense(num_outputs)(hidden))
  rng = np.random.default_rng(seed)
  for v in model.trainable_variables:
    v.assign(v.numpy() + 0.1 * rng.standard_normal(v.shape).astype(
        np.float32))
  return model


def _images(n, seed):
  return np.random.default_rng(seed).random((n, 5, 5, 1)).astype(np.float32)


def _factored_calls(run):
  """(one entry per `features.structured_features` call, run()'s result)."""
  calls = []
  original = features.structured_features

  def spy(*args, **kwargs):
    calls.append(1)
    return original(*args, **kwargs)

  with mock.patch.object(features, 'structured_features', spy):
    result = run()
  return calls, result


def _images_of(model, n, seed):
  shape = tuple(model.inputs[0].shape[1:])
  return np.random.default_rng(seed).random((n,) + shape).astype(np.float32)


def _reference_trace(model, a, b):
  """sum_l J_l(a_i).J_l(b_j) from per-example eager tape.gradient, float64."""
  def jacobians_of(images):
    rows = []
    for image in images:
      with tf.GradientTape() as tape:
        out = tf.reshape(model(image[None], training=False), [-1])
      rows.append(np.concatenate(
          [np.reshape(j.numpy(), (out.shape[0], -1)) for j in
           tape.jacobian(out, model.trainable_variables)], axis=1))
    return np.stack(rows).astype(np.float64)
  return np.einsum('ilp,jlp->ij', jacobians_of(a), jacobians_of(b))


class ModelGramTest(parameterized.TestCase):

  @parameterized.product(num_outputs=(1, 3),
                         method=('auto', 'structured', 'per_layer',
                                 'vectorized', 'loop'))
  def test_every_method_gives_the_traced_ntk(self, num_outputs, method):
    model = _model(num_outputs)
    a, b = _images(6, 1), _images(4, 2)
    expected = _reference_trace(model, a, b)
    got = empirical.model_gram(model, a, b, method=method, batch_size=4)
    self.assertEqual(got.shape, (6, 4))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    symmetric = empirical.model_gram(model, a, method=method)
    np.testing.assert_allclose(symmetric, _reference_trace(model, a, a),
                               rtol=1e-4, atol=1e-5)

  def test_full_kind_traces_to_the_traced_gram(self):
    model = _model(2)
    a, b = _images(3, 3), _images(2, 4)
    full = empirical.model_gram(model, a, b, kind='full')
    self.assertEqual(full.shape, (6, 4))
    np.testing.assert_allclose(
        np.einsum('iljl->ij', full.reshape(3, 2, 2, 2)),
        empirical.model_gram(model, a, b), rtol=1e-5, atol=1e-6)

  def test_non_chain_model(self):
    model = _model(2, chain=False)
    self.assertFalse(features.supports_per_layer(model))
    a = _images(4, 5)
    np.testing.assert_allclose(empirical.model_gram(model, a),
                               _reference_trace(model, a, a), rtol=1e-4,
                               atol=1e-5)
    with self.assertRaisesRegex(errors.AfterKernelError, 'chain model'):
      empirical.model_gram(model, a, method='structured')

  def test_jacobian_gram_is_the_old_vectorized_model_gram(self):
    model = _model(3)
    a = _images(5, 6)
    np.testing.assert_array_equal(
        jacobians.jacobian_gram(model, a),
        empirical.model_gram(model, a, method='vectorized'))

  def test_bad_kind_and_method(self):
    model = _model(1)
    with self.assertRaisesRegex(errors.AfterKernelError, 'kernel kind'):
      empirical.model_gram(model, _images(2, 0), kind='diag')
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown feature'):
      empirical.model_gram(model, _images(2, 0), method='magic')


class GramPathRuleTest(absltest.TestCase):
  """'auto' Grams: Dense factors where they save work, else feature rows."""

  def test_fully_connected_factored_vgg_rows_same_gram(self):
    fully_connected = models.build_model('fully_connected', (8, 8, 1),
                                         num_parameters=3000)
    vgg = models.build_model('vgg', (8, 8, 1))
    self.assertTrue(features.structured_pays(fully_connected))
    # The VGG-like net's one Dense layer is the output: d_in + 2 factor
    # numbers for its d_in + 1 weights, no saving.
    self.assertFalse(features.structured_pays(vgg))
    self.assertGreater(per_layer.factored_size(vgg),
                       0.9 * features.count_parameters(vgg))
    self.assertFalse(features.structured_pays(_model(1, chain=False)))
    x_train, x_test = _images_of(vgg, 10, 1), _images_of(vgg, 4, 2)
    for model, factored in ((fully_connected, True), (vgg, False)):
      calls, (auto, auto_gram) = _factored_calls(lambda m=model: (
          empirical.model_train_and_cross_gram(m, x_train, x_test),
          empirical.model_gram(m, x_test, x_train)))
      self.assertEqual(bool(calls), factored, model.name)
      pinned = empirical.model_train_and_cross_gram(model, x_train, x_test,
                                                    method='structured')
      for got, want in zip((*auto, auto_gram), (*pinned, pinned[1])):
        np.testing.assert_allclose(got, want, rtol=1e-5,
                                   atol=1e-6 * np.abs(want).max())
    # EmpiricalNTK follows the same rule.
    self.assertTrue(empirical.EmpiricalNTK(fully_connected).structured)
    self.assertFalse(empirical.EmpiricalNTK(vgg).structured)


class EmpiricalNtkFnTest(absltest.TestCase):

  def test_function_of_two_inputs_like_neural_tangents(self):
    import afterkernel as ak  # pylint: disable=g-import-not-at-top
    model = _model(3)
    a, b = _images(5, 1), _images(4, 2)
    ntk = ak.empirical_ntk_fn(model)
    np.testing.assert_allclose(ntk(a, b), _reference_trace(model, a, b),
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ntk(a), _reference_trace(model, a, a),
                               rtol=1e-4, atol=1e-5)
    self.assertEqual(empirical.empirical_ntk_fn(model, kind='full')(a, b).shape,
                     (15, 12))
    with self.assertRaises(errors.AfterKernelError):
      empirical.empirical_ntk_fn(model, kind='diagonal')


class TrainAndCrossGramTest(absltest.TestCase):

  def test_structured_equals_streamed_full_features(self):
    model = _model(1)
    x_train, x_test = _images(12, 7), _images(5, 8)
    structured = empirical.model_train_and_cross_gram(model, x_train, x_test)
    width = features.count_parameters(model)
    # A budget below all features and below the Dense factors (17 x 40
    # numbers): full features, streamed.
    budget = 3 * width * 4 / 2**30
    self.assertLess(budget, 17 * features.factored_size(model) * 4 / 2**30)
    streamed = empirical.model_train_and_cross_gram(
        model, x_train, x_test, batch_size=4, memory_budget_gb=budget)
    phi_train = features.gradient_features(model, x_train, method='loop')
    phi_test = features.gradient_features(model, x_test, method='loop')
    for got in (structured, streamed):
      np.testing.assert_allclose(got[0], phi_train @ phi_train.T, rtol=1e-4,
                                 atol=1e-5)
      np.testing.assert_allclose(got[1], phi_test @ phi_train.T, rtol=1e-4,
                                 atol=1e-5)

  def test_bit_equal_to_the_probe_inline_choice(self):
    # studies/after_kernel.py's KernelProbe chooses inline between factored
    # Dense Grams and streamed full features; this function must give the
    # same bits so the probe can call it instead.
    model = _model(1)
    x_train, x_test = _images(9, 12), _images(4, 13)
    factors = features.structured_features(model, x_train, 4)
    inline = (grams.structured_gram(factors), grams.structured_gram(
        features.structured_features(model, x_test, 4), factors))
    got = empirical.model_train_and_cross_gram(model, x_train, x_test, 4)
    for a, b in zip(got, inline):
      np.testing.assert_array_equal(a, b)
    width = features.count_parameters(model)
    budget = 3 * width * 4 / 2**30  # Below the factors too: streamed.
    self.assertLess(budget, 13 * features.factored_size(model) * 4 / 2**30)
    feature_fn = lambda x: features.gradient_features(model, x, 4, 'auto')
    inline = grams.train_and_cross_gram(feature_fn, width, x_train, x_test,
                                        memory_budget_gb=budget)
    got = empirical.model_train_and_cross_gram(
        model, x_train, x_test, 4, memory_budget_gb=budget)
    for a, b in zip(got, inline):
      np.testing.assert_array_equal(a, b)

  def test_budget_counts_what_the_factored_path_holds(self):
    # Rows of 17 examples do not fit, their Dense factors do: 'auto' keeps
    # the factored path; 'structured' above the budget is one line.
    model = _model(1)
    x_train, x_test = _images(12, 7), _images(5, 8)
    rows_gb = 17 * features.count_parameters(model) * 4 / 2**30
    factors_gb = 17 * features.factored_size(model) * 4 / 2**30
    calls, got = _factored_calls(lambda: empirical.model_train_and_cross_gram(
        model, x_train, x_test, memory_budget_gb=(rows_gb + factors_gb) / 2))
    self.assertNotEmpty(calls)
    for a, b in zip(got, empirical.model_train_and_cross_gram(
        model, x_train, x_test)):
      np.testing.assert_array_equal(a, b)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "^feature method 'structured' would hold .* "
                                "above memory_budget_gb=.*use 'auto'") as cm:
      empirical.model_train_and_cross_gram(model, x_train, x_test,
                                           method='structured',
                                           memory_budget_gb=factors_gb / 2)
    self.assertNotIn('\n', str(cm.exception))

  def test_empirical_ntk_uses_the_same_grams(self):
    model = _model(1)
    x_train, x_test = _images(6, 9), _images(3, 10)
    kernel = kernel_fit.EmpiricalNTK(model)
    self.assertIs(kernel_fit.EmpiricalNTK, empirical.EmpiricalNTK)
    train, cross = kernel_fit.kernel_grams(kernel, x_train, x_test)
    self.assertEqual(train.dtype, np.float64)
    np.testing.assert_array_equal(
        train, empirical.model_gram(model, x_train).astype(np.float64))
    np.testing.assert_array_equal(
        cross, empirical.model_gram(model, x_test, x_train).astype(
            np.float64))
    np.testing.assert_array_equal(kernel.gram(x_train), train)


class CallbackFeaturesTest(absltest.TestCase):

  def test_callback_features_take_the_per_layer_fast_path(self):
    model = models.build_model('fully_connected', (5, 5, 1))
    images = _images(4, 11)
    np.testing.assert_array_equal(
        callbacks.gradient_features(model, images),
        features.gradient_features(model, images, method='per_layer'))


class _Subclassed(keras.Model):

  def __init__(self, dtype=None):
    super().__init__(dtype=dtype)
    self.hidden = keras.layers.Dense(4, activation='tanh', dtype=dtype)
    self.out = keras.layers.Dense(1, dtype=dtype)

  def call(self, x):
    return self.out(self.hidden(keras.ops.reshape(x, (-1, 12))))


def _user_model(kind, dtype=None):
  """Subclassed, None input dimensions, Dense on rank-3 inputs."""
  if kind == 'subclassed':
    return _Subclassed(dtype)
  if kind == 'none_dims':
    inputs = keras.Input((None, 3), dtype=dtype)
    hidden = keras.layers.Conv1D(2, 2, activation='tanh', dtype=dtype)(inputs)
    hidden = keras.layers.GlobalAveragePooling1D(dtype=dtype)(hidden)
    return keras.Model(inputs, keras.layers.Dense(1, dtype=dtype)(hidden))
  return keras.Sequential([
      keras.Input((4, 3), dtype=dtype),
      keras.layers.Dense(5, activation='tanh', dtype=dtype),
      keras.layers.Flatten(dtype=dtype), keras.layers.Dense(1, dtype=dtype)])


def _float64_gram(kind, model, a, b):
  """phi_a phi_b^T from tape.jacobian of a float64 twin (same weights)."""
  twin = _user_model(kind, 'float64')
  twin(a[:1].astype(np.float64))
  twin.set_weights([w.astype(np.float64) for w in model.get_weights()])

  def phi(images):
    rows = []
    for image in images.astype(np.float64):
      with tf.GradientTape() as tape:
        out = tf.reshape(twin(image[None]), [])
      rows.append(np.concatenate(
          [np.ravel(j) for j in tape.jacobian(out, twin.trainable_variables)]))
    return np.stack(rows)
  return phi(a) @ phi(b).T


class UserModelGramTest(parameterized.TestCase):
  """Issue 14: Grams of every kind of Keras model, against float64."""

  def _setup(self, kind, seed=11):
    keras.utils.set_random_seed(seed)
    model = _user_model(kind)
    rng = np.random.default_rng(seed)
    a = rng.random((5, 4, 3)).astype(np.float32)
    b = rng.random((3, 4, 3)).astype(np.float32)
    model(a[:1])
    for v in model.trainable_variables:
      v.assign(v.numpy() + 0.1 * rng.standard_normal(v.shape).astype(
          np.float32))
    return model, a, b

  @parameterized.product(kind=('subclassed', 'none_dims', 'rank3'),
                         method=('auto', 'structured', 'vectorized'))
  def test_model_gram_and_train_cross_gram(self, kind, method):
    model, a, b = self._setup(kind)
    # Conv1D and subclassed models are not chains: 'auto' takes vectorized.
    self.assertEqual(features.supports_per_layer(model), kind == 'rank3')
    if method == 'structured' and kind != 'rank3':
      with self.assertRaisesRegex(errors.AfterKernelError, 'chain model'):
        empirical.model_gram(model, a, method=method)
      return
    np.testing.assert_allclose(empirical.model_gram(model, a, b,
                                                    method=method),
                               _float64_gram(kind, model, a, b),
                               rtol=1e-5, atol=1e-6)
    train, cross = empirical.model_train_and_cross_gram(model, a, b,
                                                        method=method)
    np.testing.assert_allclose(train, _float64_gram(kind, model, a, a),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(cross, _float64_gram(kind, model, b, a),
                               rtol=1e-5, atol=1e-6)
    if kind == 'none_dims':  # the batch's concrete length
      longer = np.random.default_rng(3).random((4, 7, 3)).astype(np.float32)
      np.testing.assert_allclose(empirical.model_gram(model, longer,
                                                      method=method),
                                 _float64_gram(kind, model, longer, longer),
                                 rtol=1e-5, atol=1e-6)

  def test_mixed_float16_grams_are_float32_and_correct(self):
    keras.mixed_precision.set_global_policy('mixed_float16')
    try:
      model, a, b = self._setup('rank3')
      got = [empirical.model_gram(model, a, b),
             empirical.model_train_and_cross_gram(model, b, a)[1],
             empirical.model_gram(model, a, b, method='vectorized')]
    finally:
      keras.mixed_precision.set_global_policy('float32')
    expected = _float64_gram('rank3', model, a, b)
    for gram_matrix in got:
      self.assertEqual(gram_matrix.dtype, np.float32)
      np.testing.assert_allclose(gram_matrix, expected, rtol=1e-5, atol=1e-6)

  def test_non_finite_inputs_and_grams_are_named(self):
    model, a, b = self._setup('rank3')
    b[2, 0, 0] = np.nan
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'inputs_b have NaN/inf.*example 2'):
      empirical.model_gram(model, a, b)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'x_test have NaN/inf.*example 2'):
      empirical.model_train_and_cross_gram(model, a, b)
    with self.assertRaisesRegex(errors.AfterKernelError, 'tf.data.Dataset'):
      empirical.model_gram(model, tf.data.Dataset.from_tensor_slices(a))
    # Finite features (~1e20) whose products overflow float32.
    model.layers[-1].kernel.assign(np.full((20, 1), 1e20, np.float32))
    for method in ('auto', 'vectorized'):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'empirical NTK Gram of model .* NaN/inf'):
        empirical.model_gram(model, a, method=method)


if __name__ == '__main__':
  absltest.main()
