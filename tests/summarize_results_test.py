"""Tests of binaries/summarize_results.py on a fixture store (subprocess)."""

import csv
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from afterkernel.studies import store
from afterkernel.studies import summary
import store_fixture  # tests/store_fixture.py

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*flags):
  return subprocess.run(
      [sys.executable, '-m', 'binaries.summarize_results', *flags],
      cwd=_REPO, capture_output=True, text=True, timeout=300, check=False)


class SummarizeResultsTest(absltest.TestCase):

  def test_writes_tables_of_every_point(self):
    directory = tempfile.mkdtemp()
    records = store_fixture.write_fixture_store(directory)
    process = _run(f'--store_dir={directory}', '--metrics=svm_error,swap_inv')
    self.assertEqual(process.returncode, 0, process.stderr)
    expected = store.summarize(records)
    self.assertIn(f'{len(expected)} points; wrote', process.stdout)
    lines = process.stdout.splitlines()
    self.assertRegex(lines[0], r'family .* n\s+svm_error\s+swap_inv')
    self.assertLen([l for l in lines if l.startswith(('epochs', 'learning',
                                                      'width'))],
                   len(expected))
    with open(os.path.join(directory, store.SUMMARY_CSV)) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, sum(len(e['metrics']) for e in expected))
    first = expected[0]
    row = next(r for r in rows if r['point_id'] == first['point_id'] and
               r['metric'] == 'svm_error')
    self.assertAlmostEqual(float(row['mean']),
                           first['metrics']['svm_error']['mean'])
    self.assertAlmostEqual(float(row['ci95']),
                           first['metrics']['svm_error']['ci95'])


  def test_paired_differences_are_printed(self):
    directory = tempfile.mkdtemp()
    records = store_fixture.write_fixture_store(directory)
    process = _run(f'--store_dir={directory}', '--paired=0,3')
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertIn('paired differences (epoch 3 - epoch 0', process.stdout)
    # Every measured metric is printed by default (rotation and zoom too).
    for metric in ('rotation_inv', 'zoom_inv', 'epochs_trained'):
      self.assertIn(metric, process.stdout)
    paired = summary.paired_differences(records, 0, 3)
    mean = paired[0]['metrics']['svm_error']['mean']
    self.assertIn(f'{mean:.4f}', process.stdout.split('paired')[1])
    process = _run(f'--store_dir={directory}', '--paired=0,3,10')
    self.assertEqual(process.returncode, 2)
    self.assertIn('--paired takes two epoch values', process.stderr)

  def test_paired_by_learning_rate_and_bad_field(self):
    directory = tempfile.mkdtemp()
    records = store_fixture.write_fixture_store(directory)
    process = _run(f'--store_dir={directory}', '--paired_by=learning_rate',
                   '--paired=0.01,0.1', '--metrics=svm_error')
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertIn('paired differences (learning_rate 0.1 - learning_rate '
                  '0.01', process.stdout)
    paired = summary.paired_differences(records, 0.01, 0.1, 'learning_rate')
    # The learning-rate family only: tasks x nets x augmentation off/on.
    self.assertLen(paired, 8)
    self.assertEqual({e['family'] for e in paired}, {'learning_rate'})
    tables = process.stdout.split('paired differences')[1]
    for entry in paired:
      self.assertIn(f"{entry['metrics']['svm_error']['mean']:.4f}", tables)
    process = _run(f'--store_dir={directory}', '--paired_by=svm_error',
                   '--paired=0,1')
    self.assertEqual(process.returncode, 2)
    self.assertIn('--paired_by must be one of', process.stderr)
    self.assertNotIn('Traceback', process.stderr)
    self.assertLen([l for l in process.stderr.splitlines()
                    if l.startswith('error:')], 1)


if __name__ == '__main__':
  absltest.main()
