"""Tests of afterkernel.studies.claims and of processes sharing a folder.

Two processes that run the same study into one folder must never run (or
store) a run twice, and a holder killed with SIGKILL must not block a
rerun. The processes here are real subprocesses (`_worker` below).
"""

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest

from afterkernel.studies import claims
from afterkernel.studies import runner
from afterkernel.studies import store

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@dataclasses.dataclass(frozen=True)
class _Config(runner.StudyConfig):
  FINGERPRINT_IGNORES = ('num_runs',)
  num_runs: int = 6
  seconds: float = 0.4


def _run_once(config, context, unit, log):
  del context, log
  # Every computation is logged, so the test can count them.
  with open(os.environ['AK_CLAIMS_LOG'], 'a', encoding='utf-8') as f:
    f.write(f'{os.getpid()} {unit.run}\n')
  time.sleep(config.seconds)
  return [{'key': f'toy_run{unit.run}', 'family': 'toy', 'point_id': 'p',
           'point': {'family': 'toy'}, 'run': unit.run,
           'metrics': {'value': float(unit.run)}}]


_STUDY = runner.Study(family='toy', points=lambda config: ('p',),
                      record_key=lambda point, run: f'toy_run{run}',
                      run_once=_run_once, noun='points')


def _worker(directory: str, seconds: float) -> None:
  runner.run(_STUDY, _Config(seconds=seconds), directory, log=print)


def _spawn(directory: str, log_path: str, seconds: float = 0.4):
  code = ('import sys; sys.path.insert(0, "tests"); import claims_test; '
          f'claims_test._worker({directory!r}, {seconds})')
  env = dict(os.environ, AK_CLAIMS_LOG=log_path, TF_CPP_MIN_LOG_LEVEL='2')
  return subprocess.Popen([sys.executable, '-c', code], cwd=_REPO, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True)


class ClaimTest(absltest.TestCase):

  def test_a_held_claim_is_refused_until_released(self):
    records = tempfile.mkdtemp()
    first = claims.try_claim(records, 'unit')
    self.assertIsNotNone(first)
    self.assertIsNone(claims.try_claim(records, 'unit'))
    self.assertIn(f'pid {os.getpid()}', claims.holder(records, 'unit'))
    self.assertIsNotNone(claims.try_claim(records, 'other'))
    first.release()
    first.release()  # Idempotent.
    with claims.try_claim(records, 'unit') as again:
      self.assertIsNotNone(again)

  def test_folders_made_for_a_claim_go_with_it(self):
    root = tempfile.mkdtemp()
    records = os.path.join(root, 'store', 'records')
    claims.try_claim(records, 'unit').release()
    self.assertEqual(os.listdir(root), [])

  def test_names_differ_by_part(self):
    self.assertNotEqual(claims.claim_name('a', 0), claims.claim_name('a', 1))
    self.assertEqual(claims.claim_name('a', 0), claims.claim_name('a', 0))

  def test_kill_9_of_the_holder_releases_its_claim(self):
    records = tempfile.mkdtemp()
    code = ('import sys, time; sys.path.insert(0, "."); '
            'from afterkernel.studies import claims; '
            f'c = claims.try_claim({records!r}, "unit"); '
            'print("held", flush=True); time.sleep(60)')
    holder = subprocess.Popen([sys.executable, '-c', code], cwd=_REPO,
                              stdout=subprocess.PIPE, text=True)
    try:
      self.assertEqual(holder.stdout.readline().strip(), 'held')
      self.assertIsNone(claims.try_claim(records, 'unit'))
      self.assertIn(f'pid {holder.pid}', claims.holder(records, 'unit'))
    finally:
      holder.send_signal(signal.SIGKILL)
      holder.wait()
      holder.stdout.close()
    claim = claims.try_claim(records, 'unit')
    self.assertIsNotNone(claim)
    claim.release()


class SharedFolderTest(absltest.TestCase):

  def test_two_processes_fill_one_folder_without_running_a_run_twice(self):
    directory = tempfile.mkdtemp()
    log_path = os.path.join(tempfile.mkdtemp(), 'computed.log')
    processes = [_spawn(directory, log_path, seconds=1.0) for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in processes]
    for process, (out, err) in zip(processes, outputs):
      self.assertEqual(process.returncode, 0, err)
    with open(log_path, encoding='utf-8') as f:
      computed = [line.split() for line in f.read().splitlines()]
    runs = sorted(int(run) for _, run in computed)
    self.assertEqual(runs, list(range(6)))  # Each run computed once.
    self.assertEqual(store.ResultStore(directory).keys(),
                     [f'toy_run{r}' for r in range(6)])
    claims_dir = os.path.join(directory, store.RECORDS_DIR, claims.CLAIMS_DIR)
    self.assertEqual(os.listdir(claims_dir) if os.path.isdir(claims_dir)
                     else [], [])  # Every claim was released.

  def test_a_killed_process_leaves_its_run_to_the_next(self):
    directory = tempfile.mkdtemp()
    log_path = os.path.join(tempfile.mkdtemp(), 'computed.log')
    victim = _spawn(directory, log_path, seconds=30.0)
    deadline = time.time() + 120
    while not (os.path.exists(log_path) and os.path.getsize(log_path)):
      self.assertLess(time.time(), deadline, 'the worker never started')
      time.sleep(0.1)
    victim.send_signal(signal.SIGKILL)
    victim.communicate()
    rerun = _spawn(directory, log_path, seconds=0.0)
    out, err = rerun.communicate(timeout=300)
    self.assertEqual(rerun.returncode, 0, err)
    self.assertLen(store.ResultStore(directory).keys(), 6)
    del out


if __name__ == '__main__':
  absltest.main()
