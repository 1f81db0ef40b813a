"""Tests of afterkernel.studies.nads: the mixed derivative, NADs and the NAD study."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel import models
from afterkernel.studies import nads
from afterkernel.studies import store

_SHAPE = (3, 3, 1)


def _quiet(message):
  del message


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
    m = nads.mixed_derivative(model, x, dim_chunk=4, batch_size=2)
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
    m = nads.mixed_derivative(model, x)
    u = np.random.default_rng(2).standard_normal(9)
    np.testing.assert_allclose(nads.mixed_derivative_times(model, x, u),
                               m @ u, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(nads.mixed_derivative_gram(model, x), m.T @ m,
                               rtol=1e-9, atol=1e-12)
    with self.assertRaisesRegex(errors.AfterKernelError, 'max_elements'):
      nads.mixed_derivative(model, x, max_elements=10)
    with self.assertRaisesRegex(errors.AfterKernelError, 'inputs must be'):
      nads.mixed_derivative(model, x[:, :2])

  def test_svd_and_gram_routes_give_the_same_orthonormal_nads(self):
    model = _smooth_net(seed=2)
    svd = nads.neural_anisotropy_directions(model, num_samples=16, seed=3)
    gram = nads.neural_anisotropy_directions(model, num_samples=16, seed=3,
                                             max_elements=300)
    self.assertEqual((svd.method, gram.method), ('svd', 'gram'))
    values = svd.singular_values
    self.assertTrue(np.all(np.diff(values) <= 1e-12))
    np.testing.assert_allclose(gram.singular_values, values, rtol=1e-6)
    np.testing.assert_allclose(svd.directions @ svd.directions.T, np.eye(9),
                               atol=1e-10)
    np.testing.assert_allclose(gram.directions, svd.directions, atol=1e-6)
    # Right singular vectors: M^T M v_j = s_j^2 v_j.
    m = nads.mixed_derivative(model, nads.gaussian_inputs(_SHAPE, 16, 3))
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
    fc_values = nads.neural_anisotropy_directions(fc, 64).singular_values
    cnn_nads = nads.neural_anisotropy_directions(cnn, 64)
    cnn_values = cnn_nads.singular_values
    self.assertGreater(fc_values[-1] / fc_values[0], 0.4)
    self.assertLess(cnn_values[-1] / cnn_values[0], 0.1)
    self.assertLess(cnn_values[8] / cnn_values[0], 0.3)
    # The top CNN NAD is close to the constant image.
    top = cnn_nads.direction(1).reshape(-1)
    self.assertGreater(abs(top @ np.full(36, 1 / 6)), 0.8)


class DirectionTaskTest(absltest.TestCase):

  def test_labels_are_the_side_of_the_hyperplane_and_margin_opens_a_gap(self):
    v = np.random.default_rng(0).standard_normal((4, 4, 1))
    x, y = nads.direction_task(v, 500, 1)
    unit = v / np.linalg.norm(v)
    projection = np.tensordot(x, unit, axes=3)
    np.testing.assert_array_equal(y, (projection > 0).astype(np.float32))
    self.assertAlmostEqual(float(y.mean()), 0.5, delta=0.08)
    x, y = nads.direction_task(v, 500, 1, margin=0.5)
    projection = np.tensordot(x, unit, axes=3)
    np.testing.assert_array_equal(y, (projection > 0).astype(np.float32))
    self.assertGreaterEqual(np.abs(projection).min(), 0.5 - 1e-5)
    with self.assertRaises(errors.AfterKernelError):
      nads.direction_task(np.zeros(3), 5, 0)


class StudyTest(absltest.TestCase):

  def test_validate(self):
    tiny = nads.PRESETS['tiny']
    for bad in (dict(nad_indices=(0,)), dict(nad_indices=(37,)),
                dict(architecture='resnet'), dict(epochs=0),
                dict(margin=-1.0), dict(loss='hinge'), dict(nad_indices=())):
      with self.assertRaises(errors.AfterKernelError):
        dataclasses.replace(tiny, **bad).validate()
    for preset in nads.PRESETS.values():
      preset.validate()

  def test_tiny_study_cnn_tasks_differ_runs_and_resumes(self):
    config = nads.PRESETS['tiny']
    with tempfile.TemporaryDirectory() as directory:
      entries = nads.run_study(config, directory, log=_quiet)
      by_index = {e['point']['nad_index']: e['metrics'] for e in entries}
      self.assertEqual(sorted(by_index), [1, 2, 36])
      # The top NAD's task is learned, the last one's is not (CNN).
      for model in ('nn', 'lin'):
        top = by_index[1][f'{model}_test_accuracy']['mean']
        last = by_index[36][f'{model}_test_accuracy']['mean']
        self.assertGreater(top - last, 0.2, model)
      for name in ('summary.json', 'summary.csv', 'nads_run0.npz',
                   f'{nads.FIGURE_NAME}.png', f'{nads.FIGURE_NAME}.pdf',
                   f'{nads.DIRECTIONS_FIGURE_NAME}.png'):
        self.assertTrue(os.path.exists(os.path.join(directory, name)), name)
      messages = []
      again = nads.run_study(config, directory, log=messages.append)
      self.assertTrue(any('skipped' in m for m in messages))
      self.assertEqual(again, entries)
      self.assertIn('s_j/s_1', nads.format_table(entries))
      self.assertLen(store.ResultStore(directory).keys(), 3)
      with self.assertRaisesRegex(errors.AfterKernelError, 'different'):
        nads.run_study(dataclasses.replace(config, width=4), directory,
                       log=_quiet)


if __name__ == '__main__':
  absltest.main()
