"""Tests of afterkernel.kernels.anisotropy: the mixed derivative and the NADs.

Moved from nads_test (every assertion kept): M against finite differences of
the parameter gradient, the matrix-free product and the Gram route against
M, and the SVD and Gram routes against each other.
"""

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import anisotropy
from afterkernel import models
from afterkernel.studies import nads

_SHAPE = (3, 3, 1)


def _smooth_net(seed=0):
  """Float64 tanh net on 3x3 images (smooth: finite differences are exact)."""
  keras.utils.set_random_seed(seed)
  inputs = keras.Input(_SHAPE, dtype='float64')
  x = keras.layers.Conv2D(2, 2, activation='tanh', dtype='float64')(inputs)
  x = keras.layers.Flatten(dtype='float64')(x)
  x = keras.layers.Dense(3, activation='tanh', dtype='float64')(x)
  outputs = keras.layers.Dense(1, dtype='float64')(x)
  return keras.Model(inputs, outputs)


def _parameter_gradient(model, inputs):
  """grad_theta of the mean output, flattened in variable order."""
  with tf.GradientTape() as tape:
    value = tf.reduce_mean(model(tf.constant(inputs)))
  gradients = tape.gradient(value, [v.value for v in
                                    model.trainable_variables])
  return np.concatenate([np.reshape(g.numpy(), -1) for g in gradients])


class MixedDerivativeTest(absltest.TestCase):

  def test_matches_finite_differences_of_the_parameter_gradient(self):
    model = _smooth_net()
    x = np.random.default_rng(0).standard_normal((5,) + _SHAPE)
    m = anisotropy.mixed_derivative(model, x, dim_chunk=4, batch_size=2)
    self.assertEqual(m.shape, (model.count_params(), 9))
    h = 1e-5
    for d in range(9):
      step = np.zeros((1, 9))
      step[0, d] = h
      step = step.reshape((1,) + _SHAPE)
      expected = (_parameter_gradient(model, x + step) -
                  _parameter_gradient(model, x - step)) / (2 * h)
      np.testing.assert_allclose(m[:, d], expected, rtol=1e-6, atol=1e-9)

  def test_matrix_free_product_and_gram_agree(self):
    model = _smooth_net(seed=1)
    x = np.random.default_rng(1).standard_normal((6,) + _SHAPE)
    m = anisotropy.mixed_derivative(model, x)
    u = np.random.default_rng(2).standard_normal(9)
    np.testing.assert_allclose(anisotropy.mixed_derivative_times(model, x, u),
                               m @ u, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(anisotropy.mixed_derivative_gram(model, x),
                               m.T @ m, rtol=1e-9, atol=1e-12)
    with self.assertRaisesRegex(errors.AfterKernelError, 'max_elements'):
      anisotropy.mixed_derivative(model, x, max_elements=10)
    with self.assertRaisesRegex(errors.AfterKernelError, 'inputs must be'):
      anisotropy.mixed_derivative(model, x[:, :2])

  def test_svd_and_gram_routes_give_the_same_orthonormal_nads(self):
    model = _smooth_net(seed=2)
    svd = anisotropy.neural_anisotropy_directions(model, num_samples=16, seed=3)
    gram = anisotropy.neural_anisotropy_directions(
        model, num_samples=16, seed=3, max_elements=300)
    self.assertEqual((svd.method, gram.method), ('svd', 'gram'))
    values = svd.singular_values
    self.assertTrue(np.all(np.diff(values) <= 1e-12))
    np.testing.assert_allclose(gram.singular_values, values, rtol=1e-6)
    np.testing.assert_allclose(svd.directions @ svd.directions.T, np.eye(9),
                               atol=1e-10)
    np.testing.assert_allclose(gram.directions, svd.directions, atol=1e-6)
    # Right singular vectors: M^T M v_j = s_j^2 v_j.
    m = anisotropy.mixed_derivative(model,
                                    anisotropy.gaussian_inputs(_SHAPE, 16, 3))
    for j in (1, 5, 9):
      v = svd.direction(j).reshape(-1)
      np.testing.assert_allclose(m.T @ (m @ v), values[j - 1]**2 * v,
                                 atol=1e-8 * values[0]**2)
    self.assertEqual(svd.direction(2).shape, _SHAPE)
    with self.assertRaises(errors.AfterKernelError):
      svd.direction(10)

  def test_fully_connected_is_isotropic_and_cnn_is_not(self):
    # Sanity check of the paper's claim at the level of the spectrum: an FC
    # net with i.i.d. first-layer weights has no preferred direction (M^T M
    # close to a multiple of I for width >> D); a global-pooling CNN
    # concentrates on a few directions (nearly constant images).
    keras.utils.set_random_seed(0)
    shape = (6, 6, 1)
    fc = models.build('fully_connected', shape, width=256, num_layers=1)
    cnn = models.build('cnn', shape, width=8, num_layers=2)
    fc_values = anisotropy.neural_anisotropy_directions(fc, 64).singular_values
    cnn_nads = anisotropy.neural_anisotropy_directions(cnn, 64)
    cnn_values = cnn_nads.singular_values
    self.assertGreater(fc_values[-1] / fc_values[0], 0.4)
    self.assertLess(cnn_values[-1] / cnn_values[0], 0.1)
    self.assertLess(cnn_values[8] / cnn_values[0], 0.3)
    # The top CNN NAD is close to the constant image.
    top = cnn_nads.direction(1).reshape(-1)
    self.assertGreater(abs(top @ np.full(36, 1 / 6)), 0.8)


class ReexportTest(absltest.TestCase):

  def test_study_keeps_the_old_names(self):
    self.assertIs(nads.neural_anisotropy_directions,
                  anisotropy.neural_anisotropy_directions)
    self.assertIs(nads.mixed_derivative, anisotropy.mixed_derivative)
    self.assertIs(nads.NeuralAnisotropyDirections,
                  anisotropy.NeuralAnisotropyDirections)


if __name__ == '__main__':
  absltest.main()
