"""Tests for afterkernel.studies.summary and store's run log and folder claim.

Atomic files and confidence intervals (moved from tests/results_test.py).
"""

import json
import os
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
from scipy import stats

from afterkernel import errors
from afterkernel.studies import store
from afterkernel.studies import summary as summary_lib


class SummaryTest(absltest.TestCase):

  def test_matches_scipy_t_interval(self):
    values = [0.1, 0.15, 0.12, 0.2, 0.11]
    summary = summary_lib.metric_summary(values)
    low, high = stats.t.interval(0.95, len(values) - 1,
                                 loc=np.mean(values), scale=stats.sem(values))
    self.assertAlmostEqual(summary['mean'], np.mean(values))
    self.assertAlmostEqual(summary['std'], np.std(values, ddof=1))
    self.assertAlmostEqual(summary['ci95'], (high - low) / 2)
    self.assertEqual(summary['n'], 5)

  def test_single_value_has_no_interval(self):
    self.assertEqual(summary_lib.metric_summary([0.3]),
                     {'mean': 0.3, 'std': None, 'ci95': None, 'n': 1})

  def test_skips_missing_and_nonfinite(self):
    summary = summary_lib.metric_summary([1.0, None, float('nan'), 3.0])
    self.assertEqual(summary['n'], 2)
    self.assertAlmostEqual(summary['mean'], 2.0)

  def test_summarize_collects_all_metrics(self):
    records = [{'metrics': {'a': 1.0, 'b': 2.0}}, {'metrics': {'a': 3.0}}]
    summary = summary_lib.summarize_metrics(records)
    self.assertEqual(summary['a']['n'], 2)
    self.assertEqual(summary['b']['n'], 1)

  def test_table_shows_pairs_side_by_side(self):
    summary = summary_lib.summarize_metrics(
        [{'metrics': {'ntk_x': 0.5, 'ak_x': 0.25, 'nn_error': 0.1}}])
    table = summary_lib.format_table(summary, [('x', 'ntk_x', 'ak_x')])
    self.assertRegex(table, r'x\s+0\.5000\s+0\.2500')
    self.assertIn('nn_error', table)


class FilesTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = tempfile.mkdtemp()

  def test_append_and_read_runs(self):
    store.append_run(self.directory, {'run': 0, 'metrics': {'a': np.float32(
        0.5)}})
    store.append_run(self.directory, {'run': 1, 'metrics': {'a': float(
        'nan')}})
    records = store.read_runs(self.directory)
    self.assertEqual([r['run'] for r in records], [0, 1])
    self.assertEqual(records[0]['metrics']['a'], 0.5)
    self.assertIsNone(records[1]['metrics']['a'])

  def test_failed_write_keeps_old_file_and_leaves_no_temporary(self):
    store.append_run(self.directory, {'run': 0})
    path = os.path.join(self.directory, store.RUNS_FILE)
    with open(path) as f:
      before = f.read()
    with mock.patch.object(os, 'replace', side_effect=OSError('disk full')):
      # One line naming the file (was the raw OSError before issue 14).
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'could not write .*runs.jsonl: disk full'):
        store.append_run(self.directory, {'run': 1})
    with open(path) as f:
      self.assertEqual(f.read(), before)
    self.assertEqual(sorted(os.listdir(self.directory)), [store.RUNS_FILE])

  def test_summary_file_is_valid_json(self):
    path = summary_lib.write_metrics_summary(self.directory,
                                 {'a': summary_lib.metric_summary([1.0, 2.0])})
    with open(path) as f:
      self.assertEqual(json.load(f)['a']['n'], 2)

  def test_corrupt_runs_file_is_reported(self):
    with open(os.path.join(self.directory, store.RUNS_FILE), 'w') as f:
      f.write('{"run": 0}\n{not json\n')
    with self.assertRaisesRegex(errors.AfterKernelError, 'line 2'):
      store.read_runs(self.directory)


