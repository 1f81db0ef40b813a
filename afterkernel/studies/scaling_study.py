"""Scaling of networks and their kernels with data, training set and time.

The three studies of Vyas, Bansal & Nakkiran, "Limitations of the NTK for
understanding generalization in deep learning" (2022), for a fully connected
ReLU network in the NTK parameterization (`infinite_ntk`):

1. **Data scaling** (`DataScalingConfig`, `run_data_scaling`): for every
   training-set size n, the test error of the network, of its empirical NTK
   at initialization and of its infinite-width NTK, each fit on the same n
   examples. Per predictor, L(n) = A (1/n + alpha)^beta is fit by least
   squares on log error (`scaling.fit_power_law`, with its flag saying
   whether beta is identified) and beta gets a 95% confidence interval over
   runs (`scaling.bootstrap_exponent`: Student t over per-run exponents).
   Zero test errors are handled by an explicit rule (`ZERO_ERROR_RULES`).
   The study's claim: the network's exponent beta exceeds its kernels' (it
   improves faster with data).
2. **After kernel vs training-set size** (`AfterKernelVsMConfig`,
   `run_after_kernel_vs_m`): K_m is the after kernel (empirical NTK after
   training) of a network trained on m examples; it is then fit on n examples
   -- the first n of the run's permuted training set ('subset': for n <= m
   a subset of the m, for n > m the m plus n - m more) or n examples disjoint
   from the m ('fresh'). Reported: K_m(n_ref) against m, and the n-scaling
   curve (with its fitted beta) of K_m for several m. m = 0 is the NTK at
   initialization.
3. **Time dynamics** (`KernelDynamicsConfig`, `run_kernel_dynamics`): the
   empirical NTK K^t snapshotted at log-spaced training *steps* t (a Keras
   callback on batch end, `StepCallback`), each fit on the training set;
   test error of K^t (and of the network at step t) against t.

Every predictor is trained alike: the network with Keras SGD with momentum on
the MSE loss 0.5 (f(x) - y)^2 with y in {-1, +1}, minibatches reshuffled
every epoch; kernels with `kernel_fit` (SGD on the kernel's linear model with
the network's learning rate, batch size and momentum, or ridge, or the
hard-margin SVM). Errors of SGD-trained predictors use optimal early stopping
(evaluated at steps growing by the factor `eval_growth`, 1.1 as in the
study), as Vyas et al. do; the network's error at its last step is recorded
too.

Results follow the study pattern of the library: `config.json` (refuses a
different configuration), one `store.ResultStore` record per (point, run)
(finished keys are skipped, so re-running resumes), `summary.json` /
`summary.csv` (`store.write_summary`: mean, std, 95% CI per point), a
study-specific `fits.json` and a figure as PNG and PDF.
"""

import dataclasses
import functools
import hashlib
import json
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import keras
from matplotlib import figure as mpl_figure
from matplotlib import ticker
import numpy as np
from scipy import stats
import tensorflow as tf

from afterkernel import data
from afterkernel import errors
from afterkernel import infinite_ntk
from afterkernel import kernel_fit
from afterkernel import models
from afterkernel import plots
from afterkernel.studies import results
from afterkernel import scaling
from afterkernel.studies import store as store_lib
from afterkernel import training

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
# Predictors of the data-scaling study, in table order.
DATA_SCALING_PREDICTORS = ('network', 'init_ntk', 'infinite_ntk')
PREDICTOR_LABELS = {'network': 'network', 'init_ntk': 'empirical NTK at init',
                    'infinite_ntk': 'infinite-width NTK'}
# Where kernel examples come from in the after-kernel study (see module doc).
FIT_EXAMPLES = ('subset', 'fresh')
# log(0) is undefined, so zero test errors need a rule before log fits
# (flooring them at an arbitrary value would move beta with the floor):
# 'exclude' drops every n at which some run of some compared curve made no
# test error, so only measured errors are fit, on one range of n shared by
# the curves compared; 'continuity' fits (k + 1/2) / (m + 1) for k errors
# among m test examples at every n, the standard continuity correction
# (it moves an error of 10 / 2000 by 5%, and of 100 / 2000 by 0.5%).
ZERO_ERROR_RULES = ('exclude', 'continuity')
DEFAULT_ZERO_ERRORS = 'exclude'
# Bootstrap resamples of the runs for the CI of beta.
DEFAULT_NUM_BOOTSTRAP = 200
DATASETS = tuple(data.DATASETS)
# Lower error bars on log axes stop at this fraction of the mean.
LOG_BAR_CLIP = 1 / 3
_BAR_NOTE = 'bars: 95% CI over runs (lower end clipped at mean/3)'


# ----------------------------------------------------------------------------
# Configurations.


