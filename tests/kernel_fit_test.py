"""Tests for afterkernel.kernel_fit: the SVM fit, the dispatcher, kernel sources.

The fits' own tests are sgd_test, ridge_test and results_test.
"""

import functools

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel.models import architectures
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import kernel_fit
from afterkernel import margin
from afterkernel import models
from kernel_fit_fixture import random_problem as _random_problem


class SvmTest(absltest.TestCase):

  def test_wraps_margin_with_canonical_scale(self):
    phi, y, phi_test, y_test = _random_problem(seed=7, n=20, width=30)
    gram, cross = phi @ phi.T, phi_test @ phi.T
    result = kernel_fit.fit_svm(gram, y, cross, y_test)
    reference = margin.max_margin_from_gram(gram, y)
    self.assertAlmostEqual(result.test_error,
                           margin.test_error(reference, cross, y_test))
    self.assertAlmostEqual(result.details['margin'], reference.margin)
    self.assertEqual(result.train_error, 0.0)  # 20 points in 30 dimensions.
    self.assertAlmostEqual(np.min(y * (gram @ result.dual_coef)), 1.0)


class DispatchAndValidationTest(parameterized.TestCase):

  def test_fit_dispatches(self):
    phi, y, phi_test, y_test = _random_problem(seed=8)
    args = (phi @ phi.T, y, phi_test @ phi.T, y_test)
    options = dict(learning_rate=0.05, batch_size=8, momentum=0.9,
                   max_steps=50, seed=1, ridges=(0.1, 1.0))
    for method in kernel_fit.FIT_METHODS:
      result = kernel_fit.fit(method, *args, **options)
      self.assertEqual(result.method, method)
      self.assertEqual(result.to_record()['method'], method)
    np.testing.assert_array_equal(
        kernel_fit.fit('sgd', *args, **options).dual_coef,
        kernel_fit.fit_sgd(*args, learning_rate=0.05, batch_size=8,
                           momentum=0.9, max_steps=50, seed=1).dual_coef)
    self.assertEqual(kernel_fit.fit('ridge', *args, **options).ridge,
                     kernel_fit.fit_ridge(*args, ridges=(0.1, 1.0)).ridge)

  @parameterized.named_parameters(
      ('unknown_method', dict(method='lasso'), 'must be one of'),
      ('sgd_needs_rate', dict(learning_rate=None), 'needs learning_rate'),
      ('non_square', dict(train_gram=np.ones((3, 4))), 'square'),
      ('cross_width', dict(cross_gram=np.ones((2, 5))), r'\(n_test, 4\)'),
      ('label_values', dict(y_train=np.array([0, 1, 2, 1])), 'two values'),
      ('label_length', dict(y_test=np.ones(3)), 'has 3 entries'),
      ('nan_gram', dict(train_gram=np.diag([1.0, np.nan, 1.0, 1.0])),
       '1 NaN/inf'),
      ('momentum', dict(momentum=1.0), 'momentum'),
      ('growth', dict(eval_growth=1.0), 'eval_growth'),
      ('ridges', dict(method='ridge', ridges=(0.0,)), 'relative ridges'),
  )
  def test_bad_input_raises_one_line(self, change, pattern):
    args = dict(method='sgd', train_gram=np.eye(4),
                y_train=np.array([0, 1, 1, 0]), cross_gram=np.ones((2, 4)),
                y_test=np.array([1, -1]), learning_rate=0.1, batch_size=2,
                momentum=0.0, max_steps=10, eval_growth=1.1, ridges=None)
    args.update(change)
    with self.assertRaisesRegex(errors.AfterKernelError, pattern) as caught:
      kernel_fit.fit(args.pop('method'), args.pop('train_gram'),
                     args.pop('y_train'), args.pop('cross_gram'),
                     args.pop('y_test'), **args)
    self.assertNotIn('\n', str(caught.exception))


class KernelSourceTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    rng = np.random.default_rng(9)
    self.x = rng.uniform(size=(7, 3, 2, 1)).astype(np.float32)
    self.x_test = rng.uniform(size=(4, 3, 2, 1)).astype(np.float32)

  def _loop_gram(self, model, a, b):
    phi_a = features.gradient_features(model, a, method='loop')
    phi_b = features.gradient_features(model, b, method='loop')
    return phi_a.astype(np.float64) @ phi_b.T.astype(np.float64)

  def _check_snapshot(self, model, structured, method='auto'):
    keras.utils.set_random_seed(0)
    expected = self._loop_gram(model, self.x, self.x)
    expected_cross = self._loop_gram(model, self.x_test, self.x)
    kernel = kernel_fit.EmpiricalNTK(model, batch_size=3, method=method)
    self.assertEqual(kernel.structured, structured)
    # Training the original afterwards must not change the kernel.
    model.set_weights([w + 0.5 for w in model.get_weights()])
    self.assertGreater(
        np.abs(self._loop_gram(model, self.x, self.x) - expected).max(), 1e-3)
    got = kernel.gram(self.x)
    self.assertEqual(got.dtype, np.float64)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)
    train, cross = kernel_fit.kernel_grams(kernel, self.x, self.x_test)
    np.testing.assert_allclose(train, expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(cross, expected_cross, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(kernel.gram(self.x_test, self.x), cross,
                               rtol=1e-5, atol=1e-5)

  def test_empirical_ntk_snapshot_structured(self):
    keras.utils.set_random_seed(1)
    self._check_snapshot(
        models.build_fully_connected((3, 2, 1), width=5, num_layers=2), True)

  def test_empirical_ntk_snapshot_custom_layers(self):
    # NTKDense reports its multipliers, so the chain takes the structured path.
    keras.utils.set_random_seed(2)
    model = keras.Sequential([
        keras.Input((3, 2, 1)), keras.layers.Flatten(),
        architectures.NTKDense(5, activation='relu'),
        architectures.NTKDense(1, name=models.LOGIT_LAYER_NAME)])
    self._check_snapshot(model, True)

  def test_empirical_ntk_snapshot_non_chain(self):
    # A skip connection is not a chain: full gradient features. 'loop', since
    # 'vectorized' fails on this model for a 1-example block (features bug,
    # reported to the lead).
    keras.utils.set_random_seed(3)
    inputs = keras.Input((3, 2, 1))
    hidden = keras.layers.Dense(5, activation='relu')(
        keras.layers.Flatten()(inputs))
    hidden = keras.layers.Add()([hidden, keras.layers.Dense(5)(hidden)])
    outputs = keras.layers.Dense(1, name=models.LOGIT_LAYER_NAME)(hidden)
    self._check_snapshot(keras.Model(inputs, outputs), False, method='loop')

  def test_function_kernel(self):

    def rbf(a, b, bandwidth):
      a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
      distances = ((a[:, None] - b[None]) ** 2).sum(-1)
      return np.exp(-distances / bandwidth)

    kernel = kernel_fit.FunctionKernel(functools.partial(rbf, bandwidth=2.0))
    train, cross = kernel_fit.kernel_grams(kernel, self.x, self.x_test)
    np.testing.assert_allclose(train, rbf(self.x, self.x, 2.0), rtol=1e-12)
    np.testing.assert_allclose(cross, rbf(self.x_test, self.x, 2.0),
                               rtol=1e-12)
    np.testing.assert_array_equal(train, train.T)
    bad = kernel_fit.FunctionKernel(lambda a, b: np.ones((len(a), 2)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'shape'):
      bad.gram(self.x)
    with self.assertRaisesRegex(errors.AfterKernelError, 'callable'):
      kernel_fit.FunctionKernel(3)

  def test_subclassed_model_is_snapshotted(self):

    class Subclassed(keras.Model):

      def __init__(self):
        super().__init__()
        self.hidden = keras.layers.Dense(5, activation='tanh')
        self.out = keras.layers.Dense(1)

      def call(self, inputs):
        return self.out(self.hidden(inputs))

    keras.utils.set_random_seed(5)
    model = Subclassed()
    x = np.random.default_rng(0).normal(size=(6, 3)).astype(np.float32)
    model(x)
    snapshot = [w.copy() for w in model.get_weights()]
    kernel = kernel_fit.EmpiricalNTK(model)
    # "Training" after the snapshot must not change the kernel.
    model.set_weights([w + 0.5 for w in snapshot])
    changed = [w.copy() for w in model.get_weights()]
    gram = kernel.gram(x)
    # Independent reference: tape.jacobian at the snapshot's weights.
    model.set_weights(snapshot)
    with tf.GradientTape() as tape:
      outputs = model(x)[:, 0]
    jacobians = tape.jacobian(outputs, model.trainable_variables)
    phi = np.concatenate([np.reshape(j, (len(x), -1)) for j in jacobians],
                         axis=1).astype(np.float64)
    np.testing.assert_allclose(gram, phi @ phi.T, rtol=1e-4, atol=1e-5)
    # The model's own weights are back as they were before the call.
    model.set_weights(changed)
    kernel.train_and_cross_gram(x, x[:2])
    for after, before in zip(model.get_weights(), changed):
      np.testing.assert_array_equal(after, before)

  def test_end_to_end_every_method(self):
    keras.utils.set_random_seed(3)
    model = models.build_fully_connected((3, 2, 1), width=8, num_layers=1)
    y = np.array([0, 1, 0, 1, 1, 0, 1], np.float32)
    y_test = np.array([1, 0, 1, 0], np.float32)
    train, cross = kernel_fit.kernel_grams(kernel_fit.EmpiricalNTK(model),
                                           self.x, self.x_test)
    for method in kernel_fit.FIT_METHODS:
      result = kernel_fit.fit(method, train, y, cross, y_test,
                              learning_rate=0.1, batch_size=4, momentum=0.9,
                              max_steps=100)
      self.assertBetween(result.test_error, 0.0, 1.0)
      self.assertTrue(np.isfinite(result.test_mse))


if __name__ == '__main__':
  absltest.main()

