"""Tests of afterkernel.studies.eigentasks_report: the Fig. 3 table and the
Fig. 3 / Fig. 7 figures of the eigenfunction-task study."""

import os
import tempfile

from absl.testing import absltest

from afterkernel.studies import eigentasks_report


def _stats(value):
  return {'mean': value, 'std': None, 'ci95': None, 'n': 1}


def _entry(j, **metrics):
  return {'point': {'eigen_index': j}, 'runs': [0],
          'metrics': {k: _stats(v) for k, v in metrics.items()}}


_TRAINING = dict(nn_test_accuracy=0.9, lin_test_accuracy=0.8,
                 nn_balanced_accuracy=0.9, lin_balanced_accuracy=0.8,
                 majority_rate_test=0.5, alpha_init=2.0, alpha_after=3.0,
                 nn_weight_l2=1.5, lin_weight_l2=0.5, nn_weight_cosine=0.01,
                 lin_weight_cosine=0.002)


class ReportTest(absltest.TestCase):

  def test_alpha_spectra_parse_and_sort(self):
    entry = _entry(2, alpha_e5_j2=4.0, alpha_e5_j1=3.0, alpha_e0_j1=1.0,
                   alpha_e0_j2=None, alpha_init=9.0)
    spectra = eigentasks_report.alpha_spectra(entry)
    self.assertEqual(list(spectra), [0, 5])
    self.assertEqual(list(spectra[5][0]), [1, 2])
    self.assertEqual(list(spectra[5][1]), [3.0, 4.0])
    self.assertEqual(list(spectra[0][0]), [1])

  def test_training_table(self):
    entries = [_entry(1, nn_steps_to_target=40, lin_steps_to_target=None,
                      **_TRAINING),
               _entry(10, nn_steps_to_target=80, lin_steps_to_target=120,
                      **_TRAINING)]
    lines = eigentasks_report.format_training_table(entries).splitlines()
    self.assertIn('nn steps', lines[0])
    self.assertIn('40', lines[1])
    self.assertIn('120', lines[2])
    self.assertIn('1.5', lines[1])

  def test_figures_only_when_measured(self):
    directory = tempfile.mkdtemp()
    plain = [_entry(1, **{k: v for k, v in _TRAINING.items()
                          if 'weight' not in k})]
    paths = eigentasks_report.plot_all(plain, directory)
    self.assertEqual(sorted(os.path.basename(p) for p in paths),
                     ['eigentask_accuracy.pdf', 'eigentask_accuracy.png'])
    full = [_entry(1, nn_steps_to_target=40, lin_steps_to_target=60,
                   alpha_e0_j1=1.0, alpha_e0_j2=0.5, alpha_e3_j1=2.0,
                   alpha_e3_j2=0.4, **_TRAINING)]
    names = {os.path.basename(p)
             for p in eigentasks_report.plot_all(full, directory)}
    for name in (eigentasks_report.TRAINING_FIGURE_NAME,
                 eigentasks_report.SPECTRUM_FIGURE_NAME):
      self.assertIn(f'{name}.png', names)


if __name__ == '__main__':
  absltest.main()
