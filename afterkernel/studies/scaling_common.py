"""What the three scaling studies share: configuration, data, kernels, records.

The studies of Vyas, Bansal & Nakkiran, "Limitations of the NTK for
understanding generalization in deep learning" (2022) -- data scaling
(`studies.data_scaling`), the after kernel vs the training-set size
(`studies.after_kernel_vs_m`) and kernel dynamics (`studies.kernel_dynamics`)
-- train one network family alike: a fully connected ReLU network in the NTK
parameterization (`infinite_ntk`), Keras SGD with momentum on the MSE loss
0.5 (f(x) - y)^2 with y in {-1, +1} (`training.fit`, loss 'half_mse'), and
fit kernels with `kernel_fit` (SGD with the network's learning rate, batch
size and momentum, or ridge, or the hard-margin SVM). Errors of SGD-trained
predictors use optimal early stopping (evaluated at steps growing by
`eval_growth`, 1.1 as in the study).

This module holds their common configuration (`CommonConfig`), preset
building blocks (`TINY`, `CPU`, `preset`), data and network builders, the
kernel fit, and the output folder: `config.json` (refuses a different
configuration), one `store.ResultStore` record per (point, run) (finished
keys are skipped, so re-running resumes), `summary.json` / `summary.csv`
(`store.write_summary`: mean, std, 95% CI per point), a study-specific
`fits.json` and a figure as PNG and PDF. Power-law fits are in
`studies.scaling_fits`.
"""

import dataclasses
import functools
import math
import os
import time
from typing import (Any, Callable, ClassVar, Dict, List, Mapping, Optional,
                    Sequence, Tuple)

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import infinite_ntk
from afterkernel import kernel_fit
from afterkernel import plots
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import scaling_networks
from afterkernel.studies import store as store_lib

VERSION = '0.1.0'
DATA_SCALING = 'data_scaling'
AFTER_KERNEL_VS_M = 'after_kernel_vs_m'
KERNEL_DYNAMICS = 'kernel_dynamics'
# Where each study's figure goes (PNG and PDF) and its fitted exponents.
FIGURE_NAMES = {DATA_SCALING: 'data_scaling',
                AFTER_KERNEL_VS_M: 'after_kernel_vs_m',
                KERNEL_DYNAMICS: 'kernel_dynamics'}
FITS_FILE = 'fits.json'
# The study evaluates SGD-trained predictors at steps growing by 1.1.
DEFAULT_EVAL_GROWTH = 1.1
# Bootstrap resamples of the runs for the CI of beta.
DEFAULT_NUM_BOOTSTRAP = 200
DATASETS = tuple(data.DATASETS)



# Fields that may grow between invocations on one output_dir (more sizes,
# more runs) without invalidating the records already there.
_GROWABLE_FIELDS = ('data_dir', 'num_runs', 'sample_sizes', 'train_sizes',
                    'widths', 'fit_sizes', 'curve_train_sizes',
                    'reference_fit_size')
# Fields used only when records are summarized and fit (they never change a
# record, so re-running with another value re-summarizes the same records).
_SUMMARY_FIELDS = ('num_bootstrap', 'zero_errors', 'early_stopping')
# The studies' network builder and training recipe (`scaling_networks`).
build_network = scaling_networks.build_network
train_network = scaling_networks.train_network


