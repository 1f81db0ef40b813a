"""Experiment 2 of Vyas et al. (2022): the after kernel vs training-set size.

K_m is the after kernel (empirical NTK after training) of a network trained
on m examples (the recipe and output folder of `scaling_common`); it is then
fit on n examples -- the first n of the run's permuted training set
('subset': for n <= m a subset of the m, for n > m the m plus n - m more) or
n examples disjoint from the m ('fresh'). Reported: K_m(n_ref) against m,
and the n-scaling curve (with its fitted beta, `scaling_fits`) of K_m for
several m. m = 0 is the NTK at initialization.

Where K_m is taken (`after_kernel_at`): after `epochs` epochs
('fixed_epochs', the default), or at the optimal early-stopping point of the
network trained on m examples ('early_stopping', App. A.4 of the paper):
the network is evaluated at steps growing by `eval_growth` (and at step 0)
up to `epochs` epochs on a held-out validation set, and K_m is the empirical
NTK of the weights of least validation error. The validation set is the
`num_validation` training-pool examples that follow every example the run
uses for training or fitting: disjoint from the m, the n and the test set,
because K_m is then scored on the test set and choosing its checkpoint there
would leak the test labels into the kernel.
"""

import dataclasses
import functools
import time
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple)

import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel import plots
from afterkernel import training
from afterkernel.studies import runner
from afterkernel.studies import scaling_common as common
from afterkernel.studies import scaling_fits
from afterkernel.studies import scaling_networks
from afterkernel.studies import store as store_lib

STUDY = common.AFTER_KERNEL_VS_M
# Where kernel examples come from in the after-kernel study (see module doc).
FIT_EXAMPLES = ('subset', 'fresh')
# Where the after kernel K_m is taken (see the module docstring).
AFTER_KERNEL_AT = ('fixed_epochs', 'early_stopping')


@dataclasses.dataclass(frozen=True)
class AfterKernelVsMConfig(common.CommonConfig):
  """Experiment 2: the after kernel K_m of a network trained on m examples.

  Attributes (besides `common.CommonConfig`'s):
    train_sizes: the m (0 = no training: the NTK at initialization).
    fit_sizes: the n the kernels are fit on.
    reference_fit_size: the n of the "K_m(n) vs m" panel; one of fit_sizes.
    curve_train_sizes: the m whose n-curves are drawn and fit; () = all.
    fit_examples: 'subset' or 'fresh' (see the module docstring).
    epochs: epochs of network training on the m examples.
    fit_steps: SGD steps of kernel SGD.
    num_bootstrap: bootstrap resamples for the CI of each curve's beta
      (one run only, as in DataScalingConfig).
    zero_errors: rule for zero test errors in the fits, one of
      `scaling_fits.ZERO_ERROR_RULES` (see there).
    after_kernel_at: one of `AFTER_KERNEL_AT` (see the module docstring).
    num_validation: held-out validation examples of 'early_stopping'.
  """
  train_sizes: tuple = (0, 100, 400, 1600)
  fit_sizes: tuple = (100, 200, 500, 1000)
  reference_fit_size: int = 500
  curve_train_sizes: tuple = ()
  fit_examples: str = 'subset'
  epochs: int = 20
  fit_steps: int = 2000
  num_bootstrap: int = common.DEFAULT_NUM_BOOTSTRAP
  zero_errors: str = scaling_fits.DEFAULT_ZERO_ERRORS
  after_kernel_at: str = 'fixed_epochs'
  num_validation: int = 1000

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    self._validate_common()
    errors.require_choice(self.after_kernel_at, AFTER_KERNEL_AT,
                          'after_kernel_at')
    runner.require_positive_int_fields(self, ('num_validation',))
    common.check_sizes(self.train_sizes, 'train_sizes', allow_zero=True)
    common.check_sizes(self.fit_sizes, 'fit_sizes')
    errors.require(self.reference_fit_size in self.fit_sizes,
                   f'reference_fit_size={self.reference_fit_size} is not one '
                   f'of fit_sizes {list(self.fit_sizes)}; add it')
    errors.require(set(self.curve_train_sizes) <= set(self.train_sizes),
                   f'curve_train_sizes {list(self.curve_train_sizes)} must be '
                   f'among train_sizes {list(self.train_sizes)}')
    errors.require_choice(self.fit_examples, FIT_EXAMPLES, 'fit_examples')
    errors.require(common.is_int(self.epochs) and self.epochs >= 0,
                   f'epochs must be a non-negative integer, got '
                   f'{self.epochs!r}')
    runner.require_positive_int_fields(self, ('fit_steps', 'num_bootstrap'))
    scaling_fits.check_zero_errors(self.zero_errors)


