"""Smoke, resume and bad-input tests of binaries/kernel_rotation.py."""

import contextlib
import io
import os
import tempfile

from absl import flags
from absl.testing import absltest

from afterkernel.studies import kernel_rotation
from afterkernel.studies import store
from binaries import kernel_rotation as binary
import binary_flags

FLAGS = flags.FLAGS

_TINY_FLAGS = ('--preset=tiny', '--num_train=30', '--num_test=10',
               '--num_kernel_examples=20', '--checkpoint_epochs=0,1',
               '--energy_ks=1,5,20', '--num_eigenfunctions=3')


def _run_main(*argv):
  """Runs main in-process; returns (exit code, stdout, stderr)."""
  out, err = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    code = binary_flags.run_main(binary, argv)
  return code, out.getvalue(), err.getvalue()


class MainTest(absltest.TestCase):

  def test_tiny_run_writes_results_and_resumes(self):
    directory = os.path.join(tempfile.mkdtemp(), 'out')
    code, out, _ = _run_main(*_TINY_FLAGS, f'--output_dir={directory}')
    self.assertEqual(code, 0)
    for column in ('E_20', 's_1', 'S_3', 'lambda_1'):
      self.assertIn(column, out)
    self.assertLen(store.ResultStore(directory).keys(), 2)
    self.assertTrue(os.path.exists(os.path.join(
        directory, f'{kernel_rotation.FIGURE_NAME}.png')))
    code, out, _ = _run_main(*_TINY_FLAGS, f'--output_dir={directory}')
    self.assertEqual(code, 0)
    self.assertIn('skipped', out)
    self.assertNotIn('epoch   1:', out)  # nothing was re-measured

  def test_bad_flags_exit_2_with_one_line(self):
    directory = tempfile.mkdtemp()
    for bad in (('--preset=huge',), ('--checkpoint_epochs=1,2',),
                ('--energy_ks=a,b',), ('--energy_ks=21',),
                ('--num_train=0',), ('--architecture=resnet',), ()):
      argv = _TINY_FLAGS + bad
      if bad:
        argv += (f'--output_dir={directory}',)
      code, out, err = _run_main(*argv)
      self.assertEqual(code, 2, bad)
      self.assertEqual(out, '')
      lines = err.strip().splitlines()
      self.assertLen(lines, 1, err)
      self.assertStartsWith(lines[0], 'error: ')


if __name__ == '__main__':
  absltest.main()
