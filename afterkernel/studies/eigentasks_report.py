"""The eigenfunction-task study's table and figures (`eigentasks`).

`format_table` prints one line per eigen index; `plot` draws test accuracy
and target alignment vs j, and, when the records hold them, the training
measurements of `eigentasks_training`: SGD steps to the loss target and the
L2 / cosine weight distances from initialization vs j (Ortiz-Jimenez et al.
2021, Fig. 3) and the alpha spectrum of the first J tasks at each checkpoint
while training on task j (Fig. 7).
"""

import re
from typing import Any, List, Mapping, Sequence

from matplotlib import figure as mpl_figure
import numpy as np

from afterkernel import plots
from afterkernel.studies import tables
from afterkernel.studies import task_training

FIGURE_NAME = 'eigentask_accuracy'
TRAINING_FIGURE_NAME = 'eigentask_training'
SPECTRUM_FIGURE_NAME = 'eigentask_alpha_spectrum'
_ALPHA_KEY = re.compile(r'alpha_e(\d+)_j(\d+)$')

def plot(entries: Sequence[Mapping[str, Any]], output_dir: str,
         title: str = '') -> List[str]:
  """Test accuracy (plain and balanced, with the majority-class rate) and
  target alignment vs eigen index j (PNG + PDF)."""
  fig = mpl_figure.Figure(figsize=(10, 4), dpi=plots.DPI)
  accuracy_axes, alignment_axes = fig.subplots(1, 2)
  tables.errorbar_series(accuracy_axes, entries, 'eigen_index', (
      ('nn_test_accuracy', 'network', 'C0', '-'),
      ('lin_test_accuracy', 'linearized', 'C1', '-'),
      ('nn_balanced_accuracy', 'network, balanced', 'C0', '--'),
      ('lin_balanced_accuracy', 'linearized, balanced', 'C1', '--')))
  x, mean, _ = plots.series(entries, 'eigen_index', 'majority_rate_test')
  accuracy_axes.plot(x, mean, color='0.5', linestyle=':', marker='.',
                     label='majority class rate')
  accuracy_axes.set_xscale('log')
  accuracy_axes.set_xlabel('eigenfunction index j of the NTK at init.')
  accuracy_axes.set_ylabel('test accuracy on sign(phi_j)')
  accuracy_axes.legend(fontsize=7)
  accuracy_axes.grid(alpha=0.3)
  for metric, label, color in (('alpha_init', 'at init. (both models)', 'C2'),
                               ('alpha_after', 'network after training',
                                'C0')):
    x, mean, half = plots.series(entries, 'eigen_index', metric)
    # Log axis: keep the lower bar above 0 (CIs of 2-3 runs are wide).
    lower = np.minimum(half, 0.9 * mean)
    alignment_axes.errorbar(x, mean, yerr=[lower, half], label=label,
                            color=color, marker='o', capsize=3)
  alignment_axes.set_xscale('log')
  alignment_axes.set_yscale('log')
  alignment_axes.set_xlabel('eigenfunction index j')
  alignment_axes.set_ylabel('target alignment ||E[y grad f]||^2')
  alignment_axes.legend()
  alignment_axes.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, FIGURE_NAME)


TABLE_COLUMNS = (('lambda_j/l_1', 'relative_eigenvalue'),
                 ('plus frac', 'plus_fraction_train'),
                 ('maj test', 'majority_rate_test'),
                 ('nn test', 'nn_test_accuracy'),
                 ('lin test', 'lin_test_accuracy'),
                 ('nn bal', 'nn_balanced_accuracy'),
                 ('lin bal', 'lin_balanced_accuracy'),
                 ('nn train', 'nn_train_accuracy'),
                 ('lin train', 'lin_train_accuracy'),
                 ('alpha init', 'alpha_init'),
                 ('alpha after', 'alpha_after'),
                 ('A(K,yy) init', 'normalized_alignment_init'),
                 ('A(K,yy) after', 'normalized_alignment_after'))


