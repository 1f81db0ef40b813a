"""Tables, figures and data-scaling fits of the second-order Taylor study.

The study itself (config, presets, training) is `studies.second_order`; this
module turns its records and summary entries into what a reader sees:

  * one training-set size: test error per epoch and at the end, per model
    (`plot`, `format_table`);
  * a grid of training-set sizes m (`num_train_grid`, Vyas et al.'s Fig 7a
    data-scaling law of H_full): test error vs m per model on log-log axes
    (best test error over the epochs) with the power law L(m) =
    A (1/m + alpha)^beta of
    `scaling_fits.fit_curve` (the library's one fitter; zero errors handled
    by `scaling_fits.zero_error_rule`), `fit_scaling`, `plot_scaling`, and a
    table of the exponents.
"""

import json
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence

import numpy as np

from afterkernel import plots
from afterkernel.studies import scaling_fits
from afterkernel.studies import tables

FIGURE_NAME = 'second_order_test_error'
SCALING_FIGURE_NAME = 'second_order_scaling'
FITS_FILE = 'second_order_scaling_fits.json'
# The models compared, in table and figure order.
MODEL_KINDS = ('network', 'linear', 'h_full', 'h_only')
MODEL_LABELS = {'network': 'network', 'linear': 'linearization',
                'h_full': 'H_full', 'h_only': 'H_only'}
# The error fit against m: the best test error over the epochs (optimal
# early stopping, as Vyas et al. report their networks' and kernels' errors).
FIT_METRIC = 'best_test_error'
# Bootstrap resamples of a fit's beta interval (used with one run only).
NUM_BOOTSTRAP = 1000

TABLE_COLUMNS = (('test error', 'test_error'),
                 ('best test err', 'best_test_error'),
                 ('train error', 'train_error'),
                 ('test mse', 'test_mse'), ('init test err',
                                            'initial_test_error'),
                 ('rms J delta', 'first_order_rms'),
                 ('rms dHd/2', 'second_order_rms'))


def _label(entry: Mapping[str, Any]) -> str:
  label = MODEL_LABELS[entry['point']['model']]
  if entry['point'].get('train_subset') is None:
    return label
  return f'{label} m={entry["point"]["train_subset"]}'


def sizes_of(entries: Sequence[Mapping[str, Any]]) -> List[int]:
  """The training-set sizes m of grid entries, increasing ([] without)."""
  return sorted({e['point']['train_subset'] for e in entries
                 if e['point'].get('train_subset') is not None})


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """One line per model (and m): means over runs (± 95% CI if runs > 1).

  With a grid of sizes, a second table gives each model's power-law fit of
  its mean test error vs m (`scaling_fits.fit_curve` of the mean curve; the
  interval over runs is in the figure and `FITS_FILE`).
  """
  sizes = sizes_of(entries)
  text = tables.format_table(entries, 'model', _label, TABLE_COLUMNS,
                             [20 if sizes else 16] * (len(TABLE_COLUMNS) + 2),
                             with_ci=True)
  if len(sizes) < 3:
    return text
  means = {}
  for entry in entries:
    stats = entry['metrics'].get(FIT_METRIC, {})
    means.setdefault(entry['point']['model'], {})[
        entry['point']['train_subset']] = stats.get('mean')
  curves = {kind: np.array([[np.nan if by_size.get(m) is None else
                             by_size[m] for m in sizes]])
            for kind, by_size in means.items()}
  fits = _fits(sizes, curves, None, scaling_fits.DEFAULT_ZERO_ERRORS, 0)
  lines = [text, '', 'best test error vs training-set size m: L(m) = A '
           '(1/m + alpha)^beta (fit of the mean curve)',
           f'{"model":>14} {"beta":>22} {"local exponent":>16} '
           f'{"identified":>11} sizes fitted']
  for kind in MODEL_KINDS:
    if kind in fits:
      fit = fits[kind]
      beta = scaling_fits.beta_text(fit) if fit else '-'
      lines.append(
          f'{MODEL_LABELS[kind]:>14} {beta:>22} '
          f'{scaling_fits.local_text(fit):>16} '
          f'{scaling_fits.identified_text(fit):>11} '
          f'{",".join(map(str, fit["sizes"])) if fit else "-"}')
  return '\n'.join(lines)


def _fits(sizes: Sequence[int], curves: Mapping[str, np.ndarray],
          counts: Optional[np.ndarray], zero_errors: str, seed: int
          ) -> Dict[str, Optional[Dict[str, Any]]]:
  """{kind: `scaling_fits.fit_curve` of its curve, or None (< 3 sizes)}."""
  if counts is None:
    counts = np.full(next(iter(curves.values())).shape, np.nan)
  kept, corrected, _ = scaling_fits.zero_error_rule(sizes, curves, counts,
                                                    zero_errors)
  fits = {}
  for kind, values in corrected.items():
    finite = np.any(np.isfinite(values), axis=0)
    usable = [s for s, ok in zip(kept, finite) if ok]
    fits[kind] = (scaling_fits.fit_curve(usable, values[:, finite],
                                         NUM_BOOTSTRAP, seed)
                  if len(usable) >= 3 else None)
  return fits


