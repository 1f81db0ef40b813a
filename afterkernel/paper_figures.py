"""The figures of Long's paper, numbered as in the paper, from a result store.

Long, *Properties of the after kernel* (2021), Figs 1-16. `PAPER_FIGURES`
maps each figure number to a `plots.FigureSpec` (what is plotted against
what, which sweep family it reads); `figure(number, entries)` draws one from
`summary.summarize` entries and raises an AfterKernelError naming the sweep
to run when the store lacks its data; `render_all` writes every figure the
store supports. Each figure's caption states the protocol of the plotted
points (task, training set, test set, augmentation, learning rate or loss
target, epochs) and the number of runs, read from the store, not assumed.

  1  after-kernel SVM test error vs epochs (epoch 0 = the FNTK)
  2  / 3  SVM and network test error vs epochs (MNIST / CIFAR-10)
  4  quadrant-swap invariance ("locality") vs epochs
  5  translation, zoom and rotation invariance vs epochs
  6  alignment of the kernel with its conjugate projection vs epochs
  7  SVM test error of the after kernel vs the conjugate projection
  8  augmentation: SVM error and invariances with / without augmentation
  9-13  learning rate (trained to a loss target): SVM error, network error,
        swap invariance, the other invariances, alignment and conjugate SVM
  14 invariances vs learning rate, with and without augmentation
  15 network test error vs parameter count (the width family)
  16 augmentation sanity check: network test error with / without it

Figs 14 and 15 follow the paper (issue 15); before, the project drew epochs
to the loss target and a width-vs-epochs panel under those numbers: they are
kept, not numbered, as `EXTRA_FIGURES` ('lr_epochs_to_target',
'width_svm_and_swap_vs_epochs').
"""

from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from matplotlib import figure as mpl_figure

from afterkernel import errors
from afterkernel import plots

FigureSpec = plots.FigureSpec
Entries = Sequence[Mapping[str, Any]]

_NO_AUG = (('use_augmentation', (False,)),)
_MNIST_LIKE = (('use_augmentation', (False,)), ('dataset', ('mnist', 'digits')))
_CIFAR = (('use_augmentation', (False,)), ('dataset', ('cifar10',)))
_INVARIANCES = (('trans_inv',), ('zoom_inv',), ('rotation_inv',))
_AUGMENTED_SERIES = ('nn_architecture', 'use_augmentation')


def _epochs(name: str, title: str, metric_groups, **fields) -> FigureSpec:
  """A figure of the 'epochs' family against epochs (no augmentation unless
  `fields` say otherwise)."""
  return FigureSpec(name, title, 'epochs', 'epoch', metric_groups,
                    **{'where': _NO_AUG, **fields})


def _learning_rate(name: str, title: str, metric_groups,
                   **fields) -> FigureSpec:
  """A figure of the 'learning_rate' family against the learning rate."""
  return FigureSpec(name, title, 'learning_rate', 'learning_rate',
                    metric_groups, **fields)


_BOTH_AUGMENTATIONS = dict(where=(), series_by=_AUGMENTED_SERIES,
                           needs_both='use_augmentation')
_PER_NET = dict(panels_by=('task', 'nn_architecture'), series_by=())

