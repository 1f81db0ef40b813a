"""Figures and table of the network-vs-linearization study.

The printing and plotting half of `studies.linearized`:
  * `format_summary`: the accuracy / gap / effective-rank table by width.
  * `plot_accuracy_vs_width`: train / test accuracy of the network and its
    linearization against the width multiplier (Samarin et al.'s Figs 3-4).
  * `plot_output_trajectories`: the outputs of both models on a few fixed
    test images over training, one panel per width (their Fig 2): at
    initialization the two coincide (f_lin(theta_0) = f(theta_0)); how far
    apart they drift shows how far the network leaves its linear regime.
"""

import os
from typing import Any, Dict, Mapping, Sequence

import numpy as np

from afterkernel import errors
from afterkernel import plots

FIGURE_FILE = 'accuracy_vs_width.png'
TRAJECTORY_FIGURE = 'output_trajectories.png'
# Probe images drawn in the trajectory figure (one colour each).
MAX_PLOTTED_PROBES = 5


def plot_accuracy_vs_width(summary: Dict[str, Dict[str, Dict[str, Any]]],
                           path: str, title: str = '') -> str:
  """Train/test accuracy of network and linearization vs width, as a PNG.

  Written atomically (temporary file + rename). Error bars are 95% CI
  half-widths when there are several runs per width.

  Args:
    summary: the output of `linearized.summarize_by_width`.
    path: the PNG to write.
    title: figure title.

  Returns:
    `path`.
  """
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use('Agg')
  from matplotlib import pyplot  # pylint: disable=g-import-not-at-top
  widths = sorted(summary, key=float)
  x = [float(w) for w in widths]
  figure, axes = pyplot.subplots(figsize=(6, 4))
  styles = {'nn_test_accuracy': ('network, test', 'C0', '-'),
            'nn_train_accuracy': ('network, train', 'C0', ':'),
            'lin_test_accuracy': ('linearized, test', 'C1', '-'),
            'lin_train_accuracy': ('linearized, train', 'C1', ':')}
  for metric, (label, color, line) in styles.items():
    means = [summary[w].get(metric, {}).get('mean') for w in widths]
    errs = [summary[w].get(metric, {}).get('ci95') or 0.0 for w in widths]
    if any(m is None for m in means):
      continue
    axes.errorbar(x, means, yerr=errs, label=label, color=color,
                  linestyle=line, marker='o', capsize=3)
  axes.set_xscale('log', base=2)
  axes.set_xlabel('width multiplier k')
  axes.set_ylabel('accuracy')
  axes.set_title(title)
  axes.grid(alpha=0.3)
  axes.legend()
  figure.tight_layout()
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  temporary = os.path.join(directory, '.' + os.path.basename(path) + '.tmp')
  figure.savefig(temporary, format='png', dpi=120)
  pyplot.close(figure)
  os.replace(temporary, path)
  return path


def probe_outputs(trajectory: Mapping[str, Any], model: str) -> np.ndarray:
  """(epochs, probes) output of each probe image's true class over training.

  Args:
    trajectory: a record's 'trajectory' ({'epochs', 'probe_labels', 'nn',
      'lin'}; 'nn' / 'lin' are (epochs, probes, L) nested lists).
    model: 'nn' (the network) or 'lin' (its linearization).

  Returns:
    For L outputs the output of the labelled class, for one output the
    logit.
  """
  errors.require_choice(model, ('nn', 'lin'), 'trajectory model')
  outputs = np.asarray(trajectory[model], np.float64)
  if outputs.shape[2] == 1:
    return outputs[:, :, 0]
  labels = np.asarray(trajectory['probe_labels'], np.int64)
  return outputs[:, np.arange(len(labels)), labels]


def plot_output_trajectories(records: Sequence[Mapping[str, Any]], path: str,
                             title: str = '') -> str:
  """Network (solid) vs linearization (dashed) outputs over training.

  One panel per width (the first run of each), one colour per probe image
  (at most `MAX_PLOTTED_PROBES`); y is the output of the image's class.

  Args:
    records: study records; those with a 'trajectory' are drawn.
    path: the PNG to write (atomically).
    title: figure title.

  Returns:
    `path`.

  Raises:
    AfterKernelError: no record has a trajectory.
  """
  firsts = {}
  for record in sorted(records, key=lambda r: (r['width'], r['run'])):
    if 'trajectory' in record:
      firsts.setdefault(record['width'], record)
  errors.require(bool(firsts), 'no record has an output trajectory; set '
                 'trajectory_every > 0')
  figure, axes_row = plots.new_figure(len(firsts))
  for axes, (width, record) in zip(axes_row, sorted(firsts.items())):
    trajectory = record['trajectory']
    for model, line in (('nn', '-'), ('lin', '--')):
      values = probe_outputs(trajectory, model)[:, :MAX_PLOTTED_PROBES]
      for probe in range(values.shape[1]):
        axes.plot(trajectory['epochs'], values[:, probe], linestyle=line,
                  color=f'C{probe}', marker='.',
                  label=None if probe else
                  {'nn': 'network', 'lin': 'linearized'}[model])
    axes.set_xlabel('epoch')
    axes.set_ylabel('output of the true class')
    axes.set_title(f'width k = {width:g}')
    axes.grid(alpha=0.3)
    axes.legend()
  figure.suptitle(title)
  figure.tight_layout()
  directory = os.path.dirname(os.path.abspath(path))
  name, extension = os.path.splitext(os.path.basename(path))
  return plots.save(figure, directory, name, (extension.lstrip('.'),))[0]


def format_summary(summary: Dict[str, Dict[str, Dict[str, Any]]]) -> str:
  """One line per width: accuracies of both models, gap and ranks."""
  columns = ('nn_train_accuracy', 'nn_test_accuracy', 'lin_train_accuracy',
             'lin_test_accuracy', 'test_accuracy_gap', 'ntk_entropy_eff_rank',
             'ak_entropy_eff_rank')
  header = ['width', 'nn train', 'nn test', 'lin train', 'lin test',
            'test gap', 'rank NTK', 'rank AK']
  lines = [' '.join(f'{h:>10}' for h in header)]
  for width in sorted(summary, key=float):
    cells = [f'{float(width):>10g}']
    for name in columns:
      entry = summary[width].get(name, {})
      mean = entry.get('mean')
      cells.append(f'{mean:>10.4f}' if mean is not None else f'{"-":>10}')
    lines.append(' '.join(cells))
  counts = sorted({e['n'] for s in summary.values() for e in s.values()})
  lines.append(f'(means over n = {"/".join(map(str, counts))} runs per width)')
  return '\n'.join(lines)
