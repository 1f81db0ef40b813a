"""Tests of binaries/after_kernel_vs_m.py: tiny runs, resume, bad input."""

import contextlib
import io
import os
import tempfile

from absl import flags
from absl.testing import absltest

from afterkernel.studies import store
from binaries import after_kernel_vs_m
import binary_flags

FLAGS = flags.FLAGS


_TINY = ('--preset=tiny', '--width=16', '--num_test=60', '--num_runs=1',
         '--train_sizes=0,40', '--fit_sizes=10,20,30',
         '--reference_fit_size=20', '--epochs=1', '--fit_steps=15',
         '--num_bootstrap=10')


def _run_main(*argv):
  return binary_flags.run_main(after_kernel_vs_m, argv)


class MainTest(absltest.TestCase):

  def test_fresh_run_writes_every_m_n_pair_and_resumes(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY, '--fit_examples=fresh',
                               f'--output_dir={directory}'), 0)
    records = store.ResultStore(directory).records()
    self.assertEqual(sorted((r['point']['train_subset'],
                            r['point']['fit_size']) for r in records),
                     [(0, 10), (0, 20), (0, 30), (40, 10), (40, 20),
                      (40, 30)])
    trained = [r for r in records if r['point']['train_subset'] == 40]
    # One epoch of 40 examples in batches of 32 (the tiny preset) = 2 steps.
    self.assertEqual(trained[0]['metrics']['train_steps'], 2)
    self.assertIn('network_test_error', trained[0]['metrics'])
    for name in ('after_kernel_vs_m.png', 'after_kernel_vs_m.pdf',
                 'fits.json', 'summary.csv'):
      self.assertTrue(os.path.exists(os.path.join(directory, name)))
    before = {r['key']: r['timings'] for r in records}
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
      self.assertEqual(_run_main(*_TINY, '--fit_examples=fresh',
                                 f'--output_dir={directory}'), 0)
    self.assertIn('skipped', stdout.getvalue())
    self.assertIn('K_40', stdout.getvalue())
    self.assertEqual(before, {r['key']: r['timings'] for r in
                              store.ResultStore(directory).records()})
    # The same folder with other settings is refused.
    with contextlib.redirect_stderr(io.StringIO()):
      self.assertEqual(_run_main(*_TINY, '--fit_examples=subset',
                                 f'--output_dir={directory}'), 2)

  def test_bad_input_is_one_line_error_and_exit_2(self):
    directory = tempfile.mkdtemp()
    for bad in ('--reference_fit_size=7', '--fit_examples=old',
                '--train_sizes=0,-5', '--curve_train_sizes=3',
                '--epochs=-1'):
      with self.subTest(bad):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
          code = _run_main(*_TINY, bad, f'--output_dir={directory}')
        self.assertEqual(code, 2)
        self.assertRegex(stderr.getvalue(), r'^error: [^\n]+\n$')
    with contextlib.redirect_stderr(io.StringIO()):
      self.assertEqual(_run_main(*_TINY), 2)  # No --output_dir.


if __name__ == '__main__':
  absltest.main()
