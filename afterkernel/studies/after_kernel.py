"""The after-kernel experiment: FNTK vs after kernel of one network, repeated.

One run (`run_once`) of the paper's protocol:
  1. permute the task's data with the run's seed, build the network with
     Keras default initialization under the same seed;
  2. at initialization (the FNTK): hard-margin SVM test error and margin of the
     kernel (if `train_linear_model`), the four invariances, alignment of the
     kernel with its conjugate projection, effective rank;
  3. train the network (fixed epochs, or until the training loss target);
  4. the same numbers for the after kernel, plus the network's test error.
`run_experiment` repeats this `num_runs` times (seed, seed+1, ...) on
`studies.runner`: one record per run in records/ (key
after_kernel_<fingerprint>_run<r>), summary.json / summary.csv in the one
summary schema (`studies.summary`), and resumes an interrupted experiment
(a 0.1.0 folder's runs.jsonl is converted to records/ first).

Metric names follow the original after-kernel script (nn_error, linear_error,
margin, {ntk,ak}_{trans,zoom,swap,rotation}_inv, {ntk,ak}_kalignment,
{ntk,ak}_eff_rank) so its users can compare; added metrics: ntk_linear_error
and ntk_margin (the FNTK's SVM), {ntk,ak}_entropy_eff_rank, nn_train_loss,
epochs_trained, and the solvers' iteration counts.

Which kernel: by default the gradient-feature kernel; with
`use_conjugate_kernel` the SVM, invariances and effective rank use the
conjugate projection K_c instead (as the original's flag did), and the
alignment metric is unchanged (kernel vs its conjugate projection).
"""

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Dict, List, Optional

from absl import logging
import keras
import numpy as np

from afterkernel import data
from afterkernel import distribute
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import invariance
from afterkernel import kernels
from afterkernel import margin
from afterkernel import models
from afterkernel.studies import runner
from afterkernel.studies import store
from afterkernel.studies import summary as summary_lib
from afterkernel import training

VERSION = '0.1.0'

