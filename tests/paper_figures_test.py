"""Tests for afterkernel.paper_figures: each paper figure plots the store's means.

A fixture store (records written through the store API, made-up numbers,
two runs per point) is summarized; every figure is drawn with matplotlib's
Agg canvas and one line per figure is compared with the mean over runs of
the right metric, computed here with numpy from the raw records.
"""

import os
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel import paper_figures
from afterkernel import plots
from afterkernel.studies import store
from afterkernel.studies import summary
import store_fixture  # tests/store_fixture.py

_PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
_PANELS = {'M': 'MNIST 3 vs 8', 'C': 'CIFAR-10 cats vs dogs'}
_NETS = {'vgg': 'VGG-like', 'fc': 'fully connected'}

# One line checked per figure: figure | panel (task letter, net when the
# figure has a panel per net) | metric | line label | family | x field |
# records averaged (task, net, augmentation or an extra point field).
_CHECKS_TABLE = """
1  | M     | svm_error           | vgg                   | epochs        | epoch          | mnist_3v8 vgg no
2  | M vgg | nn_error            | network               | epochs        | epoch          | mnist_3v8 vgg no
3  | C fc  | svm_error           | kernel SVM            | epochs        | epoch          | cifar10_3v5 fc no
4  | M     | swap_inv            | fc                    | epochs        | epoch          | mnist_3v8 fc no
5  | M     | rotation_inv        | vgg                   | epochs        | epoch          | mnist_3v8 vgg no
6  | C     | kalignment          | vgg                   | epochs        | epoch          | cifar10_3v5 vgg no
7  | M     | conjugate_svm_error | vgg, conjugate-projection SVM | epochs | epoch        | mnist_3v8 vgg no
8  | M     | zoom_inv            | vgg, augmented        | epochs        | epoch          | mnist_3v8 vgg yes
9  | M     | svm_error           | vgg, no augmentation  | learning_rate | learning_rate  | mnist_3v8 vgg no
10 | C     | nn_error            | fc, augmented         | learning_rate | learning_rate  | cifar10_3v5 fc yes
11 | M     | swap_inv            | fc, no augmentation   | learning_rate | learning_rate  | mnist_3v8 fc no
12 | M     | trans_inv           | vgg, augmented        | learning_rate | learning_rate  | mnist_3v8 vgg yes
13 | M     | kalignment          | vgg, no augmentation  | learning_rate | learning_rate  | mnist_3v8 vgg no
14 | M     | rotation_inv        | vgg, augmented        | learning_rate | learning_rate  | mnist_3v8 vgg yes
15 | M     | nn_error            | vgg, epoch 3          | width         | num_parameters | mnist_3v8 vgg epoch=3
16 | C     | nn_error            | fc, augmented         | epochs        | epoch          | cifar10_3v5 fc yes
lr_epochs_to_target          | M | epochs_trained | vgg, no augmentation | learning_rate | learning_rate | mnist_3v8 vgg no
width_svm_and_swap_vs_epochs | M vgg | swap_inv | ~60,000 params | width | epoch | mnist_3v8 vgg num_parameters=60000
"""


def _parse_checks():
  """figure -> (panel title, metric, line label, family, filter, x field)."""
  names = {'vgg': 'vgg', 'fc': 'fully_connected'}
  checks = {}
  for row in _CHECKS_TABLE.strip().splitlines():
    figure, panel, metric, label, family, x_field, where = (
        cell.strip() for cell in row.split('|'))
    task_letter, *net = panel.split()
    title = ', '.join([_PANELS[task_letter]] + [_NETS[n] for n in net])
    first, _, rest = label.partition(',')
    label = _NETS.get(first, first) + (',' + rest if rest else '')
    task, net, extra = where.split()
    point = {'task': task, 'nn_architecture': names[net]}
    if extra in ('yes', 'no'):
      point['use_augmentation'] = extra == 'yes'
    else:
      field, _, value = extra.partition('=')
      point[field] = int(value)
    checks[int(figure) if figure.isdigit() else figure] = (
        title, metric, label, family, point, x_field)
  return checks


_CHECKS = _parse_checks()


def _store():
  """(summary entries, raw records) of the fixture written to a store."""
  directory = tempfile.mkdtemp()
  store_fixture.write_fixture_store(directory)
  return (summary.summarize_store(directory),
          store.ResultStore(directory).records())


