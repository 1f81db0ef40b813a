"""The second-order Taylor study: network vs linearization vs H_full vs H_only.

After Vyas, Bansal and Nakkiran (2022), "Limitations of the NTK for
understanding generalization in deep learning": all four models (the network,
its linearization `linearize.linearize`, and the quadratic models
`taylor.taylor_expand` 'full' = H_full and 'hessian_only' = H_only; see
`afterkernel.taylor` for the math and the start of H_only) start from the same
theta_0 and are trained with the same optimizer (SGD with momentum), loss,
batch order and number of epochs.

Expansion point (`expansion_point`): 'init' (the default, this library's
older setting) expands at the random initialization theta_0; 'trained' is
the paper's setting: the base network is first trained (`expansion_epochs`
epochs of the same SGD) on m samples, and all four models then start from
those trained weights w0 (the network continues training from w0). m is the
model's own training set, or the first `expansion_num_train` examples of the
seeded pool if that is set (a fixed m, as for the after kernel K_m). The
'paper' presets also take g2^only = 1/2 delta^T H delta without f(w0, x)
(`h_only_unbiased=True`, `taylor.PAPER_UNBIASED`); see `afterkernel.taylor`
for what of the paper's definitions we could confirm.

Data scaling (`num_train_grid`, the H_full law of Vyas et al.'s Fig 7a):
one point per (model, m), each m the first m examples of one seeded pool,
each (run, m) one unit (its base network trained once for all models);
`second_order_report` fits L(m) = A (1/m + alpha)^beta per model with the
library's fitter (`scaling_fits.fit_curve`) and draws error vs m.

The study runs on `studies.runner`: a frozen `SecondOrderConfig` with
`PRESETS`, one record per (model[, m], run) in the store (existing keys are
skipped, so a killed study resumes), summary tables and figures (test error
per epoch and at the end; with a grid, test error vs m; PNG + PDF).
"""

import dataclasses
import math
import time
import warnings
from typing import (Any, Callable, Dict, List, Mapping, Optional, Sequence,
                    Tuple, Union)

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import linearize
from afterkernel import models
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import scaling_fits
from afterkernel.studies import second_order_report as report
from afterkernel.studies import store
from afterkernel.taylor import QuadraticModel
from afterkernel.taylor import taylor_expand
from afterkernel import training


FAMILY = 'second_order'
FIGURE_NAME = report.FIGURE_NAME
MODEL_KINDS = report.MODEL_KINDS
MODEL_LABELS = report.MODEL_LABELS
format_table = report.format_table
# 'init': expand at the random initialization; 'trained': at the weights
# of the base network trained on m samples (Vyas et al.).
EXPANSION_POINTS = ('init', 'trained')
# A point: a model kind (one training-set size) or (kind, m) on a grid.
Point = Union[str, Tuple[str, int]]
ARCHITECTURES = ('fully_connected', 'vgg')
# 'mse': 0.5 (f(x) - y)^2 on +-1 targets, the loss of Vyas et al.;
# 'bce': logistic loss on the logit with {0, 1} targets (the library's).
LOSSES = ('mse', 'bce')
# H_only's delta_0 relative size: large enough for SGD to leave the saddle
# at delta = 0 within a few epochs, small against theta_0.
DEFAULT_H_ONLY_DELTA_INIT_SCALE = 0.1


