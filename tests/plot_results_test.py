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
    process = _run(f'--store_dir={directory}',
                   '--figures=fig04,9,fig15,lr_epochs_to_target')
    self.assertEqual(process.returncode, 0, process.stderr)
    figures = os.path.join(directory, 'figures')
    self.assertEqual(sorted(os.listdir(figures)), sorted(
        f'{name}.{fmt}' for name in (
            'fig04_swap_invariance_vs_epochs', 'fig09_lr_svm_error',
            'fig15_nn_error_vs_parameters', 'lr_epochs_to_target')
        for fmt in ('png', 'pdf')))
    self.assertIn('4 figures in', process.stdout)
    self.assertTrue(os.path.exists(os.path.join(directory, store.SUMMARY_CSV)))

    # A store with only the epochs family: by default the other figures are
    # skipped with a note; asked for by name, they are an error.
    only_epochs = tempfile.mkdtemp()
    result_store = store.ResultStore(only_epochs)
    for record in store_fixture.fixture_records():
      if record['family'] == 'epochs':
        result_store.put(record)
    process = _run(f'--store_dir={only_epochs}', '--formats=png',
                   f'--figure_dir={only_epochs}/out')
    self.assertEqual(process.returncode, 0, process.stderr)
    self.assertIn('fig01_svm_error_vs_epochs.png',
                  os.listdir(os.path.join(only_epochs, 'out')))
    self.assertIn("skipped fig14_lr_invariances_with_and_without_augmentation"
                  ": no records of the 'learning_rate' family", process.stdout)
    self.assertIn("skipped fig15_nn_error_vs_parameters: no records of the "
                  "'width' family; run python -m binaries.sweep_width",
                  process.stdout)
    process = _run(f'--store_dir={only_epochs}', '--formats=png',
                   f'--figure_dir={only_epochs}/named', '--figures=fig01,15')
    self.assertEqual(process.returncode, 2)
    self.assertIn("cannot draw fig15_nn_error_vs_parameters: no records of "
                  "the 'width' family", process.stderr)
    self.assertEqual(os.listdir(os.path.join(only_epochs, 'named')),
                     ['fig01_svm_error_vs_epochs.png'])

if __name__ == '__main__':
  absltest.main()
