"""Experiment 1 of Vyas et al. (2022): test error vs training-set size n.

For every training-set size n, the test error of the network, of its
empirical NTK at initialization and of its infinite-width NTK, each fit on
the same n examples (the recipe and output folder of `scaling_common`). Per
predictor, L(n) = A (1/n + alpha)^beta is fit with a 95% confidence interval
of beta over runs (`scaling_fits`), zero test errors handled by an explicit
rule. The study's claim: the network's exponent beta exceeds its kernels'
(it improves faster with data).
"""

import dataclasses
import functools
import time
from typing import Any, Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel import models
from afterkernel import plots
from afterkernel import training
from afterkernel.studies import runner
from afterkernel.studies import scaling_common as common
from afterkernel.studies import scaling_fits
from afterkernel.studies import scaling_networks
from afterkernel.studies import store as store_lib

STUDY = common.DATA_SCALING
# Predictors of the data-scaling study, in table order.
PREDICTORS = ('network', 'init_ntk', 'infinite_ntk')
PREDICTOR_LABELS = {'network': 'network', 'init_ntk': 'empirical NTK at init',
                    'infinite_ntk': 'infinite-width NTK'}


@dataclasses.dataclass(frozen=True)
class DataScalingConfig(common.CommonConfig):
  """Experiment 1: test error vs training-set size n for three predictors.

  Attributes (besides `common.CommonConfig`'s):
    sample_sizes: the n; sizes above the available data are left out (logged).
    max_steps: SGD steps of the network and of kernel SGD.
    num_bootstrap: bootstrap resamples for the CI of beta (used with one
      run; with several, the CI is a Student t over per-run exponents).
    zero_errors: rule for zero test errors in the fits, one of
      `scaling_fits.ZERO_ERROR_RULES` (see there).
    widths: () = one network width (`width`); else the error-vs-width study
      of Figs 2b/2c/8: every n of sample_sizes (often one) at each width
      (records keyed by n and width; no power-law fit in n).
  """
  sample_sizes: tuple = (100, 200, 400, 800, 1600)
  max_steps: int = 2000
  num_bootstrap: int = common.DEFAULT_NUM_BOOTSTRAP
  zero_errors: str = scaling_fits.DEFAULT_ZERO_ERRORS
  widths: tuple = ()

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    self._validate_common()
    common.check_sizes(self.sample_sizes, 'sample_sizes')
    if self.widths:
      common.check_sizes(self.widths, 'widths')
    errors.require(len(self.sample_sizes) >= 3 or self.widths,
                   'sample_sizes needs at least 3 sizes to fit '
                   'A (1/n + alpha)^beta (or give widths)')
    runner.require_positive_int_fields(self, ('max_steps', 'num_bootstrap'))
    scaling_fits.check_zero_errors(self.zero_errors)


# The Fig 3 ablations of the 'cpu' run, one field each (the flags of the
# same fields give any other combination).
ABLATIONS = {
    'ablation_small_lr': dict(learning_rate=0.1),
    'ablation_full_batch': dict(full_batch=True),
    'ablation_no_momentum': dict(momentum=0.0),
    'ablation_no_early_stopping': dict(early_stopping=False),
}
_CPU = DataScalingConfig(sample_sizes=(125, 250, 500, 1000, 2000, 4000),
                         max_steps=3000, **dict(common.CPU, num_runs=5))
PRESETS = {
    'tiny': DataScalingConfig(sample_sizes=(25, 50, 100, 200), max_steps=150,
                              num_bootstrap=50, **common.TINY),
    # Runs are the unit of the interval of beta: 5 (about 2-4 min each on
    # 2 shared cores) give a usable Student-t interval.
    'cpu': _CPU,
    # Figs 2b/2c/8: error vs width at n = 1000 (FC, MNIST 3-vs-8).
    'width': dataclasses.replace(_CPU, sample_sizes=(1000,), num_runs=2,
                                 widths=(64, 128, 256, 512, 1024)),
    # The paper's main setting at CPU scale: Myrtle-5 (16 channels) on
    # CIFAR-10 0-4 vs 5-9; network and empirical NTK only (no infinite
    # convolutional kernel here).
    'myrtle': DataScalingConfig(sample_sizes=(100, 200, 400, 800),
                                max_steps=2000, **common.MYRTLE),
}
PRESETS.update({name: dataclasses.replace(_CPU, **change)
                for name, change in ABLATIONS.items()})