@dataclasses.dataclass(frozen=True)
class SecondOrderConfig(runner.StudyConfig, fields.TaskFields,
                        fields.NetworkFields, fields.SgdFields):
  """Everything that defines a second-order Taylor study.

  Attributes:
    dataset, plus_class, minus_class, data_dir: the binary task
      (`data.load_binary_task`; 'synthetic' is Vyas et al.'s vector task).
    num_train, num_test: examples (a seeded subset; generated for
      'synthetic').
    architecture, width, num_layers: the network (`models`: fully connected
      num_layers x width, or VGG-like with num_layers convolutions per block
      and `width` first-block channels).
    model_kinds: which of `MODEL_KINDS` to train.
    epochs, batch_size, learning_rate, momentum, loss: the one optimizer
      (SGD with momentum) and loss used for every model.
    h_only_unbiased, h_full_unbiased: drop f(theta_0, x) from that model.
    h_only_delta_init_scale: relative size of H_only's random delta_0.
    expansion_point: 'init' (theta_0 = the initialization) or 'trained'
      (w0 = the base network after expansion_epochs of SGD on m samples).
    expansion_epochs: epochs of base training ('trained' only).
    expansion_num_train: m of the base training: 0 = each model's own
      training set; k > 0 = the first k examples of the seeded pool.
    num_train_grid: training-set sizes m of a data-scaling study (one point
      per model and m, num_train then unused); () = one size, num_train.
    zero_errors: rule for zero test errors in the scaling fits, one of
      `scaling_fits.ZERO_ERROR_RULES`.
    num_runs: independent initializations (seed + run); the data subset is
      fixed by `seed`.
    seed: first seed.
  """
  # Adding runs or model kinds extends a study.
  FINGERPRINT_IGNORES = ('num_runs', 'data_dir', 'model_kinds',
                         'num_train_grid', 'zero_errors')
  width: int = 32
  num_layers: int = 2
  model_kinds: tuple = MODEL_KINDS
  learning_rate: float = 0.02
  loss: str = 'mse'
  h_full_unbiased: bool = False
  h_only_unbiased: bool = False
  h_only_delta_init_scale: float = DEFAULT_H_ONLY_DELTA_INIT_SCALE
  expansion_point: str = 'init'
  expansion_epochs: int = 10
  expansion_num_train: int = 0
  num_train_grid: Tuple[int, ...] = ()
  zero_errors: str = scaling_fits.DEFAULT_ZERO_ERRORS

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    errors.require_choice(self.dataset, data.DATASETS, 'dataset')
    errors.require_choice(self.architecture, ARCHITECTURES, 'architecture')
    errors.require(not (self.architecture == 'vgg' and
                        self.dataset in data.VECTOR_DATASETS),
                   f'dataset {self.dataset} has vector inputs; use '
                   'architecture fully_connected')
    errors.require_choice(self.loss, LOSSES, 'loss')
    errors.require(bool(self.model_kinds), 'model_kinds is empty; choose '
                   f'some of {", ".join(MODEL_KINDS)}')
    for kind in self.model_kinds:
      errors.require(kind in MODEL_KINDS, f'unknown model kind {kind!r}; '
                     f'choose from {", ".join(MODEL_KINDS)}')
    errors.require(len(set(self.model_kinds)) == len(self.model_kinds),
                   'model_kinds has duplicates')
    runner.require_positive_int_fields(self, ('num_train', 'num_test', 'width',
        'num_layers', 'epochs', 'batch_size', 'num_runs'))
    errors.require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f'learning_rate must be positive, got {self.learning_rate}')
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require(self.h_only_delta_init_scale >= 0 and
                   math.isfinite(self.h_only_delta_init_scale),
                   'h_only_delta_init_scale must be >= 0, got '
                   f'{self.h_only_delta_init_scale}')
    errors.require(isinstance(self.seed, int) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed}')
    errors.require_choice(self.expansion_point, EXPANSION_POINTS,
                          'expansion_point')
    runner.require_positive_int_fields(self, ('expansion_epochs',))
    errors.require(isinstance(self.expansion_num_train, int) and
                   self.expansion_num_train >= 0, 'expansion_num_train must '
                   f'be an integer >= 0, got {self.expansion_num_train!r}')
    if self.num_train_grid:
      runner.positive_ints(self.num_train_grid, 'num_train_grid')
      errors.require(len(set(self.num_train_grid)) ==
                     len(self.num_train_grid), 'num_train_grid has duplicates')
    scaling_fits.check_zero_errors(self.zero_errors)

  def pool_size(self) -> int:
    """Training examples to load: the largest m (and base-training m)."""
    return max(tuple(self.num_train_grid or (self.num_train,)) +
               (self.expansion_num_train,))