class OutputDirTest(absltest.TestCase):

  def test_fingerprint_ignores_only_the_named_fields(self):
    base = {'a': 1, 'runs': 3}
    self.assertEqual(store.config_fingerprint(base, ['runs']),
                     store.config_fingerprint({'a': 1, 'runs': 9}, ['runs']))
    self.assertNotEqual(store.config_fingerprint(base, ['runs']),
                        store.config_fingerprint({'a': 2, 'runs': 3},
                                                   ['runs']))

  def test_claim_resumes_same_config_and_refuses_another(self):
    directory = os.path.join(tempfile.mkdtemp(), 'out')
    store.claim_output_dir(directory, {'a': 1}, 'f1')
    store.claim_output_dir(directory, {'a': 1}, 'f1')  # resume: fine
    # A folder holds its configuration once it has results (a config.json
    # alone is taken over: see store_test.OutputFolderTest).
    store.ResultStore(directory).put({'key': 'r0', 'metrics': {}})
    path = os.path.join(directory, store.CONFIG_FILE)
    before = open(path).read()
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'different configuration'):
      store.claim_output_dir(directory, {'a': 2}, 'f2')
    self.assertEqual(open(path).read(), before)
    with self.assertRaisesRegex(errors.AfterKernelError, 'output_dir'):
      store.claim_output_dir('', {}, 'f')

  def test_claim_with_more_runs_rewrites_config_json(self):
    directory = os.path.join(tempfile.mkdtemp(), 'out')
    store.claim_output_dir(directory, {'a': 1, 'runs': 2}, 'f1')
    store.claim_output_dir(directory, {'a': 1, 'runs': 5}, 'f1')  # grown
    with open(os.path.join(directory, store.CONFIG_FILE)) as f:
      self.assertEqual(json.load(f)['config'], {'a': 1, 'runs': 5})


def _record(architecture, epoch, run, metrics, family='epochs'):
  return {'family': family, 'point_id': f'{architecture}-{epoch}',
          'point': {'family': family, 'task': 'mnist_5v6',
                    'nn_architecture': architecture, 'epoch': epoch},
          'run': run, 'metrics': metrics}


