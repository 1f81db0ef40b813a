"""Tests of binaries/plot_results.py on a fixture store (subprocess)."""

import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from afterkernel.studies import store
import store_fixture  # tests/store_fixture.py

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(*flags):
  return subprocess.run(
      [sys.executable, '-m', 'binaries.plot_results', *flags],
      cwd=_REPO, capture_output=True, text=True, timeout=300, check=False)


class PlotResultsTest(absltest.TestCase):

  def test_writes_png_and_pdf_and_notes_skipped_figures(self):
    directory = tempfile.mkdtemp()
    store_fixture.write_fixture_store(directory)
    process = _run(f'--store_dir={directory}', '--figures=fig04,fig09,fig15')
    self.assertEqual(process.returncode, 0, process.stderr)
    figures = os.path.join(directory, 'figures')
    self.assertEqual(sorted(os.listdir(figures)), sorted(
        f'{name}.{fmt}' for name in (
            'fig04_swap_invariance_vs_epochs', 'fig09_lr_svm_error',
            'fig15_width') for fmt in ('png', 'pdf')))
    self.assertIn('3 figures in', process.stdout)
    self.assertTrue(os.path.exists(os.path.join(directory, store.SUMMARY_CSV)))

    # A store with only the epochs family: the other figures are skipped.
    only_epochs = tempfile.mkdtemp()
    result_store = store.ResultStore(only_epochs)
    for record in store_fixture.fixture_records():
      if record['family'] == 'epochs':
        result_store.put(record)
    process = _run(f'--store_dir={only_epochs}', '--formats=png',
                   f'--figure_dir={only_epochs}/out',
                   '--figures=fig01,fig14,fig15')
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertEqual(os.listdir(os.path.join(only_epochs, 'out')),
                     ['fig01_svm_error_vs_epochs.png'])
    self.assertIn("skipped fig14_lr_epochs_to_target: no records of the "
                  "'learning_rate' family", process.stdout)
    self.assertIn("skipped fig15_width: no records of the 'width' family",
                  process.stdout)


if __name__ == '__main__':
  absltest.main()
