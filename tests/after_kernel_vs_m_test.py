"""Tests of afterkernel/studies/after_kernel_vs_m.py (experiment 2)."""

import dataclasses
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import store as store_lib

# Small enough that a whole study runs in a few seconds on 2 loaded cores.
_SMALL = dict(width=16, num_test=60, num_runs=1, batch_size=16,
              feature_batch_size=64)


class StudyTest(absltest.TestCase):

  def test_after_kernel_with_zero_epochs_is_the_init_kernel(self):
    # With no training, K_m for m > 0 is the NTK at init: the same seed,
    # fit examples ('subset') and SGD order give identical fits to m = 0.
    config = dataclasses.replace(
        after_kernel_vs_m.PRESETS['tiny'], **dict(
            _SMALL, train_sizes=(0, 30), fit_sizes=(10, 20, 30),
            reference_fit_size=20, epochs=0, fit_steps=15))
    summary = after_kernel_vs_m.run(config, tempfile.mkdtemp(),
                                       log=lambda m: None)
    by_point = {(e['point']['train_subset'], e['point']['fit_size']):
                e['metrics']['after_kernel_test_mse']['mean']
                for e in summary['entries']}
    for n in (10, 20, 30):
      self.assertEqual(by_point[(0, n)], by_point[(30, n)])
    # Trained for one epoch, K_30 differs from K_0.
    trained = after_kernel_vs_m.run(
        dataclasses.replace(config, epochs=2), tempfile.mkdtemp(),
        log=lambda m: None)
    moved = {(e['point']['train_subset'], e['point']['fit_size']):
             e['metrics']['after_kernel_test_mse']['mean']
             for e in trained['entries']}
    self.assertEqual(moved[(0, 20)], by_point[(0, 20)])
    self.assertNotEqual(moved[(30, 20)], by_point[(30, 20)])
    self.assertIn('K_30', after_kernel_vs_m.format_summary(trained))

  def test_fresh_examples_need_m_plus_n(self):
    config = dataclasses.replace(after_kernel_vs_m.PRESETS['tiny'],
                                 fit_examples='fresh')
    self.assertEqual(after_kernel_vs_m._needed_examples(config, 200, 50), 250)
    self.assertEqual(after_kernel_vs_m._fit_indices(config, 200, 50),
                     slice(200, 250))
    subset = dataclasses.replace(config, fit_examples='subset')
    self.assertEqual(after_kernel_vs_m._needed_examples(subset, 200, 50), 200)
    self.assertEqual(after_kernel_vs_m._fit_indices(subset, 200, 50),
                     slice(0, 50))


  def test_early_stopping_records_the_argmin_of_the_validation_curve(self):
    config = dataclasses.replace(
        after_kernel_vs_m.PRESETS['tiny'], **dict(
            _SMALL, train_sizes=(0, 40), fit_sizes=(10, 20, 40),
            reference_fit_size=20, epochs=4, fit_steps=15,
            after_kernel_at='early_stopping', num_validation=50))
    directory = tempfile.mkdtemp()
    after_kernel_vs_m.run(config, directory, log=lambda m: None)
    records = [r for r in store_lib.ResultStore(directory).records()
               if r['point']['train_subset'] == 40]
    self.assertLen(records, 3)
    for record in records:
      curve = record['early_stopping']
      self.assertEqual(record['metrics']['stop_step'],
                       curve['steps'][int(np.argmin(
                           curve['validation_errors']))])
      self.assertEqual(curve['steps'][-1], record['metrics']['train_steps'])
    with self.assertRaisesRegex(errors.AfterKernelError, 'after_kernel_at'):
      dataclasses.replace(config, after_kernel_at='best').validate()

  def test_paper_preset_takes_the_kernel_at_early_stopping(self):
    config = after_kernel_vs_m.preset('paper')
    config.validate()
    self.assertEqual(config.after_kernel_at, 'early_stopping')
    self.assertEqual(after_kernel_vs_m.preset('tiny').after_kernel_at,
                     'fixed_epochs')


if __name__ == '__main__':
  absltest.main()
