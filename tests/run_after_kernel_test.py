"""Smoke and bad-input tests of binaries/run_after_kernel.py."""

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from afterkernel.studies import after_kernel
from afterkernel.studies import store
from afterkernel.studies import summary
from binaries import run_after_kernel
import binary_flags

FLAGS = flags.FLAGS
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY_FLAGS = ('--dataset=digits', '--train_subset=40', '--test_subset=20',
               '--nn_architecture=fully_connected', '--num_layers=1',
               '--num_parameters=2000', '--max_num_epochs=1', '--num_runs=1',
               '--num_translations=5', '--num_zooms=5', '--num_swaps=5',
               '--num_rotations=5', '--ker_alignment_sample_size=5',
               '--effective_rank_sample_size=5')


def _run_main(*argv):
  """Parses `argv` as the binary's flags and runs its main in-process."""
  return binary_flags.run_main(run_after_kernel, argv)


def _folder_contents(directory):
  """{relative path: text} of every file under `directory` (records/ too)."""
  contents = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path) as f:
        contents[os.path.relpath(path, directory)] = f.read()
  return contents


class FlagsTest(absltest.TestCase):

  def test_booleans_are_real_booleans(self):
    # The original's type=bool flags read "--use_augmentation=False" as True.
    with flagsaver.flagsaver():
      FLAGS.unparse_flags()
      FLAGS(['prog', '--use_augmentation=False', '--train_linear_model=false',
             '--output_dir=x'])
      config = run_after_kernel.config_from_flags()
    self.assertFalse(config.use_augmentation)
    self.assertFalse(config.train_linear_model)
    with flagsaver.flagsaver():
      FLAGS.unparse_flags()
      FLAGS(['prog', '--use_augmentation', '--nouse_conjugate_kernel',
             '--output_dir=x'])
      config = run_after_kernel.config_from_flags()
    self.assertTrue(config.use_augmentation)
    self.assertFalse(config.use_conjugate_kernel)

  def test_flags_not_given_keep_experiment_config_defaults(self):
    with flagsaver.flagsaver():
      FLAGS.unparse_flags()
      FLAGS(['prog'])
      self.assertEqual(run_after_kernel.config_from_flags(),
                       after_kernel.ExperimentConfig())
      FLAGS.unparse_flags()
      FLAGS(['prog', '--num_parameters=5000', '--num_runs=1',
             '--dataset=mnist', '--learning_rate=0.1'])
      self.assertEqual(run_after_kernel.config_from_flags(),
                       after_kernel.ExperimentConfig(
                           num_parameters=5000, num_runs=1, dataset='mnist',
                           learning_rate=0.1))

  def test_bad_flag_values_are_status_2(self):
    for bad in ('--dataset=imagenet', '--num_parameters=1,2',
                '--use_augmentation=maybe', '--num_runs=x', 'extra'):
      with self.subTest(bad):
        self.assertEqual(_run_main(bad, '--output_dir=/nonexistent/x'), 2)


class MainTest(absltest.TestCase):

  def test_tiny_run_writes_results(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY_FLAGS, f'--output_dir={directory}'), 0)
    records = store.ResultStore(directory).records()
    self.assertLen(records, 1)
    # The count actually built (FC 64-30-1 on 8x8 digits), near the flag's.
    self.assertEqual(records[0]['metrics']['parameter_count'],
                     64 * 30 + 30 + 30 + 1)
    with open(os.path.join(directory, summary.SUMMARY_FILE)) as f:
      self.assertIn('ak_trans_inv', json.load(f)[0]['metrics'])

  def test_bad_inputs_return_2_and_keep_existing_results(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY_FLAGS, f'--output_dir={directory}'), 0)
    before = _folder_contents(directory)
    for bad in ('--plus_class=3', '--minus_class=11', '--num_runs=0',
                '--num_parameters=10',
                '--num_swaps=-2', '--num_zooms=1000', '--seed=3',
                '--dataset=mnist --data_dir=/nonexistent'):
      with self.subTest(bad):
        self.assertEqual(
            _run_main(*_TINY_FLAGS, *bad.split(), f'--output_dir={directory}'),
            2)
    after = _folder_contents(directory)
    self.assertEqual(before, after)


