"""Figures of sweep summaries, with matplotlib.

Long, *Properties of the after kernel* (2021) reports its findings as line
plots of a metric against training epochs, learning rate or parameter count.
A `FigureSpec` says what one figure shows; `render` draws it from
`summary.summarize` entries of one sweep family (see `sweeps`). The paper's
figures, numbered as in the paper, are listed in `paper_figures`.

Every line is the mean over runs with a band of +- the 95% confidence
half-width (Student t; no band when a point has a single run; clipped to
the metric's range, e.g. errors to [0, 1]), and the legend names the
series. Panels are one per task (and architecture, where
the figure says so) and metric group. Any point field that varies within a
panel but is not an axis of the figure (e.g. two --train_subset settings in
one store) is added to the series, so different settings are never
averaged together.

Figures are drawn with matplotlib's object-oriented API (`Figure`, Agg
canvas) and never touch pyplot's global state, so this module is safe to use
from tests and servers.
"""

import dataclasses
import math
import os
import textwrap
from typing import Any, List, Mapping, Optional, Sequence, Tuple

from matplotlib import figure as mpl_figure
from matplotlib import ticker
import numpy as np

from afterkernel import errors

FORMATS = ('png', 'pdf')
# Screen- and print-friendly size of one panel, inches.
PANEL_SIZE = (4.2, 3.2)
MAX_COLUMNS = 3
# Room for the title and a legend row under a single panel, inches.
MIN_FIGURE_WIDTH = 7.5
DPI = 120

# Legend names of metrics.
METRIC_LABELS = {
    'svm_error': 'kernel SVM',
    'conjugate_svm_error': 'conjugate-projection SVM',
    'nn_error': 'network',
    'trans_inv': 'translation',
    'zoom_inv': 'zoom',
    'rotation_inv': 'rotation',
    'swap_inv': 'quadrant swap',
    'kalignment': 'alignment',
    'epochs_trained': 'epochs trained',
}
# Y-axis label (with units) of a metric.
Y_LABELS = {
    'svm_error': 'test error (fraction of test set)',
    'conjugate_svm_error': 'test error (fraction of test set)',
    'nn_error': 'test error (fraction of test set)',
    'trans_inv': 'translation invariance (mean cosine)',
    'zoom_inv': 'zoom invariance (mean cosine)',
    'rotation_inv': 'rotation invariance (mean cosine)',
    'swap_inv': 'swap invariance (mean cosine)',
    'kalignment': 'alignment with conjugate (cosine of Grams)',
    'epochs_trained': 'epochs to reach loss target (epochs)',
}
# Values a metric can take; confidence bands are clipped to them.
VALID_RANGES = {
    'svm_error': (0.0, 1.0), 'conjugate_svm_error': (0.0, 1.0),
    'nn_error': (0.0, 1.0), 'trans_inv': (-1.0, 1.0), 'zoom_inv': (-1.0, 1.0),
    'rotation_inv': (-1.0, 1.0), 'swap_inv': (-1.0, 1.0),
    'kalignment': (-1.0, 1.0), 'epochs_trained': (0.0, math.inf),
}
X_LABELS = {
    'epoch': 'epochs of training (0 = init., the FNTK)',
    'learning_rate': 'SGD learning rate (log scale)',
    'num_parameters': 'parameters of the network (log scale)',
}
_ARCHITECTURE_NAMES = {'vgg': 'VGG-like', 'mega_vgg': 'mega-VGG',
                       'fully_connected': 'fully connected', 'sum': 'Sum net'}
_DATASET_NAMES = {'mnist': 'MNIST', 'cifar10': 'CIFAR-10', 'digits': 'digits'}
_CIFAR_CLASSES = ('airplane', 'automobile', 'bird', 'cat', 'deer', 'dog',
                  'frog', 'horse', 'ship', 'truck')
