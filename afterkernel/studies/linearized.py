"""A network vs its linearization, trained alike, over a range of widths.

For each width multiplier k (and each seed), one run:
  1. build the architecture at width k (`architectures`), weights theta_0;
  2. measure the empirical NTK at theta_0 on `rank_sample_size` training
     inputs and its entropy effective rank (Roy & Vetterli 2007; see
     `effective_rank` for the three kernels `effective_rank_kernel` picks
     from: the output-traced (n, n) Gram, the default of 0.1.0, or the
     (n L)-row Jacobian embedding of Samarin et al.'s Fig 5); this kernel
     is the linearized model's kernel for the whole run;
  3. train the network and its linearization f_lin around theta_0
     (`linearize.linearize`) with the same optimizer (SGD with momentum and
     decoupled weight decay, optionally a decaying learning rate,
     `LR_DECAYS`), loss, batch order and number of epochs; multi-class
     tasks use the L2 loss on one-hot targets, binary tasks BCE on the
     logit; with `trajectory_every` > 0 both models' outputs on the first
     `trajectory_probe_size` test images are recorded every that many
     epochs (Samarin et al.'s Fig 2, `linearized_figures`);
  4. record train / test accuracy of both, the gap (network minus
     linearization) and the effective rank of the trained network's kernel
     (its after kernel) on the same inputs.

This is the comparison of Samarin et al. (2020; full-MNIST LeNet-5: 99.2%
for the network vs 93.2% for its linearization; LeNet on CIFAR-10 in their
Fig 4: `--dataset=cifar10 --architecture=lenet5`) and Ortiz-Jimenez et al.
(2021). Their AlexNet is the ImageNet one on a 10-class ImageNet subset,
not available offline; 'alexnet' here is the small 32x32 variant.

The study runs on `studies.runner`: `config.json`, one record per width and
seed in records/ (re-running the same configuration resumes; a 0.1.0
folder's runs.jsonl is converted first), summary.json / summary.csv in the
one summary schema (one entry per width) and a figure `accuracy_vs_width.png`
(plus `output_trajectories.png` when trajectories are recorded).
`run_study` returns the summary by width ({width: {metric: {mean, std, ci95,
n}}}) as in 0.1.0.
"""

import dataclasses
import os
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

from absl import logging
import keras
import numpy as np

from afterkernel.models import architectures
from afterkernel import data
from afterkernel import errors
from afterkernel.kernels import jacobians
from afterkernel import kernels
from afterkernel.kernels import metrics
from afterkernel import linearize
from afterkernel.data import multiclass
from afterkernel.data import sources
from afterkernel.studies import linearized_figures
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import store
from afterkernel.studies import summary as summary_lib
from afterkernel import training

TASKS = ('multiclass', 'binary')
FAMILY = 'linearized'
FIGURE_FILE = linearized_figures.FIGURE_FILE
TRAJECTORY_FIGURE = linearized_figures.TRAJECTORY_FIGURE
# Which Gram's entropy effective rank is reported (see `effective_rank`).
EFFECTIVE_RANK_KERNELS = ('traced', 'jacobian', 'full')
# 0.1.0's choice, kept as the default so its results stay comparable.
DEFAULT_EFFECTIVE_RANK_KERNEL = 'traced'
# Examples per gradient block of the (n L)-row kernels: the engine's
# per-example intermediates grow with the block (~70 MB an image for LeNet-5
# at k = 4 on CIFAR-10), so a 600-image sample stays within ~2 GB.
RANK_BATCH_SIZE = 32
# Learning-rate schedules over the whole run (`learning_rate_schedule`):
#   'none': constant; 'step': x0.1 after 50% and again after 75% of the
#   epochs (the usual CIFAR schedule; Samarin et al.'s exact schedule is not
#   reproduced here); 'cosine': cosine decay to 0 at the last step.
LR_DECAYS = ('none', 'step', 'cosine')
STEP_DECAY_FRACTIONS = (0.5, 0.75)
STEP_DECAY_FACTOR = 0.1
# Ortiz-Jimenez et al. measure the Jacobian embedding on 600 examples.
DEFAULT_RANK_SAMPLE_SIZE = 600
# The metrics summarized per width and plotted.
ACCURACY_METRICS = ('nn_train_accuracy', 'nn_test_accuracy',
                    'lin_train_accuracy', 'lin_test_accuracy')