PRESETS = {
    'tiny': AfterKernelVsMConfig(train_sizes=(0, 50, 200),
                                 fit_sizes=(25, 50, 100),
                                 reference_fit_size=50, epochs=5,
                                 fit_steps=150, num_bootstrap=50,
                                 **common.TINY),
    'cpu': AfterKernelVsMConfig(train_sizes=(0, 125, 500, 2000, 8000),
                                fit_sizes=(125, 250, 500, 1000, 2000),
                                reference_fit_size=500, epochs=10,
                                fit_steps=3000,
                                **dict(common.CPU, num_runs=2)),
    # App. A.4: K_m at the optimal early-stopping point (validation on 500
    # held-out training examples) in the paper's Myrtle / CIFAR setting.
    'paper': AfterKernelVsMConfig(train_sizes=(0, 200, 800),
                                  fit_sizes=(100, 200, 400),
                                  reference_fit_size=200, epochs=60,
                                  fit_steps=2000,
                                  after_kernel_at='early_stopping',
                                  num_validation=500,
                                  **dict(common.MYRTLE, num_runs=1)),
}


def _fit_indices(config: AfterKernelVsMConfig, m: int, n: int) -> slice:
  """Training rows the kernel of K_m is fit on (see the module docstring)."""
  return slice(0, n) if config.fit_examples == 'subset' else slice(m, m + n)


def _validation_size(config: AfterKernelVsMConfig) -> int:
  """Held-out validation examples a run needs (0 without early stopping)."""
  return (config.num_validation
          if config.after_kernel_at == 'early_stopping' else 0)


def _needed_examples(config: AfterKernelVsMConfig, m: int, n: int) -> int:
  return max(m, n) if config.fit_examples == 'subset' else m + n


def train_for_after_kernel(config: AfterKernelVsMConfig, model,
                           x_train: np.ndarray, y_train: np.ndarray,
                           x_test: np.ndarray, y_test: np.ndarray, seed: int,
                           validation: Optional[Tuple[np.ndarray, np.ndarray]]
                           = None) -> Tuple[Dict[str, Any], Dict[str, Any]]:
  """Trains `model` on (x_train, y_train) and leaves it where K_m is taken.

  `epochs` epochs of the studies' recipe; with `validation` (x, y), the
  network is evaluated at step 0 and at steps growing by `eval_growth`, and
  `model` is left with the weights of least validation error (the optimal
  early-stopping point); without, with its weights after the last step.

  Returns:
    (metrics, early_stopping): the network's test error / MSE where K_m is
    taken, 'train_steps' and, with validation, 'stop_step', 'stop_epoch',
    'validation_error' and 'network_final_test_error'; early_stopping is
    {'steps', 'validation_errors'} (the recorded validation curve) or {}.
  """
  m = len(y_train)
  steps = scaling_networks.epoch_steps(config, m, config.epochs)
  metrics, curve = {'train_steps': steps}, {}
  if steps == 0:
    return metrics, curve
  if validation is None:
    evaluator = training.NetworkEvaluator(x_test, y_test)
    common.train_network(config, model, x_train, y_train, steps, seed,
                         [steps], evaluator)
    metrics['network_test_error'] = evaluator.curve[-1][1]
    metrics['network_test_mse'] = evaluator.curve[-1][2]
    return metrics, curve
  checkpoint = scaling_networks.EarlyStoppingCheckpoint(
      validation[0], validation[1], x_test, y_test)
  marks = [0] + [int(t) for t in kernel_fit.eval_steps(steps,
                                                       config.eval_growth)]
  common.train_network(config, model, x_train, y_train, steps, seed, marks,
                       checkpoint)
  model.set_weights(checkpoint.best_weights)
  steps_seen, validation_errors = checkpoint.curve()
  metrics['network_test_error'], metrics['network_test_mse'] = (
      checkpoint.test_at_best())
  metrics['network_final_test_error'] = checkpoint.test.curve[-1][1]
  metrics['stop_step'] = checkpoint.best_step
  metrics['stop_epoch'] = (checkpoint.best_step *
                           scaling_networks.batch_size_for(config, m) / m)
  metrics['validation_error'] = min(validation_errors)
  curve = {'steps': steps_seen, 'validation_errors': validation_errors}
  return metrics, curve