class CommandLineTest(absltest.TestCase):

  def test_error_is_one_line_and_exit_code_2(self):
    process = subprocess.run(
        [sys.executable, '-m', 'binaries.run_after_kernel', *_TINY_FLAGS,
         '--plus_class=3', f'--output_dir={tempfile.mkdtemp()}'],
        cwd=_REPO, capture_output=True, text=True, timeout=300, check=False)
    self.assertEqual(process.returncode, 2, process.stderr)
    error_lines = [l for l in process.stderr.splitlines()
                   if l.startswith('error:')]
    self.assertEqual(error_lines, [
        'error: plus_class and minus_class are both 3; choose two different '
        'classes'])
    self.assertNotIn('Traceback', process.stderr)

  def test_prints_table(self):
    directory = tempfile.mkdtemp()
    process = subprocess.run(
        [sys.executable, '-m', 'binaries.run_after_kernel', *_TINY_FLAGS,
         f'--output_dir={directory}'],
        cwd=_REPO, capture_output=True, text=True, timeout=300, check=False)
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertRegex(process.stdout, r'SVM test error\s+\d\.\d+\s+\d\.\d+')
    self.assertIn('nn_error', process.stdout)
    # Each SVM error is printed with whether its solve converged.
    self.assertRegex(process.stdout, r'SVM converged \(share\)\s+1\.0000')

  def test_ctrl_c_is_one_line_exit_130_and_keeps_the_records(self):
    directory = tempfile.mkdtemp()
    command = [sys.executable, '-m', 'binaries.run_after_kernel',
               *_TINY_FLAGS, '--num_runs=20',
               f'--output_dir={directory}']
    process = subprocess.Popen(command, cwd=_REPO, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    records = os.path.join(directory, store.RECORDS_DIR)
    deadline = time.time() + 240
    while not (os.path.isdir(records) and any(
        n.endswith('.json') for n in os.listdir(records))):
      self.assertLess(time.time(), deadline, 'no record was written')
      self.assertIsNone(process.poll(), 'the run ended early')
      time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    del out
    self.assertEqual(process.returncode, 130, err)
    self.assertNotIn('Traceback', err)
    saved = len(store.ResultStore(directory).keys())
    self.assertGreaterEqual(saved, 1)
    self.assertEqual(
        [l for l in err.splitlines() if l.startswith('interrupted')],
        [f'interrupted: {saved} record(s) saved in {directory}; the same '
         'command resumes from there'])

  def test_file_size_limit_is_one_line_and_keeps_what_was_written(self):
    directory = tempfile.mkdtemp()

    def limit_file_size():
      # config.json fits; a larger result file does not.
      resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))

    process = subprocess.run(
        [sys.executable, '-m', 'binaries.run_after_kernel', *_TINY_FLAGS,
         f'--output_dir={directory}'], cwd=_REPO, capture_output=True,
        text=True, timeout=300, check=False, preexec_fn=limit_file_size)
    # Without ignoring SIGXFSZ the kernel would kill the process (-25).
    self.assertEqual(process.returncode, 2, process.stderr)
    self.assertNotIn('Traceback', process.stderr)
    errors_ = [l for l in process.stderr.splitlines()
               if l.startswith('error:')]
    self.assertLen(errors_, 1)
    self.assertRegex(errors_[0], r'could not write .*: File too large')
    # What was written is whole: config.json and any record parse.
    with open(os.path.join(directory, 'config.json')) as f:
      self.assertIn('fingerprint', json.load(f))
    for record in store.ResultStore(directory).records():
      self.assertIn('metrics', record)


if __name__ == '__main__':
  absltest.main()