@dataclasses.dataclass(frozen=True)
class StudyConfig(runner.StudyConfig, fields.TaskSourceFields):
  """Everything that defines a network-vs-linearization study.

  Attributes (the help of their flags in linearized_vs_network):
    dataset: digits (offline UCI 8x8), mnist, cifar10 (10 classes, or two
      with task=binary).
    task: multiclass: 10 outputs, L2 loss on one-hot; binary: plus vs minus
      class, 1 logit, BCE.
    plus_class: binary task: class labelled 1.
    minus_class: binary task: class labelled 0.
    data_dir: folder with mnist/*-ubyte.gz (and cifar10/...); unset =
      tensorflow-datasets.
    cifar_test_source: CIFAR-10 test images: exact_first_1000 (exact
      official records), lossy_full (all 10000, lossy JPEG decodes) or
      train_holdout.
    num_train: random subset of training examples (None: all).
    num_test: random subset of test examples (None: all).
    architecture: network (afterkernel.models.architectures.ARCHITECTURES).
    width_multipliers: width multipliers k (channels and dense x k).
    parameterization: standard or ntk.
    unbiased: linearization without f(theta_0, x):
      J(theta_0, x)(theta - theta_0).
    epochs: training epochs.
    batch_size: minibatch size.
    learning_rate: SGD learning rate (the initial one with lr_decay).
    lr_decay: learning-rate schedule: none, step (x0.1 at 50% and 75% of
      the epochs) or cosine (to 0).
    momentum: SGD momentum.
    weight_decay: decoupled weight decay (Keras SGD); on theta - theta_0 for
      the linearized model.
    rank_sample_size: training images in the Jacobian embedding whose
      effective rank is reported.
    effective_rank_kernel: traced (n x n Gram summed over outputs),
      jacobian (singular values of the (n L)-row Jacobian, Samarin et al.)
      or full (eigenvalues of the (n L) x (n L) empirical NTK).
    trajectory_every: record both models' outputs on the probe images every
      this many epochs (and at 0 and the end); 0 = off.
    trajectory_probe_size: first test images whose outputs are recorded.
    num_runs: seeds per width.
    seed: first seed.
  """
  # More runs or widths extend a study; data_dir is where the data lives.
  FINGERPRINT_IGNORES = ('num_runs', 'data_dir', 'width_multipliers')
  # Added in 0.2.0; at their defaults, folders of 0.1.0 still resume.
  ADDED_FIELDS = ('cifar_test_source', 'lr_decay', 'effective_rank_kernel',
                  'trajectory_every', 'trajectory_probe_size')
  task: str = 'multiclass'
  cifar_test_source: str = sources.DEFAULT_CIFAR_TEST_SOURCE
  num_train: Optional[int] = None
  num_test: Optional[int] = None
  # myrtle5 fits the default dataset's 8x8 images (LeNet-5 needs 16x16).
  architecture: str = 'myrtle5'
  width_multipliers: tuple = (0.25, 0.5, 1.0)
  parameterization: str = architectures.DEFAULT_PARAMETERIZATION
  unbiased: bool = False
  epochs: int = 10
  batch_size: int = 64
  learning_rate: float = 0.05
  lr_decay: str = 'none'
  momentum: float = 0.9
  weight_decay: float = 0.0
  rank_sample_size: int = DEFAULT_RANK_SAMPLE_SIZE
  effective_rank_kernel: str = DEFAULT_EFFECTIVE_RANK_KERNEL
  trajectory_every: int = 0
  trajectory_probe_size: int = 10
  num_runs: int = 1
  seed: int = 0

  def validate(self) -> None:
    """Checks the fields; raises AfterKernelError naming the first bad one."""
    errors.require_choice(self.task, TASKS, 'task')
    datasets = (multiclass.DATASETS if self.task == 'multiclass' else
                data.DATASETS)
    errors.require(self.dataset in datasets,
                   f'dataset {self.dataset!r} is not available for the '
                   f'{self.task} task; choose one of {", ".join(datasets)}')
    errors.require(self.dataset not in data.VECTOR_DATASETS,
                   f'dataset {self.dataset} has vector inputs; the study\'s '
                   'architectures are convolutional and need images')
    errors.require_choice(self.architecture, architectures.ARCHITECTURES,
                          'architecture')
    errors.require(self.parameterization in architectures.PARAMETERIZATIONS,
                   f'unknown parameterization {self.parameterization!r}')
    errors.require(bool(self.width_multipliers),
                   'width_multipliers is empty; give at least one')
    for width in self.width_multipliers:
      errors.require_positive(width, 'width multiplier')
    errors.require_choice(self.cifar_test_source, sources.CIFAR_TEST_SOURCES,
                          'cifar_test_source')
    errors.require_choice(self.lr_decay, LR_DECAYS, 'lr_decay')
    errors.require_choice(self.effective_rank_kernel,
                          EFFECTIVE_RANK_KERNELS, 'effective_rank_kernel')
    errors.require(self.trajectory_every >= 0,
                   f'trajectory_every must be >= 0, got '
                   f'{self.trajectory_every}')
    for name in ('epochs', 'batch_size', 'learning_rate', 'num_runs',
                 'rank_sample_size', 'trajectory_probe_size'):
      errors.require_positive(getattr(self, name), name)
    for name in ('num_train', 'num_test'):
      if getattr(self, name) is not None:
        errors.require_positive(getattr(self, name), name)
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require(self.weight_decay >= 0,
                   f'weight_decay must be >= 0, got {self.weight_decay}')
    errors.require(self.seed >= 0, f'seed must be >= 0, got {self.seed}')