class PairedDifferencesTest(absltest.TestCase):

  # svm_error and swap_inv of three runs of two nets at epochs 0, 1, 3.
  _VALUES = {
      ('vgg', 0): [(0.010, 0.70), (0.006, 0.74), (0.003, 0.75)],
      ('vgg', 1): [(0.008, 0.76), (0.005, 0.77), (0.001, 0.78)],
      ('vgg', 3): [(0.007, 0.75), (0.004, 0.79), (0.002, 0.76)],
      ('fully_connected', 0): [(0.02, 0.30), (0.01, 0.40), (0.012, 0.35)],
      ('fully_connected', 3): [(0.013, 0.50), (0.011, 0.55), (0.012, 0.49)],
  }

  def _records(self):
    records = []
    for (architecture, epoch), runs in self._VALUES.items():
      for run, (error, swap) in enumerate(runs):
        records.append(_record(architecture, epoch, run,
                               {'svm_error': error, 'swap_inv': swap}))
    return records

  def test_matches_a_paired_t_interval_by_hand(self):
    entries = summary_lib.paired_differences(self._records(), 0, 3)
    self.assertEqual([e['point']['nn_architecture'] for e in entries],
                     ['fully_connected', 'vgg'])
    for entry in entries:
      self.assertNotIn('epoch', entry['point'])
      self.assertEqual(entry['runs'], [0, 1, 2])
      architecture = entry['point']['nn_architecture']
      for column, metric in enumerate(('svm_error', 'swap_inv')):
        before = np.array([v[column] for v in self._VALUES[architecture, 0]])
        after = np.array([v[column] for v in self._VALUES[architecture, 3]])
        differences = after - before
        result = stats.ttest_rel(after, before)
        low, high = result.confidence_interval(0.95)
        stats_ = entry['metrics'][metric]
        self.assertAlmostEqual(stats_['mean'], differences.mean(), places=12)
        self.assertAlmostEqual(stats_['ci95'], (high - low) / 2, places=12)
        self.assertEqual(stats_['n'], 3)

  def test_pairs_by_run_and_skips_unpaired(self):
    records = self._records()
    records = [r for r in records if not (
        r['point']['nn_architecture'] == 'vgg' and r['run'] == 1 and
        r['point']['epoch'] == 3)]
    records.append(_record('vgg', 3, 7, {'svm_error': 0.5, 'swap_inv': 0.5}))
    records.append(_record('other', 0, 0, {'svm_error': 0.1}))
    entries = summary_lib.paired_differences(records, 0, 3)
    vgg = next(e for e in entries if e['point']['nn_architecture'] == 'vgg')
    self.assertEqual(vgg['runs'], [0, 2])
    self.assertAlmostEqual(vgg['metrics']['svm_error']['mean'],
                           ((0.007 - 0.010) + (0.002 - 0.003)) / 2)
    self.assertLen(entries, 2)  # 'other' has no epoch 3

  def test_printed_table_and_errors(self):
    entries = summary_lib.paired_differences(self._records(), 0, 1)
    self.assertLen(entries, 1)  # only vgg has epoch 1
    text = summary_lib.format_paired(entries, 0, 1)
    self.assertIn('paired differences (epoch 1 - epoch 0', text)
    self.assertIn('svm_error', text)
    self.assertIn('swap_inv', text)
    mean = entries[0]['metrics']['swap_inv']['mean']
    self.assertIn(f'{mean:.4f}', text)
    self.assertIn('no runs measured', summary_lib.format_paired([], 0, 9))
    with self.assertRaisesRegex(errors.AfterKernelError, 'two different'):
      summary_lib.paired_differences(self._records(), 3, 3)
    twice = self._records() + [_record('vgg', 3, 0, {'svm_error': 0.0})]
    with self.assertRaisesRegex(errors.AfterKernelError, 'two records'):
      summary_lib.paired_differences(twice, 0, 3)

  def test_pairs_by_learning_rate_and_by_augmentation(self):
    # Two learning rates (the same run = the same seed) and augmentation
    # off/on; records of other epochs and families never join a pair.
    records = []
    for run in range(3):
      for rate, augment, error in ((0.01, False, 0.02 + 0.001 * run),
                                   (0.1, False, 0.015 + 0.003 * run),
                                   (0.01, True, 0.018 - 0.002 * run)):
        records.append({
            'family': 'learning_rate', 'run': run,
            'point': {'family': 'learning_rate', 'task': 't', 'epoch': None,
                      'learning_rate': rate, 'use_augmentation': augment},
            'metrics': {'svm_error': error}})
      for epoch in (0, 3):
        records.append(_record('vgg', epoch, run, {'svm_error': 0.5}))
    by_rate = summary_lib.paired_differences(records, 0.01, 0.1,
                                             'learning_rate')
    self.assertLen(by_rate, 1)
    self.assertEqual(by_rate[0]['runs'], [0, 1, 2])
    self.assertNotIn('learning_rate', by_rate[0]['point'])
    self.assertFalse(by_rate[0]['point']['use_augmentation'])
    self.assertAlmostEqual(by_rate[0]['metrics']['svm_error']['mean'],
                           np.mean([-0.005 + 0.002 * r for r in range(3)]))
    by_augment = summary_lib.paired_differences(records, False, True,
                                                'use_augmentation')
    self.assertLen(by_augment, 1)
    self.assertEqual(by_augment[0]['point']['learning_rate'], 0.01)
    self.assertAlmostEqual(by_augment[0]['metrics']['svm_error']['mean'],
                           np.mean([-0.002 - 0.003 * r for r in range(3)]))
    self.assertIn('(learning_rate 0.1 - learning_rate 0.01', summary_lib.
                  format_paired(by_rate, 0.01, 0.1, field='learning_rate'))
    # True == 1 and False == 0 in Python: no mixing of the two kinds.
    with self.assertRaisesRegex(errors.AfterKernelError, 'of one kind'):
      summary_lib.paired_differences(records, 0, True, 'use_augmentation')
    with self.assertRaisesRegex(errors.AfterKernelError, 'point fields'):
      summary_lib.paired_differences(records, 0, 1, 'svm_error')
    # A value no record has (e.g. 0/1 for a boolean field) names the ones
    # there are instead of printing an empty table.
    with self.assertRaisesRegex(
        errors.AfterKernelError,
        r'no record has learning_rate = 0.3; .* present: 0.01, 0.1'):
      summary_lib.paired_differences(records, 0.01, 0.3, 'learning_rate')
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'no record has use_augmentation = 0'):
      summary_lib.paired_differences(records, 0, 1, 'use_augmentation')

  def test_parse_point_value(self):
    for text, value in (('3', 3), ('0.003', 0.003), ('1e-3', 0.001),
                        ('true', True), ('False', False), ('vgg', 'vgg')):
      parsed = summary_lib.parse_point_value(text)
      self.assertEqual(parsed, value)
      self.assertIs(type(parsed), type(value))

  def test_every_measured_metric_is_printed(self):
    records = [_record('vgg', 0, run, {'svm_error': 0.1 * run,
                                       'zoom_inv': 0.5, 'eff_rank': 3.0,
                                       'rotation_inv': None})
               for run in range(2)]
    entries = summary_lib.summarize(records)
    self.assertEqual(summary_lib.measured_metrics(entries),
                     ('svm_error', 'zoom_inv', 'eff_rank'))
    text = summary_lib.format_summary_blocks(entries, per_block=2)
    header_lines = [l for l in text.splitlines() if l.startswith('family')]
    self.assertLen(header_lines, 2)
    self.assertRegex(header_lines[0], r'n\s+svm_error\s+zoom_inv\s*$')
    self.assertRegex(header_lines[1], r'n\s+eff_rank\s*$')


if __name__ == '__main__':
  absltest.main()
