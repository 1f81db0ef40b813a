"""Smoke, resume and bad-input tests of binaries/second_order.py."""

import contextlib
import io
import os
import subprocess
import sys
import tempfile

from absl import flags
from absl.testing import absltest

from afterkernel.studies import store
from binaries import second_order
import binary_flags

FLAGS = flags.FLAGS
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_TINY_FLAGS = ('--preset=tiny', '--num_train=40', '--num_test=30',
               '--width=8', '--epochs=1', '--model_kinds=network,h_full')


def _run_main(*argv):
  """Runs the binary's main in-process; returns (code, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = binary_flags.run_main(second_order, argv)
  return code, out.getvalue(), err.getvalue()


class MainTest(absltest.TestCase):

  def test_tiny_run_prints_table_and_resumes(self):
    directory = self.enter_context(tempfile.TemporaryDirectory())
    code, out, _ = _run_main(*_TINY_FLAGS, f'--output_dir={directory}')
    self.assertEqual(code, 0)
    self.assertIn('H_full', out)
    self.assertIn('network', out)
    self.assertLen(store.ResultStore(directory).keys(), 2)
    self.assertTrue(os.path.exists(os.path.join(
        directory, 'second_order_test_error.png')))
    code, out, _ = _run_main(*_TINY_FLAGS, f'--output_dir={directory}')
    self.assertEqual(code, 0)
    self.assertIn('skipped', out)

  def test_bad_inputs_return_2_with_one_line(self):
    directory = self.enter_context(tempfile.TemporaryDirectory())
    for bad in ('--preset=huge', '--model_kinds=network,cubic', '--epochs=0',
                '--loss=hinge', '--architecture=resnet',
                '--expansion_point=final', '--num_train_grid=10,10',
                '--zero_errors=floor'):
      code, _, err = _run_main(*_TINY_FLAGS, bad, f'--output_dir={directory}')
      self.assertEqual(code, 2, bad)
      self.assertLen(err.strip().splitlines(), 1, err)
      self.assertTrue(err.startswith('error: '), err)
    code, _, err = _run_main(*_TINY_FLAGS)
    self.assertEqual(code, 2)
    self.assertIn('--output_dir is required', err)


class CommandLineTest(absltest.TestCase):

  def test_flag_parse_error_is_one_line_and_exit_code_2(self):
    process = subprocess.run(
        [sys.executable, '-m', 'binaries.second_order', '--epochs=many',
         f'--output_dir={tempfile.mkdtemp()}'],
        cwd=_REPO, capture_output=True, text=True, timeout=300, check=False)
    self.assertEqual(process.returncode, 2, process.stderr)
    error_lines = [l for l in process.stderr.splitlines()
                   if l.startswith('error:')]
    self.assertLen(error_lines, 1, process.stderr)
    self.assertIn('--epochs', error_lines[0])
    self.assertNotIn('Traceback', process.stderr)


if __name__ == '__main__':
  absltest.main()