# Rows shown side by side in the printed table: (label, FNTK, after kernel).
TABLE_ROWS = (
    ('SVM test error', 'ntk_linear_error', 'linear_error'),
    ('margin (features norm 1)', 'ntk_margin', 'margin'),
    ('translation invariance', 'ntk_trans_inv', 'ak_trans_inv'),
    ('rotation invariance', 'ntk_rotation_inv', 'ak_rotation_inv'),
    ('zoom invariance', 'ntk_zoom_inv', 'ak_zoom_inv'),
    ('swap (locality) invariance', 'ntk_swap_inv', 'ak_swap_inv'),
    ('alignment with conjugate', 'ntk_kalignment', 'ak_kalignment'),
    ('eff. rank trace/max', 'ntk_eff_rank', 'ak_eff_rank'),
    ('eff. rank (Roy-Vetterli)', 'ntk_entropy_eff_rank',
     'ak_entropy_eff_rank'),
)
_INVARIANCE_METRIC = {'translation': 'trans_inv', 'rotation': 'rotation_inv',
                      'zoom': 'zoom_inv', 'swap': 'swap_inv'}


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
  """Everything that defines an after-kernel experiment.

  Attributes (the help of their flags in run_after_kernel and the sweeps):
    dataset: digits: embedded UCI digits (8x8, offline); mnist; cifar10;
      synthetic (Vyas et al., vectors: fully_connected, no invariances;
      classes 1/0); svhn_parity, cifar2, cifar5m2 (classes 1/0, see
      afterkernel.data); cifar5m (local files only).
    plus_class: class labelled 1 (positive).
    minus_class: class labelled 0 (negative).
    data_dir: folder with local copies (mnist/*-ubyte.gz, cifar10/*.bin.gz,
      svhn/*_32x32.mat, cifar5m/cifar5m_part*.npz); if unset, mnist,
      cifar10, cifar2 and svhn_parity come from tensorflow-datasets.
    cifar_test_source: test images for CIFAR-10 from data_dir: exact first
      1000 test images, the lossy JPEG-decoded full test set, or a held-out
      slice of train.
    train_subset: use only this many (permuted) training examples.
    test_subset: use only this many (permuted) test examples.
    nn_architecture: vgg (26/52 channels), mega_vgg (119/238),
      fully_connected (4x94), sum.
    num_parameters: choose the width of vgg / fully_connected to reach this
      parameter count.
    width: first-block channels (vgg), hidden units (fully_connected, sum);
      None: the paper's (26, 94, 16) or the one num_parameters picks.
    num_blocks: conv + max-pool blocks of the VGG nets.
    num_layers: convolutions per block (VGG, default 2) or hidden layers
      (fully_connected, default 4).
    filter_size: convolution kernel side.
    pool_size: max-pooling window side.
    max_num_epochs: epochs of training (0: the after kernel is the FNTK);
      with training_loss_target, the cap.
    training_loss_target: train 10, 20, 40, ... epochs until the training
      loss is <= this.
    learning_rate: SGD learning rate (None: the Keras default 0.01).
    batch_size: SGD minibatch size.
    use_augmentation: random rotations (+-15 degrees) and 1-pixel shifts
      during training.
    num_runs: repeats, each with a fresh initialization and data permutation.
    seed: run r uses seed + r.
    train_linear_model: fit the hard-margin SVM on the FNTK and the after
      kernel.
    use_conjugate_kernel: use the conjugate projection (penultimate
      features) instead of the gradient features for the SVM, invariances
      and effective rank.
    svm_solver: max-margin solver (`margin.SOLVERS`): dual: Algorithm 1 on
      the Gram; primal: Algorithm 1 on features; stochastic: Algorithm 2
      (one Gram column per step); working_set: the default.
    svm_max_iterations: iteration budget of the max-margin solver (None:
      the solver's default).
    svm_tolerance: stop when the relative duality gap of the margin is
      below this.
    svm_max_seconds: optional wall-clock cap on the solver (results then
      depend on speed).
    num_translations: test images for translation invariance (0: skip).
    num_zooms: test images for zoom invariance.
    num_swaps: test images for quadrant-swap invariance.
    num_rotations: test images for rotation invariance.
    rotation_angle: rotation (radians) for rotation invariance; +- are
      averaged.
    ker_alignment_sample_size: test images for the alignment of the kernel
      with its conjugate.
    effective_rank_sample_size: training images for the effective rank of
      the Gram (0: skip).
    feature_batch_size: examples per gradient-feature block.
    feature_method: gradient-feature algorithm: auto (vectorized when the
      model has no per_layer path, per_layer for short jobs, else the faster
      of the two as timed on the first block), per_layer, vectorized, or
      loop (slow reference).
    memory_budget_gb: GiB the gradient features may take; above it the Gram
      matrices are streamed (features recomputed block by block, never all
      held).
    distribution_strategy: default: one device (the first GPU if any, else
      the CPU); mirrored: all local GPUs (or logical CPUs); tpu: the TPU of
      this TPU VM or TPU_NAME; multi_worker: the workers in TF_CONFIG, each
      running this command (features only: needs max_num_epochs=0).
      Training and gradient features are split across the replicas.
    measure_ntk: measure the FNTK at initialization too; False measures
      only the after kernel (half the kernel work, e.g. for mega-VGG).
  """
  dataset: str = 'digits'
  plus_class: int = 8
  minus_class: int = 3
  data_dir: Optional[str] = None
  cifar_test_source: str = data.DEFAULT_CIFAR_TEST_SOURCE
  train_subset: Optional[int] = None
  test_subset: Optional[int] = None
  nn_architecture: str = 'vgg'
  num_parameters: Optional[int] = None
  width: Optional[int] = None
  num_blocks: int = 2
  num_layers: Optional[int] = None
  filter_size: int = 3
  pool_size: int = 2
  max_num_epochs: int = 10
  training_loss_target: Optional[float] = None
  learning_rate: Optional[float] = None
  batch_size: int = training.DEFAULT_BATCH_SIZE
  use_augmentation: bool = False
  num_runs: int = 3
  seed: int = 0
  train_linear_model: bool = True
  use_conjugate_kernel: bool = False
  svm_solver: str = margin.DEFAULT_SOLVER
  svm_max_iterations: Optional[int] = None
  svm_tolerance: float = margin.DEFAULT_TOLERANCE
  svm_max_seconds: Optional[float] = None
  num_translations: int = 100
  num_zooms: int = 100
  num_swaps: int = 100
  num_rotations: int = 100
  rotation_angle: float = invariance.DEFAULT_ROTATION_ANGLE
  ker_alignment_sample_size: int = 100
  effective_rank_sample_size: int = 100
  feature_batch_size: int = features.DEFAULT_BATCH_SIZE
  feature_method: str = features.DEFAULT_FEATURE_METHOD
  memory_budget_gb: Optional[float] = None
  distribution_strategy: str = distribute.DEFAULT_STRATEGY
  measure_ntk: bool = True

  def validate(self) -> None:
    """Checks every field; raises AfterKernelError naming the first bad one."""
    errors.require(self.dataset in data.DATASETS,
                   f'unknown dataset {self.dataset!r}; choose one of '
                   f'{", ".join(data.DATASETS)}')
    errors.require(self.nn_architecture in models.ARCHITECTURES,
                   f'unknown nn_architecture {self.nn_architecture!r}; choose '
                   f'one of {", ".join(models.ARCHITECTURES)}')
    errors.require(self.svm_solver in margin.SOLVERS,
                   f'unknown svm_solver {self.svm_solver!r}; choose one of '
                   f'{", ".join(margin.SOLVERS)}')
    errors.require(self.distribution_strategy in distribute.STRATEGIES,
                   'unknown distribution_strategy '
                   f'{self.distribution_strategy!r}; choose one of '
                   f'{", ".join(distribute.STRATEGIES)}')
    errors.require(self.feature_method in features.FEATURE_METHODS,
                   f'unknown feature_method {self.feature_method!r}; choose '
                   f'one of {", ".join(features.FEATURE_METHODS)}')
    errors.require(self.plus_class != self.minus_class,
                   f'plus_class and minus_class are both {self.plus_class}; '
                   'choose two different classes')
    if self.dataset in data.VECTOR_DATASETS:
      # Vector inputs (n, d): image measurements and conv nets do not apply.
      image_only = [name for name in ('num_translations', 'num_zooms',
                                      'num_swaps', 'num_rotations')
                    if getattr(self, name)]
      errors.require(not image_only,
                     f'dataset {self.dataset} has vector inputs, but '
                     f'{", ".join(image_only)} measure image invariances; set '
                     'them to 0')
      errors.require(not self.use_augmentation,
                     f'dataset {self.dataset} has vector inputs; image '
                     'augmentation does not apply, turn use_augmentation off')
      errors.require(self.nn_architecture in ('fully_connected', 'sum'),
                     f'dataset {self.dataset} has vector inputs; use '
                     'nn_architecture=fully_connected (or sum), not '
                     f'{self.nn_architecture}')
    for name in ('num_runs', 'batch_size', 'feature_batch_size', 'num_blocks',
                 'filter_size', 'pool_size'):
      errors.require_positive(getattr(self, name), name)
    errors.require(self.width is None or (
        self.num_parameters is None and self.nn_architecture != 'mega_vgg'),
                   'give width or num_parameters, not both (mega_vgg has a '
                   'fixed width)')
    for name in ('train_subset', 'test_subset', 'num_parameters', 'width',
                 'num_layers', 'training_loss_target', 'learning_rate',
                 'svm_max_iterations', 'svm_max_seconds', 'memory_budget_gb'):
      if getattr(self, name) is not None:
        errors.require_positive(getattr(self, name), name)
    for name in ('max_num_epochs', 'num_translations', 'num_zooms',
                 'num_swaps', 'num_rotations', 'ker_alignment_sample_size',
                 'effective_rank_sample_size'):
      value = getattr(self, name)
      errors.require(isinstance(value, int) and value >= 0,
                     f'{name} must be a non-negative integer, got {value!r}')
    errors.require(self.training_loss_target is None or
                   self.max_num_epochs > 0,
                   'training_loss_target needs max_num_epochs > 0 as the cap')
    errors.require(self.distribution_strategy != 'multi_worker' or
                   self.max_num_epochs == 0,
                   'distribution_strategy=multi_worker cannot train: Keras '
                   "3's fit fails under MultiWorkerMirroredStrategy "
                   '(keras-team/keras#20585); use mirrored on one machine, '
                   'or max_num_epochs=0 for the FNTK alone')
    errors.require(self.svm_tolerance >= 0,
                   f'svm_tolerance must be >= 0, got {self.svm_tolerance}')
    errors.require(self.seed >= 0, f'seed must be >= 0, got {self.seed}')

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def fingerprint(self) -> str:
    """Hash of the fields that change results.

    Leaves out num_runs (more runs extend an experiment), data_dir (where
    the same data lives) and the fields that change only speed or memory
    (distribution_strategy: the same features and SGD on other devices,
    though training is not bit-identical; each run record names it).
    """
    ignored = ['num_runs', 'data_dir', 'feature_batch_size', 'feature_method',
               'memory_budget_gb', 'distribution_strategy']
    if self.measure_ntk:
      # Added later: the default leaves earlier fingerprints unchanged.
      ignored.append('measure_ntk')
    if self.width is None:  # Likewise.
      ignored.append('width')
    return store.config_fingerprint(self.to_dict(), ignored)