def _expected(records, family, where, x_field, metric):
  """(x values, mean over runs per x) straight from the raw records."""
  by_x = {}
  for record in records:
    point = record['point']
    if record['family'] == family and all(
        point.get(k) == v for k, v in where.items()):
      by_x.setdefault(point[x_field], []).append(record['metrics'][metric])
  xs = sorted(by_x)
  return np.array(xs, float), np.array([np.mean(by_x[x]) for x in xs])


def _plain(text):
  """Caption text with its wrapping and no-break spaces made plain spaces."""
  return ' '.join(text.replace('\u00a0', ' ').split())


def _line(fig, title, metric, label):
  for ax in fig.axes:
    if (ax.get_visible() and ax.get_title() == title and
        ax.get_ylabel() == plots.Y_LABELS[metric]):
      lines = {line.get_label(): line for line in ax.get_lines()}
      if label in lines:
        return lines[label]
  raise AssertionError(f'no line {label!r} of {metric} in panel {title!r}')


class PaperFiguresTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.entries, cls.records = _store()

  def test_every_figure_plots_the_stores_means(self):
    self.assertEqual(sorted(k for k in _CHECKS if isinstance(k, int)),
                     list(range(1, 17)))
    for name, (title, metric, label, family, where, x_field) in (
        _CHECKS.items()):
      with self.subTest(figure=name):
        figure_spec = paper_figures.spec(name)
        self.assertEqual(figure_spec.family, family)
        self.assertEqual(figure_spec.x, x_field)
        self.assertIn(metric, [m for g in figure_spec.metric_groups
                               for m in g])
        fig = paper_figures.figure(name, self.entries)
        line = _line(fig, title, metric, label)
        xs, means = _expected(self.records, family, where, x_field, metric)
        self.assertGreaterEqual(len(xs), 2)
        np.testing.assert_allclose(line.get_xdata(), xs)
        np.testing.assert_allclose(line.get_ydata(), means, rtol=1e-12)
        caption = _plain(fig._suptitle.get_text())  # pylint: disable=protected-access
        self.assertIn(f'n = {store_fixture.NUM_RUNS} runs per point',
                      caption)
        self.assertIn(f'({family} sweep)', caption)
        self.assertIn('train images 100; test images 50', caption)
        fig.canvas.draw()  # the Agg canvas renders it

  def test_captions_state_the_protocol(self):
    caption = _plain(paper_figures.caption(paper_figures.spec(8),
                                           self.entries))
    self.assertIn(f"{_PANELS['C']}, {_PANELS['M']}", caption)
    self.assertIn('augmentation off/on', caption)
    self.assertIn('lr 0.01; epochs 0/1/3/10', caption)
    caption = _plain(paper_figures.caption(paper_figures.spec(9),
                                           self.entries))
    self.assertIn('trained to loss 0.01', caption)
    self.assertNotIn('epochs', caption)

  def test_paper_numbers_14_and_15(self):
    fig = paper_figures.figure('fig14', self.entries)
    self.assertEqual(fig.axes[0].get_xscale(), 'log')
    labels = sorted(line.get_label() for line in fig.axes[0].get_lines())
    self.assertEqual(labels, [
        'VGG-like, augmented', 'VGG-like, no augmentation',
        'fully connected, augmented', 'fully connected, no augmentation'])
    fig = paper_figures.figure(15, self.entries)
    self.assertEqual(fig.axes[0].get_xlabel(),
                     plots.X_LABELS['num_parameters'])
    self.assertEqual(fig.axes[0].get_xscale(), 'log')
    labels = {line.get_label() for line in fig.axes[0].get_lines()}
    self.assertEqual(labels, {f'{net}, epoch {e}'
                              for net in ('VGG-like', 'fully connected')
                              for e in store_fixture.EPOCHS})

  def test_missing_study_is_a_clear_error(self):
    epochs_only = [e for e in self.entries if e['family'] == 'epochs']
    with self.assertRaisesRegex(
        errors.AfterKernelError,
        "cannot draw fig15_nn_error_vs_parameters: no records of the 'width' "
        'family; run python -m binaries.sweep_width'):
      paper_figures.figure(15, epochs_only)
    no_augmentation = [e for e in self.entries
                       if not e['point']['use_augmentation']]
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'both with and without use_augmentation; run '
                                '.*sweep_learning_rate --augmentation='
                                'false,true'):
      paper_figures.figure(14, no_augmentation)
    with self.assertRaisesRegex(errors.AfterKernelError, 'Figs 1-16'):
      paper_figures.spec(17)
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown figure'):
      paper_figures.spec('fig99')