def fit_scaling(records: Sequence[Mapping[str, Any]], kinds: Sequence[str],
                sizes: Sequence[int], num_runs: int, num_test: int,
                zero_errors: str, seed: int
                ) -> Dict[str, Optional[Dict[str, Any]]]:
  """Power-law fits of `FIT_METRIC` vs m, one per model kind.

  Args:
    records: the study's grid records (point['train_subset'] = m).
    kinds: model kinds to fit.
    sizes: the m of the grid.
    num_runs: runs of the config.
    num_test: test examples (for zero_errors='continuity').
    zero_errors: a `scaling_fits.ZERO_ERROR_RULES` rule, applied to all
      kinds jointly (so their exponents cover the same m).
    seed: bootstrap seed.

  Returns:
    {kind: `scaling_fits.fit_curve` result, or None with < 3 usable sizes}.
  """
  curves = {kind: scaling_fits.values_by_run(
      records, FIT_METRIC, sizes, 'train_subset', num_runs,
      where=lambda r, kind=kind: r['point']['model'] == kind)
            for kind in kinds}
  counts = scaling_fits.test_counts(records, sizes, 'train_subset', num_runs,
                                    num_test)
  return _fits(sizes, curves, counts, zero_errors, seed)


def plot_scaling(records: Sequence[Mapping[str, Any]],
                 fits: Mapping[str, Optional[Mapping[str, Any]]],
                 sizes: Sequence[int], num_runs: int, output_dir: str,
                 title: str = '') -> List[str]:
  """`FIT_METRIC` vs m (mean ± runs' range) with the fitted laws; writes
  `FITS_FILE` too. Returns the figure paths (PNG + PDF)."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  with open(os.path.join(output_dir, FITS_FILE), 'w') as f:
    json.dump(fits, f, indent=1, sort_keys=True)
  fig = mpl_figure.Figure(figsize=(6, 4.5), dpi=plots.DPI)
  axes = fig.subplots()
  grid = np.geomspace(min(sizes), max(sizes), 100)
  for index, kind in enumerate(MODEL_KINDS):
    if kind not in fits:
      continue
    values = scaling_fits.values_by_run(
        records, FIT_METRIC, sizes, 'train_subset', num_runs,
        where=lambda r, kind=kind: r['point']['model'] == kind)
    mean = np.nanmean(values, axis=0)
    label = MODEL_LABELS[kind]
    fit = fits[kind]
    if fit:
      label += f' (beta {scaling_fits.beta_text(fit)})'
      axes.plot(grid, scaling_fits.power_law(grid, fit), color=f'C{index}',
                alpha=0.6)
    axes.errorbar(sizes, mean, yerr=[mean - np.nanmin(values, axis=0),
                                     np.nanmax(values, axis=0) - mean],
                  fmt='o', color=f'C{index}', capsize=3, label=label)
  axes.set_xscale('log')
  axes.set_yscale('log')
  axes.set_xticks(sizes, [str(m) for m in sizes], minor=False)
  axes.set_xticks([], minor=True)
  axes.set_xlabel('training-set size m')
  axes.set_ylabel('best test error over the epochs')
  axes.grid(alpha=0.3, which='both')
  axes.legend(fontsize=8)
  axes.set_title(title, fontsize=9)
  fig.tight_layout()
  return plots.save(fig, output_dir, SCALING_FIGURE_NAME)


def plot(records: Sequence[Mapping[str, Any]],
         entries: Sequence[Mapping[str, Any]], output_dir: str,
         title: str = '') -> List[str]:
  """Test error vs epoch (mean over runs) and final test error (PNG + PDF)."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(10, 4), dpi=plots.DPI)
  curve_axes, bar_axes = fig.subplots(1, 2)
  for index, kind in enumerate(MODEL_KINDS):
    curves = [r['curves']['test_error_by_epoch'] for r in records
              if r['point']['model'] == kind]
    if not curves:
      continue
    length = min(len(c) for c in curves)
    mean = np.mean([c[:length] for c in curves], axis=0)
    curve_axes.plot(np.arange(1, length + 1), mean, marker='o',
                    color=f'C{index}', label=MODEL_LABELS[kind])
  curve_axes.set_xlabel('epoch')
  curve_axes.set_ylabel('test error')
  curve_axes.grid(alpha=0.3)
  curve_axes.legend()
  labels, means, halves, colors = [], [], [], []
  for entry in entries:
    stats = entry['metrics'].get('test_error', {})
    if stats.get('mean') is None:
      continue
    kind = entry['point']['model']
    labels.append(MODEL_LABELS[kind])
    means.append(stats['mean'])
    halves.append(stats['ci95'] or 0.0)
    colors.append(f'C{MODEL_KINDS.index(kind)}')
  bar_axes.bar(labels, means, yerr=halves, color=colors, capsize=4)
  bar_axes.set_ylabel('final test error')
  bar_axes.grid(alpha=0.3, axis='y')
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, FIGURE_NAME)