def _point(config: DataScalingConfig, task: data.BinaryTask, n: int,
           width: int, run: int, seed: int, log: Callable[[str], None]
           ) -> Dict[str, Any]:
  x_train, y_train = task.x_train[:n], common.plus_minus(task.y_train[:n])
  x_test, y_test = task.x_test, common.plus_minus(task.y_test)
  model = common.build_network(config, task.x_train.shape[1:], seed, width)
  metrics, timings = {}, {}
  kernels = [('init_ntk', kernel_fit.EmpiricalNTK(
      model, config.feature_batch_size))]
  if scaling_networks.has_infinite_kernel(config):
    kernels.append(('infinite_ntk', common.infinite_kernel(config)))
  for name, kernel in kernels:
    values, seconds = common.kernel_metrics(
        config, kernel, x_train, y_train, x_test, y_test, name,
        config.max_steps, seed)
    metrics.update(values)
    timings.update(seconds)
  evaluator = training.NetworkEvaluator(x_test, y_test)
  start = time.time()
  common.train_network(config, model, x_train, y_train, config.max_steps,
                       seed, kernel_fit.eval_steps(config.max_steps,
                                                   config.eval_growth),
                       evaluator)
  timings['network_train_seconds'] = time.time() - start
  metrics.update(evaluator.metrics('network'))
  metrics['num_parameters'] = models.count_parameters(model)
  errors_text = ', '.join(
      f'{PREDICTOR_LABELS[p]} {metrics[f"{p}_test_error"]:.4f}'
      for p in PREDICTORS if f'{p}_test_error' in metrics)
  log(f'n={n} width={width} run {run}: test error {errors_text} '
      f'({sum(timings.values()):.1f} s)')
  info = dict(task.info)
  info.pop('transforms', None)
  return common.record(STUDY, config,
                       _point_dict((n, width) if config.widths else n, config),
                       run, seed, metrics, timings, info)


def summarize(config: DataScalingConfig,
                           records: Sequence[Mapping[str, Any]]
                           ) -> Dict[str, Any]:
  """Per-point summary and per-predictor power-law fits of the records.

  Args:
    config: the study configuration (sizes, runs, bootstrap, zero-error rule).
    records: the study's records (others are ignored).

  Returns:
    {'entries': `store.summarize` output, 'fits': {predictor:
    `scaling_fits.fit_curve` output or None when fewer than 3 sizes are
    usable}, 'sizes': the n with data, 'zero_errors': {'rule',
    'excluded_sizes'}, 'error_metrics': {predictor: the metric reported
    (`common.error_metric`)}}. With the 'exclude' rule the three predictors
    are fit on the same sizes (`scaling_fits.zero_error_rule`). With
    `config.widths` nothing is fit ('fits' is empty; 'widths' lists them).
  """
  records = [r for r in records if r.get('family') == STUDY and
             r['point'].get('train_subset') in config.sample_sizes and
             r['point'].get('width') in (config.widths or (None,)) and
             r.get('run', 0) < config.num_runs]
  sizes = sorted({r['point']['train_subset'] for r in records})
  names = {p: common.error_metric(config, p) for p in PREDICTORS}
  if config.widths:
    return {'entries': store_lib.summarize(records), 'fits': {},
            'sizes': sizes, 'error_metrics': names,
            'widths': sorted({r['point']['width'] for r in records}),
            'zero_errors': {'rule': config.zero_errors, 'excluded_sizes': []}}
  curves = {p: scaling_fits.values_by_run(records, names[p], sizes,
                                          'train_subset', config.num_runs)
            for p in PREDICTORS}
  counts = scaling_fits.test_counts(records, sizes, 'train_subset',
                                    config.num_runs, config.num_test)
  kept, curves, excluded = scaling_fits.zero_error_rule(sizes, curves, counts,
                                                        config.zero_errors)
  fits = {}
  for index, predictor in enumerate(PREDICTORS):
    values = curves[predictor]
    usable = [i for i in range(len(kept)) if not np.all(np.isnan(
        values[:, i]))]
    if len(usable) < 3:
      fits[predictor] = None
      continue
    fits[predictor] = scaling_fits.fit_curve(
        [kept[i] for i in usable], values[:, usable], config.num_bootstrap,
        config.seed + index)
  differences = {}
  for kernel in PREDICTORS[1:]:
    differences[kernel] = scaling_fits.paired_beta_difference(
        kept, curves['network'], curves[kernel])
  return {'entries': store_lib.summarize(records), 'fits': fits,
          'sizes': sizes,
          'zero_errors': {'rule': config.zero_errors,
                          'excluded_sizes': excluded},
          'beta_differences': differences, 'error_metrics': names}