@dataclasses.dataclass(frozen=True)
class Task:
  """Inputs and targets of the study: integer labels and the fit targets."""
  x_train: np.ndarray
  y_train: np.ndarray  # int64 classes (binary: 0/1)
  x_test: np.ndarray
  y_test: np.ndarray
  num_outputs: int
  info: dict


def load_task(config: StudyConfig) -> Task:
  """Loads the configured task (seeded subsets of num_train / num_test)."""
  if config.task == 'multiclass':
    task = multiclass.load_multiclass_task(
        config.dataset, config.data_dir, config.num_train, config.num_test,
        seed=config.seed, cifar_test_source=config.cifar_test_source)
    return Task(task.x_train, task.y_train, task.x_test, task.y_test,
                task.num_classes, task.info)
  binary = data.load_binary_task(config.dataset, config.plus_class,
                                 config.minus_class, data_dir=config.data_dir,
                                 cifar_test_source=config.cifar_test_source)
  binary = data.permute(binary, config.seed)
  if config.num_train or config.num_test:
    binary = data.subsample(binary, config.num_train, config.num_test)
  return Task(binary.x_train, binary.y_train.astype(np.int64), binary.x_test,
              binary.y_test.astype(np.int64), 1, dict(binary.info))


def _targets(task: Task, labels: np.ndarray) -> np.ndarray:
  if task.num_outputs == 1:
    return labels.astype(np.float32)[:, None]
  return multiclass.one_hot(labels, task.num_outputs)


l2_loss = training.l2_loss  # 0.5 |f(x) - y|^2 summed over the outputs.


def learning_rate_schedule(config: StudyConfig, steps_per_epoch: int):
  """config.learning_rate, or the `LR_DECAYS` schedule over all steps.

  Args:
    config: the study configuration (learning_rate, lr_decay, epochs).
    steps_per_epoch: SGD steps of one epoch, ceil(n / batch_size).

  Returns:
    A float for lr_decay='none', else a Keras LearningRateSchedule of the
    optimizer step (0-based).
  """
  total = config.epochs * steps_per_epoch
  schedules = keras.optimizers.schedules
  if config.lr_decay == 'step':
    return schedules.PiecewiseConstantDecay(
        [int(f * total) for f in STEP_DECAY_FRACTIONS],
        [config.learning_rate * STEP_DECAY_FACTOR**i
         for i in range(len(STEP_DECAY_FRACTIONS) + 1)])
  if config.lr_decay == 'cosine':
    return schedules.CosineDecay(config.learning_rate, total)
  return config.learning_rate


def compile_model(model: keras.Model, config: StudyConfig,
                  num_outputs: int, steps_per_epoch: int = 1) -> None:
  """SGD with momentum and weight decay; `l2_loss` on one-hot, or BCE."""
  training.compile_model(model,
                         learning_rate_schedule(config, steps_per_epoch),
                         config.momentum,
                         loss='bce' if num_outputs == 1 else 'l2',
                         weight_decay=config.weight_decay or None)


def accuracy(model: keras.Model, images: np.ndarray, labels: np.ndarray,
             batch_size: int = 512) -> float:
  """Fraction correct: argmax of the outputs, or logit > 0 for one output."""
  return training.accuracy(training.predict_outputs(model, images,
                                                    batch_size), labels)


def trajectory_epochs(config: StudyConfig) -> List[int]:
  """Epochs whose probe outputs are recorded: 0, every k-th, the last."""
  if not config.trajectory_every:
    return []
  return sorted(set(range(0, config.epochs, config.trajectory_every)) |
                {config.epochs})