def _after_kernel_run(config: AfterKernelVsMConfig, task: data.BinaryTask,
                      m: int, fit_sizes: Sequence[int], run: int, seed: int,
                      log: Callable[[str], None],
                      needed: int) -> List[Dict[str, Any]]:
  """Trains on the first m examples; fits K_m on each n; one record per n."""
  y_all = common.plus_minus(task.y_train)
  x_test, y_test = task.x_test, common.plus_minus(task.y_test)
  model = common.build_network(config, task.x_train.shape[1:], seed)
  validation = None
  if config.after_kernel_at == 'early_stopping':
    rows = slice(needed, needed + config.num_validation)
    validation = (task.x_train[rows], y_all[rows])
  start = time.time()
  network_metrics, curve = train_for_after_kernel(
      config, model, task.x_train[:m], y_all[:m], x_test, y_test, seed,
      validation)
  timings = {'network_train_seconds': time.time() - start}
  kernel = kernel_fit.EmpiricalNTK(model, config.feature_batch_size)
  largest = _fit_indices(config, m, max(fit_sizes))
  start = time.time()
  train_gram, cross_gram = kernel_fit.kernel_grams(
      kernel, task.x_train[largest], x_test)
  timings['gram_seconds'] = time.time() - start
  y_fit = y_all[largest]
  records = []
  for n in fit_sizes:
    start = time.time()
    result = common.fit_kernel_grams(config, train_gram[:n, :n], y_fit[:n],
                                     cross_gram[:, :n], y_test,
                                     config.fit_steps, seed)
    metrics = dict(network_metrics,
                   **common.fit_metrics(result, 'after_kernel'))
    point = {'train_subset': int(m), 'fit_size': int(n)}
    log(f'm={m} n={n} run {run}: K_m test error '
        f'{metrics["after_kernel_test_error"]:.4f}')
    info = dict(task.info)
    info.pop('transforms', None)
    timings_n = dict(timings, fit_seconds=time.time() - start)
    records.append(common.record(STUDY, config, point, run, seed, metrics,
                                 timings_n, info))
    if curve:
      records[-1]['early_stopping'] = curve
  return records


def summarize(config: AfterKernelVsMConfig,
                                records: Sequence[Mapping[str, Any]]
                                ) -> Dict[str, Any]:
  """Per-(m, n) summary, K_m(n_ref) vs m, and an n-power law per curve m.

  Returns:
    {'entries', 'reference_fit_size', 'fits': {str(m):
    `scaling_fits.fit_curve` output or None}, 'train_sizes': the m with data,
    'zero_errors': {'rule', 'excluded_sizes'}}. With the 'exclude' rule a
    fit size n with a zero error in any curve is dropped from every curve
    (`scaling_fits.zero_error_rule`).
  """
  records = [r for r in records if r.get('family') == STUDY and
             r['point'].get('train_subset') in config.train_sizes and
             r['point'].get('fit_size') in config.fit_sizes and
             r.get('run', 0) < config.num_runs]
  train_sizes = sorted({r['point']['train_subset'] for r in records})
  curves = [m for m in (config.curve_train_sizes or config.train_sizes)
            if m in train_sizes]
  sizes = sorted({r['point']['fit_size'] for r in records
                  if r['point']['train_subset'] in curves})
  by_m = {}
  for m in curves:
    mine = [r for r in records if r['point']['train_subset'] == m]
    by_m[m] = scaling_fits.values_by_run(mine, 'after_kernel_test_error',
                                         sizes, 'fit_size', config.num_runs)
  counts = scaling_fits.test_counts(records, sizes, 'fit_size',
                                    config.num_runs, config.num_test)
  kept, by_m, excluded = scaling_fits.zero_error_rule(sizes, by_m, counts,
                                                      config.zero_errors)
  fits = {}
  for index, m in enumerate(sorted(curves)):
    values = by_m[m]
    usable = [i for i in range(len(kept))
              if not np.all(np.isnan(values[:, i]))]
    if len(usable) < 3:
      fits[str(m)] = None
      continue
    fits[str(m)] = scaling_fits.fit_curve(
        [kept[i] for i in usable], values[:, usable], config.num_bootstrap,
        config.seed + index)
  return {'entries': store_lib.summarize(records), 'fits': fits,
          'reference_fit_size': config.reference_fit_size,
          'train_sizes': train_sizes,
          'zero_errors': {'rule': config.zero_errors,
                          'excluded_sizes': excluded}}