@dataclasses.dataclass(frozen=True)
class CommonConfig(runner.StudyConfig, fields.TaskSourceFields):
  """Fields shared by the three studies (see the subclasses).

  Attributes:
    dataset: one of `data.DATASETS` ('synthetic' ignores the classes).
    plus_class: class labelled +1.
    minus_class: class labelled -1.
    data_dir: local data folder (layout of /work/shared/data); None = tfds.
    num_test: test examples per run (the first of the run's permutation).
    width: hidden units per layer of the NTK-parameterized FC network.
    depth: hidden layers.
    weight_std: sigma_w of the NTK parameterization.
    bias_std: sigma_b of the NTK parameterization.
    learning_rate: SGD learning rate of the network and of kernel SGD.
    momentum: SGD momentum of both.
    batch_size: minibatch size of both.
    kernel_method: one of `kernel_fit.FIT_METHODS` (sgd | ridge | svm).
    eval_growth: SGD predictors are evaluated at steps growing by this factor.
    early_stopping: report SGD predictors' errors at optimal early stopping
      (best test error over the evaluated steps); False = at the last step
      (the "no early stopping" ablation of Fig 3; the records hold both, so
      this only changes the summary).
    full_batch: every SGD step of the network and of kernel SGD uses the
      whole training set (GD; the full-batch ablation of Fig 3).
    architecture: one of `scaling_networks.ARCHITECTURES`: the FC family
      (the only one with an infinite NTK here) or a Myrtle CNN whose
      convolutions have `width` channels (64 = the paper's k = 1).
    standardize_run_inputs: centre every input feature and divide by one
      global std (`data.standardize`), with the statistics of the run's
      training rows (all it trains, fits or validates on; never the test
      set).
    zero_output_at_init: train f = g_theta - g_theta0 (output exactly 0 at
      init, `scaling_networks.zero_output_at_init`; Table 1 of the paper).
    feature_batch_size: examples per gradient-feature block.
    num_runs: runs (seed, seed + 1, ...): data subset and initialization.
    seed: first seed.
  """
  dataset: str = 'mnist'
  num_test: int = 1000
  width: int = 512
  depth: int = 2
  weight_std: float = math.sqrt(2.0)
  bias_std: float = 0.0
  learning_rate: float = 0.1
  momentum: float = 0.9
  batch_size: int = 64
  kernel_method: str = 'sgd'
  eval_growth: float = DEFAULT_EVAL_GROWTH
  early_stopping: bool = True
  full_batch: bool = False
  architecture: str = scaling_networks.FULLY_CONNECTED
  zero_output_at_init: bool = False
  standardize_run_inputs: bool = False
  feature_batch_size: int = 256
  num_runs: int = 3
  seed: int = 0
  # The fingerprint (`runner.StudyConfig`) leaves these out.
  FINGERPRINT_IGNORES: ClassVar[Tuple[str, ...]] = (_GROWABLE_FIELDS +
                                                     _SUMMARY_FIELDS)
  # Added in issue 16: at their defaults, folders written before still
  # resume (`runner.StudyConfig.fingerprint`).
  ADDED_FIELDS: ClassVar[Tuple[str, ...]] = (
      'full_batch', 'architecture', 'zero_output_at_init',
      'standardize_run_inputs', 'after_kernel_at', 'num_validation')

  def _validate_common(self) -> None:
    errors.require_choice(self.dataset, DATASETS, 'dataset')
    errors.require_choice(self.kernel_method, kernel_fit.FIT_METHODS,
                          'kernel_method')
    errors.require_choice(self.architecture, scaling_networks.ARCHITECTURES,
                          'architecture')
    for name in ('num_test', 'width', 'depth', 'batch_size', 'num_runs',
                 'feature_batch_size'):
      value = getattr(self, name)
      errors.require(is_int(value) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')
    for name in ('weight_std', 'learning_rate'):
      errors.require_positive(getattr(self, name), name)
    errors.require(self.bias_std >= 0,
                   f'bias_std must be >= 0, got {self.bias_std}')
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require(self.eval_growth > 1,
                   f'eval_growth must be > 1, got {self.eval_growth}')
    errors.require(is_int(self.seed) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed!r}')



def check_sizes(sizes, name: str, allow_zero: bool = False) -> None:
  """Raises AfterKernelError unless `sizes` are distinct ints >= 1 (or 0)."""
  errors.require(len(sizes) > 0, f'{name} is empty; give at least one size')
  low = 0 if allow_zero else 1
  for size in sizes:
    errors.require(is_int(size) and size >= low,
                   f'{name} must be integers >= {low}, got {size!r}')
  errors.require(len(set(sizes)) == len(sizes),
                 f'{name} has duplicates: {list(sizes)}')


# 'tiny' runs in seconds in tests (embedded 8x8 digits, offline); 'cpu' is a
# real-data run of MNIST 3-vs-8 (FC 784-512-512-1) of roughly 10-20 minutes
# on 2 shared cores. lr 1.0 with momentum 0.9 trains this NTK-parameterized
# network (and its kernels) stably and within a few thousand steps.
TINY = dict(dataset='digits', num_test=200, width=64, depth=2,
            learning_rate=0.1, batch_size=32, num_runs=2,
            feature_batch_size=128)
CPU = dict(dataset='mnist', num_test=2000, width=512, depth=2,
           learning_rate=1.0, batch_size=64, num_runs=3)
# The paper's main setting shrunk to 2 cores: a Myrtle-5 CNN of 16 channels
# (k = 1/4) on CIFAR-10 classes 0-4 vs 5-9 ('cifar2'; CIFAR-5m is not
# obtainable offline, its local-file loader stays for users who have it),
# tested on the exact first 1000 official test records.
MYRTLE = dict(dataset='cifar2', plus_class=1, minus_class=0, num_test=1000,
              architecture='myrtle5', width=16, learning_rate=0.03,
              batch_size=32, num_runs=2, standardize_run_inputs=True)



def preset(study: str, presets: Mapping[str, CommonConfig], name: str,
           **overrides) -> CommonConfig:
  """The preset `name` of `presets` (of `study`), fields from `overrides`.

  Raises:
    AfterKernelError: unknown preset or field.
  """
  errors.require_choice(name, presets, 'preset')
  config = presets[name]
  fields = {f.name for f in dataclasses.fields(config)}
  unknown = sorted(set(overrides) - fields)
  errors.require(not unknown, f'unknown {study} fields {unknown}')
  return dataclasses.replace(config, **overrides)


def is_int(value) -> bool:
  """Whether `value` is an integer (not a bool)."""
  return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def log_spaced_steps(last: int, count: int) -> List[int]:
  """About `count` distinct integer steps in [1, last], log-spaced, with last.

  Args:
    last: the final step (>= 1).
    count: how many steps are wanted (fewer when [1, last] has fewer
      integers).

  Returns:
    Sorted distinct steps, first 1 (if count > 1) and last `last`.
  """
  errors.require_positive(last, 'last step')
  errors.require_positive(count, 'number of steps')
  if count == 1:
    return [int(last)]
  steps = np.unique(np.round(np.geomspace(1, last, count)).astype(int))
  return [int(s) for s in steps]


def default_classes(dataset: str) -> Tuple[int, int]:
  """(plus_class, minus_class) when none are given: 8-vs-3, or 1-vs-0 for
  the two-class datasets ('synthetic': z_1 z_2 = +1 vs -1)."""
  return (1, 0) if data.NUM_CLASSES.get(dataset) == 2 else (8, 3)


def load_base_task(config: CommonConfig,
                   num_train: int) -> data.BinaryTask:
  """The unpermuted task of `config` (every run permutes it with its seed).

  Generated or partly read datasets ('synthetic', CIFAR-5m) are made with
  exactly `num_train` training and `config.num_test` test examples; the
  others are loaded whole.
  """
  sizes = {}
  if config.dataset in data.DEFAULT_SIZES:
    sizes = dict(num_train=int(num_train), num_test=int(config.num_test))
  return data.load_binary_task(config.dataset, config.plus_class,
                               config.minus_class, data_dir=config.data_dir,
                               **sizes)


def run_task(base: data.BinaryTask, seed: int, num_train: int,
             num_test: int) -> data.BinaryTask:
  """The run's data: `base` permuted with `seed`, first num_train / num_test.

  Raises:
    AfterKernelError: more examples asked than `base` has.
  """
  return data.subsample(data.permute(base, seed), num_train,
                        min(num_test, len(base.y_test)))


def plus_minus(labels: np.ndarray) -> np.ndarray:
  """{0, 1} labels as float32 {-1, +1} targets (the study's MSE targets)."""
  return data.signed_labels(labels).astype(np.float32)


def infinite_kernel(config: CommonConfig) -> kernel_fit.FunctionKernel:
  """The infinite-width NTK of exactly the network family of `config`."""
  return kernel_fit.FunctionKernel(functools.partial(
      infinite_ntk.ntk_gram, depth=config.depth,
      weight_std=config.weight_std, bias_std=config.bias_std))




def fit_kernel_grams(config: CommonConfig, train_gram: np.ndarray,
                     y_train: np.ndarray, cross_gram: np.ndarray,
                     y_test: np.ndarray, max_steps: int, seed: int):
  """Fits a kernel predictor with `config.kernel_method` (`kernel_fit.fit`).

  SGD uses the network's learning rate, batch size and momentum, `max_steps`
  steps and optimal early stopping at steps growing by `eval_growth`.

  Args:
    config: the study configuration.
    train_gram: (n, n) Gram of the training examples.
    y_train: (n,) +-1 targets.
    cross_gram: (n_test, n) Gram of test vs training examples.
    y_test: (n_test,) +-1 targets.
    max_steps: kernel SGD steps.
    seed: SGD minibatch seed.

  Returns:
    The `kernel_fit.FitResult`.
  """
  if config.kernel_method == 'sgd':
    return kernel_fit.fit(
        'sgd', train_gram, y_train, cross_gram, y_test,
        learning_rate=config.learning_rate,
        batch_size=scaling_networks.batch_size_for(config, len(y_train)),
        momentum=config.momentum, max_steps=max_steps,
        eval_growth=config.eval_growth, seed=seed)
  return kernel_fit.fit(config.kernel_method, train_gram, y_train,
                        cross_gram, y_test)


def error_metric(config: CommonConfig, predictor: str) -> str:
  """The record metric of `predictor`'s test error the summary reports:
  at optimal early stopping, or at the last step without early stopping."""
  return (f'{predictor}_test_error' if config.early_stopping else
          f'{predictor}_final_test_error')


def seeded_run_task(config: CommonConfig, unit: runner.WorkUnit,
                    base: data.BinaryTask, num_train: int
                    ) -> Tuple[int, data.BinaryTask]:
  """(seed, task) of `unit`'s run: seed + run, its permutation of `base`
  cut to num_train (standardized on those rows with standardize_run_inputs)."""
  seed = config.seed + unit.run
  task = run_task(base, seed, num_train, config.num_test)
  if config.standardize_run_inputs:
    task = data.standardize(task)
  return seed, task


def fit_metrics(result, prefix: str) -> Dict[str, Any]:
  """The numbers of a `kernel_fit.FitResult`, named `prefix`_* (bools 0/1)."""
  metrics = {}
  for name, value in result.to_record().items():
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
      metrics[f'{prefix}_{name}'] = float(value)
  return metrics


def kernel_metrics(config: CommonConfig, kernel, x_train: np.ndarray,
                   y_train: np.ndarray, x_test: np.ndarray,
                   y_test: np.ndarray, prefix: str, max_steps: int,
                   seed: int) -> Tuple[Dict[str, Any], Dict[str, float]]:
  """Grams of `kernel` on (train, test), the fit, and its metrics/timings."""
  start = time.time()
  train_gram, cross_gram = kernel_fit.kernel_grams(kernel, x_train, x_test)
  gram_seconds = time.time() - start
  start = time.time()
  result = fit_kernel_grams(config, train_gram, y_train, cross_gram, y_test,
                            max_steps, seed)
  return (fit_metrics(result, prefix),
          {f'{prefix}_gram_seconds': gram_seconds,
           f'{prefix}_fit_seconds': time.time() - start})



def _fixed_points(points: Tuple[Any, ...], config: CommonConfig
                  ) -> Tuple[Any, ...]:
  del config
  return points


def _unit_key(study: str, point_dict: Callable[[Any], Dict[str, Any]],
              point: Any, run: int) -> str:
  return record_key(study, point_dict(point), run)


def run_study(study: str, config: CommonConfig, output_dir: str,
              points: Sequence[Any],
              point_dict: Callable[[Any], Dict[str, Any]],
              run_once: Callable[..., List[Dict[str, Any]]],
              log: Callable[[str], None] = print,
              executor: runner.Executor = runner.local_executor,
              whole_runs: bool = False,
              group: Optional[Callable[[Any], Any]] = None
              ) -> List[Dict[str, Any]]:
  """Claims `output_dir`, runs the missing work on `runner`; the records.

  config.json holds the config, its fingerprint and the study's name
  (`store.claim_output_dir`: a folder of another configuration is
  refused); `runner.execute` then runs every (point, run) without a record
  (resume) with `run_once(config, None, unit, log)`.

  Args:
    study: the study's name (record family and key prefix).
    config: its validated configuration.
    output_dir: the result folder.
    points: the points of every run, in order.
    point_dict: point -> its record fields ({'train_subset': n}, ...).
    run_once: the study's work on one `runner.WorkUnit`.
    log: progress printer.
    executor: runs the units (`runner.local_executor`: in this process).
    whole_runs, group: as `runner.Study`'s.

  Returns:
    This configuration's records in the folder (`own_records`).
  """
  store_lib.claim_output_dir(output_dir, config.to_dict(),
                             config.fingerprint(), extra={'study': study})
  spec = runner.Study(
      family=study, points=functools.partial(_fixed_points, tuple(points)),
      record_key=functools.partial(_unit_key, study, point_dict),
      run_once=run_once, whole_runs=whole_runs, group=group)
  result_store = store_lib.ResultStore(output_dir)
  runner.execute(spec, config, result_store, log, executor, output_dir)
  return own_records(result_store, config, study)


def record(study: str, config: CommonConfig, point: Dict[str, Any],
            run: int, seed: int, metrics: Dict[str, Any],
            timings: Dict[str, float], info: Mapping[str, Any]
            ) -> Dict[str, Any]:
  point_id = '-'.join(f'{k}{v}' for k, v in point.items())
  return {
      'key': f'{study}-{point_id}-run{run}',
      'family': study,
      'point_id': point_id,
      'point': dict(family=study, dataset=config.dataset,
                    plus_class=config.plus_class,
                    minus_class=config.minus_class, **point),
      'run': int(run), 'seed': int(seed),
      'config_fingerprint': config.fingerprint(),
      'config': config.to_dict(), 'version': VERSION,
      'data': dict(info), 'metrics': metrics, 'timings': timings,
  }


def record_key(study: str, point: Dict[str, Any], run: int) -> str:
  point_id = '-'.join(f'{k}{v}' for k, v in point.items())
  return f'{study}-{point_id}-run{run}'


def own_records(store: store_lib.ResultStore, config: CommonConfig,
                study: str) -> List[Dict[str, Any]]:
  """The records of `study` with this config's fingerprint and runs."""
  return [r for r in store.records()
          if r.get('family') == study and
          r.get('config_fingerprint') == config.fingerprint() and
          r.get('run', 0) < config.num_runs]


def stat_text(stats: Optional[Mapping[str, Any]]) -> str:
  if not stats or stats.get('mean') is None:
    return '-'
  if stats.get('ci95') is None:
    return f'{stats["mean"]:.4f}'
  return f'{stats["mean"]:.4f}±{stats["ci95"]:.4f}'


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
  widths = [max([len(h)] + [len(r[i]) for r in rows])
            for i, h in enumerate(header)]
  lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths))]
  lines.extend('  '.join(c.ljust(w) for c, w in zip(row, widths))
               for row in rows)
  return lines


def title(config: CommonConfig, what: str) -> str:
  task = (config.dataset if config.dataset == 'synthetic' else
          f'{config.dataset} {config.plus_class}-vs-{config.minus_class}')
  net = (f'FC {config.depth}x{config.width}'
         if scaling_networks.has_infinite_kernel(config) else
         f'{config.architecture} of {config.width} channels')
  if config.zero_output_at_init:
    net += ', f(theta0) = 0'
  return (f'{what}: {net} (NTK param.) on {task}'
          f'\nkernels fit by {config.kernel_method}; {plots.LOG_BAR_NOTE}')


def write_outputs(output_dir: str, summary: Mapping[str, Any], study: str,
                  fig) -> None:
  """summary.json / .csv (the entries), fits.json (the rest), the figure."""
  store_lib.write_summary(output_dir, summary['entries'])
  extra = {k: v for k, v in summary.items() if k != 'entries'}
  store_lib.atomic_write_text(
      os.path.join(output_dir, FITS_FILE),
      store_lib.to_json(extra, indent=1, sort_keys=True) + '\n')
  plots.save(fig, output_dir, FIGURE_NAMES[study])