def _model_kwargs(config: ExperimentConfig) -> Dict[str, Any]:
  if config.nn_architecture == 'sum':
    return {} if config.width is None else {'hidden': config.width}
  kwargs = {} if config.width is None else {'width': config.width}
  if config.num_layers is not None:
    kwargs['num_layers'] = config.num_layers
  if config.nn_architecture in ('vgg', 'mega_vgg'):
    kwargs.update(num_blocks=config.num_blocks, filter_size=config.filter_size,
                  pool_size=config.pool_size)
  return kwargs


def build_network(config: ExperimentConfig, input_shape) -> keras.Model:
  """The experiment's network, freshly initialized from Keras' global seed.

  Built in the scope of the config's distribution strategy, so that it
  trains with it (the initial weights do not depend on the strategy).
  """
  with distribute.make_strategy(config.distribution_strategy).scope():
    return models.build_model(config.nn_architecture, input_shape,
                              num_parameters=config.num_parameters,
                              **_model_kwargs(config))


def load_task(config: ExperimentConfig) -> data.BinaryTask:
  """Loads the config's binary task and checks the sample sizes fit it."""
  task = data.load_binary_task(config.dataset, config.plus_class,
                               config.minus_class, data_dir=config.data_dir,
                               cifar_test_source=config.cifar_test_source)
  if config.train_subset or config.test_subset:
    errors.require(
        (config.train_subset or 0) <= len(task.y_train) and
        (config.test_subset or 0) <= len(task.y_test),
        f'train_subset={config.train_subset} / test_subset='
        f'{config.test_subset} exceed the task\'s {len(task.y_train)} train / '
        f'{len(task.y_test)} test examples')
  n_train = config.train_subset or len(task.y_train)
  n_test = config.test_subset or len(task.y_test)
  for name in ('num_translations', 'num_zooms', 'num_swaps', 'num_rotations',
               'ker_alignment_sample_size'):
    errors.require(getattr(config, name) <= n_test,
                   f'{name}={getattr(config, name)} exceeds the {n_test} test '
                   f'images of {config.dataset} {config.plus_class}-vs-'
                   f'{config.minus_class}; lower it')
  errors.require(config.effective_rank_sample_size <= n_train,
                 f'effective_rank_sample_size='
                 f'{config.effective_rank_sample_size} exceeds the {n_train} '
                 'training images; lower it')
  return task


