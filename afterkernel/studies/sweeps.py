"""The paper's experiment families as resumable sweeps over a result store.

Long, *Properties of the after kernel* (2021) measures kernels of networks
over grids of settings. A `Sweep` is one such grid, the product of
tasks x architectures x augmentation x learning rates x widths, with one of
three families (`FAMILIES`):

  * 'epochs' (Figs 1-8, 16): the kernel after each epoch of `epochs`
    (paper: 0, 1, 3, 10, 30, 100, 200). All epochs of one run are measured
    along ONE training trajectory (`training.train(snapshot_epochs=...)`),
    not by retraining from scratch for each point; records say so in
    'protocol'. Epoch 0 is the FNTK.
  * 'learning_rate' (Figs 9-14): for each learning rate, train until the
    training loss is <= `training_loss_target` (paper: 0.01; rounds of
    10, 20, 40, ... epochs, see `training.train_to_loss_target`), then measure
    once; records hold `epochs_trained` and `reached_loss_target`.
  * 'width' (Fig 15, appendix A): like 'epochs', for networks sized by
    `num_parameters` (paper: ~60K, ~80K, ~100K).
Augmentation (Figs 8, 16; rotations up to 15 degrees and 1-pixel shifts) is
an axis of every family: `augmentation=(False, True)` runs both.

Every (point, run, checkpoint) gives one record in a `store.ResultStore`
with neutral metric names (`METRICS`): the hard-margin SVM test error and
margin of the network's kernel (`svm_error`, `svm_margin`; the FNTK at epoch
0, the after kernel later), the four invariances, the alignment with the
conjugate projection, effective ranks, the SVM test error with the conjugate
projection (`conjugate_svm_error`), and the network's test error and
training loss. Metrics come from the one probe (`kernels.probe`, spec
`after_kernel.probe_spec`) under its names, so they are computed exactly as
by `run_experiment`.

Resuming: a (point, run) whose records all exist is skipped; otherwise the
run is retrained from its seed and only the missing checkpoints are measured
and written, each as soon as it is measured. A sweep killed at any moment
loses at most the record in progress. Training is seeded, but TensorFlow on
CPU does not promise bit-identical training across processes, so a resumed
run's later checkpoints may differ from an uninterrupted run's by rounding.

Run r of every point uses seed `base.seed + r` for the data permutation, the
initialization and the minibatch order, as `after_kernel.run_once` does, so the
FNTK of run r is the same network for every learning rate and
augmentation setting.
"""

import dataclasses
import datetime
import re
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import keras

from afterkernel import data
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.kernels import probe as probe_lib
from afterkernel import models
from afterkernel.studies import runner
from afterkernel.studies import store as store_lib
from afterkernel import training

FAMILIES = ('epochs', 'learning_rate', 'width')
# The paper's tasks, named DATASET_<minus>v<plus> (label 1 = the plus class).
PAPER_TASKS = ('mnist_3v8', 'mnist_5v6', 'cifar10_3v5')
PAPER_ARCHITECTURES = ('vgg', 'mega_vgg', 'fully_connected')
PAPER_EPOCHS = (0, 1, 3, 10, 30, 100, 200)
PAPER_NUM_RUNS = 10
PAPER_LOSS_TARGET = 0.01
# The paper's learning-rate grids per dataset (digits borrows MNIST's).
PAPER_LEARNING_RATES = {
    'mnist': (0.001, 0.003, 0.01, 0.03, 0.1),
    'digits': (0.001, 0.003, 0.01, 0.03, 0.1),
    'cifar10': (0.01, 0.02, 0.03, 0.04),
}
PAPER_WIDTHS = (60_000, 80_000, 100_000)
# Cap of loss-target training: 10 * 2**7 epochs; a run that needs more is
# recorded with reached_loss_target = 0 rather than running forever.
DEFAULT_LOSS_TARGET_MAX_EPOCHS = 1280
CHECKPOINT_FINAL = 'final'

