"""Tests for afterkernel.studies.ray_executor on a local 2-CPU Ray instance.

A toy study (records are arithmetic of the unit) and a 4-record digits
sweep (sweep_epochs' golden flags, 2 epochs x 2 runs) run under the Ray
executor give the same records as under the local one; a worker killed
mid-unit is retried with no duplicate record; a resumed run skips finished
records. Skipped, with the install line, when Ray is not installed.
"""

import dataclasses
import os
import subprocess
import sys
import tempfile
from unittest import mock

from absl import flags as absl_flags
from absl.testing import absltest

from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.studies import ray_executor
from afterkernel.studies import runner
from afterkernel.studies import store
from afterkernel.studies import sweeps
from binaries import mains

try:
  import ray  # pylint: disable=g-import-not-at-top
except ImportError:
  ray = None

_SKIP = ("Ray is not installed: pip install -e '.[ray]' to run these tests")


@dataclasses.dataclass(frozen=True)
class _Config(runner.StudyConfig):
  FINGERPRINT_IGNORES = ('num_runs', 'points')
  points: tuple = (1, 2)
  num_runs: int = 2
  # A file path: the first task to see it missing creates it and kills its
  # own worker process (as an OOM killer or a preemption would).
  crash_marker: str = ''


def _key(point, run):
  return f'toy_p{point}_run{run}'


def _points(config):
  return config.points


def _run_once(config, context, unit, log):
  del context, log
  if config.crash_marker and unit.run == 1 and not os.path.exists(
      config.crash_marker):
    with open(config.crash_marker, 'w') as f:
      f.write(str(os.getpid()))
    os._exit(1)  # pylint: disable=protected-access
  return [{'key': _key(p, unit.run), 'family': 'toy', 'point_id': f'p={p}',
           'point': {'family': 'toy', 'p': p}, 'run': unit.run,
           'config_fingerprint': config.fingerprint(),
           'metrics': {'value': p * 10.0 + unit.run,
                       'worker_pid': float(os.getpid())}}
          for p in unit.points]


_STUDY = runner.Study(family='toy', points=_points, record_key=_key,
                      run_once=_run_once)


def _quiet(message):
  del message


def _values(directory):
  result_store = store.ResultStore(directory)
  return {k: result_store.get(k)['metrics']['value']
          for k in result_store.keys()}


