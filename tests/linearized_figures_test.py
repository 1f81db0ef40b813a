"""Tests of afterkernel/studies/linearized_figures.py: table and figures."""

import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import matplotlib
matplotlib.use('Agg')
from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
import numpy as np

from afterkernel import errors
from afterkernel import plots
from afterkernel.studies import linearized_figures

_METRICS = ('nn_train_accuracy', 'nn_test_accuracy', 'lin_train_accuracy',
            'lin_test_accuracy')


def _trajectory(rng, epochs=(0, 1, 3), probes=3, outputs=4):
  return {'epochs': list(epochs),
          'probe_labels': rng.integers(0, outputs, probes).tolist(),
          'nn': rng.standard_normal((len(epochs), probes, outputs)).tolist(),
          'lin': rng.standard_normal((len(epochs), probes, outputs)).tolist()}


def _summary():
  """Two widths (2 and 10: sorted numerically, not as text), 3 runs."""
  summary = {}
  for width, base in (('10', 0.9), ('2', 0.6)):
    summary[width] = {metric: {'mean': base + 0.01 * i, 'ci95': 0.005 * i,
                               'n': 3}
                      for i, metric in enumerate(_METRICS)}
    summary[width]['test_accuracy_gap'] = {'mean': base / 10, 'ci95': None,
                                           'n': 3}
  return summary


def _tempdir(test: absltest.TestCase) -> str:
  """A folder removed after `test` (create_tempdir needs absl's parsed
  flags, which pytest does not provide)."""
  path = tempfile.mkdtemp(prefix='afterkernel_test_')
  test.addCleanup(shutil.rmtree, path, ignore_errors=True)
  return path


class ProbeOutputsTest(absltest.TestCase):

  def test_picks_each_probe_s_labelled_output(self):
    trajectory = _trajectory(np.random.default_rng(0))
    for model in ('nn', 'lin'):
      got = linearized_figures.probe_outputs(trajectory, model)
      outputs = trajectory[model]
      want = [[outputs[e][p][label]
               for p, label in enumerate(trajectory['probe_labels'])]
              for e in range(len(trajectory['epochs']))]
      np.testing.assert_array_equal(got, np.array(want))

  def test_one_output_is_the_logit_whatever_the_label(self):
    trajectory = _trajectory(np.random.default_rng(1), outputs=1)
    trajectory['probe_labels'] = [1, 0, 1]
    got = linearized_figures.probe_outputs(trajectory, 'lin')
    np.testing.assert_array_equal(got,
                                  np.array(trajectory['lin'])[:, :, 0])

  def test_unknown_model_is_refused(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'trajectory model'):
      linearized_figures.probe_outputs(
          _trajectory(np.random.default_rng(2)), 'kernel')


class OutputTrajectoriesTest(absltest.TestCase):

  def _draw(self, records):
    path = os.path.join(_tempdir(self), 'traj.png')
    with mock.patch.object(plots, 'save', wraps=plots.save) as save:
      written = linearized_figures.plot_output_trajectories(records, path,
                                                            'title')
    self.assertEqual(written, path)
    self.assertGreater(os.path.getsize(path), 0)
    return save.call_args[0][0]

  def test_lines_are_the_recorded_outputs_of_each_width_s_first_run(self):
    rng = np.random.default_rng(3)
    probes = linearized_figures.MAX_PLOTTED_PROBES + 1
    first = {'width': 1.0, 'run': 0,
             'trajectory': _trajectory(rng, probes=probes)}
    records = [
        {'width': 1.0, 'run': 1, 'trajectory': _trajectory(rng)},
        first,
        {'width': 4.0, 'run': 0},  # No trajectory: not drawn.
        {'width': 2.0, 'run': 0, 'trajectory': _trajectory(rng)},
    ]
    figure = self._draw(records)
    panels = [a for a in figure.axes if a.get_lines()]
    self.assertLen(panels, 2)
    self.assertEqual([a.get_title() for a in panels],
                     ['width k = 1', 'width k = 2'])
    lines = panels[0].get_lines()
    shown = linearized_figures.MAX_PLOTTED_PROBES
    self.assertLen(lines, 2 * shown)
    for m, model in enumerate(('nn', 'lin')):
      want = linearized_figures.probe_outputs(first['trajectory'], model)
      for probe in range(shown):
        line = lines[m * shown + probe]
        np.testing.assert_array_equal(line.get_xdata(), [0, 1, 3])
        np.testing.assert_array_equal(line.get_ydata(), want[:, probe])
        self.assertEqual(line.get_linestyle(), '-' if model == 'nn' else '--')

  def test_no_trajectory_is_one_clear_error(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'trajectory_every'):
      linearized_figures.plot_output_trajectories(
          [{'width': 1.0, 'run': 0}],
          os.path.join(_tempdir(self), 'x.png'))


class SummaryTest(absltest.TestCase):

  def test_format_summary_has_every_mean_in_width_order(self):
    summary = _summary()
    text = linearized_figures.format_summary(summary)
    lines = text.splitlines()
    self.assertLen(lines, 4)  # Header, two widths, the runs line.
    for line, width in zip(lines[1:3], ('2', '10')):
      cells = line.split()
      self.assertEqual(cells[0], width)
      means = [summary[width][m]['mean'] for m in _METRICS]
      self.assertEqual(cells[1:5], [f'{v:.4f}' for v in means])
      gap = summary[width]['test_accuracy_gap']['mean']
      self.assertEqual(cells[5], f'{gap:.4f}')
      self.assertEqual(cells[6:], ['-', '-'])  # No ranks recorded.
    self.assertEqual(lines[3], '(means over n = 3 runs per width)')

  def test_accuracy_figure_plots_the_summary_means(self):
    summary = _summary()
    path = os.path.join(_tempdir(self), 'sub', 'acc.png')
    closed = []
    with mock.patch.object(pyplot, 'close', side_effect=closed.append):
      self.assertEqual(
          linearized_figures.plot_accuracy_vs_width(summary, path), path)
    self.assertGreater(os.path.getsize(path), 0)
    (figure,) = closed
    self.addCleanup(pyplot.close, figure)
    labels = {'network, test': 'nn_test_accuracy',
              'network, train': 'nn_train_accuracy',
              'linearized, test': 'lin_test_accuracy',
              'linearized, train': 'lin_train_accuracy'}
    containers = figure.axes[0].containers
    self.assertEqual(sorted(c.get_label() for c in containers),
                     sorted(labels))
    for container in containers:
      metric = labels[container.get_label()]
      data_line = container.lines[0]
      np.testing.assert_array_equal(data_line.get_xdata(), [2.0, 10.0])
      np.testing.assert_allclose(
          np.asarray(data_line.get_ydata(), np.float64),
          [summary['2'][metric]['mean'], summary['10'][metric]['mean']])

if __name__ == '__main__':
  absltest.main()