_PAPER_SPECS = (
    _epochs('fig01_svm_error_vs_epochs',
            'Kernel SVM test error after training (epoch 0 = FNTK)',
            (('svm_error',),)),
    _epochs('fig02_svm_and_nn_error_vs_epochs_mnist',
            'Kernel SVM and network test error, MNIST (and digits)',
            (('svm_error', 'nn_error'),), where=_MNIST_LIKE, **_PER_NET),
    _epochs('fig03_svm_and_nn_error_vs_epochs_cifar10',
            'Kernel SVM and network test error, CIFAR-10',
            (('svm_error', 'nn_error'),), where=_CIFAR, **_PER_NET),
    _epochs('fig04_swap_invariance_vs_epochs',
            'Quadrant-swap invariance (lower = more global kernel)',
            (('swap_inv',),)),
    _epochs('fig05_invariances_vs_epochs',
            'Translation, zoom and rotation invariance of the kernel',
            _INVARIANCES),
    _epochs('fig06_alignment_vs_epochs',
            'Alignment of the kernel with its conjugate projection',
            (('kalignment',),)),
    _epochs('fig07_after_vs_conjugate_svm_error',
            'SVM test error: after kernel vs conjugate projection',
            (('svm_error', 'conjugate_svm_error'),)),
    _epochs('fig08_augmentation', 'Effect of data augmentation on the kernel',
            (('svm_error',),) + _INVARIANCES, **_BOTH_AUGMENTATIONS),
    _learning_rate('fig09_lr_svm_error', 'Kernel SVM test error vs learning '
                   'rate (trained to loss target)', (('svm_error',),)),
    _learning_rate('fig10_lr_nn_error', 'Network test error vs learning rate '
                   '(trained to loss target)', (('nn_error',),)),
    _learning_rate('fig11_lr_swap_invariance',
                   'Quadrant-swap invariance vs learning rate',
                   (('swap_inv',),)),
    _learning_rate('fig12_lr_invariances', 'Translation, zoom and rotation '
                   'invariance vs learning rate', _INVARIANCES),
    _learning_rate('fig13_lr_alignment_and_conjugate',
                   'Alignment and conjugate-projection SVM vs learning rate',
                   (('kalignment',), ('svm_error', 'conjugate_svm_error'))),
    _learning_rate('fig14_lr_invariances_with_and_without_augmentation',
                   'Invariances vs learning rate, with and without data '
                   'augmentation', (('swap_inv',),) + _INVARIANCES,
                   **_BOTH_AUGMENTATIONS),
    FigureSpec('fig15_nn_error_vs_parameters',
               'Network test error vs number of parameters',
               'width', 'num_parameters', (('nn_error',),),
               series_by=('nn_architecture', 'epoch')),
    _epochs('fig16_augmentation_sanity_check', 'Sanity check: network test '
            'error with / without augmentation', (('nn_error',),),
            **_BOTH_AUGMENTATIONS),
)

# Number -> figure, numbered as in the paper.
PAPER_FIGURES: Dict[int, FigureSpec] = {
    int(s.name[3:5]): s for s in _PAPER_SPECS}

# Figures the project drew before under the paper's numbers 14 and 15.
EXTRA_FIGURES: Dict[str, FigureSpec] = {
    'lr_epochs_to_target': _learning_rate(
        'lr_epochs_to_target',
        'Epochs of SGD needed to reach the training-loss target',
        (('epochs_trained',),)),
    'width_svm_and_swap_vs_epochs': FigureSpec(
        'width_svm_and_swap_vs_epochs',
        'Networks of different sizes (parameter counts)',
        'width', 'epoch', (('svm_error',), ('swap_inv',)),
        panels_by=('task', 'nn_architecture'),
        series_by=('num_parameters',)),
}

# The sweep binary that writes each family's records.
SWEEP_COMMANDS = {
    'epochs': 'python -m binaries.sweep_epochs',
    'learning_rate': 'python -m binaries.sweep_learning_rate',
    'width': 'python -m binaries.sweep_width',
}


def spec(name: Any) -> FigureSpec:
  """The figure called `name`: a number (14), 'fig14', a full file stem, or
  an `EXTRA_FIGURES` name."""
  if isinstance(name, int) or str(name).isdigit():
    number = int(name)
    errors.require(number in PAPER_FIGURES,
                   f'the paper has Figs 1-16; no figure {number}')
    return PAPER_FIGURES[number]
  for candidate in list(PAPER_FIGURES.values()) + list(EXTRA_FIGURES.values()):
    if candidate.name == name or candidate.name.startswith(f'{name}_'):
      return candidate
  names = [s.name for s in PAPER_FIGURES.values()] + list(EXTRA_FIGURES)
  raise errors.AfterKernelError(
      f'unknown figure {name!r}; choose fig01-fig16 or one of '
      f'{", ".join(names)}')


def _values(entries: Entries, field: str) -> List[Any]:
  values = {entry['point'].get(field) for entry in entries}
  return sorted(values, key=lambda v: (v is not None, str(type(v)), v
                                       if v is not None else 0))