class KernelProbe:
  """Measures one network's kernel: SVM, invariances, alignment, rank.

  Reusable by any experiment that looks at a network's kernel at some point
  of training (e.g. snapshots along one trajectory): build it once per run
  with the run's (permuted) task, then call `measure(model, prefix)`.
  """

  def __init__(self, config: ExperimentConfig, task: data.BinaryTask,
               seed: int, log: Callable[[str], None]):
    self.config = config
    self.seed = seed
    self.task = task
    self.log = log
    self.strategy = distribute.make_strategy(config.distribution_strategy)

  def _gradient_features(self, model, images, method=None):
    """Gradient features, sharded across the strategy's replicas."""
    return distribute.sharded_gradient_features(
        model, images, self.strategy, self.config.feature_batch_size,
        method or self.config.feature_method)

  def _feature_fn(self, model):
    batch = self.config.feature_batch_size
    if self.config.use_conjugate_kernel:
      return lambda x: features.conjugate_features(model, x, batch)
    return lambda x: self._gradient_features(model, x)

  def measure(self, model: keras.Model, prefix: str) -> Dict[str, Any]:
    """All kernel metrics of `model`, names prefixed 'ntk_' or 'ak_'.

    The SVM metrics are named as in the original: `linear_error` and `margin`
    for the after kernel, `ntk_linear_error` / `ntk_margin` for the FNTK.
    """
    config, task = self.config, self.task
    feature_fn = self._feature_fn(model)
    metrics, timings = {}, {}
    svm_prefix = 'ntk_' if prefix == 'ntk_' else ''
    if config.train_linear_model:
      start = time.time()
      self.log(f'  {prefix}features of {len(task.y_train)} train + '
               f'{len(task.y_test)} test examples')
      solver_kwargs = dict(max_iterations=config.svm_max_iterations,
                           tolerance=config.svm_tolerance,
                           max_seconds=config.svm_max_seconds, log=self.log)
      if config.svm_solver == 'primal':
        train_features = feature_fn(task.x_train)
        test_features = feature_fn(task.x_test)
        timings[prefix + 'features_seconds'] = time.time() - start
        start = time.time()
        self.log(f'  {prefix}max-margin SVM (primal) on '
                 f'{train_features.shape} features')
        if solver_kwargs['max_iterations'] is None:
          solver_kwargs['max_iterations'] = margin.DEFAULT_MAX_ITERATIONS
        solution = margin.max_margin_from_features(
            train_features, task.y_train, **solver_kwargs)
        decisions = test_features.astype(np.float64) @ solution.weights
      else:
        width = feature_fn(task.x_train[:1]).shape[1]
        needed_gb = (len(task.x_train) + len(task.x_test)) * width * 4 / 2**30
        if (not config.use_conjugate_kernel and
            self.strategy.num_replicas_in_sync == 1 and
            config.feature_method in ('auto', 'per_layer') and
            features.supports_per_layer(model) and
            (config.memory_budget_gb is None or
             needed_gb <= config.memory_budget_gb)):
          # Dense layers' Gram contributions from factors: same numbers,
          # far less work for fully connected nets.
          batch = config.feature_batch_size
          train_factors = features.structured_features(model, task.x_train,
                                                       batch)
          train_gram = kernels.structured_gram(train_factors)
          cross_gram = kernels.structured_gram(
              features.structured_features(model, task.x_test, batch),
              train_factors)
          del train_factors
        else:
          train_gram, cross_gram = kernels.train_and_cross_gram(
              feature_fn, width, task.x_train, task.x_test,
              memory_budget_gb=config.memory_budget_gb, log=self.log)
        timings[prefix + 'features_and_gram_seconds'] = time.time() - start
        start = time.time()
        self.log(f'  {prefix}max-margin SVM ({config.svm_solver}) on a '
                 f'{len(train_gram)}x{len(train_gram)} Gram')
        solution = margin.max_margin_from_gram(
            train_gram, task.y_train, solver=config.svm_solver,
            seed=self.seed, **solver_kwargs)
        del train_gram
        decisions = margin.decision_function(solution, cross_gram)
      timings[prefix + 'svm_seconds'] = time.time() - start
      metrics[svm_prefix + 'linear_error'] = float(
          np.mean((decisions > 0).astype(np.float32) != task.y_test))
      metrics[svm_prefix + 'margin'] = solution.margin
      metrics[prefix + 'svm_iterations'] = solution.iterations
      metrics[prefix + 'svm_converged'] = float(solution.converged)
      metrics[prefix + 'svm_relative_gap'] = (
          (solution.margin_upper_bound - solution.margin) /
          solution.margin_upper_bound
          if solution.margin_upper_bound > 0 else None)
    counts = {'translation': config.num_translations,
              'rotation': config.num_rotations, 'zoom': config.num_zooms,
              'swap': config.num_swaps}
    if any(counts.values()):
      start = time.time()
      self.log(f'  {prefix}invariances on {max(counts.values())} test images')
      for kind, value in invariance.invariances(
          feature_fn, task.x_test, counts=counts,
          rotation_angle=config.rotation_angle).items():
        metrics[prefix + _INVARIANCE_METRIC[kind]] = value
      timings[prefix + 'invariance_seconds'] = time.time() - start
    if config.ker_alignment_sample_size:
      sample = task.x_test[:config.ker_alignment_sample_size]
      gradient_gram = kernels.gram(self._gradient_features(
          model, sample, features.DEFAULT_FEATURE_METHOD))
      conjugate_gram = kernels.gram(features.conjugate_features(
          model, sample, config.feature_batch_size))
      metrics[prefix + 'kalignment'] = kernels.kernel_alignment(
          gradient_gram, conjugate_gram)
    if config.effective_rank_sample_size:
      sample_gram = kernels.gram(
          feature_fn(task.x_train[:config.effective_rank_sample_size]))
      metrics[prefix + 'eff_rank'] = kernels.trace_effective_rank(sample_gram)
      metrics[prefix + 'entropy_eff_rank'] = kernels.entropy_effective_rank(
          sample_gram)
    return {'metrics': metrics, 'timings': timings}


