"""Tests of afterkernel/studies/second_order_report.py: tables, fits, figures."""

import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from afterkernel import plots
from afterkernel.studies import second_order_report as report

_SIZES = (16, 32, 64, 128, 256)
# Exact power laws A m^-beta per model kind; run r scales A by (1 + r/10),
# so the mean over runs has the same exponent.
_LAWS = {'network': (2.0, 0.5), 'h_full': (3.0, 0.75)}


def _entry(model, subset, means, runs=2):
  return {'point': {'model': model, 'train_subset': subset},
          'runs': list(range(runs)),
          'metrics': {name: {'mean': mean, 'ci95': None, 'n': runs}
                      for name, mean in means.items()}}


def _records(num_runs=2):
  records = []
  for kind, (scale, beta) in _LAWS.items():
    for run in range(num_runs):
      for m in _SIZES:
        records.append({
            'point': {'model': kind, 'train_subset': m}, 'run': run,
            'metrics': {report.FIT_METRIC:
                        scale * (1 + run / 10) * m**-beta},
            'data': {'n_test': 1000}})
  return records


class TableTest(absltest.TestCase):

  def test_sizes_of_is_the_sorted_distinct_subsets(self):
    entries = [_entry('network', 64, {}), _entry('linear', 16, {}),
               _entry('network', 16, {}), _entry('h_only', None, {})]
    self.assertEqual(report.sizes_of(entries), [16, 64])
    self.assertEqual(report.sizes_of([_entry('network', None, {})]), [])

  def test_one_size_table_has_every_model_and_mean(self):
    entries = [_entry(kind, None, {'test_error': 0.125 + i / 100,
                                   'first_order_rms': 0.0625})
               for i, kind in enumerate(report.MODEL_KINDS)]
    text = report.format_table(entries)
    lines = text.splitlines()
    self.assertLen(lines, 1 + len(report.MODEL_KINDS))
    for line, kind, i in zip(lines[1:], report.MODEL_KINDS, range(4)):
      self.assertIn(report.MODEL_LABELS[kind], line)
      self.assertIn(f'{0.125 + i / 100:.4g}', line)
      self.assertIn('0.0625', line)
    self.assertNotIn('power-law', text)
    self.assertNotIn('beta', text)

  def test_grid_table_adds_the_power_law_fit_of_the_means(self):
    entries = []
    for kind, (scale, beta) in _LAWS.items():
      entries += [_entry(kind, m, {report.FIT_METRIC: scale * m**-beta})
                  for m in _SIZES]
    text = report.format_table(entries)
    self.assertIn(f'{report.MODEL_LABELS["network"]} m=16', text)
    self.assertIn(f'{2.0 * 16**-0.5:.4g}', text)
    fit_lines = {line.split()[0]: line for line in
                 text.split('(fit of the mean curve)')[1].splitlines()[2:]}
    self.assertEqual(sorted(fit_lines), ['H_full', 'network'])
    self.assertTrue(fit_lines['network'].split()[1].startswith('0.500'))
    self.assertTrue(fit_lines['H_full'].split()[1].startswith('0.750'))
    self.assertIn(','.join(map(str, _SIZES)), fit_lines['network'])


class ScalingTest(absltest.TestCase):

  def test_fit_recovers_the_exponents_of_exact_power_laws(self):
    fits = report.fit_scaling(_records(), ['network', 'h_full', 'linear'],
                              _SIZES, num_runs=2, num_test=1000,
                              zero_errors='exclude', seed=0)
    for kind, (scale, beta) in _LAWS.items():
      self.assertAlmostEqual(fits[kind]['beta'], beta, delta=1e-3)
      # The mean over runs: scale * (1 + 0.05) m^-beta, floor alpha ~ 0.
      self.assertAlmostEqual(fits[kind]['A'], scale * 1.05,
                             delta=1e-3 * scale)
      self.assertLess(fits[kind]['alpha'], 1e-3 / max(_SIZES))
      self.assertEqual(fits[kind]['sizes'], list(_SIZES))
      self.assertEqual(fits[kind]['num_runs'], 2)
    self.assertIsNone(fits['linear'])  # No records: no fit.

  def test_a_zero_error_drops_that_size_for_every_kind(self):
    records = _records()
    records[-1]['metrics'][report.FIT_METRIC] = 0.0  # h_full, run 1, m=256.
    fits = report.fit_scaling(records, ['network', 'h_full'], _SIZES, 2,
                              1000, 'exclude', 0)
    for kind, (_, beta) in _LAWS.items():
      self.assertEqual(fits[kind]['sizes'], list(_SIZES[:-1]))
      self.assertAlmostEqual(fits[kind]['beta'], beta, delta=1e-3)

  def test_plot_scaling_writes_fits_and_figures_of_the_records(self):
    records = _records()
    fits = report.fit_scaling(records, ['network', 'h_full'], _SIZES, 2,
                              1000, 'exclude', 0)
    # tempfile: create_tempdir needs absl's parsed flags (not under pytest).
    directory = tempfile.mkdtemp(prefix='afterkernel_test_')
    self.addCleanup(shutil.rmtree, directory, ignore_errors=True)
    with mock.patch.object(plots, 'save', wraps=plots.save) as save:
      paths = report.plot_scaling(records, fits, _SIZES, 2, directory, 't')
    self.assertEqual(sorted(os.path.basename(p) for p in paths),
                     [report.SCALING_FIGURE_NAME + '.pdf',
                      report.SCALING_FIGURE_NAME + '.png'])
    for path in paths:
      self.assertGreater(os.path.getsize(path), 0)
    with open(os.path.join(directory, report.FITS_FILE)) as f:
      written = json.load(f)
    self.assertEqual(sorted(written), ['h_full', 'network'])
    self.assertAlmostEqual(written['network']['beta'], 0.5, delta=1e-3)
    axes = save.call_args[0][0].axes[0]
    points = {c.get_label().split(' (')[0]: c.lines[0]
              for c in axes.containers}
    self.assertEqual(sorted(points), ['H_full', 'network'])
    for kind, (scale, beta) in _LAWS.items():
      line = points[report.MODEL_LABELS[kind]]
      np.testing.assert_array_equal(line.get_xdata(), _SIZES)
      np.testing.assert_allclose(
          line.get_ydata(), scale * 1.05 * np.array(_SIZES, float)**-beta,
          rtol=1e-12)


if __name__ == '__main__':
  absltest.main()
