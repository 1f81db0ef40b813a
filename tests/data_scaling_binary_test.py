"""Tests of binaries/data_scaling.py: tiny runs, resume, bad input -> exit 2."""

import contextlib
import io
import os
import tempfile

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from afterkernel.studies import data_scaling as study
from afterkernel.studies import store
from binaries import data_scaling
import binary_flags

FLAGS = flags.FLAGS


_TINY = ('--preset=tiny', '--width=16', '--num_test=60', '--num_runs=1',
         '--sample_sizes=20,40,80', '--max_steps=20', '--num_bootstrap=10')


def _run_main(*argv):
  return binary_flags.run_main(data_scaling, argv)


class MainTest(absltest.TestCase):

  def test_tiny_run_writes_records_figure_and_resumes(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY, f'--output_dir={directory}'), 0)
    records = store.ResultStore(directory).records()
    self.assertLen(records, 3)
    self.assertEqual(sorted(r['point']['train_subset'] for r in records),
                     [20, 40, 80])
    self.assertEqual(records[0]['config']['width'], 16)  # Flag overrode it.
    for name in ('data_scaling.png', 'data_scaling.pdf', 'fits.json'):
      self.assertTrue(os.path.exists(os.path.join(directory, name)))
    before = {r['key']: r['timings'] for r in records}
    self.assertEqual(_run_main(*_TINY, f'--output_dir={directory}'), 0)
    after = {r['key']: r['timings'] for r in
             store.ResultStore(directory).records()}
    self.assertEqual(before, after)  # Nothing recomputed.

  def test_synthetic_dataset_gets_classes_1_vs_0(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY, '--dataset=synthetic',
                               f'--output_dir={directory}'), 0)
    record = store.ResultStore(directory).records()[0]
    self.assertEqual((record['config']['plus_class'],
                      record['config']['minus_class']), (1, 0))
    self.assertEqual(record['data']['dataset'], 'synthetic')

  def test_bad_input_is_one_line_error_and_exit_2(self):
    directory = tempfile.mkdtemp()
    for bad in ('--momentum=2', '--sample_sizes=20,x', '--kernel_method=knn',
                '--sample_sizes=20,40', '--dataset=imagenet',
                '--zero_errors=floor'):
      with self.subTest(bad):
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr):
          code = _run_main(*_TINY, bad, f'--output_dir={directory}')
        self.assertEqual(code, 2)
        self.assertRegex(stderr.getvalue(), r'^error: [^\n]+\n$')
    with contextlib.redirect_stderr(io.StringIO()):
      self.assertEqual(_run_main(*_TINY), 2)  # No --output_dir.
    self.assertFalse(os.path.exists(os.path.join(directory, 'records')))

  def test_config_from_flags_applies_only_set_flags(self):
    with flagsaver.flagsaver():
      FLAGS.unparse_flags()
      FLAGS(['data_scaling', '--preset=cpu', '--max_steps=9'])
      config = data_scaling.STUDY.config(data_scaling.mains.scaling_classes)
    expected = study.PRESETS['cpu']
    self.assertEqual(config.max_steps, 9)
    self.assertEqual(config.sample_sizes, expected.sample_sizes)
    self.assertEqual(config.learning_rate, expected.learning_rate)


if __name__ == '__main__':
  absltest.main()