# Record metric names and what they mean (plots use these for labels): the
# probe's vocabulary, and what the sweeps add.
METRICS = dict({name: probe_lib.VOCABULARY[name] for name in (
    'svm_error', 'svm_margin', 'trans_inv', 'rotation_inv', 'zoom_inv',
    'swap_inv', 'kalignment', 'eff_rank', 'entropy_eff_rank')}, **{
    'conjugate_svm_error': 'hard-margin SVM test error of the conjugate '
                           'projection (penultimate-layer features)',
    'conjugate_svm_margin': 'normalized margin of the conjugate SVM',
    'svm_separable': ('1 if the SVM found a positive margin, 0 if it certified '
                      'the data non-separable, empty if it proved neither'),
    'conjugate_svm_separable': 'the same for the conjugate SVM',
    'svm_error_lower': ('lowest test error of the exact max-margin classifier '
                        'that the SVM certificate allows'),
    'svm_error_upper': ('highest test error of the exact max-margin '
                        'classifier that the SVM certificate allows'),
    'nn_error': 'test error of the network itself',
    'nn_train_loss': 'training BCE of the network',
    'epochs_trained': 'epochs of SGD behind the checkpoint',
    'reached_loss_target': 'learning-rate family: 1 if the loss target was met',
    'parameter_count': 'trainable parameters of the network',
})
_TASK_PATTERN = re.compile(r'^([a-z0-9_]+)_(\d+)v(\d+)$')


def parse_task(name: str) -> Tuple[str, int, int]:
  """'mnist_3v8' -> ('mnist', plus_class=8, minus_class=3).

  Raises:
    AfterKernelError: the name is not DATASET_<minus>v<plus> with a known
      dataset.
  """
  match = _TASK_PATTERN.match(name or '')
  errors.require(match is not None and match.group(1) in data.DATASETS,
                 f'bad task {name!r}: write DATASET_<minus>v<plus> with '
                 f'DATASET in {", ".join(data.DATASETS)}, e.g. mnist_3v8')
  return match.group(1), int(match.group(3)), int(match.group(2))


@dataclasses.dataclass(frozen=True)
class Sweep:
  """One experiment family over a grid of settings.

  Attributes:
    family: one of `FAMILIES`.
    base: settings shared by every point (data_dir, subsets, measurement
      sizes, solver, batch size, seed, num_runs, ...). Its dataset, classes,
      nn_architecture, use_augmentation, num_parameters and (learning_rate
      family) learning_rate are overridden per point; for 'learning_rate'
      its training_loss_target (None = `PAPER_LOSS_TARGET`) and
      max_num_epochs (the cap) are used.
    tasks: task names (see `parse_task`).
    architectures: names from `models.ARCHITECTURES`.
    augmentation: which augmentation settings to run.
    epochs: checkpoints of the 'epochs' and 'width' families.
    learning_rates: the 'learning_rate' family's grid; None means
      `PAPER_LEARNING_RATES` of each task's dataset. The other families train
      with `base.learning_rate`.
    num_parameters: the 'width' family's parameter counts.
  """
  family: str
  base: after_kernel.ExperimentConfig
  tasks: Tuple[str, ...] = ('mnist_3v8',)
  architectures: Tuple[str, ...] = ('vgg',)
  augmentation: Tuple[bool, ...] = (False,)
  epochs: Tuple[int, ...] = PAPER_EPOCHS
  learning_rates: Optional[Tuple[float, ...]] = None
  num_parameters: Tuple[int, ...] = PAPER_WIDTHS

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    errors.require_choice(self.family, FAMILIES, 'family')
    for field in ('tasks', 'architectures', 'augmentation'):
      errors.require(len(getattr(self, field)) > 0,
                     f'{field} is empty; give at least one value')
    for task in self.tasks:
      parse_task(task)
    for architecture in self.architectures:
      errors.require(architecture in models.ARCHITECTURES,
                     f'unknown architecture {architecture!r}; choose from '
                     f'{", ".join(models.ARCHITECTURES)}')
    if self.family in ('epochs', 'width'):
      errors.require(len(self.epochs) > 0, 'epochs is empty; give checkpoints '
                     'such as 0,1,3,10')
      for epoch in self.epochs:
        errors.require(isinstance(epoch, int) and epoch >= 0,
                       f'epochs must be non-negative integers, got {epoch!r}')
    if self.family == 'learning_rate' and self.learning_rates is not None:
      errors.require(len(self.learning_rates) > 0, 'learning_rates is empty')
      for rate in self.learning_rates:
        errors.require_positive(rate, 'learning rate')
    if self.family == 'width':
      errors.require(len(self.num_parameters) > 0, 'num_parameters is empty')
      for count in self.num_parameters:
        errors.require_positive(count, 'num_parameters')
      errors.require(
          not set(self.architectures) & {'mega_vgg', 'sum'},
          'the width family sizes vgg / fully_connected nets; mega_vgg and '
          'sum have fixed widths')
    for config in self.point_configs():
      config.validate()

  def point_configs(self) -> List[after_kernel.ExperimentConfig]:
    """The experiment configuration of every point (checkpoint epoch aside).

    For the snapshot families max_num_epochs is the largest checkpoint; the
    record of checkpoint e carries the config with max_num_epochs = e (what
    `run_experiment` would run to measure the same after kernel).
    """
    configs = []
    for task in self.tasks:
      dataset, plus_class, minus_class = parse_task(task)
      if self.family == 'learning_rate':
        rates = (self.learning_rates if self.learning_rates is not None
                 else PAPER_LEARNING_RATES[dataset])
      else:
        rates = (self.base.learning_rate,)
      widths = (self.num_parameters if self.family == 'width'
                else (self.base.num_parameters,))
      for architecture in self.architectures:
        for augment in self.augmentation:
          for rate in rates:
            for width in widths:
              changes = dict(dataset=dataset, plus_class=plus_class,
                             minus_class=minus_class,
                             nn_architecture=architecture,
                             use_augmentation=bool(augment),
                             learning_rate=rate, num_parameters=width)
              if self.family == 'learning_rate':
                changes['training_loss_target'] = (
                    self.base.training_loss_target or PAPER_LOSS_TARGET)
              else:
                changes.update(training_loss_target=None,
                               max_num_epochs=max(self.epochs))
              configs.append(dataclasses.replace(self.base, **changes))
    return configs

  def checkpoints(self) -> Tuple[Any, ...]:
    """Epochs measured per run (snapshot families) or ('final',)."""
    if self.family == 'learning_rate':
      return (CHECKPOINT_FINAL,)
    return tuple(sorted(set(self.epochs)))

  @property
  def num_runs(self) -> int:
    """Runs per point (`base.num_runs`)."""
    return self.base.num_runs

  def num_records(self) -> int:
    """Records a finished sweep holds."""
    return (len(self.point_configs()) * len(self.checkpoints()) *
            self.base.num_runs)


