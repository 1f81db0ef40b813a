"""tf.distribute strategies for training and for gradient features.

Which strategy (`STRATEGIES`, the `--distribution_strategy` flag):
  * 'default': one device, TensorFlow's own placement: the first GPU if there
    is one, else the CPU (whose cores TF already uses through intra-op
    threads). The right choice on a laptop, a one-GPU box or a CPU server.
  * 'mirrored': synchronous data parallelism over every local GPU
    (`tf.distribute.MirroredStrategy`). Without GPUs it spans the local
    logical CPU devices; that only helps tests (see `split_cpu`), since
    'default' already uses all cores.
  * 'tpu': `tf.distribute.TPUStrategy` on a Cloud TPU: the TPU named by the
    TPU_NAME environment variable (a TPU node) or, if unset, the TPU attached
    to this VM (a TPU VM).
  * 'multi_worker': `tf.distribute.MultiWorkerMirroredStrategy` over the
    machines listed in the TF_CONFIG environment variable; without
    TF_CONFIG, one local worker. Library calls only: `features`'
    gradient features and `kernels.empirical`'s Grams take it as
    `strategy=` (every worker runs the same program, the workers split the
    feature blocks and every worker gets all rows). Every binary, study and
    sweep refuses it in one line (`MULTI_WORKER_REFUSAL`): Keras 3's `fit`
    fails under it (keras-team/keras#20585), and after the features every
    worker would repeat the same Gram products and SVM solve (a solver does
    not split across machines). Across machines use the Ray executor (one
    run per task), with 'mirrored' inside each machine.

Every binary has --distribution_strategy: run_after_kernel and the sweeps
through their ExperimentConfig field (the network is built in the
strategy's scope, the probe shards with it), every study binary through
`scoped_executor`, which runs each work unit inside `scope(name)`: networks
built there are mirrored (so Keras `fit` trains with the strategy) and
every feature / Gram call without `strategy=` follows the entered scope
(`kernels.features`). 'default' changes nothing (no scope is entered).

What is distributed:
  * per-example gradient features (`features.gradient_features` with
    `strategy=`; `sharded_gradient_features` is its old name): each block
    of replicas x batch_size examples is split evenly across the replicas,
    each runs the single-device feature code on its part, and the parts are
    gathered back in order; hence every Gram matrix, invariance, alignment
    and effective rank built from them. Same numbers as one device, to
    float32 rounding. The fast Gram paths too: 'per_layer' rows and
    'structured' (Dense-layer factors, `features.structured_features`) are
    computed per replica on its share of each block and gathered in order,
    so `kernels.empirical`'s Grams keep the factored path on several
    replicas.
  * training: Keras `fit` splits each minibatch of `batch_size` examples
    across the replicas and sums their gradients, the same SGD step on the
    minibatch's mean loss. Not bit-identical to one device: under a strategy
    Keras draws the shuffled minibatch order differently, and a minibatch
    that does not split evenly (the last of an epoch) averages the
    replicas' mean losses, weighting its examples unequally.
  * the linearized and quadratic models (`linearize`, `taylor`) and the NAD
    derivatives (`kernels.anisotropy`) of a mirrored network: they
    differentiate with respect to the weights read as tensors
    (`variables_as_tensors`), so they train with the strategy inside `fit`
    and are evaluated on one device when called directly.
Not distributed: the Gram products (numpy on the host), the max-margin
solver and other solvers (kernel regression, eigendecompositions), the
conjugate (penultimate-layer) features and the networks' forward passes
for test errors; they run on the default device.

Models must be built under `strategy.scope()` to train with the strategy
(their variables are then mirrored on every replica); `training.train`
compiles them in their own strategy's scope.
"""

import contextlib
import os
from typing import Callable, Dict, Iterable, Iterator, List, Sequence

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import features

STRATEGIES = ('default', 'mirrored', 'tpu', 'multi_worker')
DEFAULT_STRATEGY = 'default'
# The --distribution_strategy help of every binary (one text, whichever
# binary defines the flag first).
FLAG_HELP = (
    'tf.distribute strategy for training and for gradient features and '
    'Grams (every study and sweep): default = one device (the first GPU if '
    'any, else the CPU); mirrored = all local GPUs (or logical CPUs): each '
    'minibatch and each block of examples is split across them; tpu = the '
    'TPU of this TPU VM or TPU_NAME; multi_worker (TF_CONFIG) is for '
    'library feature calls only and refused by every binary (use '
    '--executor=ray across machines). Gram products and solvers run on the '
    'host.')