class FigureListTest(absltest.TestCase):

  def test_sixteen_figures_numbered_like_the_paper(self):
    self.assertEqual(sorted(paper_figures.PAPER_FIGURES), list(range(1, 17)))
    for number, spec in paper_figures.PAPER_FIGURES.items():
      self.assertEqual(int(spec.name[3:5]), number)
    specs = (list(paper_figures.PAPER_FIGURES.values()) +
             list(paper_figures.EXTRA_FIGURES.values()))
    for spec in specs:
      self.assertIn(spec.x, plots.X_LABELS)
      for group in spec.metric_groups:
        for metric in group:
          self.assertIn(metric, plots.Y_LABELS)
    for name, spec in paper_figures.EXTRA_FIGURES.items():
      self.assertEqual(spec.name, name)
      self.assertFalse(name.startswith('fig'))


class RenderAllTest(absltest.TestCase):

  def test_every_figure_is_written_from_the_fixture(self):
    directory = tempfile.mkdtemp()
    notes = []
    entries = store.summarize(store_fixture.fixture_records())
    written = paper_figures.render_all(entries, directory, formats=('png',),
                                       log=notes.append)
    self.assertEqual(sorted(written), sorted(
        s.name for s in paper_figures.PAPER_FIGURES.values()))
    for name, paths in written.items():
      self.assertEqual(paths, [os.path.join(directory, name + '.png')])
      with open(paths[0], 'rb') as f:
        content = f.read()
      self.assertTrue(content.startswith(_PNG_SIGNATURE), name)
      self.assertGreater(len(content), 20_000, name)
    self.assertLen(notes, 16)
    self.assertFalse([n for n in notes if n.startswith('skipped')])
    self.assertEqual(sorted(os.listdir(directory)),
                     sorted(n + '.png' for n in written))

  def test_pdf_output(self):
    directory = tempfile.mkdtemp()
    written = paper_figures.render_all(
        store.summarize(store_fixture.fixture_records()), directory,
        formats=('pdf',), names=['fig01'], log=lambda m: None)
    self.assertEqual(list(written), ['fig01_svm_error_vs_epochs'])
    with open(written['fig01_svm_error_vs_epochs'][0], 'rb') as f:
      self.assertTrue(f.read().startswith(b'%PDF'))

  def test_figures_without_data_are_skipped_with_a_note(self):
    epochs_only = [e for e in store.summarize(store_fixture.fixture_records())
                   if e['family'] == 'epochs' and
                   not e['point']['use_augmentation']]
    notes = []
    written = paper_figures.render_all(epochs_only, tempfile.mkdtemp(),
                                       formats=('png',), log=notes.append)
    self.assertEqual(sorted(written), [
        'fig01_svm_error_vs_epochs', 'fig02_svm_and_nn_error_vs_epochs_mnist',
        'fig03_svm_and_nn_error_vs_epochs_cifar10',
        'fig04_swap_invariance_vs_epochs', 'fig05_invariances_vs_epochs',
        'fig06_alignment_vs_epochs', 'fig07_after_vs_conjugate_svm_error'])
    skipped = [n for n in notes if n.startswith('skipped')]
    self.assertLen(skipped, 9)
    self.assertIn("skipped fig09_lr_svm_error: no records of the "
                  "'learning_rate' family; run python -m "
                  'binaries.sweep_learning_rate --store_dir=STORE first',
                  skipped)
    self.assertIn('skipped fig08_augmentation: needs records both with and '
                  'without use_augmentation; run python -m '
                  'binaries.sweep_epochs --augmentation=false,true '
                  '--store_dir=STORE first', skipped)
    self.assertEqual(paper_figures.render_all([], tempfile.mkdtemp(),
                                              ('png',), log=lambda m: None),
                     {})
    # Named figures must be drawable: the others are written, then an error.
    directory = tempfile.mkdtemp()
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'cannot draw fig09_lr_svm_error'):
      paper_figures.render_all(epochs_only, directory, ('png',),
                               names=['fig01', 'fig09'], log=lambda m: None)
    self.assertEqual(os.listdir(directory),
                     ['fig01_svm_error_vs_epochs.png'])


if __name__ == '__main__':
  absltest.main()