def checkpoint_config(config: after_kernel.ExperimentConfig,
                      checkpoint: Any) -> after_kernel.ExperimentConfig:
  """The config describing one checkpoint (max_num_epochs = its epoch)."""
  if checkpoint == CHECKPOINT_FINAL:
    return config
  return dataclasses.replace(config, max_num_epochs=int(checkpoint))


def record_key(family: str, config: after_kernel.ExperimentConfig,
               checkpoint: Any, run: int) -> str:
  """The store key of one record: family, checkpoint config hash, run.

  The hash (`ExperimentConfig.fingerprint`) covers every field that changes
  results but not num_runs or data_dir, so raising --num_runs or moving the
  data extends a sweep instead of restarting it, and adding an epoch to the
  list reuses the finished ones.
  """
  point_id = checkpoint_config(config, checkpoint).fingerprint()
  return f'{family}-{point_id}-run{run:04d}'


def _point_fields(family: str, task: str, config: after_kernel.ExperimentConfig,
                  checkpoint: Any) -> Dict[str, Any]:
  return {
      'family': family, 'task': task, 'dataset': config.dataset,
      'plus_class': config.plus_class, 'minus_class': config.minus_class,
      'nn_architecture': config.nn_architecture,
      'num_parameters': config.num_parameters,
      'use_augmentation': config.use_augmentation,
      'learning_rate': (training.DEFAULT_LEARNING_RATE
                        if config.learning_rate is None
                        else config.learning_rate),
      'training_loss_target': config.training_loss_target,
      'train_subset': config.train_subset, 'test_subset': config.test_subset,
      'epoch': None if checkpoint == CHECKPOINT_FINAL else int(checkpoint),
  }


def _task_name(config: after_kernel.ExperimentConfig) -> str:
  return f'{config.dataset}_{config.minus_class}v{config.plus_class}'