@absltest.skipIf(ray is None, _SKIP)
class RayExecutorTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    # Workers unpickle this module's study functions by value (pytest
    # imports it under a name the workers could not import).
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    path = os.pathsep.join(p for p in (os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), os.environ.get('PYTHONPATH')) if p)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             runtime_env={'env_vars': {'PYTHONPATH': path,
                                       'TF_CPP_MIN_LOG_LEVEL': '2'}})

  @classmethod
  def tearDownClass(cls):
    ray.shutdown()
    super().tearDownClass()

  def test_toy_records_equal_local_and_run_in_workers(self):
    local_dir, ray_dir = tempfile.mkdtemp(), tempfile.mkdtemp()
    runner.run(_STUDY, _Config(), local_dir, _quiet)
    executor = ray_executor.ray_executor(log=_quiet)
    counts = runner.execute(_STUDY, _Config(),
                            store.ResultStore(ray_dir), _quiet,
                            executor)
    self.assertEqual(counts, {'written': 4, 'skipped': 0, 'busy': 0})
    self.assertEqual(_values(ray_dir), _values(local_dir))
    pids = {store.ResultStore(ray_dir).get(k)['metrics'][
        'worker_pid'] for k in store.ResultStore(ray_dir).keys()}
    self.assertNotIn(float(os.getpid()), pids)  # Ran in Ray workers.

  def test_killed_worker_is_retried_without_duplicate(self):
    directory = tempfile.mkdtemp()
    marker = os.path.join(tempfile.mkdtemp(), 'crashed')
    config = _Config(crash_marker=marker)
    counts = runner.execute(_STUDY, config, store.ResultStore(directory),
                            _quiet, ray_executor.ray_executor(log=_quiet))
    self.assertTrue(os.path.exists(marker))  # A worker did die...
    self.assertEqual(counts['written'], 4)  # ...and its unit was rerun once.
    self.assertLen([f for f in os.listdir(store.ResultStore(
        directory).records_dir) if f.endswith('.json')], 4)
    self.assertEqual(_values(directory), {
        'toy_p1_run0': 10.0, 'toy_p2_run0': 20.0, 'toy_p1_run1': 11.0,
        'toy_p2_run1': 21.0})

  def test_no_retries_means_the_lost_unit_fails_the_run(self):
    directory = tempfile.mkdtemp()
    config = _Config(crash_marker=os.path.join(tempfile.mkdtemp(), 'x'))
    with self.assertRaises(Exception):
      runner.execute(_STUDY, config, store.ResultStore(directory), _quiet,
                     ray_executor.ray_executor(max_retries=0, log=_quiet))
    # Run 0 may be stored; run 1 (the killed unit) is not.
    self.assertNotIn('toy_p1_run1', store.ResultStore(directory).keys())

  def test_resume_skips_finished_records(self):
    directory = tempfile.mkdtemp()
    result_store = store.ResultStore(directory)
    runner.execute(_STUDY, _Config(num_runs=1), result_store, _quiet)
    executor = ray_executor.ray_executor(max_in_flight=1, log=_quiet)
    counts = runner.execute(_STUDY, _Config(), result_store, _quiet, executor)
    self.assertEqual(counts, {'written': 2, 'skipped': 2, 'busy': 0})
    self.assertLen(result_store.keys(), 4)

  def test_sweep_records_bit_equal_to_local(self):
    sweep = sweeps.Sweep(
        family='epochs', tasks=('digits_3v8',),
        architectures=('fully_connected',), epochs=(0, 1),
        base=after_kernel.ExperimentConfig(
            train_subset=60, test_subset=40,
            num_translations=10, num_zooms=10, num_swaps=10,
            num_rotations=10, ker_alignment_sample_size=10,
            effective_rank_sample_size=10, svm_max_iterations=2000,
            num_runs=2))
    self.assertEqual(sweep.num_records(), 4)
    local_store = store.ResultStore(tempfile.mkdtemp())
    ray_store = store.ResultStore(tempfile.mkdtemp())
    sweeps.run_sweep(sweep, local_store, log=_quiet)
    counts = sweeps.run_sweep(sweep, ray_store, log=_quiet,
                              executor=ray_executor.ray_executor(log=_quiet))
    self.assertEqual(counts['written'], 4)
    self.assertEqual(sorted(ray_store.keys()), sorted(local_store.keys()))
    for key in local_store.keys():
      self.assertEqual(ray_store.get(key)['metrics'],
                       local_store.get(key)['metrics'], key)
    # Resumed: nothing left to run.
    again = sweeps.run_sweep(sweep, ray_store, log=_quiet,
                             executor=ray_executor.ray_executor(log=_quiet))
    self.assertEqual((again['written'], again['skipped']), (0, 4))


class WithoutRayTest(absltest.TestCase):

  def test_missing_ray_is_one_install_line(self):
    executor = ray_executor.ray_executor()
    with mock.patch.dict(sys.modules, {'ray': None}):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  r"pip install -e '\.\[ray\]'"):
        list(executor([runner.WorkUnit(0, (1,))], _run_once))

  def test_bad_resources_and_executor_names(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'ray_num_cpus'):
      ray_executor.ray_executor(num_cpus_per_task=0)
    with self.assertRaisesRegex(errors.AfterKernelError, 'ray_num_gpus'):
      ray_executor.ray_executor(num_gpus_per_task=-1)
    with self.assertRaisesRegex(errors.AfterKernelError, '--executor'):
      ray_executor.from_flags('dask', None, 1, 0)
    self.assertIs(ray_executor.from_flags('local', None, 1, 0),
                  runner.local_executor)

  def test_flags_default_to_local_without_importing_ray(self):
    values = absl_flags.FlagValues()
    executor_flags = mains.ExecutorFlags(values)
    values(['prog'])
    self.assertIs(executor_flags.executor(), runner.local_executor)
    values(['prog', '--executor=ray', '--ray_num_cpus=2'])
    self.assertTrue(callable(executor_flags.executor()))
    # A sweep binary with its default flags never imports Ray.
    code = ('import sys; from binaries import sweep_epochs; '
            "from afterkernel.studies import ray_executor; "
            "assert 'ray' not in sys.modules, 'ray imported'")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, '-c', code], cwd=root, check=True,
                   env=dict(os.environ, PYTHONPATH=root))

  def test_capacity_follows_cpus_and_gpus(self):
    self.assertEqual(ray_executor._capacity({'CPU': 8.0}, 2, 0), 4)
    self.assertEqual(ray_executor._capacity({'CPU': 8.0, 'GPU': 2.0}, 1, 1),
                     2)
    self.assertEqual(ray_executor._capacity({'CPU': 1.0}, 4, 0), 1)


if __name__ == '__main__':
  absltest.main()