def run_once(config: ExperimentConfig, task: data.BinaryTask, run_index: int,
             log: Callable[[str], None] = logging.info) -> Dict[str, Any]:
  """One run of the protocol; returns its record (see module docstring).

  Args:
    config: a validated configuration.
    task: the loaded task (unpermuted; permuted here with the run's seed).
    run_index: 0-based run number; the run's seed is `config.seed + run_index`.
    log: progress printer.

  Returns:
    The run record: {'config_fingerprint', 'run', 'seed', 'version',
    'data', 'distribution' (strategy name and replicas), 'metrics', 'timings'}.
  """
  seed = config.seed + run_index
  start = time.time()
  task = data.permute(task, seed)
  if config.train_subset or config.test_subset:
    task = data.subsample(task, config.train_subset, config.test_subset)
  keras.utils.set_random_seed(seed)
  model = build_network(config, task.x_train.shape[1:])
  probe = KernelProbe(config, task, seed, log)
  log(f'run {run_index + 1}/{config.num_runs} (seed {seed}): '
      f'{config.nn_architecture} with {models.count_parameters(model)} '
      f'parameters, {len(task.y_train)} train / {len(task.y_test)} test')
  if config.measure_ntk:
    ntk = probe.measure(model, 'ntk_')
  else:
    log('  skipping the FNTK (measure_ntk=False)')
    ntk = {'metrics': {}, 'timings': {}}
  metrics, timings = dict(ntk['metrics']), dict(ntk['timings'])
  metrics['parameter_count'] = models.count_parameters(model)  # As built.

  log(f'  training ({config.max_num_epochs} epochs max)')
  train_start = time.time()
  train_kwargs = dict(learning_rate=config.learning_rate,
                      batch_size=config.batch_size,
                      augment=config.use_augmentation, seed=seed)
  if config.training_loss_target is not None:
    trained = training.train_to_loss_target(
        model, task.x_train, task.y_train, config.training_loss_target,
        config.max_num_epochs, **train_kwargs)
  else:
    trained = training.train(model, task.x_train, task.y_train,
                             config.max_num_epochs, **train_kwargs)
  timings['training_seconds'] = time.time() - train_start
  metrics['epochs_trained'] = trained.epochs
  metrics['nn_train_loss'] = trained.final_train_loss
  metrics['nn_error'] = training.classification_error(model, task.x_test,
                                                      task.y_test)
  if trained.reached_loss_target is not None:
    metrics['reached_loss_target'] = float(trained.reached_loss_target)

  if trained.epochs == 0 and config.measure_ntk:
    # Untrained: the after kernel is the FNTK; copy rather than recompute.
    for name, value in ntk['metrics'].items():
      ak_name = 'ak_' + name[len('ntk_'):]
      if name in ('ntk_linear_error', 'ntk_margin'):
        ak_name = name[len('ntk_'):]
      metrics[ak_name] = value
  else:
    after = probe.measure(model, 'ak_')
    metrics.update(after['metrics'])
    timings.update(after['timings'])
  timings['run_seconds'] = time.time() - start
  return {'config_fingerprint': config.fingerprint(), 'run': run_index,
          'seed': seed, 'version': VERSION, 'data': task.info,
          'widths': models.layer_widths(model),
          'distribution': {
              'strategy': config.distribution_strategy,
              'replicas': probe.strategy.num_replicas_in_sync},
          'metrics': metrics, 'timings': timings}