class _Measurer:
  """Measures one network at a checkpoint and emits its record."""

  def __init__(self, sweep: Sweep, config: after_kernel.ExperimentConfig,
               task: data.BinaryTask, full_task_sizes: Tuple[int, int],
               run: int, emit: Callable[[Dict[str, Any]], None],
               log: Callable[[str], None]):
    self.sweep, self.config, self.task, self.run = sweep, config, task, run
    self.emit, self.log = emit, log
    self.full_task_sizes = full_task_sizes
    self.seed = config.seed + run
    spec = after_kernel.probe_spec(config)
    self.probe = probe_lib.KernelProbe(spec, task, self.seed, log)
    # The conjugate projection only needs its SVM (same solver and
    # tolerance as the kernel's); invariances etc. are the kernel's.
    self.conjugate_probe = probe_lib.KernelProbe(
        dataclasses.replace(spec, use_conjugate_kernel=True,
                            metrics=probe_lib.SVM_METRICS),
        task, self.seed, log)

  def measure(self, model: keras.Model, checkpoint: Any,
              extra_metrics: Dict[str, Any],
              extra_timings: Dict[str, float]) -> Dict[str, Any]:
    """Measures `model`, emits the record (stored on return), returns it."""
    start = time.time()
    metrics, timings = {}, dict(extra_timings)
    measured = self.probe.measure(model, log_prefix='ak_')
    metrics.update(measured['metrics'])
    timings.update(measured['timings'])
    if self.config.train_linear_model:
      conjugate_start = time.time()
      conjugate = self.conjugate_probe.measure(model)['metrics']
      metrics['conjugate_svm_error'] = conjugate['svm_error']
      metrics['conjugate_svm_margin'] = conjugate['svm_margin']
      metrics['conjugate_svm_converged'] = conjugate['svm_converged']
      metrics['conjugate_svm_separable'] = conjugate['svm_separable']
      timings['conjugate_svm_seconds'] = time.time() - conjugate_start
    metrics['nn_error'] = training.classification_error(
        model, self.task.x_test, self.task.y_test)
    metrics['nn_train_loss'] = training.binary_loss(
        model, self.task.x_train, self.task.y_train)
    metrics['parameter_count'] = models.count_parameters(model)
    metrics.update(extra_metrics)
    timings['measure_seconds'] = time.time() - start
    family = self.sweep.family
    snapshots = list(self.sweep.checkpoints())
    record = {
        'key': record_key(family, self.config, checkpoint, self.run),
        'family': family,
        'point_id': checkpoint_config(self.config, checkpoint).fingerprint(),
        'point': _point_fields(family, _task_name(self.config), self.config,
                               checkpoint),
        'run': self.run,
        'seed': self.seed,
        'checkpoint': checkpoint,
        'version': after_kernel.VERSION,
        'config': checkpoint_config(self.config, checkpoint).to_dict(),
        'protocol': (
            {'training': 'one trajectory per run; kernels measured at '
                         'snapshots after the listed epochs of the same run',
             'snapshot_epochs': snapshots}
            if family != 'learning_rate' else
            {'training': 'train until the training loss <= target, in '
                         'rounds of 10, 20, 40, ... epochs, then measure',
             'training_loss_target': self.config.training_loss_target,
             'max_num_epochs': self.config.max_num_epochs}),
        'shrink': {
            'train_subset': self.config.train_subset,
            'test_subset': self.config.test_subset,
            'full_train_size': self.full_task_sizes[0],
            'full_test_size': self.full_task_sizes[1],
            'num_runs': self.config.num_runs,
            'paper_num_runs': PAPER_NUM_RUNS,
        },
        'data': self.task.info,
        'metrics': metrics,
        'timings': timings,
        'written_at': datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec='seconds'),
    }
    self.emit(record)
    self.log(f'  wrote {record["key"]} ({checkpoint}): svm_error '
             f'{metrics.get("svm_error")}, nn_error {metrics["nn_error"]:.4f}')
    return record