def plot(summary: Mapping[str, Any], title: str = ''):
  """(a) K_m(n_ref) and the network vs m; (b) K_m test error vs n, fitted."""
  fig, (left, right) = plots.new_figure(2)
  entries = summary['entries']
  reference = summary['reference_fit_size']
  at_ref = sorted((e for e in entries
                   if e['point']['fit_size'] == reference),
                  key=lambda e: e['point']['train_subset'])
  trained = [e for e in at_ref if e['point']['train_subset'] > 0]
  if trained:
    plots.errorbar(left, [e['point']['train_subset'] for e in trained],
                   [e['metrics']['after_kernel_test_error'] for e in trained],
                   color='C0', label=f'after kernel K_m fit on n = {reference}')
    with_network = [e for e in trained if 'network_test_error' in
                    e['metrics'] and e['metrics']['network_test_error'][
                        'mean'] is not None]
    if with_network:
      plots.errorbar(left, [e['point']['train_subset'] for e in with_network],
                     [e['metrics']['network_test_error']
                      for e in with_network],
                     color='C3', label='network trained on m')
  for e in at_ref:
    if e['point']['train_subset'] == 0:
      left.axhline(e['metrics']['after_kernel_test_error']['mean'],
                   color='C7', linestyle='--',
                   label=f'K_0 = NTK at init, n = {reference}')
  plots.finish_log_axes(left, 'network training examples m', 'test error',
                        log_x=True,
                        ticks=[e['point']['train_subset'] for e in at_ref])
  left.set_title(f'K_m(n = {reference}) vs m', fontsize=10)
  for index, m in enumerate(sorted(int(k) for k in summary['fits'])):
    curve = sorted((e for e in entries if e['point']['train_subset'] == m),
                   key=lambda e: e['point']['fit_size'])
    if not curve:
      continue
    fit = summary['fits'][str(m)]
    color = f'C{index}'
    label = f'K_{m}' + (' (init)' if m == 0 else '')
    if fit:
      label += f', beta = {scaling_fits.beta_text(fit)}'
      if fit.get('identified') is False:
        label += ' (saturated: beta not identified)'
    plots.errorbar(right, [e['point']['fit_size'] for e in curve],
                   [e['metrics']['after_kernel_test_error'] for e in curve],
                   color=color, label=label)
    if fit:
      grid = np.geomspace(min(fit['sizes']), max(fit['sizes']), 100)
      right.plot(grid, scaling_fits.power_law(grid, fit), color=color,
                 linewidth=1.2)
  plots.finish_log_axes(right, 'kernel training examples n', 'test error',
                        log_x=True,
                        ticks=[e['point']['fit_size'] for e in entries])
  right.set_title('scaling of K_m with n', fontsize=10)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return fig


def _point_dict(point: Tuple[int, int]) -> Dict[str, Any]:
  return {'train_subset': int(point[0]), 'fit_size': int(point[1])}


def _train_size(point: Tuple[int, int]) -> int:
  return point[0]


def _run_unit(config: AfterKernelVsMConfig, context: None,
              unit: runner.WorkUnit, log: Callable[[str], None], *,
              base: data.BinaryTask, needed: int) -> List[Dict[str, Any]]:
  """One m of one run: its network, its K_m and every fit size n."""
  del context
  seed, task = common.seeded_run_task(config, unit, base,
                                      needed + _validation_size(config))
  m = unit.points[0][0]
  return _after_kernel_run(config, task, m, [n for _, n in unit.points],
                           unit.run, seed, log, needed)