# One strategy object per name and process: a TPU system and multi-worker
# collectives may be initialized only once per process.
_MADE: Dict[str, tf.distribute.Strategy] = {}
# Characters of TensorFlow's own reason kept in a one-line error.
_MAX_REASON = 120


def split_cpu(num_devices: int) -> None:
  """Splits the physical CPU into `num_devices` logical CPU devices.

  Lets 'mirrored' run several replicas on a machine without GPUs (for tests;
  it does not add compute). Must be called before TensorFlow runs any op.

  Args:
    num_devices: logical CPU devices to create (>= 1).

  Raises:
    AfterKernelError: TensorFlow is already initialized.
  """
  errors.require_positive(num_devices, 'num_devices')
  cpu = tf.config.list_physical_devices('CPU')[0]
  try:
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * num_devices)
  except RuntimeError as e:
    raise errors.AfterKernelError(
        f'cannot split the CPU into {num_devices} devices: TensorFlow is '
        f'already initialized ({e}); call split_cpu at program start') from e


def _make_tpu_strategy() -> tf.distribute.Strategy:
  # The resolver reads TPU_NAME (a TPU node) itself; 'local' is a TPU VM.
  tpu = None if os.environ.get('TPU_NAME') else 'local'
  try:
    resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
  except (ValueError, RuntimeError, tf.errors.OpError) as e:
    reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
    reason = reason if len(reason) <= _MAX_REASON else (
        reason[:_MAX_REASON] + '...')
    raise errors.AfterKernelError(
        f'distribution strategy tpu: no TPU found ({reason}); run on a TPU '
        'VM or set TPU_NAME, or use --distribution_strategy=default') from e
  return tf.distribute.TPUStrategy(resolver)


def make_strategy(name: str = DEFAULT_STRATEGY) -> tf.distribute.Strategy:
  """The tf.distribute strategy called `name` (see the module docstring).

  'default' is the current strategy: TensorFlow's no-op default strategy
  outside any `strategy.scope()`. The others are created once per process
  and reused.

  Args:
    name: one of `STRATEGIES`.

  Returns:
    The strategy; `strategy.num_replicas_in_sync` is its number of replicas.

  Raises:
    AfterKernelError: unknown name, or 'tpu' where no TPU can be reached.
  """
  errors.require_choice(name, STRATEGIES, 'distribution strategy')
  if name == 'default':
    return tf.distribute.get_strategy()
  if name not in _MADE:
    if name == 'mirrored':
      # All GPUs; without GPUs all logical CPUs (MirroredStrategy() alone
      # would take only CPU:0).
      devices = (tf.config.list_logical_devices('GPU') or
                 tf.config.list_logical_devices('CPU'))
      _MADE[name] = tf.distribute.MirroredStrategy([d.name for d in devices])
    elif name == 'tpu':
      _MADE[name] = _make_tpu_strategy()
    else:
      _MADE[name] = tf.distribute.MultiWorkerMirroredStrategy()
  return _MADE[name]


def sharded_gradient_features(
    model: keras.Model,
    images: np.ndarray,
    strategy: tf.distribute.Strategy,
    batch_size: int = features.DEFAULT_BATCH_SIZE,
    method: str = features.DEFAULT_FEATURE_METHOD) -> np.ndarray:
  """`features.gradient_features(..., strategy=strategy)` (old name).

  Blocks of R x batch_size examples (R = replicas) are cut into R equal
  parts, each replica computes its part's features with the same
  single-device code, and `strategy.gather` returns them in order. With one
  replica (and no TPU) this is exactly `features.gradient_features`.

  Args:
    model: a Keras model with one scalar output, ideally built under
      `strategy.scope()` (else every replica reads the one copy of its
      variables; a TPU needs the model built in its scope).
    images: (n, ...) float32 inputs.
    strategy: e.g. from `make_strategy`.
    batch_size: examples per replica per block (as on one device).
    method: one of `features.FEATURE_METHODS` except 'loop' on several
      replicas.

  Returns:
    (n, P) float32, row i = d f(x_i) / d theta, P = trainable parameters.

  Raises:
    AfterKernelError: unknown method, bad shapes or batch size.
  """
  return features.gradient_features(model, images, batch_size, method,
                                    strategy=strategy)