def _run_point(sweep: Sweep, config: after_kernel.ExperimentConfig,
               task: data.BinaryTask, run: int, missing: Sequence[Any],
               emit: Callable[[Dict[str, Any]], None],
               log: Callable[[str], None]) -> int:
  """Trains run `run` of one point and writes its `missing` checkpoints."""
  seed = config.seed + run
  full_sizes = (len(task.y_train), len(task.y_test))
  task = data.permute(task, seed)
  if config.train_subset or config.test_subset:
    task = data.subsample(task, config.train_subset, config.test_subset)
  keras.utils.set_random_seed(seed)
  model = after_kernel.build_network(config, task.x_train.shape[1:])
  measurer = _Measurer(sweep, config, task, full_sizes, run, emit, log)
  train_kwargs = dict(learning_rate=config.learning_rate,
                      batch_size=config.batch_size,
                      augment=config.use_augmentation, seed=seed)
  if sweep.family == 'learning_rate':
    start = time.time()
    trained = training.train_to_loss_target(
        model, task.x_train, task.y_train, config.training_loss_target,
        config.max_num_epochs, **train_kwargs)
    measurer.measure(
        model, CHECKPOINT_FINAL,
        {'epochs_trained': trained.epochs,
         'reached_loss_target': float(trained.reached_loss_target)},
        {'training_seconds': time.time() - start})
    return 1
  clock = {'last': time.time()}

  def on_snapshot(epoch: int, snapshot_model: keras.Model) -> None:
    training_seconds = time.time() - clock['last']
    measurer.measure(snapshot_model, epoch, {'epochs_trained': epoch},
                     {'training_seconds_since_last_snapshot':
                      training_seconds})
    clock['last'] = time.time()

  training.train(model, task.x_train, task.y_train, max(missing),
                 snapshot_epochs=missing, on_snapshot=on_snapshot,
                 **train_kwargs)
  return len(missing)


# A sweep point of the runner: (family, index of its config in
# `point_configs`, that config, checkpoint); the checkpoints of one config
# share a training run (`_config_index` groups them into one unit).
def _points(sweep: Sweep) -> List[Tuple[str, int, Any, Any]]:
  return [(sweep.family, index, config, checkpoint)
          for index, config in enumerate(sweep.point_configs())
          for checkpoint in sweep.checkpoints()]


def _point_key(point: Tuple[str, int, Any, Any], run: int) -> str:
  family, _, config, checkpoint = point
  return record_key(family, config, checkpoint, run)


def _config_index(point: Tuple[str, int, Any, Any]) -> int:
  return point[1]


def _load_tasks(sweep: Sweep, output_dir: str
                ) -> Dict[Tuple[str, int, int], data.BinaryTask]:
  """Each task once (the measurement sizes come from `base`, so one size
  check per task covers all of its points)."""
  del output_dir  # Records go through the runner.
  tasks = {}
  for config in sweep.point_configs():
    source = (config.dataset, config.plus_class, config.minus_class)
    if source not in tasks:
      tasks[source] = after_kernel.load_task(config)
  return tasks


def _run_unit(sweep: Sweep, tasks: Dict[Tuple[str, int, int], Any],
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> Iterator[Dict[str, Any]]:
  """Trains one run of one point; yields a record per missing checkpoint."""
  _, index, config, _ = unit.points[0]
  missing = [point[3] for point in unit.points]
  total = len(sweep.point_configs()) * sweep.num_runs
  label = (f'[{unit.run * len(sweep.point_configs()) + index + 1}/{total}] '
           f'{sweep.family} run {unit.run} '
           f'{_task_name(config)} {config.nn_architecture}'
           f'{" +aug" if config.use_augmentation else ""}'
           f' lr={config.learning_rate or training.DEFAULT_LEARNING_RATE}')
  if config.num_parameters:
    label += f' params~{config.num_parameters}'
  log(f'{label}: measuring {missing}')
  task = tasks[(config.dataset, config.plus_class, config.minus_class)]
  return runner.stream(lambda emit: _run_point(sweep, config, task, unit.run,
                                               missing, emit, log))


STUDY = runner.Study(family='sweep', points=_points, record_key=_point_key,
                     run_once=_run_unit, load=_load_tasks,
                     group=_config_index, noun='checkpoints')


def run_sweep(sweep: Sweep, store: store_lib.ResultStore,
              log: Callable[[str], None] = print,
              executor: runner.Executor = runner.local_executor
              ) -> Dict[str, int]:
  """Runs (or resumes) a sweep, writing one record per checkpoint.

  Args:
    sweep: the grid to run.
    store: where records go; finished records are skipped.
    log: progress printer.

  Returns:
    {'written': records written now, 'skipped': records found finished,
     'total': records of the finished sweep}.

  Raises:
    AfterKernelError: a bad sweep or missing data, before anything is
      written.
  """
  sweep.validate()
  counts = runner.execute(STUDY, sweep, store, log, executor)
  counts['total'] = sweep.num_records()
  return counts