# Fields never used to split series (identity, or the figure's axes).
_NON_SERIES_FIELDS = ('family', 'task', 'epoch')
# Width of one legend entry (marker and a label like 'VGG-like, augmented').
_LEGEND_ENTRY_WIDTH = 2.6
_LINESTYLES = ('-', '--', ':', '-.')
_MARKERS = ('o', 's', '^', 'D', 'v', 'P', 'X')


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  """What one figure shows.

  Attributes:
    name: file stem, e.g. 'fig01_svm_error_vs_epochs'.
    title: the figure's title (suptitle).
    family: sweep family whose entries are plotted.
    x: point field on the x axis: 'epoch', 'learning_rate' or
      'num_parameters'.
    metric_groups: one panel column per group; metrics of a group share the
      panel (told apart by line style).
    panels_by: point fields with one panel (row) per value combination.
    series_by: point fields with one line (colour) per value combination.
    where: (field, allowed values) filters applied first.
    needs_both: a boolean point field that must take both values, else the
      figure is skipped (e.g. 'use_augmentation' for the augmentation plots).
  """
  name: str
  title: str
  family: str
  x: str
  metric_groups: Tuple[Tuple[str, ...], ...]
  panels_by: Tuple[str, ...] = ('task',)
  series_by: Tuple[str, ...] = ('nn_architecture',)
  where: Tuple[Tuple[str, Tuple[Any, ...]], ...] = ()
  needs_both: Optional[str] = None


def task_label(task: str) -> str:
  """'mnist_3v8' -> 'MNIST 3 vs 8'; CIFAR-10 tasks get class names."""
  dataset, _, classes = task.rpartition('_')
  minus, _, plus = classes.partition('v')
  name = _DATASET_NAMES.get(dataset, dataset)
  if dataset == 'cifar10' and minus.isdigit() and plus.isdigit() and max(
      int(minus), int(plus)) < len(_CIFAR_CLASSES):
    return (f'{name} {_CIFAR_CLASSES[int(minus)]}s vs '
            f'{_CIFAR_CLASSES[int(plus)]}s')
  return f'{name} {minus} vs {plus}' if plus else task


def _value_label(field: str, value: Any) -> str:
  if field == 'nn_architecture':
    return _ARCHITECTURE_NAMES.get(value, str(value))
  if field == 'task':
    return task_label(str(value))
  if field == 'use_augmentation':
    return 'augmented' if value else 'no augmentation'
  if field == 'num_parameters':
    return 'default width' if value is None else f'~{value:,} params'
  if field == 'learning_rate':
    return f'lr {value:g}'
  if field == 'epoch':
    return f'epoch {value}'
  if field in ('train_subset', 'test_subset'):
    return f'{field} {"all" if value is None else value}'
  if field == 'training_loss_target':
    return f'loss target {value:g}' if value is not None else 'no loss target'
  return str(value)


def select(spec: FigureSpec,
           entries: Sequence[Mapping[str, Any]]) -> List[Mapping[str, Any]]:
  """The entries of `spec`'s family with an x value that pass its filters."""
  selected = []
  for entry in entries:
    if entry.get('family') != spec.family:
      continue
    point = entry.get('point', {})
    if point.get(spec.x) is None:
      continue
    if all(point.get(field) in values for field, values in spec.where):
      selected.append(entry)
  return selected


def _has_metrics(spec: FigureSpec, entries) -> bool:
  wanted = {m for group in spec.metric_groups for m in group}
  return any(entry['metrics'].get(m, {}).get('mean') is not None
             for entry in entries for m in wanted)


def skip_reason(spec: FigureSpec,
                entries: Sequence[Mapping[str, Any]]) -> Optional[str]:
  """Why `spec` cannot be drawn from `entries`, or None if it can."""
  selected = select(spec, entries)
  if not selected:
    filters = ', '.join(f'{f} in {list(v)}' for f, v in spec.where)
    return (f'no records of the {spec.family!r} family'
            f'{" with " + filters if filters else ""}')
  if not _has_metrics(spec, selected):
    return 'no values of ' + ', '.join(m for g in spec.metric_groups for m in g)
  if spec.needs_both:
    values = {bool(e['point'].get(spec.needs_both)) for e in selected}
    if values != {False, True}:
      return f'needs records both with and without {spec.needs_both}'
  return None


def _key(point: Mapping[str, Any], fields: Sequence[str]) -> tuple:
  return tuple(point.get(field) for field in fields)


def _sortable(key: tuple) -> tuple:
  # None first, then numbers (bools as 0/1) in order, then strings.
  return tuple((v is not None, isinstance(v, str),
                v if isinstance(v, str) else (0.0 if v is None else float(v)))
               for v in key)


