"""Tests for afterkernel.plots: drawing figures from a small fixture store."""

import os
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import paper_figures
from afterkernel import plots
from afterkernel.studies import store
import store_fixture  # tests/store_fixture.py

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'


def _entries():
  return store.summarize(store_fixture.fixture_records())


def _spec(name):
  return paper_figures.spec(name)


class SaveTest(absltest.TestCase):

  def test_task_labels(self):
    self.assertEqual(plots.task_label('mnist_3v8'), 'MNIST 3 vs 8')
    self.assertEqual(plots.task_label('cifar10_3v5'),
                     'CIFAR-10 cats vs dogs')

  def test_bad_format_is_refused(self):
    fig = plots.render(_spec('fig01'), _entries())
    with self.assertRaisesRegex(plots.errors.AfterKernelError,
                                'unknown figure format'):
      plots.save(fig, tempfile.mkdtemp(), 'x', formats=('bmp',))


class RenderTest(absltest.TestCase):

  def test_lines_are_the_means_and_bands_the_intervals(self):
    entries = _entries()
    fig = plots.render(_spec('fig01'), entries)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    self.assertLen(panels, 2)  # one per task
    titles = [ax.get_title() for ax in panels]
    self.assertEqual(titles, ['CIFAR-10 cats vs dogs', 'MNIST 3 vs 8'])
    mnist = panels[1]
    self.assertEqual(mnist.get_xlabel(), plots.X_LABELS['epoch'])
    self.assertEqual(mnist.get_ylabel(), plots.Y_LABELS['svm_error'])
    self.assertEqual(mnist.get_xscale(), 'symlog')
    lines = {line.get_label(): line for line in mnist.get_lines()}
    self.assertEqual(sorted(lines), ['VGG-like', 'fully connected'])
    expected = sorted(
        (e['point']['epoch'], e['metrics']['svm_error'])
        for e in entries if e['family'] == 'epochs' and
        e['point']['task'] == 'mnist_3v8' and
        e['point']['nn_architecture'] == 'vgg' and
        not e['point']['use_augmentation'])
    np.testing.assert_allclose(lines['VGG-like'].get_xdata(),
                               [x for x, _ in expected])
    np.testing.assert_allclose(lines['VGG-like'].get_ydata(),
                               [s['mean'] for _, s in expected])
    # VGG's band spans mean +- ci95, clipped to [0, 1] for an error.
    index = [line.get_label() for line in mnist.get_lines()].index('VGG-like')
    band = mnist.collections[index].get_paths()[0].vertices
    for x, stats in expected:
      at_x = band[np.isclose(band[:, 0], x), 1]
      self.assertAlmostEqual(at_x.max(),
                             min(stats['mean'] + stats['ci95'], 1.0))
      self.assertAlmostEqual(at_x.min(),
                             max(stats['mean'] - stats['ci95'], 0.0))
    self.assertIn('n = 2 runs', fig._suptitle.get_text())
    legend_labels = [t.get_text() for t in fig.legends[0].get_texts()]
    self.assertEqual(sorted(legend_labels), ['VGG-like', 'fully connected'])

  def test_metric_groups_share_a_panel_with_line_styles(self):
    fig = plots.render(_spec('fig07'), _entries())
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    self.assertEqual(labels, [
        'VGG-like, conjugate-projection SVM', 'VGG-like, kernel SVM',
        'fully connected, conjugate-projection SVM',
        'fully connected, kernel SVM'])
    styles = {line.get_label(): line.get_linestyle()
              for line in fig.axes[0].get_lines()}
    self.assertNotEqual(styles['VGG-like, kernel SVM'],
                        styles['VGG-like, conjugate-projection SVM'])

  def test_learning_rate_axis_is_logarithmic(self):
    fig = plots.render(_spec('lr_epochs_to_target'), _entries())
    self.assertEqual(fig.axes[0].get_xscale(), 'log')
    # Augmented and plain runs are different series, never averaged.
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    self.assertEqual(labels, [
        'VGG-like, augmented', 'VGG-like, no augmentation',
        'fully connected, augmented', 'fully connected, no augmentation'])

  def test_other_varying_settings_become_separate_series(self):
    records = [r for r in store_fixture.fixture_records()
               if r['family'] == 'epochs' and r['point']['task'] == 'mnist_3v8'
               and r['point']['nn_architecture'] == 'vgg']
    for record in list(records):
      bigger = dict(record, point=dict(record['point'], train_subset=400),
                    point_id=record['point_id'] + 'b')
      records.append(bigger)
    fig = plots.render(_spec('fig01'), store.summarize(records))
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    self.assertEqual(labels, ['VGG-like, train_subset 100',
                              'VGG-like, train_subset 400'])

  def test_width_series_are_parameter_counts(self):
    fig = plots.render(_spec('width_svm_and_swap_vs_epochs'), _entries())
    self.assertLen([ax for ax in fig.axes if ax.get_visible()], 8)
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    self.assertEqual(labels, ['~100,000 params', '~60,000 params'])


class SeriesTest(absltest.TestCase):

  def test_series_skips_missing_means_and_zeroes_missing_intervals(self):
    entries = [
        {'point': {'j': 1}, 'metrics': {'m': {'mean': 0.5, 'ci95': 0.1}}},
        {'point': {'j': 2}, 'metrics': {'m': {'mean': None, 'ci95': None}}},
        {'point': {'j': 4}, 'metrics': {'m': {'mean': 0.7, 'ci95': None}}},
        {'point': {'j': 8}, 'metrics': {}},
    ]
    x, mean, half = plots.series(entries, 'j', 'm')
    self.assertEqual(x.tolist(), [1, 4])
    self.assertEqual(mean.tolist(), [0.5, 0.7])
    self.assertEqual(half.tolist(), [0.1, 0.0])


if __name__ == '__main__':
  absltest.main()
