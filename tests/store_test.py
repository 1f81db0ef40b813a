"""Tests for afterkernel.studies.store: atomic records, resume keys, summary tables."""

import csv
import io
import json
import math
import os
import stat
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np
from scipy import stats

from afterkernel import errors
from afterkernel.studies import store


def _record(key, run, point_id='p1', metrics=None, **point):
  point = dict({'family': 'epochs', 'task': 'digits_3v8', 'epoch': 1},
               **point)
  return {'key': key, 'family': point['family'], 'point_id': point_id,
          'point': point, 'run': run,
          'metrics': metrics if metrics is not None else {'svm_error': 0.1}}


class ResultStoreTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = os.path.join(tempfile.mkdtemp(), 'store')
    self.store = store.ResultStore(self.directory)

  def test_put_then_read_back(self):
    self.assertFalse(self.store.has('a-run0000'))
    self.assertEqual(self.store.keys(), [])
    self.assertEqual(self.store.records(), [])
    record = _record('a-run0000', 0, metrics={'svm_error': np.float32(0.25),
                                              'bad': float('nan')})
    path = self.store.put(record)
    self.assertTrue(self.store.has('a-run0000'))
    self.assertEqual(path, os.path.join(self.directory, 'records',
                                        'a-run0000.json'))
    read = self.store.get('a-run0000')
    self.assertEqual(read['metrics'], {'svm_error': 0.25, 'bad': None})
    self.assertEqual(self.store.keys(), ['a-run0000'])

  def test_put_replaces_and_leaves_no_temporary_files(self):
    self.store.put(_record('k', 0, metrics={'svm_error': 0.1}))
    self.store.put(_record('k', 0, metrics={'svm_error': 0.2}))
    self.assertEqual(self.store.get('k')['metrics']['svm_error'], 0.2)
    self.assertEqual(os.listdir(self.store.records_dir), ['k.json'])

  def test_orphaned_temporary_file_of_a_killed_writer_is_ignored(self):
    self.store.put(_record('done', 0))
    # What `kill -9` during atomic_write_text can leave behind.
    with open(os.path.join(self.store.records_dir, '.half.json.x1.tmp'),
              'w') as f:
      f.write('{"key": "half", "metr')
    self.assertEqual(self.store.keys(), ['done'])
    self.assertLen(self.store.records(), 1)
    self.assertFalse(self.store.has('half'))

  def test_corrupt_record_is_reported_with_its_path(self):
    os.makedirs(self.store.records_dir)
    path = os.path.join(self.store.records_dir, 'broken.json')
    with open(path, 'w') as f:
      f.write('{"key": ')
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'broken.json is not valid JSON'):
      self.store.records()

  def test_bad_keys_are_refused(self):
    for key in ('', '../escape', 'a/b', '.hidden', 'x' * 201, 'sp ace'):
      with self.subTest(key=key):
        with self.assertRaisesRegex(errors.AfterKernelError, 'bad record key'):
          self.store.put({'key': key})
    with self.assertRaisesRegex(errors.AfterKernelError, 'needs a "key"'):
      self.store.put({'metrics': {}})
    self.assertFalse(os.path.exists(self.directory))


class SummarizeTest(absltest.TestCase):

  def test_matches_independent_statistics(self):
    values = [0.1, 0.3, 0.2, 0.6]
    records = [_record(f'p1-run{r}', r, metrics={'svm_error': v,
                                                 'note': 'text'})
               for r, v in enumerate(values)]
    records.append(_record('p2-run0', 0, point_id='p2', epoch=3,
                           metrics={'svm_error': 0.05}))
    entries = store.summarize(records)
    self.assertEqual([e['point_id'] for e in entries], ['p1', 'p2'])
    first = entries[0]
    self.assertEqual(first['runs'], [0, 1, 2, 3])
    self.assertNotIn('note', first['metrics'])  # not a number: left out
    summary = first['metrics']['svm_error']
    sample = np.array(values)
    self.assertAlmostEqual(summary['mean'], sample.mean())
    self.assertAlmostEqual(summary['std'], sample.std(ddof=1))
    low, high = stats.t.interval(0.95, len(sample) - 1, loc=sample.mean(),
                                 scale=stats.sem(sample))
    self.assertAlmostEqual(summary['ci95'], (high - low) / 2)
    self.assertEqual(summary['n'], 4)
    self.assertEqual(entries[1]['metrics']['svm_error'],
                     {'mean': 0.05, 'std': None, 'ci95': None, 'n': 1})

  def test_missing_values_lower_n(self):
    records = [_record('a', 0, metrics={'svm_error': 0.1, 'swap_inv': 0.5}),
               _record('b', 1, metrics={'svm_error': 0.2, 'swap_inv': None}),
               _record('c', 2, metrics={'svm_error': 0.3})]
    metrics = store.summarize(records)[0]['metrics']
    self.assertEqual(metrics['svm_error']['n'], 3)
    self.assertEqual(metrics['swap_inv']['n'], 1)

  def test_duplicate_run_is_an_error(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'duplicate runs'):
      store.summarize([_record('a', 0), _record('b', 0)])

  def test_entries_sorted_by_point_numerically(self):
    records = [_record(f'e{e}', 0, point_id=f'p{e}', epoch=e)
               for e in (10, 0, 3, 1)]
    self.assertEqual([e['point']['epoch'] for e in store.summarize(records)],
                     [0, 1, 3, 10])