def _series_fields(spec: FigureSpec,
                   selected: Sequence[Mapping[str, Any]]) -> Tuple[str, ...]:
  """spec.series_by plus every other field that varies within a panel."""
  axis_fields = (_NON_SERIES_FIELDS + (spec.x,) + spec.panels_by +
                 spec.series_by)
  panels = {}
  for entry in selected:
    panels.setdefault(_key(entry['point'], spec.panels_by), []).append(entry)
  extra = sorted(
      field for field in selected[0]['point'] if field not in axis_fields and
      any(len({repr(e['point'].get(field)) for e in members}) > 1
          for members in panels.values()))
  return spec.series_by + tuple(extra)


def render(spec: FigureSpec, entries: Sequence[Mapping[str, Any]],
           caption: Optional[str] = None) -> Optional[mpl_figure.Figure]:
  """Draws one figure; None (nothing drawn) if `skip_reason` says so.

  Args:
    spec: the figure.
    entries: `store.summarize` output (any families; filtered here).
    caption: text under the title (default: the runs per point).

  Returns:
    The matplotlib Figure, or None.
  """
  if skip_reason(spec, entries) is not None:
    return None
  selected = select(spec, entries)
  series_fields = _series_fields(spec, selected)
  panel_keys = sorted({_key(e['point'], spec.panels_by) for e in selected},
                      key=_sortable)
  series_keys = sorted({_key(e['point'], series_fields) for e in selected},
                       key=_sortable)
  panels = [(p, g) for p in panel_keys for g in spec.metric_groups]
  columns = (len(spec.metric_groups) if len(spec.metric_groups) > 1
             else min(len(panels), MAX_COLUMNS))
  rows = math.ceil(len(panels) / columns)
  width = max(PANEL_SIZE[0] * columns, MIN_FIGURE_WIDTH)
  if caption:
    # Wrapped to the figure's width (about 11 characters an inch at 11 pt).
    caption = '\n'.join(textwrap.fill(line, int(width * 11))
                         for line in caption.split('\n'))
  caption_lines = (caption or '').count('\n')
  fig = mpl_figure.Figure(
      figsize=(width, PANEL_SIZE[1] * rows + 1.2 + 0.2 * caption_lines),
      dpi=DPI)
  axes = fig.subplots(rows, columns, squeeze=False)
  runs = set()
  for index, (panel_key, group) in enumerate(panels):
    ax = axes[index // columns][index % columns]
    for series_index, series_key in enumerate(series_keys):
      members = [e for e in selected
                 if _key(e['point'], spec.panels_by) == panel_key and
                 _key(e['point'], series_fields) == series_key]
      members.sort(key=lambda e: e['point'][spec.x])
      for metric_index, metric in enumerate(group):
        points = [(e['point'][spec.x], e['metrics'][metric])
                  for e in members
                  if e['metrics'].get(metric, {}).get('mean') is not None]
        if not points:
          continue
        runs.update(stats['n'] for _, stats in points)
        xs = [x for x, _ in points]
        means = [s['mean'] for _, s in points]
        half = [s['ci95'] or 0.0 for _, s in points]
        label_parts = [_value_label(f, v)
                       for f, v in zip(series_fields, series_key)]
        if len(group) > 1 or not label_parts:
          label_parts.append(METRIC_LABELS.get(metric, metric))
        color = f'C{series_index % 10}'
        ax.plot(xs, means, color=color,
                linestyle=_LINESTYLES[metric_index % len(_LINESTYLES)],
                marker=_MARKERS[series_index % len(_MARKERS)], markersize=4,
                label=', '.join(label_parts))
        if any(half):
          # Clipped to the metric's range (an error is never below 0).
          low, high = VALID_RANGES.get(metric, (-math.inf, math.inf))
          ax.fill_between(
              xs, [max(m - h, low) for m, h in zip(means, half)],
              [min(m + h, high) for m, h in zip(means, half)], color=color,
              alpha=0.18, linewidth=0)
    if spec.x == 'epoch':
      ax.set_xscale('symlog', linthresh=1.0)
    else:
      ax.set_xscale('log')
    ax.set_xlabel(X_LABELS[spec.x])
    ax.set_ylabel(Y_LABELS.get(group[0], group[0]))
    ax.set_title(', '.join(_value_label(f, v)
                           for f, v in zip(spec.panels_by, panel_key)) or
                 spec.family, fontsize=10)
    ax.grid(True, alpha=0.3)
    if spec.x in ('epoch', 'num_parameters'):
      ticks = sorted({x for e in selected for x in [e['point'][spec.x]]})
      ax.set_xticks(ticks, [f'{t:,}' for t in ticks])
      ax.minorticks_off()
  for index in range(len(panels), rows * columns):
    axes[index // columns][index % columns].set_visible(False)
  # One legend for the figure: the series are the same in every panel.
  legend = {}
  for ax in fig.axes:
    for handle, label in zip(*ax.get_legend_handles_labels()):
      legend.setdefault(label, handle)
  legend_columns = max(1, min(len(legend), int(width / _LEGEND_ENTRY_WIDTH)))
  legend_rows = math.ceil(len(legend) / legend_columns)
  fig.legend(list(legend.values()), list(legend.keys()), loc='lower center',
             ncol=legend_columns, fontsize=8, frameon=False)
  runs_text = '/'.join(str(n) for n in sorted(runs))
  caption = caption or f'(mean ± 95% CI over n = {runs_text} runs)'
  fig.suptitle(f'{spec.title}\n{caption}', fontsize=11)
  bottom = (0.25 * legend_rows + 0.1) / fig.get_figheight()
  fig.tight_layout(rect=(0, bottom, 1, 1))
  return fig


def save(fig: mpl_figure.Figure, directory: str, name: str,
         formats: Sequence[str] = FORMATS) -> List[str]:
  """Writes `fig` as DIRECTORY/NAME.<format> for each format; returns paths."""
  for fmt in formats:
    errors.require(fmt in ('png', 'pdf', 'svg'),
                   f'unknown figure format {fmt!r}; use png, pdf or svg')
  os.makedirs(directory, exist_ok=True)
  paths = []
  for fmt in formats:
    path = os.path.join(directory, f'{name}.{fmt}')
    # Write then rename, so a crash never leaves a half-written figure.
    temporary = os.path.join(directory, f'.{name}.tmp.{fmt}')
    fig.savefig(temporary, format=fmt)
    os.replace(temporary, path)
    paths.append(path)
  return paths


def series(entries: Sequence[Mapping[str, Any]], x_field: str,
           metric: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
  """(x, mean, 95% CI half-width) of `metric` over summary entries.

  x is each entry's point[x_field]; entries without a mean of the metric
  are left out; a missing half-width (one run) counts as 0.
  """
  x, mean, half = [], [], []
  for entry in entries:
    stats = entry['metrics'].get(metric)
    if stats and stats['mean'] is not None:
      x.append(entry['point'][x_field])
      mean.append(stats['mean'])
      half.append(stats['ci95'] or 0.0)
  return np.array(x), np.array(mean), np.array(half)


# Helpers of the study figures drawn directly (the scaling studies).

# Lower error bars on log axes stop at this fraction of the mean.
LOG_BAR_CLIP = 1 / 3
LOG_BAR_NOTE = 'bars: 95% CI over runs (lower end clipped at mean/3)'


def new_figure(columns: int):
  """(figure, axes row) of `columns` side-by-side panels at `DPI`."""
  fig = mpl_figure.Figure(figsize=(max(5.2 * columns, 6.4), 4.4), dpi=DPI)
  return fig, fig.subplots(1, columns, squeeze=False)[0]


def errorbar(ax, xs, stats_list, **kwargs) -> None:
  """Means with 95% CI bars ({'mean', 'ci95'} per x) for log axes.

  On log axes a bar reaching 0 is unreadable: the lower end is clipped at
  `LOG_BAR_CLIP` of the mean (say so in the caption: `LOG_BAR_NOTE`).
  """
  means = [s['mean'] for s in stats_list]
  half = [s['ci95'] or 0.0 for s in stats_list]
  lower = [min(h, m * (1 - LOG_BAR_CLIP)) for m, h in zip(means, half)]
  ax.errorbar(xs, means, yerr=[lower, half], capsize=3, marker='o',
              markersize=4, linestyle='none', **kwargs)


def finish_log_axes(ax, xlabel: str, ylabel: str, log_x: bool,
                    ticks: Sequence[int] = ()) -> None:
  """Log axes, labels, grid, legend; x ticks at `ticks` (plain numbers)."""
  if log_x:
    ax.set_xscale('log')
  ticks = sorted({int(t) for t in ticks if t > 0})
  if ticks:
    ax.set_xticks(ticks, [str(t) for t in ticks])
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())
  ax.set_yscale('log')
  ax.set_xlabel(xlabel)
  ax.set_ylabel(ylabel)
  ax.grid(True, which='both', alpha=0.3)
  if ax.get_legend_handles_labels()[0]:
    ax.legend(fontsize=8)
