"""Tests for afterkernel.studies.sweeps: every family end to end on tiny digits."""

import dataclasses
import os
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel import models
from afterkernel.studies import store
from afterkernel.studies import sweeps

# Every stage runs, in about a second per trajectory.
_BASE = after_kernel.ExperimentConfig(
    train_subset=48, test_subset=24, num_layers=1, num_parameters=3000,
    num_runs=1, num_translations=8, num_zooms=8, num_swaps=8,
    num_rotations=8, ker_alignment_sample_size=10,
    effective_rank_sample_size=12, svm_max_iterations=3000)
_TASK = ('digits_3v8',)
_FC = ('fully_connected',)
_KERNEL_METRICS = ('svm_error', 'svm_margin', 'trans_inv', 'rotation_inv',
                   'zoom_inv', 'swap_inv', 'kalignment', 'eff_rank',
                   'conjugate_svm_error', 'nn_error', 'nn_train_loss',
                   'parameter_count', 'epochs_trained')


def _quiet(message):
  del message


def _epochs_sweep(**changes):
  fields = dict(family='epochs', base=_BASE, tasks=_TASK, architectures=_FC,
                epochs=(0, 1, 2))
  fields.update(changes)
  return sweeps.Sweep(**fields)


def _by_checkpoint(records):
  return {(r['run'], r['checkpoint'], r['point']['use_augmentation']): r
          for r in records}


class ParseTaskTest(absltest.TestCase):

  def test_names(self):
    self.assertEqual(sweeps.parse_task('mnist_3v8'), ('mnist', 8, 3))
    self.assertEqual(sweeps.parse_task('cifar10_3v5'), ('cifar10', 5, 3))
    for bad in ('mnist', 'imagenet_1v2', 'mnist_3-8', ''):
      with self.subTest(bad=bad):
        with self.assertRaisesRegex(errors.AfterKernelError, 'bad task'):
          sweeps.parse_task(bad)


class SweepConfigTest(absltest.TestCase):

  def test_learning_rate_grid_defaults_to_the_papers_per_dataset(self):
    sweep = sweeps.Sweep('learning_rate', _BASE,
                         tasks=('digits_3v8', 'cifar10_3v5'),
                         architectures=('vgg',))
    rates = [(c.dataset, c.learning_rate) for c in sweep.point_configs()]
    self.assertEqual(rates, [('digits', r) for r in (0.001, 0.003, 0.01,
                                                     0.03, 0.1)] +
                     [('cifar10', r) for r in (0.01, 0.02, 0.03, 0.04)])
    self.assertTrue(all(c.training_loss_target == sweeps.PAPER_LOSS_TARGET
                        for c in sweep.point_configs()))
    self.assertEqual(sweep.checkpoints(), ('final',))

  def test_grid_is_the_product(self):
    sweep = _epochs_sweep(architectures=('vgg', 'fully_connected'),
                          augmentation=(False, True), epochs=(3, 0, 3))
    self.assertLen(sweep.point_configs(), 4)
    self.assertEqual(sweep.checkpoints(), (0, 3))
    self.assertEqual(sweep.num_records(), 8)
    self.assertTrue(all(c.max_num_epochs == 3 for c in sweep.point_configs()))

  def test_bad_sweeps_are_refused(self):
    cases = [
        ('unknown family', dict(family='depth')),
        ('tasks is empty', dict(tasks=())),
        ('unknown architecture', dict(architectures=('resnet',))),
        ('non-negative integers', dict(epochs=(0, -1))),
    ]
    for pattern, changes in cases:
      with self.subTest(pattern=pattern):
        with self.assertRaisesRegex(errors.AfterKernelError, pattern):
          _epochs_sweep(**changes).validate()
    with self.assertRaisesRegex(errors.AfterKernelError, 'fixed widths'):
      sweeps.Sweep('width', _BASE, tasks=_TASK,
                   architectures=('mega_vgg',)).validate()

  def test_record_keys(self):
    config = _epochs_sweep().point_configs()[0]
    key = sweeps.record_key('epochs', config, 1, 0)
    self.assertRegex(key, r'^epochs-[0-9a-f]{16}-run0000$')
    self.assertTrue(store.KEY_PATTERN.match(key))
    # Not part of the key: how many runs there are, where the data live, and
    # how far the trajectory goes beyond this checkpoint.
    same = dataclasses.replace(config, num_runs=7, data_dir='/elsewhere',
                               max_num_epochs=50)
    self.assertEqual(sweeps.record_key('epochs', same, 1, 0), key)
    self.assertLen({key, sweeps.record_key('epochs', config, 2, 0),
                    sweeps.record_key('epochs', config, 1, 1),
                    sweeps.record_key('width', config, 1, 0),
                    sweeps.record_key('epochs', dataclasses.replace(
                        config, use_augmentation=True), 1, 0)}, 5)


class EpochsFamilyTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.store = store.ResultStore(os.path.join(tempfile.mkdtemp(), 's'))

  def test_snapshots_match_independent_runs_from_scratch(self):
    sweep = _epochs_sweep()
    counts = sweeps.run_sweep(sweep, self.store, log=_quiet)
    self.assertEqual(counts, {'written': 3, 'skipped': 0, 'total': 3, 'busy': 0})
    records = _by_checkpoint(self.store.records())
    self.assertEqual(sorted(records), [(0, 0, False), (0, 1, False),
                                       (0, 2, False)])
    for (_, epoch, _), record in records.items():
      for name in _KERNEL_METRICS:
        self.assertIsNotNone(record['metrics'].get(name), name)
      self.assertEqual(record['metrics']['epochs_trained'], epoch)
      self.assertEqual(record['config']['max_num_epochs'], epoch)
      self.assertEqual(record['protocol']['snapshot_epochs'], [0, 1, 2])
      self.assertIn('one trajectory', record['protocol']['training'])
      self.assertEqual(record['shrink']['train_subset'], 48)
      self.assertEqual(record['version'], after_kernel.VERSION)
      self.assertEqual(record['data']['n_train'], 48)
    # The epoch-0 record is the FNTK of run_once, and the epoch-2 snapshot of
    # the single trajectory is the after kernel of a network trained for 2
    # epochs from scratch.
    task = after_kernel.load_task(_BASE)
    for epoch in (0, 2):
      config = dataclasses.replace(sweep.point_configs()[0],
                                   max_num_epochs=epoch)
      reference = after_kernel.run_once(config, task, 0, log=_quiet)['metrics']
      measured = records[(0, epoch, False)]['metrics']
      self.assertEqual(measured['svm_error'], reference['linear_error'])
      self.assertAlmostEqual(measured['svm_margin'], reference['margin'],
                             delta=1e-4)
      for name in ('trans_inv', 'swap_inv', 'kalignment'):
        self.assertAlmostEqual(measured[name], reference['ak_' + name],
                               delta=1e-4)
      if epoch:
        self.assertAlmostEqual(measured['nn_error'], reference['nn_error'])
    self.assertNotEqual(records[(0, 0, False)]['metrics']['svm_margin'],
                        records[(0, 2, False)]['metrics']['svm_margin'])

  def test_conjugate_svm_matches_a_conjugate_kernel_experiment(self):
    config = dataclasses.replace(_BASE, max_num_epochs=0,
                                 use_conjugate_kernel=True,
                                 svm_max_iterations=20000)
    sweeps.run_sweep(_epochs_sweep(epochs=(0,), base=config), self.store,
                     log=_quiet)
    measured = self.store.records()[0]['metrics']
    reference = after_kernel.run_once(
        dataclasses.replace(config, nn_architecture='fully_connected'),
        after_kernel.load_task(config), 0, log=_quiet)['metrics']
    # The same kernel (penultimate-layer features) and solver.
    self.assertEqual(reference['ntk_svm_converged'], 1.0)
    self.assertEqual(measured['conjugate_svm_error'],
                     reference['ntk_linear_error'])
    self.assertAlmostEqual(measured['conjugate_svm_margin'],
                           reference['ntk_margin'], delta=1e-3)

  def test_resume_measures_only_missing_records(self):
    sweeps.run_sweep(_epochs_sweep(), self.store, log=_quiet)
    before = {key: open(self.store.path(key)).read()
              for key in self.store.keys()}
    lost = sorted(before)[1]
    lost_epoch = self.store.get(lost)['checkpoint']
    os.remove(self.store.path(lost))
    two_runs = _epochs_sweep(base=dataclasses.replace(_BASE, num_runs=2))
    with mock.patch.object(sweeps, '_run_point',
                           wraps=sweeps._run_point) as spy:
      counts = sweeps.run_sweep(two_runs, self.store, log=_quiet)
    self.assertEqual(counts, {'written': 4, 'skipped': 2, 'total': 6, 'busy': 0})
    self.assertEqual([(c.args[3], c.args[4]) for c in spy.call_args_list],
                     [(0, [lost_epoch]), (1, [0, 1, 2])])
    for key, text in before.items():
      if key != lost:
        self.assertEqual(open(self.store.path(key)).read(), text)
    self.assertLen(self.store.keys(), 6)
    # A finished sweep does nothing.
    self.assertEqual(sweeps.run_sweep(two_runs, self.store, log=_quiet),
                     {'written': 0, 'skipped': 6, 'total': 6, 'busy': 0})

  def test_augmentation_axis_shares_the_fntk(self):
    sweep = _epochs_sweep(augmentation=(False, True), epochs=(0, 2))
    sweeps.run_sweep(sweep, self.store, log=_quiet)
    records = _by_checkpoint(self.store.records())
    self.assertLen(records, 4)
    plain, augmented = records[(0, 0, False)], records[(0, 0, True)]
    # Same seed, same network before training, whatever the augmentation.
    self.assertEqual(plain['metrics']['svm_margin'],
                     augmented['metrics']['svm_margin'])
    self.assertNotEqual(records[(0, 2, False)]['metrics']['nn_train_loss'],
                        records[(0, 2, True)]['metrics']['nn_train_loss'])
    self.assertTrue(records[(0, 2, True)]['config']['use_augmentation'])

  def test_bad_sweep_writes_nothing(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown family'):
      sweeps.run_sweep(_epochs_sweep(family='depth'), self.store, log=_quiet)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'exceeds the 24 test images'):
      sweeps.run_sweep(
          _epochs_sweep(base=dataclasses.replace(_BASE, num_swaps=25)),
          self.store, log=_quiet)
    self.assertFalse(os.path.exists(self.store.directory))