def _single_class_note(entry: Mapping[str, Any]) -> str:
  """'ONE-CLASS k/n' if k of the n runs of this task had one-class labels."""
  stats = entry['metrics'].get('single_class') or {}
  if not stats.get('mean'):
    return ''
  return f'ONE-CLASS {round(stats["mean"] * stats["n"])}/{stats["n"]}'


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """One line per eigen index: means over runs (and the run count).

  'bal' columns are balanced test accuracies ('-' when the test labels hold
  one class); 'maj test' is the test accuracy of always predicting the
  majority class; the last column flags one-class tasks (in k of n runs),
  whose accuracies say nothing about learnability.
  """
  return task_training.index_table(
      entries, 'eigen_index', TABLE_COLUMNS,
      [5, 5] + [max(8, len(name)) + 1 for name, _ in TABLE_COLUMNS],
      note=_single_class_note)


def _has(entries: Sequence[Mapping[str, Any]], metric: str) -> bool:
  return any((entry['metrics'].get(metric) or {}).get('mean') is not None
             for entry in entries)


def plot_training(entries: Sequence[Mapping[str, Any]], output_dir: str,
                  title: str = '') -> List[str]:
  """Fig. 3: steps to the loss target, L2 and cosine weight distance vs j.

  The steps panel is drawn when the records hold `*_steps_to_target` (a
  study with a loss target); tasks where a model hit the epoch cap first
  have no step count and are left out of its line.
  """
  panels = [('steps_to_target', 'SGD steps to the training-loss target')]
  if not _has(entries, 'nn_steps_to_target'):
    panels = []
  panels += [('weight_l2', WEIGHT_L2_LABEL),
             ('weight_cosine', WEIGHT_COSINE_LABEL)]
  return series_figure(
      entries, 'eigen_index', 'eigenfunction index j',
      [(nn_lin_series(metric), label) for metric, label in panels],
      output_dir, TRAINING_FIGURE_NAME, title, log_y=True)


WEIGHT_L2_LABEL = '||theta_T - theta_0||_2'
WEIGHT_COSINE_LABEL = '1 - cos(theta_T, theta_0)'


def nn_lin_series(metric: str) -> tuple:
  """`tables.errorbar_series` rows of nn_<metric> and lin_<metric>."""
  return ((f'nn_{metric}', 'network', 'C0', '-'),
          (f'lin_{metric}', 'linearized', 'C1', '-'))


def series_figure(entries: Sequence[Mapping[str, Any]], x_field: str,
                  x_label: str, panels: Sequence[tuple], output_dir: str,
                  name: str, title: str = '', log_y: bool = False
                  ) -> List[str]:
  """One panel per (errorbar series, y label) against a log x axis.

  Args:
    entries: summary entries.
    x_field: the point field on the x axis.
    x_label: its axis label.
    panels: (series for `tables.errorbar_series`, y label) per panel.
    output_dir, name: where the PNG + PDF go.
    title: the figure title.
    log_y: log y axes.
  """
  fig = mpl_figure.Figure(figsize=(4.5 * len(panels), 4), dpi=plots.DPI)
  for axes, (series, label) in zip(
      np.atleast_1d(fig.subplots(1, len(panels))), panels):
    tables.errorbar_series(axes, entries, x_field, series)
    axes.set_xscale('log')
    if log_y:
      axes.set_yscale('log')
    axes.set_xlabel(x_label)
    axes.set_ylabel(label)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, name)


def alpha_spectra(entry: Mapping[str, Any]) -> dict:
  """{epoch: (task indices i, mean alpha_i)} of one summary entry."""
  found = {}
  for name, stats in entry['metrics'].items():
    match = _ALPHA_KEY.match(name)
    if match and stats and stats.get('mean') is not None:
      found.setdefault(int(match.group(1)), []).append(
          (int(match.group(2)), stats['mean']))
  return {epoch: tuple(np.array(v) for v in zip(*sorted(pairs)))
          for epoch, pairs in sorted(found.items())}