class WriteSummaryTest(absltest.TestCase):

  def test_csv_and_json_agree(self):
    directory = tempfile.mkdtemp()
    result_store = store.ResultStore(directory)
    for run, value in enumerate((0.1, 0.2, 0.4)):
      result_store.put(_record(f'a-run{run}', run, metrics={
          'svm_error': value, 'nn_error': value / 2}))
    result_store.put(_record('b-run0', 0, point_id='p2', epoch=10,
                             metrics={'svm_error': 0.01}))
    entries = store.summarize_store(directory)
    with open(os.path.join(directory, store.SUMMARY_JSON)) as f:
      self.assertEqual(json.load(f), json.loads(json.dumps(entries)))
    with open(os.path.join(directory, store.SUMMARY_CSV)) as f:
      rows = list(csv.DictReader(f))
    self.assertEqual(list(rows[0]), list(store.SUMMARY_COLUMNS))
    self.assertLen(rows, 3)  # 2 metrics of p1 + 1 of p2
    by_metric = {(r['point_id'], r['metric']): r for r in rows}
    row = by_metric[('p1', 'svm_error')]
    self.assertAlmostEqual(float(row['mean']), 0.7 / 3)
    self.assertEqual(row['n'], '3')
    self.assertEqual(row['epoch'], '1')
    self.assertEqual(row['task'], 'digits_3v8')
    self.assertEqual(by_metric[('p2', 'svm_error')]['ci95'], '')
    self.assertTrue(math.isclose(
        float(by_metric[('p1', 'nn_error')]['std']),
        float(np.std([0.05, 0.1, 0.2], ddof=1))))

  def test_table_shows_points(self):
    entries = store.summarize([
        _record('a', 0, metrics={'svm_error': 0.1}),
        _record('b', 1, metrics={'svm_error': 0.3}),
        _record('c', 0, point_id='p2', epoch=3, metrics={'svm_error': 0.05})])
    table = store.format_summary(entries, ('svm_error', 'nn_error'))
    lines = table.splitlines()
    self.assertIn('epoch', lines[0])
    self.assertRegex(lines[1], r'epochs\s+1\s+2\s+0\.2000±1\.2706\s+-')
    self.assertRegex(lines[2], r'epochs\s+3\s+1\s+0\.0500\s+-')

  def test_default_table_shows_every_invariance_and_svm_convergence(self):
    entries = store.summarize([_record('a', 0, metrics={
        'svm_error': 0.1, 'svm_converged': 1.0, 'rotation_inv': 0.9,
        'zoom_inv': 0.8})])
    header = store.format_summary(entries).splitlines()[0]
    for name in ('svm_error', 'svm_converged', 'trans_inv', 'rotation_inv',
                 'zoom_inv', 'swap_inv'):
      self.assertIn(name, header)

  def test_empty_store_is_an_error(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'no records'):
      store.summarize_store(tempfile.mkdtemp())


class RunsConversionTest(absltest.TestCase):
  """0.1.0 folders with runs.jsonl summarize through records/."""

  def test_run_after_kernel_folder_summarizes_like_its_flat_summary(self):
    directory = tempfile.mkdtemp()
    values = [0.1, 0.25, 0.2]
    for run, value in enumerate(values):
      store.append_run(directory, {
          'config_fingerprint': 'abc', 'run': run, 'seed': run,
          'metrics': {'nn_error': value, 'ak_margin': None}})
    entries = store.summarize_store(directory)
    self.assertLen(entries, 1)
    self.assertEqual(entries[0]['runs'], [0, 1, 2])
    stats_ = entries[0]['metrics']['nn_error']
    # Independent: numpy / scipy on the raw values.
    self.assertAlmostEqual(stats_['mean'], np.mean(values))
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values),
                                 scale=stats.sem(values))
    self.assertAlmostEqual(stats_['ci95'], (high - low) / 2)
    self.assertEqual(entries[0]['metrics']['ak_margin']['n'], 0)
    self.assertLen(store.ResultStore(directory).keys(), 3)
    self.assertTrue(os.path.exists(os.path.join(directory,
                                                store.SUMMARY_CSV)))
    # runs.jsonl itself is left as it was.
    self.assertLen(store.read_runs(directory), 3)

  def test_linearized_runs_are_one_point_per_width(self):
    directory = tempfile.mkdtemp()
    for width in (0.5, 1.0):
      for run in range(2):
        store.append_run(directory, {
            'config_fingerprint': 'f', 'width': width, 'run': run,
            'metrics': {'nn_test_accuracy': width + run}})
    keys = store.convert_runs_to_records(directory)
    self.assertLen(keys, 4)
    entries = store.summarize_store(directory)
    means = sorted(e['metrics']['nn_test_accuracy']['mean'] for e in entries)
    self.assertEqual(means, [1.0, 1.5])

  def test_folder_without_runs_cannot_be_converted(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'no runs'):
      store.convert_runs_to_records(tempfile.mkdtemp())