class LearningRateFamilyTest(absltest.TestCase):

  def test_trains_to_loss_target_per_rate(self):
    result_store = store.ResultStore(tempfile.mkdtemp())
    base = dataclasses.replace(_BASE, training_loss_target=0.4,
                               max_num_epochs=20)
    sweep = sweeps.Sweep('learning_rate', base, tasks=_TASK,
                         architectures=_FC, learning_rates=(0.01, 0.3))
    sweeps.run_sweep(sweep, result_store, log=_quiet)
    records = {r['point']['learning_rate']: r for r in result_store.records()}
    self.assertEqual(sorted(records), [0.01, 0.3])
    for rate, record in records.items():
      metrics = record['metrics']
      self.assertEqual(record['checkpoint'], 'final')
      self.assertIsNone(record['point']['epoch'])
      self.assertEqual(record['config']['learning_rate'], rate)
      self.assertIn(metrics['epochs_trained'], (10, 20))
      self.assertEqual(metrics['reached_loss_target'],
                       float(metrics['nn_train_loss'] <= 0.4))
      self.assertIn('conjugate_svm_error', metrics)
    # The larger rate reaches the target in at most as many epochs.
    self.assertEqual(records[0.3]['metrics']['reached_loss_target'], 1.0)
    self.assertLessEqual(records[0.3]['metrics']['epochs_trained'],
                         records[0.01]['metrics']['epochs_trained'])


class WidthFamilyTest(absltest.TestCase):

  def test_networks_are_sized_by_parameter_count(self):
    result_store = store.ResultStore(tempfile.mkdtemp())
    sweep = sweeps.Sweep('width', _BASE, tasks=_TASK, architectures=_FC,
                         epochs=(0, 1), num_parameters=(2000, 6000))
    sweeps.run_sweep(sweep, result_store, log=_quiet)
    records = result_store.records()
    self.assertLen(records, 4)
    for record in records:
      target = record['point']['num_parameters']
      expected = models.count_parameters(models.build_model(
          'fully_connected', (8, 8, 1), num_parameters=target, num_layers=1))
      self.assertEqual(record['metrics']['parameter_count'], expected)
      # One hidden layer of width h has 64h + h + h + 1 parameters.
      self.assertLessEqual(abs(expected - target), 66 / 2 + 1)
    counts = sorted({r['metrics']['parameter_count'] for r in records})
    self.assertLen(counts, 2)
    self.assertTrue(np.all(np.diff(counts) > 0))


if __name__ == '__main__':
  absltest.main()