def run(config: AfterKernelVsMConfig, output_dir: str,
        log: Callable[[str], None] = print,
        executor: runner.Executor = runner.local_executor) -> Dict[str, Any]:
  """Experiment 2: every (m, run) not yet in `output_dir`; returns the summary.

  Run r (seed config.seed + r) permutes the data, trains a fresh network on
  its first m examples for `epochs` epochs (none for m = 0), takes its after
  kernel K_m (`kernel_fit.EmpiricalNTK`) after the last step or at the
  optimal early-stopping point (`after_kernel_at`) and fits it on every n of
  `fit_sizes` (rows per `fit_examples`). (m, n) pairs needing more examples
  than the data has are left out (logged). One `runner.WorkUnit` per (run,
  m); an m with a missing record is measured again for every n. The
  summary it returns (`summarize`) is also written with the figure by
  `common.write_outputs`; a bad configuration, data or output folder raises
  AfterKernelError.
  """
  config.validate()
  held_out = _validation_size(config)
  base = common.load_base_task(config, held_out + max(
      _needed_examples(config, m, n) for m in config.train_sizes
      for n in config.fit_sizes))
  available = len(base.y_train) - held_out
  plan = {}
  for m in config.train_sizes:
    fit_sizes = [n for n in config.fit_sizes
                 if _needed_examples(config, m, n) <= available]
    if len(fit_sizes) < len(config.fit_sizes):
      log(f'm={m}: fit sizes {sorted(set(config.fit_sizes) - set(fit_sizes))}'
          f' need more than the {available} training examples; left out')
    if fit_sizes:
      plan[m] = fit_sizes
  errors.require(bool(plan), f'no (m, n) pair fits the {available} training '
                 f'examples of {config.dataset}; lower train_sizes/fit_sizes')
  needed = max(_needed_examples(config, m, n) for m, ns in plan.items()
               for n in ns)
  records = common.run_study(
      STUDY, config, output_dir,
      [(m, n) for m, ns in plan.items() for n in ns], _point_dict,
      functools.partial(_run_unit, base=base, needed=needed), log, executor,
      whole_runs=True, group=_train_size)
  summary = summarize(config, records)
  common.write_outputs(output_dir, summary, STUDY, plot(
      summary, common.title(config, 'after kernel vs m')))
  return summary


def format_summary(summary: Mapping[str, Any]) -> str:
  """Test error of K_m for every (m, n), then beta per curve m."""
  entries = summary['entries']
  fit_sizes = sorted({e['point']['fit_size'] for e in entries})
  train_sizes = sorted({e['point']['train_subset'] for e in entries})
  header = ['m', 'network (trained on m)'] + [f'K_m n={n}' for n in fit_sizes]
  rows = []
  for m in train_sizes:
    row = [str(m), '-']
    for n in fit_sizes:
      match = [e for e in entries if e['point']['train_subset'] == m and
               e['point']['fit_size'] == n]
      if match and row[1] == '-':
        row[1] = common.stat_text(
            match[0]['metrics'].get('network_test_error'))
      row.append(common.stat_text(
          match[0]['metrics'].get('after_kernel_test_error'))
                 if match else '-')
    rows.append(row)
  lines = common.table(header, rows)
  lines.append('(test error: mean ± 95% CI half-width over runs; m = 0 is '
               'the NTK at init)')
  fit_rows = [[f'K_{m}', scaling_fits.beta_text(summary['fits'][m]),
               scaling_fits.identified_text(summary['fits'][m]),
               scaling_fits.local_text(summary['fits'][m])]
              for m in sorted(summary['fits'], key=int)]
  if fit_rows:
    lines.append('')
    lines.extend(common.table(['kernel', 'beta in n [95% CI]',
                               'beta identified', 'local slope'], fit_rows))
    lines.append(scaling_fits.zero_errors_text(summary))
  return '\n'.join(lines)


def preset(name: str, **overrides) -> AfterKernelVsMConfig:
  """The preset `name` with fields replaced by `overrides`."""
  return common.preset(STUDY, PRESETS, name, **overrides)
