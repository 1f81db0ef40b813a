"""The after-kernel experiment's configuration, network and task.

`ExperimentConfig` defines one after-kernel experiment; it is the
configuration of two studies, run_after_kernel (`studies.after_kernel`) and
the sweeps (`studies.sweeps`, whose points are ExperimentConfigs), so it
lives beside both, with the network (`build_network`) and the checked task
(`load_task`) it describes. `studies.after_kernel` re-exports all three.
"""

import dataclasses
from typing import Any, Dict, Optional

import keras

from afterkernel import data
from afterkernel import distribute
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import invariance
from afterkernel import margin
from afterkernel.margin import device as margin_device
from afterkernel.margin import stability
from afterkernel import models
from afterkernel.studies import store
from afterkernel import training


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
    svm_solver: max-margin solver (`margin.SOLVERS`): exact: the default
      (certified dual coordinate descent); dual / jst1: Algorithm 1 on the
      Gram; primal: on features; stochastic / jst2; working_set; sklearn.
    svm_max_iterations: iteration budget of the max-margin solver (None:
      the solver's default).
    svm_tolerance: stop when the relative duality gap of the margin is
      below this.
    svm_max_seconds: optional wall-clock cap on the solver (results then
      depend on speed).
    svm_min_tolerance: with the exact and interior_point solvers, re-solve
      (warm started) at svm_tolerance / 100, / 10^4, ... down to this until
      the certified range of the SVM test error (svm_error_lower, _upper)
      is a single value. None, or a value >= svm_tolerance: solve once at
      svm_tolerance, as before this option (such configurations keep their
      earlier fingerprints, so older result folders resume).
    svm_device: where the solver's full Gram products run: auto (the GPU
      when TensorFlow sees one, else the CPU), cpu, gpu, or a TensorFlow
      device name such as /GPU:1. Same results to float64 rounding.
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
    feature_method: gradient-feature algorithm: auto (feature rows:
      per_layer for chains of Dense/Conv2D layers, else vectorized; Grams:
      Dense layers kept factored where that saves work, e.g. the fully
      connected net, else those rows), structured (Grams always factored;
      rows as auto), per_layer, vectorized, or loop (slow reference). Same
      numbers to float32 rounding.
    memory_budget_gb: GiB the gradient features may take; above it the Gram
      matrices are streamed (features recomputed block by block, never all
      held).
    distribution_strategy: default: one device (the first GPU if any, else
      the CPU); mirrored: all local GPUs (or logical CPUs); tpu: the TPU of
      this TPU VM or TPU_NAME; multi_worker is refused (see
      `distribute.MULTI_WORKER_REFUSAL`).
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
  svm_min_tolerance: Optional[float] = stability.DEFAULT_MIN_TOLERANCE
  svm_device: str = margin_device.DEFAULT_DEVICE
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
  distribution_strategy: str = dataclasses.field(
      default=distribute.DEFAULT_STRATEGY,
      metadata={'help': distribute.FLAG_HELP})
  measure_ntk: bool = True

  def validate(self) -> None:
    """Checks every field; raises AfterKernelError naming the first bad one."""
    errors.require_choice(self.dataset, data.DATASETS, 'dataset')
    errors.require_choice(self.nn_architecture, models.ARCHITECTURES,
                          'nn_architecture')
    errors.require_choice(self.svm_solver, margin.SOLVERS, 'svm_solver')
    errors.require_choice(self.distribution_strategy, distribute.STRATEGIES,
                          'distribution_strategy')
    errors.require_choice(self.feature_method, features.METHODS,
                          'feature_method')
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
                 'svm_max_iterations', 'svm_max_seconds', 'memory_budget_gb',
                 'svm_min_tolerance'):
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
    errors.require(self.distribution_strategy != 'multi_worker',
                   distribute.MULTI_WORKER_REFUSAL)
    try:
      margin_device.resolve_device(self.svm_device)
    except errors.AfterKernelError as e:
      raise errors.AfterKernelError(f'svm_device: {e}') from None
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
    though training is not bit-identical; each run record names it;
    svm_device: the same solve to float64 rounding).
    """
    ignored = ['num_runs', 'data_dir', 'feature_batch_size', 'feature_method',
               'memory_budget_gb', 'distribution_strategy', 'svm_device']
    if self.measure_ntk:
      # Added later: the default leaves earlier fingerprints unchanged.
      ignored.append('measure_ntk')
    if self.width is None:  # Likewise.
      ignored.append('width')
    if (self.svm_min_tolerance is None or
        self.svm_min_tolerance >= self.svm_tolerance or
        not self.train_linear_model or
        margin.SOLVER_ALIASES.get(self.svm_solver, self.svm_solver)
        not in margin.WARM_START_SOLVERS):
      # No tightening (no SVM, a solver that solves once, or a floor at
      # the tolerance): results as before the option existed, so earlier
      # stores resume.
      ignored.append('svm_min_tolerance')
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
  too_large = [f'{name}={getattr(config, name)}' for name in (
      'num_translations', 'num_zooms', 'num_swaps', 'num_rotations',
      'ker_alignment_sample_size') if getattr(config, name) > n_test]
  # All offenders in one message: a small test set (e.g. CIFAR-10's exact
  # first 1000 records) usually needs every sample size lowered at once.
  errors.require(not too_large,
                 f'{", ".join(too_large)} exceed{"s" * (len(too_large) == 1)}'
                 f' the {n_test} test images of {config.dataset} '
                 f'{config.plus_class}-vs-{config.minus_class}; lower '
                 f'{"it" if len(too_large) == 1 else "them"} to at most '
                 f'{n_test}')
  errors.require(config.effective_rank_sample_size <= n_train,
                 f'effective_rank_sample_size='
                 f'{config.effective_rank_sample_size} exceeds the {n_train} '
                 'training images; lower it')
  return task