def _fit(model, config, task, seed, on_snapshot=None) -> List[float]:
  # The 'keras' order under one seed: the same batch order for both models.
  return training.fit(model, task.x_train, _targets(task, task.y_train),
                      batch_size=config.batch_size, seed=seed,
                      epochs=config.epochs, batch_order='keras',
                      snapshots=trajectory_epochs(config),
                      on_snapshot=on_snapshot)


def effective_rank(model: keras.Model, images: np.ndarray,
                   kernel: str = DEFAULT_EFFECTIVE_RANK_KERNEL) -> float:
  """Entropy effective rank (Roy & Vetterli 2007) of the model's eNTK.

  With J the (n L, P) Jacobian of the L outputs on the n images:
    * 'traced': of the (n, n) Gram sum_l J_l J_l^T (0.1.0's number);
    * 'jacobian': of J itself, p_i from its singular values (the
      (n L)-row Jacobian embedding of Samarin et al.'s Fig 5;
      `metrics.jacobian_effective_rank`);
    * 'full': of the (n L, n L) empirical NTK J J^T, p_i from its
      eigenvalues sigma_i^2.

  Args:
    model: the network (L outputs).
    images: (n, ...) inputs.
    kernel: one of `EFFECTIVE_RANK_KERNELS`.

  Returns:
    The effective rank, in [1, n] ('traced') or [1, n L].
  """
  errors.require_choice(kernel, EFFECTIVE_RANK_KERNELS,
                        'effective_rank_kernel')
  if kernel == 'traced':
    return kernels.entropy_effective_rank(jacobians.jacobian_gram(
        model, images, kind='trace'))
  gram = jacobians.jacobian_gram(model, images, kind='full',
                                 batch_size=RANK_BATCH_SIZE)
  if kernel == 'full':
    return kernels.entropy_effective_rank(gram)
  return metrics.jacobian_effective_rank(gram)