def _series(summary: Mapping[str, Any]):
  """(x key, [(label suffix, entries sorted by x)]) of the figure's curves."""
  if summary.get('widths'):
    return 'width', [
        (f', n = {n}', sorted((e for e in summary['entries']
                               if e['point']['train_subset'] == n),
                              key=lambda e: e['point']['width']))
        for n in summary['sizes']]
  return 'train_subset', [('', sorted(
      summary['entries'], key=lambda e: e['point']['train_subset']))]


def plot(summary: Mapping[str, Any], title: str = ''):
  """Log-log test error vs n (or vs width) per predictor, 95% CIs, fits."""
  fig, (ax,) = plots.new_figure(1)
  x_key, series = _series(summary)
  names = summary.get('error_metrics', {})
  index = 0
  for suffix, entries in series:
    for predictor in PREDICTORS:
      metric = names.get(predictor, f'{predictor}_test_error')
      points = [(e['point'][x_key], e['metrics'][metric]) for e in entries
                if e['metrics'].get(metric, {}).get('mean')]
      if not points:
        continue
      color = f'C{index}'
      index += 1
      fit = summary['fits'].get(predictor)
      label = PREDICTOR_LABELS[predictor] + suffix
      if fit:
        label += f', beta = {scaling_fits.beta_text(fit)}'
        if fit.get('identified') is False:
          label += ' (saturated: beta not identified)'
      plots.errorbar(ax, [p[0] for p in points], [p[1] for p in points],
                     color=color, label=label)
      if fit:
        grid = np.geomspace(min(fit['sizes']), max(fit['sizes']), 100)
        ax.plot(grid, scaling_fits.power_law(grid, fit), color=color,
                linewidth=1.2)
  plots.finish_log_axes(
      ax, 'network width' if x_key == 'width' else 'training examples n',
      'test error', log_x=True,
      ticks=sorted({e['point'][x_key] for _, es in series for e in es}))
  ax.set_title(title or ('test error vs width at fixed n' if x_key == 'width'
                         else 'test error vs n: fits A (1/n + alpha)^beta'),
               fontsize=9)
  fig.tight_layout()
  return fig


def _n_width(point: Any, config: DataScalingConfig) -> Tuple[int, int]:
  """(n, width) of a point: n alone, or (n, width) in the width study."""
  if config.widths:
    return int(point[0]), int(point[1])
  return int(point), int(config.width)


def _point_dict(point: Any, config: DataScalingConfig) -> Dict[str, Any]:
  """{'train_subset': n} (+ 'width' in the width study) of a point."""
  n, width = _n_width(point, config)
  if config.widths:
    return {'train_subset': n, 'width': width}
  return {'train_subset': n}


def _run_unit(config: DataScalingConfig, context: None,
              unit: runner.WorkUnit, log: Callable[[str], None], *,
              base: data.BinaryTask) -> List[Dict[str, Any]]:
  """The missing (n, width) points of one run, from one permutation."""
  del context
  points = [_n_width(point, config) for point in unit.points]
  # Every size of the run comes from its first `largest` examples (so a
  # resumed run standardizes with the same statistics).
  largest = max(n for n in config.sample_sizes if n <= len(base.y_train))
  seed, task = common.seeded_run_task(config, unit, base, largest)
  return [_point(config, task, n, width, unit.run, seed, log)
          for n, width in points]