@dataclasses.dataclass(frozen=True)
class _CommonConfig:
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
    feature_batch_size: examples per gradient-feature block.
    num_runs: runs (seed, seed + 1, ...): data subset and initialization.
    seed: first seed.
  """
  dataset: str = 'mnist'
  plus_class: int = 8
  minus_class: int = 3
  data_dir: Optional[str] = None
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
  feature_batch_size: int = 256
  num_runs: int = 3
  seed: int = 0

  def _validate_common(self) -> None:
    errors.require(self.dataset in DATASETS,
                   f'unknown dataset {self.dataset!r}; choose one of '
                   f'{", ".join(DATASETS)}')
    errors.require(self.kernel_method in kernel_fit.FIT_METHODS,
                   f'unknown kernel_method {self.kernel_method!r}; choose one '
                   f'of {", ".join(kernel_fit.FIT_METHODS)}')
    for name in ('num_test', 'width', 'depth', 'batch_size', 'num_runs',
                 'feature_batch_size'):
      value = getattr(self, name)
      errors.require(_is_int(value) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')
    for name in ('weight_std', 'learning_rate'):
      errors.require_positive(getattr(self, name), name)
    errors.require(self.bias_std >= 0,
                   f'bias_std must be >= 0, got {self.bias_std}')
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require(self.eval_growth > 1,
                   f'eval_growth must be > 1, got {self.eval_growth}')
    errors.require(_is_int(self.seed) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed!r}')

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def fingerprint(self) -> str:
    """Hash of the fields that change a record (not sizes, runs or paths)."""
    fields = self.to_dict()
    for name in _GROWABLE_FIELDS + _SUMMARY_FIELDS:
      fields.pop(name, None)
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()
                          ).hexdigest()[:16]


# Fields that may grow between invocations on one output_dir (more sizes,
# more runs) without invalidating the records already there.
_GROWABLE_FIELDS = ('data_dir', 'num_runs', 'sample_sizes', 'train_sizes',
                    'fit_sizes', 'curve_train_sizes', 'reference_fit_size')
# Fields used only when records are summarized and fit (they never change a
# record, so re-running with another value re-summarizes the same records).
_SUMMARY_FIELDS = ('num_bootstrap', 'zero_errors')


def _check_zero_errors(rule: str) -> None:
  errors.require(rule in ZERO_ERROR_RULES,
                 f'unknown zero_errors rule {rule!r}; choose one of '
                 f'{", ".join(ZERO_ERROR_RULES)}')


def _check_sizes(sizes, name: str, allow_zero: bool = False) -> None:
  errors.require(len(sizes) > 0, f'{name} is empty; give at least one size')
  low = 0 if allow_zero else 1
  for size in sizes:
    errors.require(_is_int(size) and size >= low,
                   f'{name} must be integers >= {low}, got {size!r}')
  errors.require(len(set(sizes)) == len(sizes),
                 f'{name} has duplicates: {list(sizes)}')


@dataclasses.dataclass(frozen=True)
class DataScalingConfig(_CommonConfig):
  """Experiment 1: test error vs training-set size n for three predictors.

  Attributes (besides `_CommonConfig`'s):
    sample_sizes: the n; sizes above the available data are left out (logged).
    max_steps: SGD steps of the network and of kernel SGD.
    num_bootstrap: bootstrap resamples for the CI of beta (used with one
      run; with several, the CI is a Student t over per-run exponents).
    zero_errors: rule for zero test errors in the fits, one of
      `ZERO_ERROR_RULES` (see there).
  """
  sample_sizes: tuple = (100, 200, 400, 800, 1600)
  max_steps: int = 2000
  num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP
  zero_errors: str = DEFAULT_ZERO_ERRORS

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    self._validate_common()
    _check_sizes(self.sample_sizes, 'sample_sizes')
    errors.require(len(self.sample_sizes) >= 3,
                   'sample_sizes needs at least 3 sizes to fit '
                   'A (1/n + alpha)^beta')
    for name in ('max_steps', 'num_bootstrap'):
      value = getattr(self, name)
      errors.require(_is_int(value) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')
    _check_zero_errors(self.zero_errors)


@dataclasses.dataclass(frozen=True)
class AfterKernelVsMConfig(_CommonConfig):
  """Experiment 2: the after kernel K_m of a network trained on m examples.

  Attributes (besides `_CommonConfig`'s):
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
      `ZERO_ERROR_RULES` (see there).
  """
  train_sizes: tuple = (0, 100, 400, 1600)
  fit_sizes: tuple = (100, 200, 500, 1000)
  reference_fit_size: int = 500
  curve_train_sizes: tuple = ()
  fit_examples: str = 'subset'
  epochs: int = 20
  fit_steps: int = 2000
  num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP
  zero_errors: str = DEFAULT_ZERO_ERRORS

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    self._validate_common()
    _check_sizes(self.train_sizes, 'train_sizes', allow_zero=True)
    _check_sizes(self.fit_sizes, 'fit_sizes')
    errors.require(self.reference_fit_size in self.fit_sizes,
                   f'reference_fit_size={self.reference_fit_size} is not one '
                   f'of fit_sizes {list(self.fit_sizes)}; add it')
    errors.require(set(self.curve_train_sizes) <= set(self.train_sizes),
                   f'curve_train_sizes {list(self.curve_train_sizes)} must be '
                   f'among train_sizes {list(self.train_sizes)}')
    errors.require(self.fit_examples in FIT_EXAMPLES,
                   f'unknown fit_examples {self.fit_examples!r}; choose one of '
                   f'{", ".join(FIT_EXAMPLES)}')
    errors.require(_is_int(self.epochs) and self.epochs >= 0,
                   f'epochs must be a non-negative integer, got '
                   f'{self.epochs!r}')
    for name in ('fit_steps', 'num_bootstrap'):
      value = getattr(self, name)
      errors.require(_is_int(value) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')
    _check_zero_errors(self.zero_errors)


@dataclasses.dataclass(frozen=True)
class KernelDynamicsConfig(_CommonConfig):
  """Experiment 3: kernels K^t snapshotted at training steps t.

  Attributes (besides `_CommonConfig`'s):
    num_train: training examples (network and kernels).
    train_steps: SGD steps of the network.
    num_snapshots: log-spaced snapshot steps in [1, train_steps], plus t = 0.
    fit_steps: SGD steps of kernel SGD.
  """
  num_train: int = 1000
  train_steps: int = 2000
  num_snapshots: int = 10
  fit_steps: int = 2000

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    self._validate_common()
    for name in ('num_train', 'train_steps', 'num_snapshots', 'fit_steps'):
      value = getattr(self, name)
      errors.require(_is_int(value) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')

  def snapshot_steps(self) -> List[int]:
    """0 and `num_snapshots` log-spaced steps in [1, train_steps]."""
    return [0] + log_spaced_steps(self.train_steps, self.num_snapshots)


# 'tiny' runs in seconds in tests (embedded 8x8 digits, offline); 'cpu' is a
# real-data run of MNIST 3-vs-8 (FC 784-512-512-1) of roughly 10-20 minutes
# on 2 shared cores. lr 1.0 with momentum 0.9 trains this NTK-parameterized
# network (and its kernels) stably and within a few thousand steps.
_TINY = dict(dataset='digits', num_test=200, width=64, depth=2,
             learning_rate=0.1, batch_size=32, num_runs=2,
             feature_batch_size=128)
_CPU = dict(dataset='mnist', num_test=2000, width=512, depth=2,
            learning_rate=1.0, batch_size=64, num_runs=3)
DATA_SCALING_PRESETS = {
    'tiny': DataScalingConfig(sample_sizes=(25, 50, 100, 200), max_steps=150,
                              num_bootstrap=50, **_TINY),
    # Runs are the unit of the interval of beta: 5 (about 2-4 min each on
    # 2 shared cores) give a usable Student-t interval.
    'cpu': DataScalingConfig(sample_sizes=(125, 250, 500, 1000, 2000, 4000),
                             max_steps=3000, **dict(_CPU, num_runs=5)),
}
AFTER_KERNEL_VS_M_PRESETS = {
    'tiny': AfterKernelVsMConfig(train_sizes=(0, 50, 200),
                                 fit_sizes=(25, 50, 100),
                                 reference_fit_size=50, epochs=5,
                                 fit_steps=150, num_bootstrap=50, **_TINY),
    'cpu': AfterKernelVsMConfig(train_sizes=(0, 125, 500, 2000, 8000),
                                fit_sizes=(125, 250, 500, 1000, 2000),
                                reference_fit_size=500, epochs=10,
                                fit_steps=3000,
                                **dict(_CPU, num_runs=2)),
}
DYNAMICS_PRESETS = {
    'tiny': KernelDynamicsConfig(num_train=100, train_steps=100,
                                 num_snapshots=4, fit_steps=150, **_TINY),
    'cpu': KernelDynamicsConfig(num_train=2000, train_steps=3000,
                                num_snapshots=10, fit_steps=3000,
                                **dict(_CPU, num_runs=2)),
}
PRESETS = {DATA_SCALING: DATA_SCALING_PRESETS,
           AFTER_KERNEL_VS_M: AFTER_KERNEL_VS_M_PRESETS,
           KERNEL_DYNAMICS: DYNAMICS_PRESETS}


def preset(study: str, name: str, **overrides) -> _CommonConfig:
  """The preset `name` of `study`, with fields replaced by `overrides`.

  Raises:
    AfterKernelError: unknown study, preset or field.
  """
  errors.require(study in PRESETS, f'unknown study {study!r}; choose one of '
                 f'{", ".join(PRESETS)}')
  errors.require(name in PRESETS[study], f'unknown preset {name!r}; choose '
                 f'one of {", ".join(PRESETS[study])}')
  config = PRESETS[study][name]
  fields = {f.name for f in dataclasses.fields(config)}
  unknown = sorted(set(overrides) - fields)
  errors.require(not unknown, f'unknown {study} fields {unknown}')
  return dataclasses.replace(config, **overrides)


# ----------------------------------------------------------------------------
# Building blocks: data, network, training with step callbacks, kernel fits.


def _is_int(value) -> bool:
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


def load_base_task(config: _CommonConfig,
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


def build_network(config: _CommonConfig, input_shape: Sequence[int],
                  seed: int) -> keras.Model:
  """The FC ReLU network of `config` in the NTK parameterization, seeded."""
  return models.build('ntk_fully_connected', tuple(input_shape),
                      width=config.width, depth=config.depth,
                      weight_std=config.weight_std, bias_std=config.bias_std,
                      seed=seed)


def infinite_kernel(config: _CommonConfig) -> kernel_fit.FunctionKernel:
  """The infinite-width NTK of exactly the network family of `config`."""
  return kernel_fit.FunctionKernel(functools.partial(
      infinite_ntk.ntk_gram, depth=config.depth,
      weight_std=config.weight_std, bias_std=config.bias_std))


# Registered: `kernel_fit.EmpiricalNTK` clones the compiled network, and
# Keras' clone_model looks up the loss of the compile configuration by name.
@keras.saving.register_keras_serializable(package='afterkernel')
def half_mse(targets, outputs):
  """Per-example 0.5 (f(x) - y)^2: the study's MSE loss on +-1 labels."""
  return 0.5 * keras.ops.mean(keras.ops.square(outputs - targets), axis=-1)


class StepCallback(keras.callbacks.Callback):
  """Calls `fn(step, model)` after the listed training steps (0 = before).

  Steps count optimizer updates since `on_train_begin` (Keras calls
  `on_train_batch_end` after every update when steps_per_execution is 1,
  its default), so one `fit` over many epochs yields snapshots at exact
  steps rather than epoch ends.
  """

  def __init__(self, steps: Sequence[int],
               fn: Callable[[int, keras.Model], None]):
    super().__init__()
    self.steps = sorted(set(int(s) for s in steps))
    self.fn = fn
    self.step = 0

  def on_train_begin(self, logs=None):
    self.step = 0
    if 0 in self.steps:
      self.fn(0, self.model)

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step in self.steps:
      self.fn(self.step, self.model)


def train_network(model: keras.Model, images: np.ndarray,
                  targets: np.ndarray, *, learning_rate: float,
                  momentum: float, batch_size: int, steps: int, seed: int,
                  callbacks: Sequence[keras.callbacks.Callback] = ()
                  ) -> None:
  """Trains `model` for `steps` SGD-with-momentum steps on 0.5 (f - y)^2.

  Minibatches are consecutive chunks of a fresh (seeded) permutation each
  epoch, the last chunk of an epoch possibly smaller, as Keras' fit and
  `kernel_fit.fit_sgd` do (batch_size > n means full batch). With steps == 0 the
  callbacks' step-0 hooks still run and the weights stay as they are.

  Args:
    model: a Keras model with one output per example.
    images: (n, ...) float32 inputs.
    targets: (n,) float32 targets in {-1, +1}.
    learning_rate: SGD learning rate.
    momentum: SGD momentum.
    batch_size: minibatch size.
    steps: optimizer steps (>= 0).
    seed: shuffling seed.
    callbacks: Keras callbacks (e.g. `StepCallback`).
  """
  errors.require(_is_int(steps) and steps >= 0,
                 f'steps must be a non-negative integer, got {steps!r}')
  model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate,
                                               momentum=momentum),
                loss=half_mse)
  if steps == 0:
    for callback in callbacks:
      callback.set_model(model)
      callback.on_train_begin()
    return
  dataset = tf.data.Dataset.from_tensor_slices(
      (np.asarray(images, np.float32),
       np.asarray(targets, np.float32)[:, None]))
  dataset = dataset.shuffle(len(images), seed=seed,
                            reshuffle_each_iteration=True)
  dataset = dataset.batch(int(batch_size)).repeat().prefetch(2)
  model.fit(dataset, epochs=1, steps_per_epoch=int(steps), shuffle=False,
            callbacks=list(callbacks), verbose=0)


def test_error(outputs: np.ndarray, targets: np.ndarray) -> float:
  """Fraction of examples with sign(f) != y (f > 0 predicts +1)."""
  predictions = np.where(np.asarray(outputs) > 0, 1.0, -1.0)
  return float(np.mean(predictions != np.asarray(targets)))


class NetworkEvaluator:
  """A `StepCallback` target recording test error and MSE at each call.

  Attributes:
    curve: [(step, test error, test MSE mean (f - y)^2)] (MSE without the
      1/2, as `kernel_fit.FitResult` reports it).
  """

  def __init__(self, images: np.ndarray, targets: np.ndarray):
    self.images, self.targets = images, targets
    self.curve = []

  def __call__(self, step: int, model: keras.Model) -> None:
    outputs = training.predict_logits(model, self.images)
    self.curve.append((int(step), test_error(outputs, self.targets),
                       float(np.mean((outputs - self.targets)**2))))

  def metrics(self, prefix: str = 'network') -> Dict[str, Any]:
    """Best (optimal early stopping) and final test error, and best step."""
    best = min(self.curve, key=lambda c: (c[1], c[0]))
    return {f'{prefix}_test_error': best[1],
            f'{prefix}_best_step': best[0],
            f'{prefix}_final_test_error': self.curve[-1][1],
            f'{prefix}_final_test_mse': self.curve[-1][2]}


def fit_kernel_grams(config: _CommonConfig, train_gram: np.ndarray,
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
        batch_size=min(config.batch_size, len(y_train)),
        momentum=config.momentum, max_steps=max_steps,
        eval_growth=config.eval_growth, seed=seed)
  return kernel_fit.fit(config.kernel_method, train_gram, y_train,
                        cross_gram, y_test)


def _fit_metrics(result, prefix: str) -> Dict[str, Any]:
  """The numbers of a `kernel_fit.FitResult`, named `prefix`_* (bools 0/1)."""
  metrics = {}
  for name, value in result.to_record().items():
    if isinstance(value, (bool, int, float, np.integer, np.floating)):
      metrics[f'{prefix}_{name}'] = float(value)
  return metrics


def kernel_metrics(config: _CommonConfig, kernel, x_train: np.ndarray,
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
  return (_fit_metrics(result, prefix),
          {f'{prefix}_gram_seconds': gram_seconds,
           f'{prefix}_fit_seconds': time.time() - start})


# ----------------------------------------------------------------------------
# Output folder: configuration guard, records, fits, figures.


def _prepare_output_dir(config: _CommonConfig, study: str,
                        output_dir: str) -> store_lib.ResultStore:
  """Creates output_dir; refuses one written by a different configuration."""
  errors.require(bool(output_dir), 'an output directory is required')
  os.makedirs(output_dir, exist_ok=True)
  path = os.path.join(output_dir, results.CONFIG_FILE)
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      try:
        existing = json.load(f)
      except json.JSONDecodeError:
        existing = {}
    errors.require(
        existing.get('study') == study and
        existing.get('fingerprint') == config.fingerprint(),
        f'{output_dir} holds results of a different study or configuration '
        f'({existing.get("study")}, fingerprint {existing.get("fingerprint")}'
        '); use another output_dir')
  results.atomic_write_text(path, results.to_json(
      dict(study=study, config=config.to_dict(),
           fingerprint=config.fingerprint()), indent=2, sort_keys=True) +
                            '\n')
  return store_lib.ResultStore(output_dir)


def _record(study: str, config: _CommonConfig, point: Dict[str, Any],
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


def _key(study: str, point: Dict[str, Any], run: int) -> str:
  point_id = '-'.join(f'{k}{v}' for k, v in point.items())
  return f'{study}-{point_id}-run{run}'


def _mine(store: store_lib.ResultStore, config: _CommonConfig,
          study: str) -> List[Dict[str, Any]]:
  return [r for r in store.records()
          if r.get('family') == study and
          r.get('config_fingerprint') == config.fingerprint() and
          r.get('run', 0) < config.num_runs]


def zero_error_rule(sizes: Sequence[int], curves: Mapping[str, np.ndarray],
                    test_counts: np.ndarray, rule: str
                    ) -> Tuple[List[int], Dict[str, np.ndarray], List[int]]:
  """Applies a `ZERO_ERROR_RULES` rule to curves that will be log-fit.

  Args:
    sizes: the n, one per column.
    curves: {name: (num_runs, len(sizes)) test errors, NaN = missing}; the
      curves compared with each other (their exponents), handled jointly.
    test_counts: (num_runs, len(sizes)) test examples m behind each error
      (NaN = missing).
    rule: 'exclude' drops the columns (sizes) in which any curve has a zero
      error in any run, for every curve, so that the compared fits cover the
      same n; 'continuity' maps each error k / m to (k + 1/2) / (m + 1).

  Returns:
    (kept sizes, {name: their (num_runs, kept) errors}, excluded sizes).

  Raises:
    AfterKernelError: an unknown rule, or 'continuity' without test counts.
  """
  _check_zero_errors(rule)
  sizes = [int(s) for s in sizes]
  if rule == 'exclude':
    zero = np.zeros(len(sizes), bool)
    for values in curves.values():
      zero |= np.any(np.asarray(values) == 0, axis=0)
    keep = np.flatnonzero(~zero)
    return ([sizes[i] for i in keep],
            {k: np.asarray(v, np.float64)[:, keep] for k, v in curves.items()},
            [sizes[i] for i in np.flatnonzero(zero)])
  counts = np.asarray(test_counts, np.float64)
  corrected = {}
  for name, values in curves.items():
    values = np.asarray(values, np.float64)
    errors.require(not np.any(np.isfinite(values) & ~np.isfinite(counts)),
                   'zero_errors=continuity needs the number of test examples '
                   'of every record; use zero_errors=exclude')
    with np.errstate(invalid='ignore'):
      corrected[name] = (np.round(values * counts) + 0.5) / (counts + 1)
  return sizes, corrected, []


def fit_curve(sizes: Sequence[int], values_by_run: np.ndarray,
              num_bootstrap: int, seed: int) -> Dict[str, Any]:
  """Power-law fit of a mean-over-runs curve, with a CI of beta.

  Args:
    sizes: the n, increasing (>= 3).
    values_by_run: (num_runs, len(sizes)) errors, > 0 (NaN = missing); apply
      `zero_error_rule` first.
    num_bootstrap: bootstrap resamples (`scaling.bootstrap_exponent`; used
      with one run).
    seed: bootstrap seed.

  Returns:
    {'A', 'alpha', 'beta', 'rms_log_residual', 'identified',
    'num_points_in_power_regime', 'local_exponent'}: the fit of the mean
    curve (`scaling.fit_power_law`; beta is unreliable when 'identified' is
    False: fewer than 3 sizes below 1/alpha), plus 'beta_low', 'beta_high':
    the 95% interval of `scaling.bootstrap_exponent` ('interval' names its
    method: 'per_run_t' = Student t over the per-run exponents 'run_betas',
    or 'residuals' with one run), 'num_runs' and 'sizes'.

  Raises:
    AfterKernelError: a zero or negative error, or fewer than 3 sizes.
  """
  values = np.asarray(values_by_run, np.float64)
  values = values[~np.all(np.isnan(values), axis=1)]
  errors.require(not np.any(values[np.isfinite(values)] <= 0),
                 'fit_curve got zero or negative errors; apply '
                 'zero_error_rule first')
  sizes = np.asarray(sizes, np.float64)
  fit = scaling.fit_power_law(sizes, np.nanmean(values, axis=0))
  _, low, high = scaling.bootstrap_exponent(
      sizes, values, num_bootstrap=num_bootstrap, seed=seed)
  run_betas = (scaling.per_run_exponents(sizes, values) if len(values) >= 2
               else np.array([]))
  return {'A': float(fit.A), 'alpha': float(fit.alpha),
          'beta': float(fit.beta), 'beta_low': float(low),
          'beta_high': float(high),
          'rms_log_residual': float(fit.rms_log_residual),
          'identified': bool(fit.identified),
          'num_points_in_power_regime': int(fit.num_points_in_power_regime),
          'local_exponent': float(fit.local_exponent),
          'num_runs': int(len(values)),
          'interval': ('per_run_t' if np.sum(np.isfinite(run_betas)) >= 2
                       else 'residuals'),
          'run_betas': [None if not np.isfinite(b) else float(b)
                        for b in run_betas],
          'sizes': [int(s) for s in sizes]}


def power_law(sizes: np.ndarray, fit: Mapping[str, Any]) -> np.ndarray:
  """A (1/n + alpha)^beta at `sizes`."""
  sizes = np.asarray(sizes, np.float64)
  return fit['A'] * (1.0 / sizes + fit['alpha'])**fit['beta']


def _values_by_run(records, metric: str, sizes: Sequence[int], field: str,
                   num_runs: int, where=lambda r: True) -> np.ndarray:
  values = np.full((num_runs, len(sizes)), np.nan)
  column = {s: i for i, s in enumerate(sizes)}
  for r in records:
    size = r['point'].get(field)
    value = r['metrics'].get(metric)
    if size in column and where(r) and value is not None:
      values[r['run'], column[size]] = value
  return values


def _test_counts(records, sizes: Sequence[int], field: str, num_runs: int,
                 default: int) -> np.ndarray:
  """Test examples behind each (run, size) record: its data['n_test'] (the
  examples actually used), else `default`."""
  counts = np.full((num_runs, len(sizes)), np.nan)
  column = {s: i for i, s in enumerate(sizes)}
  for r in records:
    size = r['point'].get(field)
    if size in column:
      counts[r['run'], column[size]] = r.get('data', {}).get('n_test',
                                                              default)
  return counts


def _beta_text(fit: Mapping[str, Any]) -> str:
  if fit is None:
    return '-'
  if fit.get('beta_low') is None:
    return f'{fit["beta"]:.3f}'
  return f'{fit["beta"]:.3f} [{fit["beta_low"]:.3f}, {fit["beta_high"]:.3f}]'


def _identified_text(fit: Optional[Mapping[str, Any]]) -> str:
  """Whether beta is identified (`scaling.PowerLawFit`), as table text."""
  if fit is None or 'identified' not in fit:
    return '-'
  return 'yes' if fit['identified'] else 'NO: saturated, beta unreliable'


def _local_text(fit: Optional[Mapping[str, Any]]) -> str:
  if fit is None or fit.get('local_exponent') is None:
    return '-'
  return f'{fit["local_exponent"]:.3f}'


def _new_figure(columns: int):
  fig = mpl_figure.Figure(figsize=(max(5.2 * columns, 6.4), 4.4),
                          dpi=plots.DPI)
  return fig, fig.subplots(1, columns, squeeze=False)[0]


def _errorbar(ax, xs, stats_list, **kwargs):
  means = [s['mean'] for s in stats_list]
  half = [s['ci95'] or 0.0 for s in stats_list]
  # On log axes a bar reaching 0 is unreadable: the lower end is clipped at
  # a third of the mean (the figure's caption says so).
  lower = [min(h, m * (1 - LOG_BAR_CLIP)) for m, h in zip(means, half)]
  ax.errorbar(xs, means, yerr=[lower, half], capsize=3, marker='o',
              markersize=4, linestyle='none', **kwargs)


# ----------------------------------------------------------------------------
# Experiment 1: data scaling.


def _data_scaling_point(config: DataScalingConfig, task: data.BinaryTask,
                        n: int, run: int, seed: int,
                        log: Callable[[str], None]) -> Dict[str, Any]:
  x_train, y_train = task.x_train[:n], plus_minus(task.y_train[:n])
  x_test, y_test = task.x_test, plus_minus(task.y_test)
  model = build_network(config, task.x_train.shape[1:], seed)
  metrics, timings = {}, {}
  kernels = (('init_ntk', kernel_fit.EmpiricalNTK(
      model, config.feature_batch_size)),
             ('infinite_ntk', infinite_kernel(config)))
  for name, kernel in kernels:
    values, seconds = kernel_metrics(config, kernel, x_train, y_train, x_test,
                                     y_test, name, config.max_steps, seed)
    metrics.update(values)
    timings.update(seconds)
  evaluator = NetworkEvaluator(x_test, y_test)
  start = time.time()
  train_network(model, x_train, y_train, learning_rate=config.learning_rate,
                momentum=config.momentum, batch_size=config.batch_size,
                steps=config.max_steps, seed=seed,
                callbacks=[StepCallback(
                    kernel_fit.eval_steps(config.max_steps,
                                          config.eval_growth), evaluator)])
  timings['network_train_seconds'] = time.time() - start
  metrics.update(evaluator.metrics('network'))
  metrics['num_parameters'] = models.count_parameters(model)
  log(f'n={n} run {run}: test error network {metrics["network_test_error"]:.4f}'
      f', init NTK {metrics["init_ntk_test_error"]:.4f}, infinite NTK '
      f'{metrics["infinite_ntk_test_error"]:.4f} '
      f'({sum(timings.values()):.1f} s)')
  info = dict(task.info)
  info.pop('transforms', None)
  return _record(DATA_SCALING, config, {'train_subset': int(n)}, run, seed,
                 metrics, timings, info)


def summarize_data_scaling(config: DataScalingConfig,
                           records: Sequence[Mapping[str, Any]]
                           ) -> Dict[str, Any]:
  """Per-point summary and per-predictor power-law fits of the records.

  Args:
    config: the study configuration (sizes, runs, bootstrap, zero-error rule).
    records: the study's records (others are ignored).

  Returns:
    {'entries': `store.summarize` output, 'fits': {predictor: `fit_curve`
    output or None when fewer than 3 sizes are usable}, 'sizes': the n with
    data, 'zero_errors': {'rule', 'excluded_sizes'}}. With the 'exclude'
    rule the three predictors are fit on the same sizes (see
    `zero_error_rule`).
  """
  records = [r for r in records if r.get('family') == DATA_SCALING and
             r['point'].get('train_subset') in config.sample_sizes and
             r.get('run', 0) < config.num_runs]
  sizes = sorted({r['point']['train_subset'] for r in records})
  curves = {p: _values_by_run(records, f'{p}_test_error', sizes,
                              'train_subset', config.num_runs)
            for p in DATA_SCALING_PREDICTORS}
  counts = _test_counts(records, sizes, 'train_subset', config.num_runs,
                        config.num_test)
  kept, curves, excluded = zero_error_rule(sizes, curves, counts,
                                           config.zero_errors)
  fits = {}
  for index, predictor in enumerate(DATA_SCALING_PREDICTORS):
    values = curves[predictor]
    usable = [i for i in range(len(kept)) if not np.all(np.isnan(
        values[:, i]))]
    if len(usable) < 3:
      fits[predictor] = None
      continue
    fits[predictor] = fit_curve([kept[i] for i in usable], values[:, usable],
                                config.num_bootstrap, config.seed + index)
  differences = {}
  for kernel in DATA_SCALING_PREDICTORS[1:]:
    differences[kernel] = paired_beta_difference(kept, curves['network'],
                                                 curves[kernel])
  return {'entries': store_lib.summarize(records), 'fits': fits,
          'sizes': sizes,
          'zero_errors': {'rule': config.zero_errors,
                          'excluded_sizes': excluded},
          'beta_differences': differences}


def paired_beta_difference(sizes: Sequence[int], first: np.ndarray,
                           second: np.ndarray,
                           confidence: float = scaling.DEFAULT_CONFIDENCE
                           ) -> Optional[Dict[str, Any]]:
  """beta(first) - beta(second) run by run, with a paired Student-t CI.

  Run r of both curves shares its seed (data subset, initialization), so the
  per-run difference d_r = beta_r(first) - beta_r(second)
  (`scaling.per_run_exponents`) removes the run-to-run variation the two
  share; the interval is mean(d) +- t_{R-1} sd(d) / sqrt(R). It answers
  "does the network's exponent exceed its kernel's" more sharply than two
  overlapping intervals.

  Args:
    sizes: the n, one per column.
    first: (num_runs, len(sizes)) positive errors (NaN = missing).
    second: the same for the other predictor, same runs.
    confidence: coverage of the interval.

  Returns:
    {'mean', 'low', 'high', 'per_run', 'num_runs'}, or None with fewer than
    2 runs where both curves can be fit.
  """
  if len(sizes) < 3:
    return None
  d = (scaling.per_run_exponents(sizes, first) -
       scaling.per_run_exponents(sizes, second))
  finite = d[np.isfinite(d)]
  if len(finite) < 2:
    return None
  half = (stats.t.ppf((1 + confidence) / 2, len(finite) - 1) *
          np.std(finite, ddof=1) / math.sqrt(len(finite)))
  return {'mean': float(finite.mean()), 'low': float(finite.mean() - half),
          'high': float(finite.mean() + half),
          'per_run': [None if not np.isfinite(v) else float(v) for v in d],
          'num_runs': int(len(finite))}


def plot_data_scaling(summary: Mapping[str, Any], title: str = ''):
  """Log-log test error vs n per predictor, with 95% CIs and fitted laws."""
  fig, (ax,) = _new_figure(1)
  entries = sorted(summary['entries'], key=lambda e: e['point']['train_subset'])
  for index, predictor in enumerate(DATA_SCALING_PREDICTORS):
    metric = f'{predictor}_test_error'
    points = [(e['point']['train_subset'], e['metrics'][metric])
              for e in entries if e['metrics'].get(metric, {}).get('mean')]
    if not points:
      continue
    color = f'C{index}'
    fit = summary['fits'].get(predictor)
    label = PREDICTOR_LABELS[predictor]
    if fit:
      label += f', beta = {_beta_text(fit)}'
      if fit.get('identified') is False:
        label += ' (saturated: beta not identified)'
    _errorbar(ax, [p[0] for p in points], [p[1] for p in points],
              color=color, label=label)
    if fit:
      grid = np.geomspace(min(fit['sizes']), max(fit['sizes']), 100)
      ax.plot(grid, power_law(grid, fit), color=color, linewidth=1.2)
  _finish_axes(ax, 'training examples n', 'test error', log_x=True,
               ticks=[e['point']['train_subset'] for e in entries])
  ax.set_title(title or 'test error vs n: fits A (1/n + alpha)^beta',
               fontsize=9)
  fig.tight_layout()
  return fig


def _finish_axes(ax, xlabel: str, ylabel: str, log_x: bool,
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


def run_data_scaling(config: DataScalingConfig, output_dir: str,
                     log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Experiment 1: every (n, run) not yet in `output_dir`; returns the summary.

  Each run r uses seed = config.seed + r for the data permutation (its first
  n training examples, first num_test test examples) and the network's
  initialization; the three predictors of a point see the same examples.

  Args:
    config: the study configuration (validated here).
    output_dir: result folder; one of a different configuration is refused.
    log: progress printer.

  Returns:
    `summarize_data_scaling` of the folder's records; also written to
    summary.json / summary.csv (entries), fits.json and the figure
    data_scaling.{png,pdf}.

  Raises:
    AfterKernelError: bad configuration, data or output folder.
  """
  config.validate()
  store = _prepare_output_dir(config, DATA_SCALING, output_dir)
  base = load_base_task(config, max(config.sample_sizes))
  available = len(base.y_train)
  sizes = [n for n in config.sample_sizes if n <= available]
  dropped = sorted(set(config.sample_sizes) - set(sizes))
  if dropped:
    log(f'sample sizes {dropped} exceed the {available} training examples '
        f'of {config.dataset}; left out')
  errors.require(len(sizes) >= 3,
                 f'only {len(sizes)} sample sizes fit the {available} '
                 f'training examples of {config.dataset}; need 3 for a fit')
  for run in range(config.num_runs):
    seed = config.seed + run
    todo = [n for n in sizes
            if not store.has(_key(DATA_SCALING, {'train_subset': n}, run))]
    if not todo:
      log(f'run {run}: all sizes already in {output_dir}; skipped')
      continue
    task = run_task(base, seed, max(todo), config.num_test)
    for n in todo:
      store.put(_data_scaling_point(config, task, n, run, seed, log))
  summary = summarize_data_scaling(config, _mine(store, config, DATA_SCALING))
  _write_outputs(output_dir, summary, DATA_SCALING, plot_data_scaling(
      summary, _title(config, 'data scaling')))
  return summary


def format_data_scaling(summary: Mapping[str, Any]) -> str:
  """Test error per n and predictor, then beta [95% CI] per predictor."""
  entries = sorted(summary['entries'], key=lambda e: e['point']['train_subset'])
  header = ['n', 'runs'] + [PREDICTOR_LABELS[p] for p in
                            DATA_SCALING_PREDICTORS]
  rows = []
  for entry in entries:
    row = [str(entry['point']['train_subset']), str(len(entry['runs']))]
    for predictor in DATA_SCALING_PREDICTORS:
      row.append(_stat_text(entry['metrics'].get(f'{predictor}_test_error')))
    rows.append(row)
  lines = _table(header, rows)
  lines.append('(test error: mean ± 95% CI half-width over runs)')
  lines.append('')
  fit_rows = []
  for predictor in DATA_SCALING_PREDICTORS:
    fit = summary['fits'].get(predictor)
    fit_rows.append([PREDICTOR_LABELS[predictor], _beta_text(fit),
                     '-' if fit is None else f'{fit["A"]:.3g}',
                     '-' if fit is None else f'{fit["alpha"]:.3g}',
                     _identified_text(fit), _local_text(fit)])
  lines.extend(_table(['predictor', 'beta [95% CI]', 'A', 'alpha',
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
    lines.extend(_table(['beta difference (paired by run)', 'mean [95% CI]',
                         'verdict'], difference_rows))
    lines.append('(the study claims the network\'s beta exceeds its '
                 'kernels\')')
  lines.append(_zero_errors_text(summary))
  return '\n'.join(lines)


def _zero_errors_text(summary: Mapping[str, Any]) -> str:
  """One line: the zero-error rule and the sizes it excluded."""
  zero = summary.get('zero_errors') or {}
  rule = zero.get('rule', DEFAULT_ZERO_ERRORS)
  if rule == 'continuity':
    return ('(zero errors: every error k/m fit as (k + 1/2)/(m + 1), '
            'continuity correction)')
  excluded = zero.get('excluded_sizes') or []
  if not excluded:
    return '(zero errors: none; every n is fit)'
  return (f'(zero errors: n = {", ".join(str(n) for n in excluded)} left out '
          'of every fit, a run had no test error there)')


def _stat_text(stats: Optional[Mapping[str, Any]]) -> str:
  if not stats or stats.get('mean') is None:
    return '-'
  if stats.get('ci95') is None:
    return f'{stats["mean"]:.4f}'
  return f'{stats["mean"]:.4f}±{stats["ci95"]:.4f}'


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
  widths = [max([len(h)] + [len(r[i]) for r in rows])
            for i, h in enumerate(header)]
  lines = ['  '.join(h.ljust(w) for h, w in zip(header, widths))]
  lines.extend('  '.join(c.ljust(w) for c, w in zip(row, widths))
               for row in rows)
  return lines


def _title(config: _CommonConfig, what: str) -> str:
  task = (config.dataset if config.dataset == 'synthetic' else
          f'{config.dataset} {config.plus_class}-vs-{config.minus_class}')
  return (f'{what}: FC {config.depth}x{config.width} (NTK param.) on {task}'
          f'\nkernels fit by {config.kernel_method}; {_BAR_NOTE}')


def _write_outputs(output_dir: str, summary: Mapping[str, Any], study: str,
                   fig) -> None:
  store_lib.write_summary(output_dir, summary['entries'])
  extra = {k: v for k, v in summary.items() if k != 'entries'}
  results.atomic_write_text(os.path.join(output_dir, FITS_FILE),
                            results.to_json(extra, indent=1, sort_keys=True) +
                            '\n')
  plots.save(fig, output_dir, FIGURE_NAMES[study])


# ----------------------------------------------------------------------------
# Experiment 2: the after kernel K_m vs the training-set size m.


def _fit_indices(config: AfterKernelVsMConfig, m: int, n: int) -> slice:
  """Training rows the kernel of K_m is fit on (see the module docstring)."""
  return slice(0, n) if config.fit_examples == 'subset' else slice(m, m + n)


def _needed_examples(config: AfterKernelVsMConfig, m: int, n: int) -> int:
  return max(m, n) if config.fit_examples == 'subset' else m + n


def _after_kernel_run(config: AfterKernelVsMConfig, task: data.BinaryTask,
                      m: int, fit_sizes: Sequence[int], run: int, seed: int,
                      log: Callable[[str], None]) -> List[Dict[str, Any]]:
  """Trains on the first m examples; fits K_m on each n; one record per n."""
  y_all = plus_minus(task.y_train)
  x_test, y_test = task.x_test, plus_minus(task.y_test)
  model = build_network(config, task.x_train.shape[1:], seed)
  network_metrics, timings = {}, {}
  steps = (int(math.ceil(config.epochs * m / min(config.batch_size, m)))
           if m > 0 else 0)
  start = time.time()
  if steps > 0:
    evaluator = NetworkEvaluator(x_test, y_test)
    train_network(model, task.x_train[:m], y_all[:m],
                  learning_rate=config.learning_rate,
                  momentum=config.momentum, batch_size=config.batch_size,
                  steps=steps, seed=seed,
                  callbacks=[StepCallback([steps], evaluator)])
    network_metrics['network_test_error'] = evaluator.curve[-1][1]
    network_metrics['network_test_mse'] = evaluator.curve[-1][2]
  timings['network_train_seconds'] = time.time() - start
  network_metrics['train_steps'] = steps
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
    result = fit_kernel_grams(config, train_gram[:n, :n], y_fit[:n],
                              cross_gram[:, :n], y_test, config.fit_steps,
                              seed)
    metrics = dict(network_metrics, **_fit_metrics(result, 'after_kernel'))
    point = {'train_subset': int(m), 'fit_size': int(n)}
    log(f'm={m} n={n} run {run}: K_m test error '
        f'{metrics["after_kernel_test_error"]:.4f}')
    info = dict(task.info)
    info.pop('transforms', None)
    records.append(_record(AFTER_KERNEL_VS_M, config, point, run, seed,
                           metrics, dict(timings,
                                         fit_seconds=time.time() - start),
                           info))
  return records


def summarize_after_kernel_vs_m(config: AfterKernelVsMConfig,
                                records: Sequence[Mapping[str, Any]]
                                ) -> Dict[str, Any]:
  """Per-(m, n) summary, K_m(n_ref) vs m, and an n-power law per curve m.

  Returns:
    {'entries', 'reference_fit_size', 'fits': {str(m): fit_curve output or
    None}, 'train_sizes': the m with data, 'zero_errors': {'rule',
    'excluded_sizes'}}. With the 'exclude' rule a fit size n with a zero
    error in any curve is dropped from every curve (`zero_error_rule`).
  """
  records = [r for r in records if r.get('family') == AFTER_KERNEL_VS_M and
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
    by_m[m] = _values_by_run(mine, 'after_kernel_test_error', sizes,
                             'fit_size', config.num_runs)
  counts = _test_counts(records, sizes, 'fit_size', config.num_runs,
                        config.num_test)
  kept, by_m, excluded = zero_error_rule(sizes, by_m, counts,
                                         config.zero_errors)
  fits = {}
  for index, m in enumerate(sorted(curves)):
    values = by_m[m]
    usable = [i for i in range(len(kept))
              if not np.all(np.isnan(values[:, i]))]
    if len(usable) < 3:
      fits[str(m)] = None
      continue
    fits[str(m)] = fit_curve([kept[i] for i in usable], values[:, usable],
                             config.num_bootstrap, config.seed + index)
  return {'entries': store_lib.summarize(records), 'fits': fits,
          'reference_fit_size': config.reference_fit_size,
          'train_sizes': train_sizes,
          'zero_errors': {'rule': config.zero_errors,
                          'excluded_sizes': excluded}}


def plot_after_kernel_vs_m(summary: Mapping[str, Any], title: str = ''):
  """(a) K_m(n_ref) and the network vs m; (b) K_m test error vs n, fitted."""
  fig, (left, right) = _new_figure(2)
  entries = summary['entries']
  reference = summary['reference_fit_size']
  at_ref = sorted((e for e in entries
                   if e['point']['fit_size'] == reference),
                  key=lambda e: e['point']['train_subset'])
  trained = [e for e in at_ref if e['point']['train_subset'] > 0]
  if trained:
    _errorbar(left, [e['point']['train_subset'] for e in trained],
              [e['metrics']['after_kernel_test_error'] for e in trained],
              color='C0', label=f'after kernel K_m fit on n = {reference}')
    with_network = [e for e in trained if 'network_test_error' in
                    e['metrics'] and e['metrics']['network_test_error'][
                        'mean'] is not None]
    if with_network:
      _errorbar(left, [e['point']['train_subset'] for e in with_network],
                [e['metrics']['network_test_error'] for e in with_network],
                color='C3', label='network trained on m')
  for e in at_ref:
    if e['point']['train_subset'] == 0:
      left.axhline(e['metrics']['after_kernel_test_error']['mean'],
                   color='C7', linestyle='--',
                   label=f'K_0 = NTK at init, n = {reference}')
  _finish_axes(left, 'network training examples m', 'test error', log_x=True,
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
      label += f', beta = {_beta_text(fit)}'
      if fit.get('identified') is False:
        label += ' (saturated: beta not identified)'
    _errorbar(right, [e['point']['fit_size'] for e in curve],
              [e['metrics']['after_kernel_test_error'] for e in curve],
              color=color, label=label)
    if fit:
      grid = np.geomspace(min(fit['sizes']), max(fit['sizes']), 100)
      right.plot(grid, power_law(grid, fit), color=color, linewidth=1.2)
  _finish_axes(right, 'kernel training examples n', 'test error', log_x=True,
               ticks=[e['point']['fit_size'] for e in entries])
  right.set_title('scaling of K_m with n', fontsize=10)
  if title:
    fig.suptitle(title, fontsize=9)
  fig.tight_layout()
  return fig


def run_after_kernel_vs_m(config: AfterKernelVsMConfig, output_dir: str,
                          log: Callable[[str], None] = print
                          ) -> Dict[str, Any]:
  """Experiment 2: every (m, run) not yet in `output_dir`; returns the summary.

  Run r (seed config.seed + r) permutes the data, trains a fresh network on
  its first m examples for `epochs` epochs (none for m = 0), takes its after
  kernel K_m (`kernel_fit.EmpiricalNTK`) and fits it on every n of
  `fit_sizes` (rows per `fit_examples`). (m, n) pairs needing more examples
  than the data has are left out (logged).

  Returns:
    `summarize_after_kernel_vs_m`; also summary.json / .csv, fits.json and
    after_kernel_vs_m.{png,pdf} in `output_dir`.

  Raises:
    AfterKernelError: bad configuration, data or output folder.
  """
  config.validate()
  store = _prepare_output_dir(config, AFTER_KERNEL_VS_M, output_dir)
  base = load_base_task(config, max(
      _needed_examples(config, m, n) for m in config.train_sizes
      for n in config.fit_sizes))
  available = len(base.y_train)
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
  for run in range(config.num_runs):
    seed = config.seed + run
    task = None
    for m, fit_sizes in plan.items():
      keys = [_key(AFTER_KERNEL_VS_M, {'train_subset': m, 'fit_size': n}, run)
              for n in fit_sizes]
      if all(store.has(k) for k in keys):
        log(f'm={m} run {run} already in {output_dir}; skipped')
        continue
      if task is None:
        task = run_task(base, seed, max(_needed_examples(config, mm, n)
                                        for mm, ns in plan.items()
                                        for n in ns), config.num_test)
      for record in _after_kernel_run(config, task, m, fit_sizes, run, seed,
                                      log):
        store.put(record)
  summary = summarize_after_kernel_vs_m(
      config, _mine(store, config, AFTER_KERNEL_VS_M))
  _write_outputs(output_dir, summary, AFTER_KERNEL_VS_M,
                 plot_after_kernel_vs_m(summary, _title(
                     config, 'after kernel vs m')))
  return summary


def format_after_kernel_vs_m(summary: Mapping[str, Any]) -> str:
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
        row[1] = _stat_text(match[0]['metrics'].get('network_test_error'))
      row.append(_stat_text(match[0]['metrics'].get('after_kernel_test_error'))
                 if match else '-')
    rows.append(row)
  lines = _table(header, rows)
  lines.append('(test error: mean ± 95% CI half-width over runs; m = 0 is '
               'the NTK at init)')
  fit_rows = [[f'K_{m}', _beta_text(summary['fits'][m]),
               _identified_text(summary['fits'][m]),
               _local_text(summary['fits'][m])]
              for m in sorted(summary['fits'], key=int)]
  if fit_rows:
    lines.append('')
    lines.extend(_table(['kernel', 'beta in n [95% CI]', 'beta identified',
                         'local slope'], fit_rows))
    lines.append(_zero_errors_text(summary))
  return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Experiment 3: kernel dynamics over training steps.


class KernelSnapshots:
  """A `StepCallback` target: the empirical NTK (and test error) at each step.

  Attributes:
    kernels: {step: kernel_fit.EmpiricalNTK taken after that step}.
    evaluator: the network's test error at the same steps.
  """

  def __init__(self, feature_batch_size: int, x_test: np.ndarray,
               y_test: np.ndarray):
    self.feature_batch_size = feature_batch_size
    self.kernels = {}
    self.evaluator = NetworkEvaluator(x_test, y_test)

  def __call__(self, step: int, model: keras.Model) -> None:
    self.kernels[int(step)] = kernel_fit.EmpiricalNTK(
        model, self.feature_batch_size)
    self.evaluator(step, model)


def _dynamics_run(config: KernelDynamicsConfig, task: data.BinaryTask,
                  steps: Sequence[int], run: int, seed: int,
                  log: Callable[[str], None]) -> List[Dict[str, Any]]:
  x_train, y_train = task.x_train, plus_minus(task.y_train)
  x_test, y_test = task.x_test, plus_minus(task.y_test)
  model = build_network(config, x_train.shape[1:], seed)
  snapshots = KernelSnapshots(config.feature_batch_size, x_test, y_test)
  start = time.time()
  train_network(model, x_train, y_train, learning_rate=config.learning_rate,
                momentum=config.momentum, batch_size=config.batch_size,
                steps=config.train_steps, seed=seed,
                callbacks=[StepCallback(steps, snapshots)])
  train_seconds = time.time() - start
  network = {step: (error, mse) for step, error, mse in
             snapshots.evaluator.curve}
  info = dict(task.info)
  info.pop('transforms', None)
  records = []
  for step in steps:
    metrics, timings = kernel_metrics(
        config, snapshots.kernels[step], x_train, y_train, x_test, y_test,
        'kernel', config.fit_steps, seed)
    metrics['network_test_error'], metrics['network_test_mse'] = network[step]
    timings['network_train_seconds'] = train_seconds
    log(f't={step} run {run}: K^t test error {metrics["kernel_test_error"]:.4f}'
        f', network {metrics["network_test_error"]:.4f}')
    records.append(_record(KERNEL_DYNAMICS, config, {'step': int(step)}, run,
                           seed, metrics, timings, info))
  return records


def summarize_kernel_dynamics(config: KernelDynamicsConfig,
                              records: Sequence[Mapping[str, Any]]
                              ) -> Dict[str, Any]:
  """Per-step summary: {'entries', 'steps'}."""
  steps = config.snapshot_steps()
  records = [r for r in records if r.get('family') == KERNEL_DYNAMICS and
             r['point'].get('step') in steps and
             r.get('run', 0) < config.num_runs]
  entries = sorted(store_lib.summarize(records),
                   key=lambda e: e['point']['step'])
  return {'entries': entries,
          'steps': sorted({r['point']['step'] for r in records})}


def plot_kernel_dynamics(summary: Mapping[str, Any], title: str = ''):
  """Log-log test error of K^t (fit on the training set) and network vs t."""
  fig, (ax,) = _new_figure(1)
  entries = summary['entries']
  later = [e for e in entries if e['point']['step'] > 0]
  for metric, color, label in (
      ('kernel_test_error', 'C0', 'kernel K^t fit on the training set'),
      ('network_test_error', 'C3', 'network at step t')):
    points = [e for e in later if e['metrics'].get(metric, {}).get('mean')]
    if points:
      _errorbar(ax, [e['point']['step'] for e in points],
                [e['metrics'][metric] for e in points], color=color,
                label=label)
      ax.plot([e['point']['step'] for e in points],
              [e['metrics'][metric]['mean'] for e in points], color=color,
              linewidth=1)
  for e in entries:
    if e['point']['step'] == 0 and e['metrics'].get(
        'kernel_test_error', {}).get('mean'):
      ax.axhline(e['metrics']['kernel_test_error']['mean'], color='C7',
                 linestyle='--', label='K^0 = NTK at init')
  _finish_axes(ax, 'training step t', 'test error', log_x=True)
  ax.set_title(title or 'kernel dynamics', fontsize=9)
  fig.tight_layout()
  return fig


def run_kernel_dynamics(config: KernelDynamicsConfig, output_dir: str,
                        log: Callable[[str], None] = print) -> Dict[str, Any]:
  """Experiment 3: every run not yet in `output_dir`; returns the summary.

  Run r (seed config.seed + r) trains the network on its first num_train
  examples for train_steps steps, snapshotting the empirical NTK at
  `config.snapshot_steps()`; each snapshot K^t is then fit on the same
  training set and tested.

  Returns:
    `summarize_kernel_dynamics`; also summary.json / .csv, fits.json and
    kernel_dynamics.{png,pdf} in `output_dir`.

  Raises:
    AfterKernelError: bad configuration, data or output folder.
  """
  config.validate()
  store = _prepare_output_dir(config, KERNEL_DYNAMICS, output_dir)
  base = load_base_task(config, config.num_train)
  errors.require(config.num_train <= len(base.y_train),
                 f'num_train={config.num_train} exceeds the '
                 f'{len(base.y_train)} training examples of {config.dataset}')
  steps = config.snapshot_steps()
  for run in range(config.num_runs):
    if all(store.has(_key(KERNEL_DYNAMICS, {'step': s}, run)) for s in steps):
      log(f'run {run} already in {output_dir}; skipped')
      continue
    seed = config.seed + run
    task = run_task(base, seed, config.num_train, config.num_test)
    for record in _dynamics_run(config, task, steps, run, seed, log):
      store.put(record)
  summary = summarize_kernel_dynamics(config,
                                      _mine(store, config, KERNEL_DYNAMICS))
  _write_outputs(output_dir, summary, KERNEL_DYNAMICS, plot_kernel_dynamics(
      summary, _title(config, 'kernel dynamics')))
  return summary


def format_kernel_dynamics(summary: Mapping[str, Any]) -> str:
  """Test error of K^t and of the network per snapshot step t."""
  rows = [[str(e['point']['step']), str(len(e['runs'])),
           _stat_text(e['metrics'].get('kernel_test_error')),
           _stat_text(e['metrics'].get('network_test_error'))]
          for e in summary['entries']]
  lines = _table(['step t', 'runs', 'K^t test error', 'network test error'],
                 rows)
  lines.append('(mean ± 95% CI half-width over runs; K^t is fit on the '
               'training set)')
  return '\n'.join(lines)
