"""Tests for afterkernel.data.sources: the sources that are not local files.

tensorflow-datasets (mocked: official test split, one-line failures),
scikit-learn's embedded digits, and the generated synthetic task (its
definition and moments, determinism, a net and an experiment on vectors).
"""

import dataclasses
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import data
from afterkernel.data import sources
from afterkernel.errors import AfterKernelError


class TfdsTest(parameterized.TestCase):
  """The tfds path with `sources.tfds_arrays` mocked (no internet here)."""

  @parameterized.parameters('mnist', 'cifar10')
  def test_failure_is_one_line_pointing_to_data_dir(self, dataset):
    failing = mock.patch.object(
        sources, 'tfds_arrays',
        side_effect=RuntimeError('Failed to download\nsecond line'))
    with failing, self.assertRaises(AfterKernelError) as cm:
      data.load_binary_task(dataset, 3, 5)
    message = str(cm.exception)
    self.assertNotIn('\n', message)
    self.assertIn(f'could not load {dataset} through tensorflow-datasets',
                  message)
    self.assertIn('Failed to download', message)
    self.assertIn('--data_dir=DIR', message)
    self.assertIn(f'{dataset}/', message)

  def test_success_uses_official_test_split(self):
    rng = np.random.default_rng(0)
    fake = {
        'train': (rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8),
                  np.arange(40) % 10),
        'test': (rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                 np.arange(20) % 10),
    }
    with mock.patch.object(sources, 'tfds_arrays',
                           side_effect=lambda name, split: fake[split]) as m:
      task = data.load_binary_task('cifar10', 3, 5,
                                   cifar_test_source='lossy_full')
      holdout = data.load_binary_task('cifar10', 3, 5,
                                      cifar_test_source='train_holdout',
                                      holdout_size=10)
    m.assert_any_call('cifar10', 'train')
    self.assertEqual(task.info['source'], 'tfds')
    self.assertEqual(task.info['test_source'], 'official_test')
    self.assertNotIn('test_note', task.info)  # Exact, not lossy.
    np.testing.assert_allclose(task.x_test, fake['test'][0][[3, 5, 13, 15]]
                               / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(task.y_test, [1, 0, 1, 0])
    self.assertEqual(holdout.info['test_source'], 'train_holdout')
    self.assertEqual((holdout.info['n_train'], holdout.info['n_test']), (6, 2))


class DigitsTest(absltest.TestCase):

  def test_shapes_classes_and_values(self):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    task = data.load_binary_task('digits', 3, 8)
    for split, rows in (('train', slice(0, 1200)), ('test', slice(1200, None))):
      x, y = getattr(task, f'x_{split}'), getattr(task, f'y_{split}')
      keep = np.isin(digits.target[rows], (3, 8))
      self.assertEqual(x.shape, (keep.sum(), 8, 8, 1))
      self.assertEqual((x.dtype, y.dtype), (np.float32, np.float32))
      np.testing.assert_allclose(x[..., 0], digits.images[rows][keep] / 16.0)
      np.testing.assert_array_equal(y, digits.target[rows][keep] == 3)
      self.assertTrue(0 < y.sum() < len(y))  # Both classes present.
    self.assertEqual(task.x_train.max(), 1.0)
    self.assertEqual(task.info['source'], 'embedded:sklearn-digits')
    self.assertEqual(task.info['image_shape'], [8, 8, 1])

  def test_deterministic_and_data_dir_ignored(self):
    a = data.load_binary_task('digits', 5, 6)
    b = data.load_binary_task('digits', 5, 6, data_dir='/does/not/matter')
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    self.assertEqual(a.info, b.info)


class SyntheticTest(parameterized.TestCase):
  """Vyas et al.'s task: z on {-1,1}^30, x = z + N(0, 0.25 I), y = z_1 z_2."""

  def test_shapes_dtypes_and_info(self):
    task = data.load_binary_task('synthetic', 1, 0, num_train=200,
                                 num_test=50, synthetic_seed=3)
    self.assertEqual(task.x_train.shape, (200, 30))
    self.assertEqual(task.x_test.shape, (50, 30))
    for array in (task.x_train, task.y_train, task.x_test, task.y_test):
      self.assertEqual(array.dtype, np.float32)
    self.assertEqual(set(np.unique(task.y_train)), {0.0, 1.0})
    info = json.loads(json.dumps(task.info))
    self.assertEqual(info['source'], 'generated')
    self.assertEqual(info['image_shape'], [30])
    self.assertEqual(info['input_kind'], 'vector')
    self.assertEqual(info['synthetic']['seed'], 3)
    self.assertEqual(info['synthetic']['noise_std'], 0.5)
    self.assertEqual(info['plus_meaning'], 'z_1 z_2 = +1')
    self.assertEqual((info['n_train'], info['n_test']), (200, 50))

  def test_default_sizes(self):
    task = data.load_binary_task('synthetic', 1, 0)
    self.assertEqual((len(task.y_train), len(task.y_test)),
                     data.DEFAULT_SIZES['synthetic'])

  def test_noise_free_labels_are_z1_times_z2(self):
    # Without noise x = z exactly, so the label must be [x_1 x_2 = +1].
    with mock.patch.object(sources, 'SYNTHETIC_NOISE_STD', 0.0):
      task = data.load_binary_task('synthetic', 1, 0, num_train=300,
                                   num_test=100)
    for x, y in ((task.x_train, task.y_train), (task.x_test, task.y_test)):
      self.assertTrue(np.all(np.abs(x) == 1.0))
      np.testing.assert_array_equal(y, x[:, 0] * x[:, 1] == 1.0)
      # z is uniform: every coordinate is +-1 about half of the time.
      self.assertBetween(float((x > 0).mean()), 0.45, 0.55)

  def test_moments_match_the_definition(self):
    task = data.load_binary_task('synthetic', 1, 0, num_train=20000,
                                 num_test=10)
    x = task.x_train.astype(np.float64)
    y_pm = 2.0 * task.y_train - 1.0  # Back to z_1 z_2 in {-1, +1}.
    # Var x_i = Var z_i + 0.25 = 1.25; E x_i = 0 (tolerances ~5 std errors).
    np.testing.assert_allclose(x.var(axis=0), 1.25, atol=0.06)
    np.testing.assert_allclose(x.mean(axis=0), 0.0, atol=0.05)
    # E[y x_1 x_2] = E[(z_1 z_2)^2] = 1; y is independent of x_3 and of x_1
    # alone.
    self.assertBetween(float(np.mean(y_pm * x[:, 0] * x[:, 1])), 0.95, 1.05)
    self.assertLess(abs(float(np.mean(y_pm * x[:, 2]))), 0.05)
    self.assertLess(abs(float(np.mean(y_pm * x[:, 0]))), 0.05)
    # sign(x_i) = z_i unless the N(0, 0.25) noise crosses 0: p = Phi(-2) =
    # 0.02275, so sign(x_1) sign(x_2) = y with probability (1-p)^2 + p^2.
    p = 0.02275
    self.assertBetween(float(np.mean(np.sign(x[:, 0]) * np.sign(x[:, 1])
                                     == y_pm)),
                       (1 - p)**2 + p**2 - 0.006, (1 - p)**2 + p**2 + 0.006)
    # Median |noise| of N(0, 0.5^2) is 0.6745 * 0.5 = 0.337.
    residual = x - np.sign(x)
    self.assertBetween(float(np.median(np.abs(residual))), 0.33, 0.345)

  def test_deterministic_and_prefix_stable(self):
    big = data.load_binary_task('synthetic', 1, 0, num_train=300, num_test=40)
    small = data.load_binary_task('synthetic', 1, 0, num_train=50, num_test=40)
    np.testing.assert_array_equal(small.x_train, big.x_train[:50])
    np.testing.assert_array_equal(small.y_train, big.y_train[:50])
    np.testing.assert_array_equal(small.x_test, big.x_test)  # Independent.
    other = data.load_binary_task('synthetic', 1, 0, num_train=50, num_test=40,
                                  synthetic_seed=1)
    self.assertFalse(np.allclose(other.x_train, small.x_train))
    # Train and test are different draws.
    self.assertFalse(np.allclose(small.x_train[:40], small.x_test))

  def test_swap_classes_permute_subsample(self):
    a = data.load_binary_task('synthetic', 1, 0, num_train=60, num_test=20)
    b = data.load_binary_task('synthetic', 0, 1, num_train=60, num_test=20,
                              data_dir='/ignored')
    np.testing.assert_array_equal(a.y_train, 1.0 - b.y_train)
    task = data.subsample(data.permute(a, 2), 10, 5)
    self.assertEqual(task.x_train.shape, (10, 30))
    order = np.random.default_rng(2).permutation(60)[:10]
    np.testing.assert_array_equal(task.x_train, a.x_train[order])

  def test_fully_connected_net_trains_on_vectors(self):
    from afterkernel import models  # pylint: disable=g-import-not-at-top
    from afterkernel import training  # pylint: disable=g-import-not-at-top
    task = data.load_binary_task('synthetic', 1, 0, num_train=64, num_test=16)
    model = models.build_fully_connected(task.x_train.shape[1:], width=8,
                                         num_layers=1)
    self.assertEqual(model.input_shape, (None, 30))
    trained = training.train(model, task.x_train, task.y_train, 1,
                             batch_size=32, seed=0)
    self.assertEqual(trained.epochs, 1)
    error = training.classification_error(model, task.x_test, task.y_test)
    self.assertBetween(error, 0.0, 1.0)
    with self.assertRaisesRegex(AfterKernelError,
                                'vgg needs images .* got input shape '
                                r'\(30,\)'):
      models.build_model('vgg', task.x_train.shape[1:])

  def test_after_kernel_experiment_runs_on_vectors(self):
    from afterkernel.studies import after_kernel  # pylint: disable=g-import-not-at-top
    config = after_kernel.ExperimentConfig(
        dataset='synthetic', plus_class=1, minus_class=0, train_subset=40,
        test_subset=20, nn_architecture='fully_connected', num_layers=1,
        num_parameters=2000, max_num_epochs=1, num_runs=1, num_translations=0,
        num_zooms=0, num_swaps=0, num_rotations=0,
        ker_alignment_sample_size=10, effective_rank_sample_size=10,
        svm_max_iterations=2000)
    output_dir = os.path.join(tempfile.mkdtemp(), 'out')
    self.addCleanup(shutil.rmtree, os.path.dirname(output_dir),
                    ignore_errors=True)
    summary = after_kernel.run_experiment(config, output_dir, log=lambda _: None)
    for name in ('nn_error', 'linear_error', 'ntk_linear_error'):
      self.assertBetween(summary[name]['mean'], 0.0, 1.0)
    self.assertBetween(summary['ak_kalignment']['mean'], -1.0, 1.0)
    self.assertNotIn('ak_trans_inv', summary)

  @parameterized.named_parameters(
      ('invariance', dict(num_translations=4), 'num_translations measure'),
      ('augmentation', dict(use_augmentation=True), 'augmentation does not'),
      ('conv_net', dict(nn_architecture='vgg'),
       'use nn_architecture=fully_connected'))
  def test_experiment_rejects_image_only_options(self, overrides, message):
    from afterkernel.studies import after_kernel  # pylint: disable=g-import-not-at-top
    config = after_kernel.ExperimentConfig(
        dataset='synthetic', plus_class=1, minus_class=0,
        nn_architecture='fully_connected', num_translations=0, num_zooms=0,
        num_swaps=0, num_rotations=0)
    config.validate()
    with self.assertRaisesRegex(AfterKernelError,
                                f'synthetic has vector inputs.*{message}'):
      dataclasses.replace(config, **overrides).validate()

  @parameterized.named_parameters(
      ('class_out_of_range', dict(plus_class=8, minus_class=3),
       r'in \[0, 2\) for synthetic \(0 = z_1 z_2 = -1, 1 = z_1 z_2 = \+1\)'),
      ('negative_seed', dict(synthetic_seed=-1), 'synthetic_seed must be'),
      ('zero_size', dict(num_train=0), 'num_train must be a positive'),
      ('size_for_mnist', dict(dataset='mnist', plus_class=3, minus_class=8,
                              num_test=5),
       'num_test applies only to synthetic, cifar5m, cifar5m2'))
  def test_errors(self, overrides, message):
    kwargs = dict(dataset='synthetic', plus_class=1, minus_class=0)
    kwargs.update(overrides)
    with self.assertRaisesRegex(AfterKernelError, message) as cm:
      data.load_binary_task(**kwargs)
    self.assertNotIn('\n', str(cm.exception))


if __name__ == '__main__':
  absltest.main()
