"""Smoke test of binaries/sweep_learning_rate.py, run as a subprocess.

(Run as a user runs it; see sweep_epochs_test.)
"""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from afterkernel.studies import store

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY_FLAGS = ('--tasks=digits_3v8', '--architectures=fully_connected',
               '--train_subset=40', '--test_subset=20', '--num_translations=5',
               '--num_zooms=5', '--num_swaps=5', '--num_rotations=5',
               '--ker_alignment_sample_size=5',
               '--effective_rank_sample_size=5', '--svm_max_iterations=2000')


def _run(*flags):
  return subprocess.run(
      [sys.executable, '-m', 'binaries.sweep_learning_rate', *_TINY_FLAGS,
       *flags], cwd=_REPO, capture_output=True, text=True, timeout=600,
      check=False)


class SweepLearningRateTest(absltest.TestCase):

  def test_trains_each_rate_to_the_loss_target(self):
    directory = tempfile.mkdtemp()
    flags = ('--learning_rates=0.003,0.3', '--training_loss_target=0.3',
             '--max_num_epochs=20', '--num_runs=1', f'--store_dir={directory}')
    process = _run(*flags)
    self.assertEqual(process.returncode, 0, process.stderr)
    records = {r['point']['learning_rate']: r
               for r in store.ResultStore(directory).records()}
    self.assertEqual(sorted(records), [0.003, 0.3])
    for record in records.values():
      self.assertEqual(record['family'], 'learning_rate')
      self.assertEqual(record['config']['training_loss_target'], 0.3)
      self.assertEqual(record['protocol']['max_num_epochs'], 20)
      self.assertIn(record['metrics']['epochs_trained'], (10, 20))
    # A large rate gets there; a tiny one runs into the 20-epoch cap.
    self.assertEqual(records[0.3]['metrics']['reached_loss_target'], 1.0)
    self.assertEqual(records[0.003]['metrics']['reached_loss_target'], 0.0)
    self.assertEqual(records[0.003]['metrics']['epochs_trained'], 20)
    self.assertIn('2 records written', process.stdout)
    again = _run(*flags)
    self.assertIn('0 records written, 2 already there', again.stdout)


if __name__ == '__main__':
  absltest.main()
