"""Tests for afterkernel.kernels.jacobians against per-output eager tape.gradient."""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import jacobians
from afterkernel import models

_SHAPE = (6, 6, 1)


def _functional(num_outputs):
  inputs = keras.Input(_SHAPE)
  x = keras.layers.Conv2D(3, 3, activation='relu')(inputs)
  x = keras.layers.Flatten()(x)
  x = keras.layers.Dense(5, activation='tanh')(x)
  return keras.Model(inputs, keras.layers.Dense(num_outputs)(x))


def _sequential(num_outputs):
  return keras.Sequential([
      keras.Input(_SHAPE), keras.layers.Flatten(),
      keras.layers.Dense(7, activation='relu'),
      keras.layers.Dense(num_outputs)])


class _Subclassed(keras.Model):
  """A subclassed model with a residual-style branch."""

  def __init__(self, num_outputs, **kwargs):
    super().__init__(**kwargs)
    self.hidden = keras.layers.Dense(6, activation='tanh')
    self.skip = keras.layers.Dense(num_outputs, use_bias=False)
    self.head = keras.layers.Dense(num_outputs)

  def call(self, inputs):
    flat = keras.ops.reshape(inputs, (keras.ops.shape(inputs)[0], -1))
    return self.head(self.hidden(flat)) + self.skip(flat)


def _build(kind, num_outputs):
  keras.utils.set_random_seed(4)
  model = {'functional': _functional, 'sequential': _sequential,
           'subclassed': _Subclassed}[kind](num_outputs)
  model(np.zeros((1,) + _SHAPE, np.float32))
  rng = np.random.default_rng(5)
  for v in model.trainable_variables:  # Non-zero biases exercise every row.
    v.assign(v.numpy() + 0.1 * rng.standard_normal(v.shape).astype(np.float32))
  return model


def _reference_jacobians(model, images):
  """Eager, one example and one output at a time: the obvious computation."""
  variables = model.trainable_variables
  rows = []
  for image in images:
    per_output = []
    num_outputs = int(np.prod(model(image[None]).shape[1:]))
    for index in range(num_outputs):
      with tf.GradientTape() as tape:
        output = tf.reshape(model(image[None], training=False), [-1])[index]
      grads = tape.gradient(output, variables)
      per_output.append(np.concatenate([
          np.ravel(np.zeros(v.shape) if g is None else g.numpy())
          for g, v in zip(grads, variables)]))
    rows.append(np.stack(per_output))
  return np.stack(rows)


def _images(n, seed=0):
  return np.random.default_rng(seed).random((n,) + _SHAPE).astype(np.float32)


class PerExampleJacobiansTest(parameterized.TestCase):

  @parameterized.product(kind=('functional', 'sequential', 'subclassed'),
                         num_outputs=(1, 3))
  def test_matches_per_output_tape_gradient(self, kind, num_outputs):
    model = _build(kind, num_outputs)
    images = _images(5)
    expected = _reference_jacobians(model, images)
    got = jacobians.per_example_jacobians(model, images, batch_size=2)
    self.assertEqual(got.shape, (5, num_outputs,
                                 jacobians.count_parameters(model)))
    self.assertEqual(got.dtype, np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)

  def test_loop_method_matches_vectorized(self):
    model = _build('functional', 2)
    images = _images(3, seed=1)
    np.testing.assert_allclose(
        jacobians.per_example_jacobians(model, images, method='loop'),
        jacobians.per_example_jacobians(model, images), rtol=1e-5, atol=1e-6)

  def test_single_output_equals_gradient_features(self):
    keras.utils.set_random_seed(6)
    model = models.build_model('vgg', (8, 8, 1), width=5)
    images = np.random.default_rng(2).random((4, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(
        jacobians.output_gradients(model, images, 0),
        features.gradient_features(model, images), rtol=1e-5, atol=1e-7)

  def test_output_subset(self):
    model = _build('sequential', 4)
    images = _images(3)
    full = jacobians.per_example_jacobians(model, images)
    np.testing.assert_allclose(
        jacobians.per_example_jacobians(model, images, output_indices=[3, 1]),
        full[:, [3, 1]])

  def test_bad_output_index(self):
    model = _build('sequential', 2)
    with self.assertRaisesRegex(errors.AfterKernelError, r'\[0, 2\)'):
      jacobians.output_gradients(model, _images(2), 2)
    with self.assertRaisesRegex(errors.AfterKernelError, 'method'):
      jacobians.per_example_jacobians(model, _images(2), method='magic')


class GramTest(parameterized.TestCase):

  @parameterized.parameters('functional', 'subclassed')
  def test_trace_and_full_grams_against_einsum(self, kind):
    model = _build(kind, 3)
    a, b = _images(4, seed=2), _images(3, seed=3)
    jac_a = _reference_jacobians(model, a)
    jac_b = _reference_jacobians(model, b)
    trace = np.einsum('ilp,jlp->ij', jac_a, jac_b)
    full = np.einsum('ilp,jkp->iljk', jac_a, jac_b).reshape(4 * 3, 3 * 3)
    np.testing.assert_allclose(jacobians.jacobian_gram(model, a, b), trace,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        jacobians.jacobian_gram(model, a, b, kind='full'), full, rtol=1e-4,
        atol=1e-5)
    # The trace of each L x L block of the full Gram is the traced Gram.
    blocks = jacobians.jacobian_gram(model, a, b, kind='full').reshape(
        4, 3, 3, 3)
    np.testing.assert_allclose(np.einsum('iljl->ij', blocks), trace,
                               rtol=1e-4, atol=1e-5)

  def test_symmetric_gram(self):
    model = _build('sequential', 2)
    images = _images(5, seed=4)
    gram = jacobians.jacobian_gram(model, images)
    np.testing.assert_allclose(gram, gram.T, rtol=1e-6)
    np.testing.assert_allclose(
        gram, jacobians.gram_from_jacobians(
            jacobians.per_example_jacobians(model, images)), rtol=1e-5)
    self.assertEqual(
        jacobians.jacobian_gram(model, images, kind='full').shape, (10, 10))

  def test_unknown_kind(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'kernel kind'):
      jacobians.gram_from_jacobians(np.zeros((2, 1, 3)), kind='diag')


if __name__ == '__main__':
  absltest.main()