# What every binary, study and sweep says to 'multi_worker' (one line).
MULTI_WORKER_REFUSAL = (
    'distribution_strategy=multi_worker is not supported by the binaries, '
    'studies and sweeps: Keras cannot train under it (keras-team/keras#20585) '
    'and every worker would repeat the same runs, Grams and SVM solve; spread '
    'runs over machines with --executor=ray (and use mirrored on each '
    'machine); library calls (features.gradient_features, '
    'kernels.empirical) take the strategy directly')


@contextlib.contextmanager
def scope(name: str = DEFAULT_STRATEGY) -> Iterator[tf.distribute.Strategy]:
  """Runs a study's work under the strategy called `name`.

  Inside, networks are built with mirrored variables (so Keras `fit` trains
  with the strategy) and every feature and Gram call that is not given
  `strategy=` shards its blocks over the replicas (`features` uses the
  strategy whose scope is entered). 'default' enters nothing: TF's default
  placement, exactly as without this scope.

  Args:
    name: one of `STRATEGIES` except 'multi_worker'.

  Yields:
    The strategy.

  Raises:
    AfterKernelError: unknown name, 'multi_worker', or no TPU for 'tpu'.
  """
  errors.require_choice(name, STRATEGIES, 'distribution_strategy')
  errors.require(name != 'multi_worker', MULTI_WORKER_REFUSAL)
  strategy = make_strategy(name)
  if name == DEFAULT_STRATEGY:
    yield strategy
    return
  with strategy.scope():
    yield strategy


@contextlib.contextmanager
def variables_as_tensors(variables: Sequence[keras.Variable]
                         ) -> Iterator[List[tf.Tensor]]:
  """Inside the block, Keras layers read `variables` as the yielded tensors.

  Differentiating with respect to a tf.Variable (`tape.jacobian`, a
  `ForwardAccumulator` on it) needs the variable's handle, which a mirrored
  or TPU variable hides outside a replica context: a model called directly,
  or built by Keras `fit`, inside `scope('mirrored')`. Tensors have no such
  limit, so each variable is read once (its value on this replica, or the
  primary copy across replicas: what the layer itself would read), a
  `keras.StatelessScope` maps the variable to that tensor, and callers
  differentiate with respect to the tensors. Same values and ops as reading
  the variables, with or without a strategy.

  Args:
    variables: Keras variables (e.g. a model's `trainable_variables`).

  Yields:
    One tensor per variable, in order.
  """
  values = [tf.convert_to_tensor(v.value) for v in variables]
  with keras.StatelessScope(state_mapping=list(zip(variables, values))):
    yield values


class ScopedWork:
  """`work(unit)` run under `scope(name)`; picklable when `work` is (so a
  Ray executor ships it, and each worker makes its own strategy)."""

  def __init__(self, work: Callable[..., Iterable], name: str):
    self.work, self.name = work, name

  def __call__(self, unit) -> Iterator:
    with scope(self.name):
      # The records are produced (trained, measured) while iterating.
      yield from self.work(unit)


def scoped_executor(executor: Callable, name: str = DEFAULT_STRATEGY
                    ) -> Callable:
  """The runner executor `executor` with every unit's work under `scope(name)`.

  'default' returns `executor` itself (nothing changes). The strategy is
  checked here, before any unit runs.

  Args:
    executor: a `studies.runner.Executor` ((units, work) -> records).
    name: one of `STRATEGIES` except 'multi_worker'.

  Raises:
    AfterKernelError: as `scope`.
  """
  errors.require_choice(name, STRATEGIES, 'distribution_strategy')
  errors.require(name != 'multi_worker', MULTI_WORKER_REFUSAL)
  if name == DEFAULT_STRATEGY:
    return executor

  def run(units, work):
    return executor(units, ScopedWork(work, name))

  return run
