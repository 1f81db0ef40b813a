"""Tests for afterkernel.studies.runner: resume, executor seam, presets."""

import dataclasses
import json
import os
import pickle
import tempfile

from absl.testing import absltest

from afterkernel import errors
from afterkernel.studies import runner
from afterkernel.studies import store


@dataclasses.dataclass(frozen=True)
class _Config(runner.StudyConfig):
  FINGERPRINT_IGNORES = ('num_runs', 'points')
  points: tuple = (1, 2, 3)
  num_runs: int = 2
  offset: float = 0.5

  def validate(self):
    runner.positive_ints(self.points, 'points')


def _key(point, run):
  return f'toy_p{point}_run{run}'


def _run_once(config, context, unit, log):
  log(f'unit {unit.run} {unit.points}')
  return [{'key': _key(p, unit.run), 'family': 'toy', 'point_id': f'p={p}',
           'point': {'family': 'toy', 'p': p}, 'run': unit.run,
           'config_fingerprint': config.fingerprint(),
           'metrics': {'value': p * context + unit.run + config.offset}}
          for p in unit.points]


def _points(config):
  return config.points


def _load(config, output_dir):
  del config, output_dir
  return 10.0


def _sort_key(entry):
  return entry['point']['p']


def _odd(point):
  return point % 2


def _quiet(message):
  del message


def _study(**kwargs):
  # Module-level functions, not lambdas: a remote executor pickles them.
  return runner.Study(family='toy', points=_points, record_key=_key,
                      run_once=_run_once, load=_load, sort_key=_sort_key,
                      **kwargs)


class RunnerTest(absltest.TestCase):

  def test_runs_summarizes_and_resumes(self):
    directory = tempfile.mkdtemp()
    messages = []
    entries = runner.run(_study(), _Config(), directory, messages.append)
    self.assertEqual([e['point']['p'] for e in entries], [1, 2, 3])
    # Independent computation: mean over runs 0, 1 of 10 p + run + 0.5.
    for entry in entries:
      self.assertAlmostEqual(entry['metrics']['value']['mean'],
                             10 * entry['point']['p'] + 1.0)
      self.assertEqual(entry['metrics']['value']['n'], 2)
    with open(os.path.join(directory, 'summary.json')) as f:
      self.assertLen(json.load(f), 3)
    self.assertTrue(os.path.exists(os.path.join(directory, 'summary.csv')))
    # Resume: a new point in run 1 only is the only work.
    result_store = store.ResultStore(directory)
    os.remove(result_store.path(_key(2, 1)))
    messages.clear()
    runner.run(_study(), _Config(), directory, messages.append)
    self.assertIn('unit 1 (2,)', messages)
    self.assertTrue(any('skipped' in m for m in messages))

  def test_whole_runs_and_required_metrics(self):
    directory = tempfile.mkdtemp()
    runner.run(_study(), _Config(num_runs=1), directory, lambda m: None)
    result_store = store.ResultStore(directory)
    record = result_store.get(_key(1, 0))
    del record['metrics']['value']
    result_store.put(record)
    units = runner.missing_work(
        _study(whole_runs=True, required_metrics=('value',)),
        _Config(num_runs=1), result_store, lambda m: None)
    self.assertEqual(units, [runner.WorkUnit(0, (1, 2, 3))])

  def test_custom_executor_gets_picklable_independent_units(self):
    seen = []

    def executor(units, work):
      work = pickle.loads(pickle.dumps(work))  # As a remote worker would.
      for unit in reversed(list(units)):
        seen.append(unit)
        yield from list(work(unit))

    entries = runner.run(_study(), _Config(), tempfile.mkdtemp(), _quiet,
                         executor=executor)
    self.assertEqual([u.run for u in seen], [1, 0])
    self.assertLen(entries, 3)

  def test_foreign_folder_and_bad_preset(self):
    directory = tempfile.mkdtemp()
    runner.run(_study(), _Config(), directory, lambda m: None)
    with self.assertRaisesRegex(errors.AfterKernelError, 'different config'):
      runner.run(_study(), _Config(offset=1.0), directory, lambda m: None)
    # Ignored fields extend the folder.
    runner.run(_study(), _Config(points=(1, 2, 3, 4)), directory,
               lambda m: None)
    with self.assertRaisesRegex(errors.AfterKernelError, 'choose one of a, b'):
      runner.preset({'a': 1, 'b': 2}, 'c')
    self.assertEqual(runner.preset({'a': 1}, 'a'), 1)
    with self.assertRaisesRegex(errors.AfterKernelError, 'points'):
      runner.run(_study(), _Config(points=(0,)), directory, lambda m: None)

  def test_groups_split_units_and_records_stream_into_the_store(self):
    directory = tempfile.mkdtemp()
    result_store = store.ResultStore(directory)
    stored_before = []

    def streaming(config, context, unit, log):
      for record in _run_once(config, context, unit, log):
        stored_before.append(len(result_store.keys()))
        yield record

    study = runner.Study(family='toy', points=_points, record_key=_key,
                         run_once=streaming, load=_load, group=_odd)
    counts = runner.execute(study, _Config(num_runs=1), result_store, _quiet)
    self.assertEqual(counts, {'written': 3, 'skipped': 0, 'busy': 0})
    # Each record was stored before the next one was measured.
    self.assertEqual(stored_before, [0, 1, 2])
    self.assertEqual(runner.missing_work(study, _Config(num_runs=2),
                                         result_store, _quiet),
                     [runner.WorkUnit(1, (1, 3)), runner.WorkUnit(1, (2,))])
    self.assertEqual(runner.execute(study, _Config(num_runs=1), result_store,
                                    _quiet), {'written': 0, 'skipped': 3, 'busy': 0})

  def test_stream_hands_records_over_one_by_one_and_reraises(self):
    consumed = []

    def produce(emit):
      for value in range(3):
        emit({'value': value})
        # The consumer took the record before the producer went on.
        self.assertLen(consumed, value + 1)

    for record in runner.stream(produce):
      consumed.append(record['value'])
    self.assertEqual(consumed, [0, 1, 2])

    def failing(emit):
      emit({'value': 0})
      raise errors.AfterKernelError('boom')

    with self.assertRaisesRegex(errors.AfterKernelError, 'boom'):
      list(runner.stream(failing))

  def test_fingerprint_is_the_store_hash(self):
    config = _Config()
    fields = config.to_dict()
    del fields['num_runs'], fields['points']
    self.assertEqual(config.fingerprint(), store.config_fingerprint(fields))