def run(config: DataScalingConfig, output_dir: str,
        log: Callable[[str], None] = print,
        executor: runner.Executor = runner.local_executor) -> Dict[str, Any]:
  """Experiment 1: every (n, run) not yet in `output_dir`; returns the summary.

  Each run r uses seed = config.seed + r for the data permutation (its first
  n training examples, first num_test test examples) and the network's
  initialization; the three predictors of a point see the same examples.

  Args:
    config: the study configuration (validated here).
    output_dir: result folder; one of a different configuration is refused.
    log: progress printer.
    executor: runs the work units (`runner`).

  Returns:
    `summarize` of the folder's records; also written to
    summary.json / summary.csv (entries), fits.json and the figure
    data_scaling.{png,pdf}.

  Raises:
    AfterKernelError: bad configuration, data or output folder.
  """
  config.validate()
  base = common.load_base_task(config, max(config.sample_sizes))
  available = len(base.y_train)
  sizes = [n for n in config.sample_sizes if n <= available]
  dropped = sorted(set(config.sample_sizes) - set(sizes))
  if dropped:
    log(f'sample sizes {dropped} exceed the {available} training examples '
        f'of {config.dataset}; left out')
  errors.require(len(sizes) >= 3 or (config.widths and sizes),
                 f'only {len(sizes)} sample sizes fit the {available} '
                 f'training examples of {config.dataset}; need 3 for a fit')
  points = ([(n, w) for n in sizes for w in config.widths] if config.widths
            else sizes)
  records = common.run_study(
      STUDY, config, output_dir, points,
      functools.partial(_point_dict, config=config),
      functools.partial(_run_unit, base=base), log, executor)
  summary = summarize(config, records)
  common.write_outputs(output_dir, summary, STUDY, plot(
      summary, common.title(config, 'data scaling')))
  return summary


def format_summary(summary: Mapping[str, Any]) -> str:
  """Test error per n (and width) and predictor, then beta per predictor."""
  x_key, series = _series(summary)
  names = summary.get('error_metrics', {})
  keys = ['train_subset'] + (['width'] if x_key == 'width' else [])
  rows = []
  for _, entries in series:
    for entry in entries:
      row = [str(entry['point'][k]) for k in keys] + [str(len(entry['runs']))]
      for predictor in PREDICTORS:
        row.append(common.stat_text(entry['metrics'].get(
            names.get(predictor, f'{predictor}_test_error'))))
      rows.append(row)
  lines = common.table(['n'] + keys[1:] + ['runs'] +
                       [PREDICTOR_LABELS[p] for p in PREDICTORS], rows)
  lines.append('(test error: mean ± 95% CI half-width over runs; '
               + ('at optimal early stopping)' if 'final' not in
                  ''.join(names.values()) else 'at the last step)'))
  if x_key == 'width':
    return '\n'.join(lines)
  lines.append('')
  fit_rows = []
  for predictor in PREDICTORS:
    fit = summary['fits'].get(predictor)
    fit_rows.append([PREDICTOR_LABELS[predictor], scaling_fits.beta_text(fit),
                     '-' if fit is None else f'{fit["A"]:.3g}',
                     '-' if fit is None else f'{fit["alpha"]:.3g}',
                     scaling_fits.identified_text(fit),
                     scaling_fits.local_text(fit)])
  lines.extend(common.table(['predictor', 'beta [95% CI]', 'A', 'alpha',
                             'beta identified', 'local slope'], fit_rows))
  lines.append('(L(n) = A (1/n + alpha)^beta fit on log error of the mean '
               'over runs; CI: Student t over the runs\' own betas;')
  lines.append(' local slope: -d log L / d log n over the 4 smallest n)')
  difference_rows = []
  for kernel, diff in (summary.get('beta_differences') or {}).items():
    if diff:
      verdict = ('network steeper' if diff['low'] > 0 else
                 'kernel steeper' if diff['high'] < 0 else 'not resolved')
      difference_rows.append([
          f'network - {PREDICTOR_LABELS[kernel]}',
          f'{diff["mean"]:+.3f} [{diff["low"]:+.3f}, {diff["high"]:+.3f}]',
          verdict])
  if difference_rows:
    lines.append('')
    lines.extend(common.table(['beta difference (paired by run)',
                               'mean [95% CI]', 'verdict'], difference_rows))
    lines.append('(the study claims the network\'s beta exceeds its '
                 'kernels\')')
  lines.append(scaling_fits.zero_errors_text(summary))
  return '\n'.join(lines)


def preset(name: str, **overrides) -> DataScalingConfig:
  """The preset `name` with fields replaced by `overrides`."""
  return common.preset(STUDY, PRESETS, name, **overrides)