def _prepare_output_dir(config: ExperimentConfig, output_dir: str) -> None:
  """Writes config.json, or checks an existing one describes this config."""
  store.claim_output_dir(output_dir, config.to_dict(), config.fingerprint(),
                         extra={'version': VERSION}, rewrite=False)


def _fingerprints(config: ExperimentConfig) -> tuple:
  # One point per experiment: the folder's records are its runs.
  return (config.fingerprint(),)


def _run_key(fingerprint: str, run: int) -> str:
  return f'{store.RUNS_FAMILY}_{fingerprint}_run{run:04d}'


def _given_task(task: data.BinaryTask, config: ExperimentConfig,
                output_dir: str) -> data.BinaryTask:
  del config, output_dir  # Loaded (and checked) before the folder is claimed.
  return task


def _run_unit(config: ExperimentConfig, task: data.BinaryTask,
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> List[Dict[str, Any]]:
  record = store.run_to_record(run_once(config, task, unit.run, log))
  errors.require(record['key'] == _run_key(unit.points[0], unit.run),
                 'run record key mismatch (a bug)')
  return [record]


def run_experiment(config: ExperimentConfig, output_dir: str,
                   log: Callable[[str], None] = logging.info
                   ) -> Dict[str, Dict[str, Any]]:
  """Runs (or resumes) `config.num_runs` runs and writes the result files.

  Args:
    config: the experiment.
    output_dir: where config.json, records/ and summary.json / summary.csv
      go. If it holds a finished part of the same experiment (also as a
      0.1.0 runs.jsonl), those runs are kept and skipped; if it holds a
      different experiment, nothing is run.
    log: progress printer.

  Returns:
    The summary: metric -> {mean, std, ci95, n}.

  Raises:
    AfterKernelError: bad configuration, data or output directory; raised
      before anything is written.
  """
  config.validate()
  # First, before other TensorFlow work: a TPU system or multi-worker
  # collectives are set up once, at program start.
  strategy = distribute.make_strategy(config.distribution_strategy)
  if config.distribution_strategy != distribute.DEFAULT_STRATEGY:
    log(f'distribution strategy {config.distribution_strategy}: '
        f'{strategy.num_replicas_in_sync} replica(s)')
  task = load_task(config)
  _prepare_output_dir(config, output_dir)
  result_store = store.ResultStore(output_dir)
  if (os.path.exists(os.path.join(output_dir, store.RUNS_FILE)) and
      not result_store.keys()):
    store.convert_runs_to_records(output_dir)
  study = runner.Study(
      family=store.RUNS_FAMILY, points=_fingerprints, record_key=_run_key,
      run_once=_run_unit, load=functools.partial(_given_task, task),
      noun='runs')
  runner.execute(study, config, result_store, log)
  entries = runner.summarize(study, config, output_dir)
  summary_lib.write_summary(output_dir, entries)
  return dict(entries[0]['metrics']) if entries else {}