def plot_alpha_spectrum(entries: Sequence[Mapping[str, Any]],
                        output_dir: str, title: str = '') -> List[str]:
  """Fig. 7: alpha_i of the first J tasks at each checkpoint, per task j."""
  fig = mpl_figure.Figure(figsize=(4 * len(entries), 3.6), dpi=plots.DPI)
  for axes, entry in zip(np.atleast_1d(fig.subplots(1, len(entries))),
                         entries):
    for count, (epoch, (index, alpha)) in enumerate(
        alpha_spectra(entry).items()):
      axes.plot(index, alpha, marker='.', color=f'C{count}',
                label=f'epoch {epoch}')
    axes.axvline(entry['point']['eigen_index'], color='0.5', linestyle=':')
    axes.set_yscale('log')
    axes.set_xlabel('task index i')
    axes.set_ylabel('alpha(phi_i) under K_t')
    axes.set_title(f'training on j = {entry["point"]["eigen_index"]}',
                   fontsize=9)
    axes.legend(fontsize=7)
    axes.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, SPECTRUM_FIGURE_NAME)


def plot_all(entries: Sequence[Mapping[str, Any]], output_dir: str,
             title: str = '') -> List[str]:
  """`plot`, and the Fig. 3 / Fig. 7 figures when the records hold them."""
  paths = plot(entries, output_dir, title)
  if _has(entries, 'nn_weight_l2'):
    paths += plot_training(entries, output_dir, title)
  if any(alpha_spectra(entry) for entry in entries):
    paths += plot_alpha_spectrum(entries, output_dir, title)
  return paths


TRAINING_COLUMNS = (('nn steps', 'nn_steps_to_target'),
                    ('lin steps', 'lin_steps_to_target'),
                    ('nn L2', 'nn_weight_l2'),
                    ('lin L2', 'lin_weight_l2'),
                    ('nn cos', 'nn_weight_cosine'),
                    ('lin cos', 'lin_weight_cosine'))


def format_training_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """Fig. 3 as a table: steps to the loss target and weight distances."""
  return task_training.index_table(
      entries, 'eigen_index', TRAINING_COLUMNS,
      [5, 5] + [11] * len(TRAINING_COLUMNS),
      number_formats={metric: '.4g' for _, metric in TRAINING_COLUMNS})


def format_tables(entries: Sequence[Mapping[str, Any]]) -> str:
  """`format_table`, then the Fig. 3 table when a loss target was used."""
  text = format_table(entries)
  if _has(entries, 'nn_steps_to_target') or _has(entries,
                                                   'nn_reached_target'):
    text += ('\n\nTraining to the loss target (Fig. 3; steps: SGD steps, '
             '"-" = the epoch cap came first; L2 / cos: distance of the '
             'weights from initialization):\n' +
             format_training_table(entries))
  return text


def task_line(j: int, metrics: Mapping[str, Any]) -> str:
  """The log line of one finished task: accuracies, balance and alpha."""
  if metrics['single_class']:
    balance = (f'ONE-CLASS TASK (plus fraction train '
               f'{metrics["plus_fraction_train"]:.2f}, test '
               f'{metrics["plus_fraction_test"]:.2f}): accuracy is '
               'meaningless')
  else:
    balance = (f'balanced {metrics["nn_balanced_accuracy"]:.3f} / '
               f'{metrics["lin_balanced_accuracy"]:.3f}, majority '
               f'{metrics["majority_rate_test"]:.3f}')
  steps = ''
  if 'nn_steps_to_target' in metrics:
    steps = (f'; steps to loss target {metrics["nn_steps_to_target"]} / '
             f'{metrics["lin_steps_to_target"]}')
  return (f'  j = {j:4d} (lambda_j/lambda_1 = '
          f'{metrics["relative_eigenvalue"]:.3g}): test accuracy network '
          f'{metrics["nn_test_accuracy"]:.3f}, linearized '
          f'{metrics["lin_test_accuracy"]:.3f}; {balance}; alpha '
          f'{metrics["alpha_init"]:.3g} -> {metrics["alpha_after"]:.3g}'
          f'{steps}')