def run_once(config: StudyConfig, task: Task, width: float, run_index: int,
             log: Callable[[str], None] = logging.info) -> Dict[str, Any]:
  """One width and seed: trains both models; returns the run record."""
  seed = config.seed + run_index
  keras.utils.set_random_seed(seed)
  network = architectures.build_architecture(
      config.architecture, task.x_train.shape[1:], task.num_outputs, width,
      config.parameterization)
  num_parameters = jacobians.count_parameters(network)
  log(f'width {width} run {run_index}: {config.architecture} with '
      f'{num_parameters} parameters')
  timings, metrics = {}, {}
  sample = task.x_train[:config.rank_sample_size]
  start = time.time()
  rank_kernel = config.effective_rank_kernel
  metrics['ntk_entropy_eff_rank'] = effective_rank(network, sample,
                                                   rank_kernel)
  timings['ntk_rank_seconds'] = time.time() - start

  linear = linearize.linearize(network, unbiased=config.unbiased)
  probe = task.x_test[:config.trajectory_probe_size]
  trajectories = {}
  steps_per_epoch = -(-len(task.y_train) // config.batch_size)
  for name, model in (('nn', network), ('lin', linear)):
    compile_model(model, config, task.num_outputs, steps_per_epoch)
    outputs = trajectories.setdefault(name, [])
    start = time.time()
    losses = _fit(model, config, task, seed, lambda epoch, snapshot: (
        outputs.append(training.predict_outputs(snapshot, probe).tolist())))
    timings[f'{name}_train_seconds'] = time.time() - start
    metrics[f'{name}_final_loss'] = losses[-1]
    metrics[f'{name}_train_accuracy'] = accuracy(model, task.x_train,
                                                 task.y_train)
    metrics[f'{name}_test_accuracy'] = accuracy(model, task.x_test,
                                                task.y_test)
    log(f'  {name}: train acc {metrics[f"{name}_train_accuracy"]:.4f}, test '
        f'acc {metrics[f"{name}_test_accuracy"]:.4f} '
        f'({timings[f"{name}_train_seconds"]:.1f} s)')
  metrics['test_accuracy_gap'] = (metrics['nn_test_accuracy'] -
                                  metrics['lin_test_accuracy'])
  metrics['train_accuracy_gap'] = (metrics['nn_train_accuracy'] -
                                   metrics['lin_train_accuracy'])
  start = time.time()
  metrics['ak_entropy_eff_rank'] = effective_rank(network, sample,
                                                  rank_kernel)
  timings['ak_rank_seconds'] = time.time() - start
  record = dict(config_fingerprint=config.fingerprint(), width=float(width),
                run=run_index, seed=seed, num_parameters=num_parameters,
                data=task.info, metrics=metrics, timings=timings)
  if config.trajectory_every:
    record['trajectory'] = dict(
        epochs=trajectory_epochs(config),
        probe_labels=task.y_test[:len(probe)].tolist(), **trajectories)
  return record


def summarize_by_width(records: Sequence[Dict[str, Any]]
                       ) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """{str(width): {metric: {mean, std, ci95, n}}} over the runs."""
  widths = sorted({r['width'] for r in records})
  return {str(w): summary_lib.summarize_metrics(
      r for r in records if r['width'] == w) for w in widths}


plot_accuracy_vs_width = linearized_figures.plot_accuracy_vs_width


def record_key(width: float, run: int) -> str:
  return f'{FAMILY}_w{float(width):g}_run{run:04d}'


def _widths(config: StudyConfig) -> List[float]:
  return [float(w) for w in config.width_multipliers]


def _width(point: float) -> float:
  return point


def _checked_task(config: StudyConfig, output_dir: str) -> Task:
  del output_dir  # Nothing is written outside the records.
  task = load_task(config)
  errors.require(config.rank_sample_size <= len(task.y_train),
                 f'rank_sample_size={config.rank_sample_size} exceeds the '
                 f'{len(task.y_train)} training examples; lower it')
  errors.require(config.trajectory_probe_size <= len(task.y_test),
                 f'trajectory_probe_size={config.trajectory_probe_size} '
                 f'exceeds the {len(task.y_test)} test examples; lower it')
  return task


def _run_unit(config: StudyConfig, task: Task, unit: runner.WorkUnit,
              log: Callable[[str], None]) -> List[Dict[str, Any]]:
  (width,) = unit.points
  record = run_once(config, task, width, unit.run, log)
  record.update(key=record_key(width, unit.run), family=FAMILY,
                point_id=f'width={float(width):g}',
                point={'family': FAMILY, 'width': float(width),
                       'dataset': config.dataset,
                       'nn_architecture': config.architecture,
                       'num_parameters': record['num_parameters']})
  return [record]


def by_width(entries: Sequence[Dict[str, Any]]
             ) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """{str(width): {metric: {mean, std, ci95, n}}} of summary entries."""
  return {str(float(e['point']['width'])): dict(e['metrics'])
          for e in entries}


def _sort_width(entry: Dict[str, Any]) -> float:
  return entry['point']['width']


def _figures(entries, config: StudyConfig, output_dir: str) -> str:
  title = f'{config.architecture} on {config.dataset} ({config.task})'
  if config.trajectory_every:
    linearized_figures.plot_output_trajectories(
        store.ResultStore(output_dir).records(),
        os.path.join(output_dir, TRAJECTORY_FIGURE), title=title)
  return plot_accuracy_vs_width(
      by_width(entries), os.path.join(output_dir, FIGURE_FILE), title=title)


def _convert_0_1_0(output_dir: str) -> None:
  """Turns a 0.1.0 folder's runs.jsonl into this study's records."""
  if (not os.path.exists(os.path.join(output_dir, store.RUNS_FILE)) or
      store.ResultStore(output_dir).keys()):
    return
  result_store = store.ResultStore(output_dir)
  for run in store.read_runs(output_dir):
    record = dict(run)
    record.update(key=record_key(run['width'], run['run']), family=FAMILY,
                  point_id=f'width={float(run["width"]):g}',
                  point={'family': FAMILY, 'width': float(run['width'])})
    result_store.put(record)


STUDY = runner.Study(family=FAMILY, points=_widths, record_key=record_key,
                     run_once=_run_unit, load=_checked_task, group=_width,
                     sort_key=_sort_width, figures=_figures, noun='widths')


def run_study(config: StudyConfig, output_dir: str,
              log: Callable[[str], None] = logging.info,
              executor: runner.Executor = runner.local_executor
              ) -> Dict[str, Dict[str, Dict[str, Any]]]:
  """Runs every (width, seed) not yet in `output_dir`; returns the summary.

  Args:
    config: the study configuration (validated here).
    output_dir: result folder (created); a different configuration already
      there is refused.
    log: progress printer.

  Returns:
    The summary by width: {str(width): {metric: {mean, std, ci95, n}}}.

  Raises:
    AfterKernelError: bad configuration or a foreign config.json.
  """
  config.validate()
  if os.path.isdir(output_dir):
    # Claim first (a foreign folder is refused untouched), then convert.
    store.claim_output_dir(output_dir, config.to_dict(), config.fingerprint())
    _convert_0_1_0(output_dir)
  return by_width(runner.run(STUDY, config, output_dir, log, executor))


format_summary = linearized_figures.format_summary