def _setting(entries: Entries, field: str, label: str,
             unset: str) -> str:
  shown = [unset if v is None else f'{v:g}' if isinstance(v, float) else
           str(v) for v in _values(entries, field)]
  # A no-break space keeps a setting on one line when the caption wraps.
  return f'{label}\u00a0{"/".join(shown)}'


def caption(figure_spec: FigureSpec, entries: Entries) -> str:
  """The protocol and number of runs of the points `figure_spec` plots.

  Read from the selected entries: tasks, training and test set sizes
  (subsets or 'all'), augmentation, learning rate (or loss target) and
  epochs, and the runs per point (a range when points differ).
  """
  selected = plots.select(figure_spec, entries)
  errors.require(bool(selected), f'{figure_spec.name}: nothing to caption')
  tasks = ', '.join(plots.task_label(t) for t in _values(selected, 'task'))
  parts = [tasks,
           _setting(selected, 'train_subset', 'train images', 'all'),
           _setting(selected, 'test_subset', 'test images', 'all'),
           'augmentation ' + '/'.join(
               'on' if v else 'off'
               for v in _values(selected, 'use_augmentation'))]
  if figure_spec.family == 'learning_rate':
    parts.append(_setting(selected, 'training_loss_target',
                          'trained to loss', 'default target'))
  else:
    parts.append(_setting(selected, 'learning_rate', 'lr', 'default'))
    parts.append(_setting(selected, 'epoch', 'epochs', '-'))
  runs = sorted({len(entry['runs']) for entry in selected})
  runs_text = (str(runs[0]) if len(runs) == 1 else
               f'{runs[0]}-{runs[-1]}')
  return (f'{"; ".join(parts)}\n'
          f'mean ± 95% CI (Student t) over n = {runs_text} runs per point '
          f'({figure_spec.family} sweep)')


def missing(figure_spec: FigureSpec, entries: Entries) -> Optional[str]:
  """None if the figure can be drawn, else what is missing and how to get it."""
  reason = plots.skip_reason(figure_spec, entries)
  if reason is None:
    return None
  command = SWEEP_COMMANDS.get(figure_spec.family, 'the sweep')
  if figure_spec.needs_both:
    command += ' --augmentation=false,true'
  return f'{reason}; run {command} --store_dir=STORE first'


def figure(name: Any, entries: Entries) -> mpl_figure.Figure:
  """Draws one figure (see `spec` for names) with its protocol caption.

  Raises:
    AfterKernelError: the entries lack what the figure needs (the message
      names the sweep to run).
  """
  figure_spec = spec(name)
  reason = missing(figure_spec, entries)
  errors.require(reason is None, f'cannot draw {figure_spec.name}: {reason}')
  return plots.render(figure_spec, entries, caption(figure_spec, entries))


def render_all(entries: Entries, directory: str,
               formats: Sequence[str] = plots.FORMATS,
               names: Optional[Sequence[str]] = None,
               log: Callable[[str], None] = print) -> Dict[str, List[str]]:
  """Writes figures as DIRECTORY/<name>.<format>.

  Args:
    entries: `summary.summarize` output.
    directory: where the files go.
    formats: file formats to write.
    names: these figures (see `spec`), each of which must be drawable; None
      = the sixteen paper figures, skipping (with a log line) those the
      store cannot support.
    log: receives one line per figure: written paths or why it was skipped.

  Returns:
    Figure name -> written paths.

  Raises:
    AfterKernelError: a figure in `names` cannot be drawn (after the others
      are written); the message names every missing study.
  """
  specs = (list(PAPER_FIGURES.values()) if names is None else
           [spec(name) for name in names])
  written, problems = {}, []
  for figure_spec in specs:
    reason = missing(figure_spec, entries)
    if reason is not None:
      log(f'skipped {figure_spec.name}: {reason}')
      problems.append(f'{figure_spec.name}: {reason}')
      continue
    fig = plots.render(figure_spec, entries, caption(figure_spec, entries))
    written[figure_spec.name] = plots.save(fig, directory, figure_spec.name,
                                           formats)
    log(f'wrote {", ".join(written[figure_spec.name])}')
  errors.require(names is None or not problems,
                 'cannot draw ' + ' | '.join(problems))
  return written

