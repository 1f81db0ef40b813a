"""Smoke test of binaries/sweep_width.py, run as a subprocess.

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
      [sys.executable, '-m', 'binaries.sweep_width', *_TINY_FLAGS, *flags],
      cwd=_REPO, capture_output=True, text=True, timeout=600, check=False)


class SweepWidthTest(absltest.TestCase):

  def test_sizes_networks_by_parameter_count(self):
    directory = tempfile.mkdtemp()
    process = _run('--num_parameters=20000,40000', '--epochs=0,1',
                   '--num_runs=1', f'--store_dir={directory}')
    self.assertEqual(process.returncode, 0, process.stderr)
    records = store.ResultStore(directory).records()
    self.assertLen(records, 4)
    for record in records:
      self.assertEqual(record['family'], 'width')
      target = record['point']['num_parameters']
      # 4 hidden layers of width h: 64h + 3h^2 + 5h + 1 parameters, so the
      # closest width is within ~6h/2 of the target.
      self.assertLess(abs(record['metrics']['parameter_count'] - target),
                      0.02 * target)
    self.assertEqual(sorted({r['point']['num_parameters'] for r in records}),
                     [20000, 40000])


if __name__ == '__main__':
  absltest.main()
