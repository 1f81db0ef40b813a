"""Tests of binaries/kernel_dynamics.py: the tiny preset, resume, bad input."""

import contextlib
import io
import os
import tempfile

from absl import flags
from absl.testing import absltest

from afterkernel.studies import kernel_dynamics as study
from afterkernel.studies import store
from binaries import kernel_dynamics
import binary_flags

FLAGS = flags.FLAGS


def _run_main(*argv):
  return binary_flags.run_main(kernel_dynamics, argv)


class MainTest(absltest.TestCase):

  def test_tiny_preset_runs_end_to_end_and_resumes(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main('--preset=tiny', f'--output_dir={directory}'),
                     0)
    config = study.PRESETS['tiny']
    records = store.ResultStore(directory).records()
    self.assertLen(records, len(config.snapshot_steps()) * config.num_runs)
    self.assertEqual(sorted({r['point']['step'] for r in records}),
                     config.snapshot_steps())
    for record in records:
      self.assertBetween(record['metrics']['kernel_test_error'], 0.0, 1.0)
      self.assertBetween(record['metrics']['network_test_error'], 0.0, 1.0)
    for name in ('kernel_dynamics.png', 'kernel_dynamics.pdf'):
      self.assertTrue(os.path.exists(os.path.join(directory, name)))
    before = {r['key']: r['timings'] for r in records}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
      self.assertEqual(_run_main('--preset=tiny',
                                 f'--output_dir={directory}'), 0)
    self.assertIn('already in', stdout.getvalue())
    self.assertIn('K^t test error', stdout.getvalue())
    self.assertEqual(before, {r['key']: r['timings'] for r in
                              store.ResultStore(directory).records()})

  def test_ridge_fits_record_the_chosen_ridge(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main('--preset=tiny', '--kernel_method=ridge',
                               '--num_runs=1', '--width=16',
                               '--num_train=40', '--train_steps=5',
                               '--num_snapshots=2',
                               f'--output_dir={directory}'), 0)
    records = store.ResultStore(directory).records()
    self.assertLen(records, 3)  # Steps 0, 1, 5.
    self.assertGreater(records[0]['metrics']['kernel_ridge'], 0)

  def test_bad_input_is_one_line_error_and_exit_2(self):
    directory = tempfile.mkdtemp()
    for bad in ('--num_snapshots=0', '--num_train=100000',
                '--kernel_method=knn', '--batch_size=0'):
      with self.subTest(bad):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
          code = _run_main('--preset=tiny', bad, f'--output_dir={directory}')
        self.assertEqual(code, 2)
        self.assertRegex(stderr.getvalue(), r'^error: [^\n]+\n$')
    with contextlib.redirect_stderr(io.StringIO()):
      self.assertEqual(_run_main('--preset=tiny'), 2)  # No --output_dir.


if __name__ == '__main__':
  absltest.main()
