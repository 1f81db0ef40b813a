"""Tests of afterkernel.studies.tables: summary tables and errorbar panels."""

from absl.testing import absltest
from matplotlib import figure as mpl_figure
import numpy as np

from afterkernel.studies import tables


def _entry(index, runs, **stats):
  return {'point': {'j': index}, 'runs': list(range(runs)),
          'metrics': {name: value for name, value in stats.items()}}


_ENTRIES = [
    _entry(1, 2, acc={'mean': 0.91234, 'ci95': 0.0123}, err={'mean': 0.5, 'ci95': None}),
    _entry(20, 1, acc={'mean': 0.5, 'ci95': None}),
]


class FormatTableTest(absltest.TestCase):

  def test_cells_header_and_missing_values(self):
    text = tables.format_table(_ENTRIES, 'j', lambda e: e['point']['j'],
                               (('accuracy', 'acc'), ('error', 'err')),
                               [4, 5, 9, 7])
    self.assertEqual(text.splitlines(), [
        '   j  runs  accuracy   error',
        '   1     2    0.9123     0.5',
        '  20     1       0.5       -',
    ])

  def test_ci_formats_and_note(self):
    text = tables.format_table(
        _ENTRIES, 'j', lambda e: e['point']['j'], (('accuracy', 'acc'),),
        [3, 4, 14], number_formats={'acc': '.2f'}, with_ci=True,
        note=lambda e: 'ONE' if e['point']['j'] == 20 else '')
    lines = text.splitlines()
    self.assertEqual(lines[0], '  j runs       accuracy  note')
    # With a CI: mean (.4g) ± half-width (.2g); without: the number format.
    self.assertEqual(lines[1], '  1    2   0.9123±0.012')
    self.assertEqual(lines[2], ' 20    1           0.50  ONE')

  def test_mean_cell(self):
    self.assertEqual(tables.mean_cell(_ENTRIES[1], 'err', 3), '  -')
    self.assertEqual(tables.mean_cell(_ENTRIES[0], 'acc', 8, '.3f'),
                     '   0.912')


class ErrorbarSeriesTest(absltest.TestCase):

  def test_one_line_per_series_at_the_point_values(self):
    fig = mpl_figure.Figure()
    axes = fig.subplots()
    tables.errorbar_series(axes, _ENTRIES, 'j',
                           (('acc', 'accuracy', 'C0', '-'),
                            ('err', 'error', 'C1', '--')))
    # One errorbar container per series, labelled, holding the data line:
    # the accuracy at j = 1, 20; the error at j = 1 only.
    containers = axes.containers
    self.assertEqual([c.get_label() for c in containers],
                     ['accuracy', 'error'])
    data = [c.lines[0] for c in containers]
    np.testing.assert_array_equal(data[0].get_xdata(), [1, 20])
    np.testing.assert_allclose(data[0].get_ydata(), [0.91234, 0.5])
    np.testing.assert_array_equal(data[1].get_xdata(), [1])
    self.assertEqual(data[1].get_linestyle(), '--')


if __name__ == '__main__':
  absltest.main()