class OutputFolderTest(absltest.TestCase):

  def _claim(self, directory, fingerprint='f1'):
    store.claim_output_dir(directory, {'a': 1}, fingerprint)

  def test_a_file_or_a_folder_under_a_file_is_one_clear_error(self):
    path = os.path.join(tempfile.mkdtemp(), 'taken')
    with open(path, 'w') as f:
      f.write('x')
    with self.assertRaisesRegex(errors.AfterKernelError, 'is an existing file'):
      self._claim(path)
    with self.assertRaisesRegex(errors.AfterKernelError, 'is a file'):
      self._claim(os.path.join(path, 'sub', 'dir'))

  @absltest.skipIf(os.geteuid() == 0, 'root can write anywhere')
  def test_an_unwritable_folder_is_one_clear_error(self):
    parent = tempfile.mkdtemp()
    os.chmod(parent, 0o500)
    try:
      with self.assertRaisesRegex(errors.AfterKernelError, 'not writable'):
        self._claim(parent)
      with self.assertRaisesRegex(errors.AfterKernelError, 'not writable'):
        self._claim(os.path.join(parent, 'new'))
    finally:
      os.chmod(parent, 0o700)

  def test_truncated_config_is_reported_as_corrupt_not_as_foreign(self):
    directory = tempfile.mkdtemp()
    self._claim(directory)
    store.ResultStore(directory).put(_record('k0', 0))
    path = os.path.join(directory, store.CONFIG_FILE)
    with open(path, 'r+') as f:
      f.truncate(10)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'not valid JSON .truncated') as cm:
      self._claim(directory)
    self.assertNotIn('different configuration', str(cm.exception))
    with open(path) as f:
      self.assertLen(f.read(), 10)  # Left as it was.

  def test_a_config_without_results_does_not_hold_the_folder(self):
    directory = tempfile.mkdtemp()
    self._claim(directory, 'f1')  # e.g. the command then failed.
    self._claim(directory, 'f2')  # The corrected command takes the folder.
    with open(os.path.join(directory, store.CONFIG_FILE)) as f:
      self.assertEqual(json.load(f)['fingerprint'], 'f2')
    store.ResultStore(directory).put(_record('k0', 0))
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'different configuration'):
      self._claim(directory, 'f1')

  def test_the_refusal_names_the_fields_that_differ(self):
    directory = tempfile.mkdtemp()
    store.claim_output_dir(directory, {'a': 1, 'b': [1, 2], 'c': 'x'}, 'f1')
    store.ResultStore(directory).put(_record('k0', 0))
    with self.assertRaisesRegex(
        errors.AfterKernelError,
        r'different configuration \(.*config.json; fields that differ: '
        r'b, d\); choose another --output_dir') as caught:
      store.claim_output_dir(directory, {'a': 1, 'b': (1, 3), 'c': 'x',
                                         'd': None}, 'f2')
    self.assertNotIn('\n', str(caught.exception))

  def test_files_get_the_users_umask_not_0600(self):
    directory = tempfile.mkdtemp()
    old = os.umask(0o022)
    try:
      path = store.ResultStore(directory).put(_record('k0', 0))
    finally:
      os.umask(old)
    self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o644)

  def test_a_failed_write_is_one_line_and_keeps_the_old_file(self):
    directory = tempfile.mkdtemp()
    result_store = store.ResultStore(directory)
    path = result_store.put(_record('k0', 0))
    with open(path) as f:
      before = f.read()
    with mock.patch.object(os, 'fsync',
                           side_effect=OSError(28, 'No space left on device')):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'could not write .*No space left') as cm:
        result_store.put(_record('k0', 1))
    self.assertNotIn('\n', str(cm.exception))
    with open(path) as f:
      self.assertEqual(f.read(), before)
    self.assertEqual(sorted(os.listdir(os.path.dirname(path))), ['k0.json'])


if __name__ == '__main__':
  absltest.main()
