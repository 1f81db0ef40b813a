"""Tests of binaries/sweep_epochs.py, run as a user runs it (subprocess).

Run as subprocesses because the kill-and-resume test needs a process to
kill, and the others check the exit status and output a user sees.
"""

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from absl.testing import absltest

from afterkernel.studies import claims
from afterkernel.studies import store

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY_FLAGS = ('--tasks=digits_3v8', '--architectures=fully_connected',
               '--train_subset=40', '--test_subset=20', '--num_translations=5',
               '--num_zooms=5', '--num_swaps=5', '--num_rotations=5',
               '--ker_alignment_sample_size=5',
               '--effective_rank_sample_size=5', '--svm_max_iterations=2000')


def _command(*flags):
  return [sys.executable, '-m', 'binaries.sweep_epochs', *_TINY_FLAGS, *flags]


def _run(*flags):
  return subprocess.run(_command(*flags), cwd=_REPO, capture_output=True,
                        text=True, timeout=600, check=False)


class SweepEpochsTest(absltest.TestCase):

  def test_tiny_sweep_writes_records_summary_and_table(self):
    directory = tempfile.mkdtemp()
    process = _run('--epochs=0,2', '--num_runs=2', '--augmentation=false,true',
                   f'--store_dir={directory}')
    self.assertEqual(process.returncode, 0, process.stderr)
    records = store.ResultStore(directory).records()
    self.assertLen(records, 8)  # 2 augmentation x 2 epochs x 2 runs
    self.assertEqual(
        sorted({(r['run'], r['checkpoint'], r['point']['use_augmentation'])
                for r in records}),
        [(run, epoch, aug) for run in (0, 1) for epoch in (0, 2)
         for aug in (False, True)])
    self.assertTrue(all(r['shrink']['train_subset'] == 40 for r in records))
    self.assertRegex(process.stdout, r'8 records written, 0 already there')
    self.assertRegex(process.stdout, r'epochs\s+.*\b2\s+2\s+0\.\d+±')
    with open(os.path.join(directory, store.SUMMARY_JSON)) as f:
      entries = json.load(f)
    self.assertLen(entries, 4)
    self.assertTrue(all(e['metrics']['svm_error']['n'] == 2 for e in entries))
    with open(os.path.join(directory, store.SUMMARY_CSV)) as f:
      self.assertTrue(f.readline().startswith('family,task,'))

  def test_bad_flag_is_one_line_and_exit_code_2(self):
    directory = os.path.join(tempfile.mkdtemp(), 'never')
    # One subprocess per case costs a TensorFlow import; one case suffices
    # to check the reporting path (all flag errors share it).
    for bad, message in (('--epochs=0,x', 'error: --epochs takes integers'),):
      with self.subTest(bad):
        process = _run(bad, f'--store_dir={directory}')
        self.assertEqual(process.returncode, 2, process.stderr)
        errors = [l for l in process.stderr.splitlines()
                  if l.startswith('error:')]
        self.assertLen(errors, 1)
        self.assertStartsWith(errors[0], message)
        self.assertNotIn('Traceback', process.stderr)
    self.assertFalse(os.path.exists(directory))


class KillAndResumeTest(absltest.TestCase):

  def test_sigkill_midway_then_rerun_loses_and_duplicates_nothing(self):
    directory = tempfile.mkdtemp()
    flags = ('--epochs=0,1,2,3,4,5', '--num_runs=2',
             f'--store_dir={directory}')
    records_dir = os.path.join(directory, store.RECORDS_DIR)
    process = subprocess.Popen(_command(*flags), cwd=_REPO,
                               stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
      deadline = time.time() + 300
      while time.time() < deadline and process.poll() is None:
        if store.ResultStore(directory).keys():
          break
        time.sleep(0.02)
      self.assertIsNone(process.poll(), 'the sweep ended before being killed')
      process.send_signal(signal.SIGKILL)
      process.wait(timeout=60)
    finally:
      if process.poll() is None:
        process.kill()
    self.assertEqual(process.returncode, -signal.SIGKILL)
    survivors = store.ResultStore(directory).keys()
    self.assertBetween(len(survivors), 1, 11)  # killed midway
    # Every finished record is complete JSON; at most an orphaned temporary
    # dot-file is left, which readers ignore, and the claims folder (the
    # killed process's lock on its unit died with it).
    before = {}
    for key in survivors:
      before[key] = open(os.path.join(records_dir, key + '.json')).read()
      self.assertIn('svm_error', json.loads(before[key])['metrics'])
    stray = [n for n in os.listdir(records_dir)
             if not n.endswith('.json') and n != claims.CLAIMS_DIR]
    self.assertTrue(all(n.startswith('.') and n.endswith('.tmp')
                        for n in stray), stray)

    resumed = _run(*flags)
    self.assertEqual(resumed.returncode, 0, resumed.stderr)
    self.assertIn(f'{12 - len(survivors)} records written, '
                  f'{len(survivors)} already there', resumed.stdout)
    records = store.ResultStore(directory).records()
    self.assertEqual(sorted((r['run'], r['checkpoint']) for r in records),
                     [(run, epoch) for run in (0, 1) for epoch in range(6)])
    self.assertLen({r['key'] for r in records}, 12)
    for key, text in before.items():  # finished records were not redone
      self.assertEqual(
          open(os.path.join(records_dir, key + '.json')).read(), text)


if __name__ == '__main__':
  absltest.main()