PRESETS = {
    # Seconds, offline (embedded 8x8 digits 8-vs-3): tests and smoke runs.
    'tiny': SecondOrderConfig(),
    # MNIST 3-vs-8 (pass data_dir): 8000 train / 1900 test images, FC 2 x 128,
    # 30 epochs of SGD (lr 0.005, momentum 0.9) on MSE with +-1 targets, 3
    # runs. (At lr 0.02 the linearization diverges at once and at 0.01 in
    # one run of three after ~20 epochs, while the network does not: the one
    # shared learning rate must be stable for every model.)
    'cpu': SecondOrderConfig(
        dataset='mnist', plus_class=8, minus_class=3, num_train=8000,
        num_test=1900, width=128, num_layers=2, epochs=30, batch_size=64,
        learning_rate=0.005, momentum=0.9, num_runs=3),
    # The paper's setting (Fig 7a) in seconds, offline: g2^only without
    # f(w0, x), every model expanded at / starting from the base network
    # trained 5 epochs on its own m examples, m = 40, 80, 160 (digits 8v3).
    'tiny_paper': SecondOrderConfig(
        expansion_point='trained', expansion_epochs=5, h_only_unbiased=True,
        num_train_grid=(40, 80, 160)),
    # Fig 7a at CPU scale (pass data_dir): MNIST 3-vs-8, FC 2 x 128, the
    # 'cpu' optimizer; g2^only without f(w0, x); base network trained 20
    # epochs on each model's own m examples, then every model 20 epochs
    # from it; m = 125 ... 4000 (1900 test images), 2 runs.
    'paper': SecondOrderConfig(
        dataset='mnist', plus_class=8, minus_class=3, num_test=1900,
        width=128, num_layers=2, epochs=20, batch_size=64,
        learning_rate=0.005, momentum=0.9, num_runs=2,
        expansion_point='trained', expansion_epochs=20, h_only_unbiased=True,
        num_train_grid=(125, 250, 500, 1000, 2000, 4000)),
    # Vyas et al.'s synthetic task y = z_1 z_2 (30-dim vectors), 4000 / 2000
    # examples, FC 2 x 256, 60 epochs (lr 0.003: at 0.01 the linearization
    # diverges in every run), 3 runs.
    'cpu_synthetic': SecondOrderConfig(
        dataset='synthetic', plus_class=1, minus_class=0, num_train=4000,
        num_test=2000, width=256, num_layers=2, epochs=60, batch_size=64,
        learning_rate=0.003, momentum=0.9, num_runs=3),
}


def load_task(dataset: str, plus_class: int, minus_class: int,
              data_dir: Optional[str], num_train: int, num_test: int,
              seed: int) -> data.BinaryTask:
  """The binary task: a seeded subset, or generated examples for 'synthetic'.

  Args:
    dataset, plus_class, minus_class, data_dir: see `data.load_binary_task`.
    num_train, num_test: how many examples to keep (or generate).
    seed: permutation seed (for 'synthetic' also the generator's seed).

  Returns:
    The `data.BinaryTask`.
  """
  if dataset == 'synthetic':
    return data.load_binary_task(dataset, plus_class, minus_class,
                                 num_train=num_train, num_test=num_test,
                                 synthetic_seed=seed)
  task = data.load_binary_task(dataset, plus_class, minus_class,
                               data_dir=data_dir)
  return data.subsample(data.permute(task, seed), num_train, num_test)


def make_model(kind: str, network: keras.Model, config: SecondOrderConfig,
               seed: int) -> keras.Model:
  """The model of `kind` around the network's current weights theta_0.

  'network' is `network` itself (trained in place); the others are copies.
  """
  if kind == 'network':
    return network
  if kind == 'linear':
    return linearize.linearize(network)
  if kind == 'h_full':
    return taylor_expand(network, 'full', unbiased=config.h_full_unbiased)
  return taylor_expand(network, 'hessian_only',
                       unbiased=config.h_only_unbiased,
                       delta_init_scale=config.h_only_delta_init_scale,
                       seed=seed)


