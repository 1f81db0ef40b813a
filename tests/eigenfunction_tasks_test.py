"""Smoke, resume and bad-input tests of binaries/eigenfunction_tasks.py."""

import contextlib
import io
import json
import os
import tempfile

from absl import flags
from absl.testing import absltest

from afterkernel.studies import eigentasks
from afterkernel.studies import store
from binaries import eigenfunction_tasks as binary
import binary_flags

FLAGS = flags.FLAGS

_TINY_FLAGS = ('--preset=tiny', '--num_train=30', '--num_test=10',
               '--eigen_indices=1,4', '--epochs=1', '--width=8')


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
    for column in ('alpha init', 'maj test', 'nn bal', 'lin bal'):
      self.assertIn(column, out)
    self.assertLen(store.ResultStore(directory).keys(), 2)
    with open(os.path.join(directory, 'config.json'), encoding='utf-8') as f:
      self.assertTrue(json.load(f)['config']['standardize_inputs'])
    self.assertTrue(os.path.exists(os.path.join(
        directory, f'{eigentasks.FIGURE_NAME}.pdf')))
    code, out, _ = _run_main(*_TINY_FLAGS, f'--output_dir={directory}')
    self.assertEqual(code, 0)
    self.assertIn('skipped', out)
    self.assertNotIn('j =', out)  # no task was retrained
    # Raw inputs are another configuration: refused, nothing mixed.
    code, out, err = _run_main(*_TINY_FLAGS, '--nostandardize_inputs',
                               f'--output_dir={directory}')
    self.assertEqual(code, 2)
    self.assertIn('different configuration', err)

  def test_bad_flags_exit_2_with_one_line(self):
    directory = tempfile.mkdtemp()
    for bad in (('--preset=huge',), ('--eigen_indices=0',),
                ('--eigen_indices=x',), ('--eigen_indices=31',),
                ('--loss=hinge',), ('--momentum=1.5',), ()):
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