@dataclasses.dataclass(frozen=True)
class _GrownConfig(_Config):
  ADDED_FIELDS = ('schedule',)
  schedule: str = 'none'


class AddedFieldsTest(absltest.TestCase):

  def test_added_field_at_default_keeps_the_old_fingerprint(self):
    old = _Config(offset=0.25)
    self.assertEqual(_GrownConfig(offset=0.25).fingerprint(),
                     old.fingerprint())
    # Off its default the field changes the result, so the fingerprint.
    self.assertNotEqual(_GrownConfig(offset=0.25, schedule='step'
                                     ).fingerprint(), old.fingerprint())

  def test_folder_written_before_the_field_resumes(self):
    with tempfile.TemporaryDirectory() as folder:
      _study().run(_Config(), folder, log=_quiet)
      entries = _study().run(_GrownConfig(), folder, log=_quiet)
      self.assertLen(entries, 3)
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'different configuration'):
        _study().run(_GrownConfig(schedule='step'), folder, log=_quiet)


class ProgressTest(absltest.TestCase):

  def test_progress_line_counts_and_estimates_the_rest(self):
    self.assertEqual(runner.progress_line(1, 4, 30.0),
                     '1/4 records stored (30 s elapsed, ETA 90 s)')
    self.assertEqual(runner.progress_line(3, 3, 600.0),
                     '3/3 records stored (10.0 min elapsed, ETA 0 s)')
    self.assertIn('ETA ?', runner.progress_line(0, 3, 0.0))

  def test_each_stored_record_is_logged_with_its_progress(self):
    lines = []
    runner.run(_study(), _Config(num_runs=1), tempfile.mkdtemp(),
               lines.append)
    progress = [l for l in lines if 'records stored' in l]
    self.assertEqual([l.split(' records')[0] for l in progress],
                     ['1/3', '2/3', '3/3'])


if __name__ == '__main__':
  absltest.main()