def _outputs(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
  return training.predict_logits(model, inputs, 500).astype(np.float64)


def train_model(model: keras.Model, task: data.BinaryTask,
                config: SecondOrderConfig, seed: int) -> Dict[str, Any]:
  """Trains `model` in place with the study's optimizer; returns metrics.

  Every model is compiled with a fresh SGD (learning rate, momentum) and the
  study's loss, and fit with the same seed, hence the same batch order
  (`training.fit`, 'keras' order); the test error is taken after every epoch.
  """
  training.compile_model(model, config.learning_rate, config.momentum,
                         loss=config.loss)
  test_errors = []

  def after_epoch(epoch: int, trained: keras.Model) -> None:
    del epoch
    test_errors.append(training.sign_error(_outputs(trained, task.x_test),
                                           task.y_test))

  initial_test_error = training.sign_error(_outputs(model, task.x_test),
                                           task.y_test)
  start = time.time()
  with warnings.catch_warnings():
    # H_only has no gradient for the output bias (f is linear in it, so it
    # has no second derivative): expected, not worth Keras' warning.
    warnings.filterwarnings('ignore', message='Gradients do not exist')
    losses = training.fit(
        model, task.x_train, training.targets_for(task.y_train, config.loss),
        batch_size=config.batch_size, seed=seed, epochs=config.epochs,
        batch_order='keras', snapshots=range(1, config.epochs + 1),
        on_snapshot=after_epoch)
  seconds = time.time() - start
  train_outputs = _outputs(model, task.x_train)
  test_outputs = _outputs(model, task.x_test)
  signed_test = data.signed_labels(task.y_test)
  best_epoch = int(np.argmin(test_errors)) + 1
  return {
      'metrics': {
          'test_error': training.sign_error(test_outputs, task.y_test),
          # Optimal early stopping (on the test set, as Vyas et al. report
          # their kernel and network errors): lowest error over the epochs.
          'best_test_error': float(test_errors[best_epoch - 1]),
          'best_epoch': best_epoch,
          'train_error': training.sign_error(train_outputs,
                                             task.y_train),
          'test_mse': float(np.mean((test_outputs - signed_test)**2)),
          'initial_test_error': initial_test_error,
          'final_train_loss': losses[-1],
          'diverged': float(not all(math.isfinite(v) for v in losses)),
      },
      'curves': {'test_error_by_epoch': test_errors,
                 'train_loss_by_epoch': losses},
      'timings': {'train_seconds': seconds},
  }


def _term_sizes(model: keras.Model, inputs: np.ndarray) -> Dict[str, float]:
  """RMS over inputs of J delta and 1/2 delta^T H delta (Taylor models)."""
  if not isinstance(model, QuadraticModel):
    return {}
  _, first, second = model.terms(inputs[:500])
  return {'first_order_rms': float(np.sqrt(np.mean(np.square(first)))),
          'second_order_rms': float(np.sqrt(np.mean(np.square(0.5 *
                                                               second))))}


def record_key(point: Point, run: int) -> str:
  """The store key of a point (a kind, or (kind, m) on a grid) and run."""
  if isinstance(point, str):
    return f'{FAMILY}_{point}_run{run}'
  kind, size = point
  return f'{FAMILY}_{kind}_m{size}_run{run}'


def points(config: SecondOrderConfig) -> Tuple[Point, ...]:
  """The model kinds, or (kind, m) for every m of `num_train_grid`."""
  if not config.num_train_grid:
    return tuple(config.model_kinds)
  return tuple((kind, size) for size in sorted(config.num_train_grid)
               for kind in config.model_kinds)


def point_size(point: Point) -> Optional[int]:
  """m of a grid point (the unit a point belongs to); None otherwise."""
  return None if isinstance(point, str) else point[1]


def _subset(task: data.BinaryTask, size: int) -> data.BinaryTask:
  """The first `size` training examples of the seeded pool (test: all)."""
  if size == len(task.y_train):
    return task
  return data.subsample(task, size, None)


def expansion_weights(config: SecondOrderConfig, network: keras.Model,
                      pool: data.BinaryTask, size: int, seed: int,
                      log: Callable[[str], None] = print
                      ) -> Dict[str, Any]:
  """Moves `network` to the expansion point; returns its description.

  'init' leaves the initialization; 'trained' trains the network for
  `expansion_epochs` epochs (the study's SGD and loss, seeded batch order)
  on the first m examples of the pool: m = `expansion_num_train`, or `size`
  (the models' own training set) if that is 0.

  Returns:
    Metrics of the expansion point: {'expansion_num_train',
    'expansion_test_error'} ('trained'), else {}.
  """
  if config.expansion_point == 'init':
    return {}
  base_size = config.expansion_num_train or size
  base = _subset(pool, base_size)
  training.compile_model(network, config.learning_rate, config.momentum,
                         loss=config.loss)
  training.fit(network, base.x_train,
               training.targets_for(base.y_train, config.loss),
               batch_size=config.batch_size, seed=seed,
               epochs=config.expansion_epochs, batch_order='keras')
  test_error = training.sign_error(_outputs(network, pool.x_test),
                                   pool.y_test)
  log(f'  expansion point: trained {config.expansion_epochs} epochs on '
      f'{base_size} examples (test error {test_error:.4f})')
  return {'expansion_num_train': base_size, 'expansion_test_error': test_error}


def run_once(config: SecondOrderConfig, pool: data.BinaryTask,
             unit: runner.WorkUnit, log: Callable[[str], None] = print
             ) -> List[Dict[str, Any]]:
  """One (run[, m]): the expansion point, then each model of the unit.

  Every model of the unit starts from the same weights (the initialization
  of run `unit.run`, or the base network trained from it) and trains on the
  same examples (the pool's first m on a grid, else all of num_train).
  """
  size = point_size(unit.points[0])
  task = pool if size is None else _subset(pool, size)
  seed, network = config.seeded_network(unit.run, task.x_train.shape[1:])
  num_parameters = models.count_parameters(network)
  log(f'run {unit.run}: {config.architecture} with {num_parameters} '
      'parameters' + ('' if size is None else f', m = {size}'))
  expansion = expansion_weights(config, network, pool, len(task.y_train), seed,
                                log)
  initial_weights = network.get_weights()
  records = []
  # The network is trained last, so that the copies start from theta_0.
  for point in sorted(unit.points, key=lambda p: _kind(p) == 'network'):
    kind = _kind(point)
    network.set_weights(initial_weights)
    model = make_model(kind, network, config, seed)
    outcome = train_model(model, task, config, seed)
    outcome['metrics'].update(_term_sizes(model, task.x_test))
    outcome['metrics'].update(expansion)
    log(f'  {MODEL_LABELS[kind]:>13}: test error '
        f'{outcome["metrics"]["test_error"]:.4f}, train error '
        f'{outcome["metrics"]["train_error"]:.4f} '
        f'({outcome["timings"]["train_seconds"]:.1f} s)')
    description = {'family': FAMILY, 'task': f'{config.plus_class}v'
                   f'{config.minus_class}', 'dataset': config.dataset,
                   'nn_architecture': config.architecture,
                   'num_parameters': num_parameters, 'model': kind}
    if size is not None:
      description['train_subset'] = size
    records.append({
        'key': record_key(point, unit.run), 'family': FAMILY,
        'point_id': kind if size is None else f'{kind}_m{size}',
        'point': description, 'run': unit.run, 'seed': seed,
        'config_fingerprint': config.fingerprint(), 'data': task.info,
        **outcome})
  return records


def _kind(point: Point) -> str:
  return point if isinstance(point, str) else point[0]


def summarize(output_dir: str, config: SecondOrderConfig
              ) -> List[Dict[str, Any]]:
  """The summary of this config's records, in `MODEL_KINDS` (then m) order."""
  return runner.summarize(STUDY, config, output_dir)


def _load(config: SecondOrderConfig, output_dir: str) -> data.BinaryTask:
  del output_dir  # Nothing is written outside the records.
  return load_task(config.dataset, config.plus_class, config.minus_class,
                   config.data_dir, config.pool_size(), config.num_test,
                   config.seed)


def _by_kind(entry: Mapping[str, Any]) -> Tuple[int, int]:
  return (MODEL_KINDS.index(entry['point']['model']),
          entry['point'].get('train_subset') or 0)


def _figures(entries: Sequence[Mapping[str, Any]], config: SecondOrderConfig,
             output_dir: str) -> List[str]:
  wanted = {record_key(p, r) for p in points(config)
            for r in range(config.num_runs)}
  result_store = store.ResultStore(output_dir)
  records = [result_store.get(k) for k in result_store.keys() if k in wanted]
  setting = (f'{config.architecture} on {config.dataset} '
             f'{config.plus_class}v{config.minus_class}, expanded at '
             f'{config.expansion_point}')
  if not config.num_train_grid:
    return report.plot(records, entries, output_dir,
                       title=f'Second-order Taylor models: {setting} '
                       f'(n = {config.num_train})')
  sizes = sorted(config.num_train_grid)
  paths = []
  if len(sizes) >= 3:
    fits = report.fit_scaling(records, config.model_kinds, sizes,
                              config.num_runs, config.num_test,
                              config.zero_errors, config.seed)
    paths += report.plot_scaling(records, fits, sizes, config.num_runs,
                                 output_dir, title=f'Best test error vs m: '
                                 f'{setting}')
  largest = [r for r in records if r['point']['train_subset'] == sizes[-1]]
  return paths + report.plot(
      largest, [e for e in entries if e['point']['train_subset'] == sizes[-1]],
      output_dir, title=f'Second-order Taylor models: {setting} '
      f'(m = {sizes[-1]})')


STUDY = runner.Study(family=FAMILY, points=points, record_key=record_key,
                     run_once=run_once, load=_load, sort_key=_by_kind,
                     figures=_figures, noun='models', group=point_size)


# Trains every (model kind[, m], run) not yet in an output folder;
# summarizes.
run_study = STUDY.run
