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
    machines listed in the TF_CONFIG environment variable (every worker runs
    the same command and gets all features); without TF_CONFIG, one local
    worker. Gradient features only: Keras 3's `fit` fails under this
    strategy (keras-team/keras#20585), so it cannot train.

What is distributed:
  * per-example gradient features (`features.gradient_features` with
    `strategy=`; `sharded_gradient_features` is its old name): each block
    of replicas x batch_size examples is split evenly across the replicas,
    each runs the single-device feature code on its part, and the parts are
    gathered back in order; hence every Gram matrix, invariance, alignment
    and effective rank built from them. Same numbers as one device, to
    float32 rounding.
  * training: Keras `fit` splits each minibatch of `batch_size` examples
    across the replicas and sums their gradients, the same SGD step on the
    minibatch's mean loss. Not bit-identical to one device: under a strategy
    Keras draws the shuffled minibatch order differently, and a minibatch
    that does not split evenly (the last of an epoch) averages the
    replicas' mean losses, weighting its examples unequally.
The Gram products, the max-margin solver and the conjugate
(penultimate-layer) features stay on the host / default device.

Models must be built under `strategy.scope()` to train with the strategy
(their variables are then mirrored on every replica); `training.train`
compiles them in their own strategy's scope.
"""

import os
from typing import Dict

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import features

STRATEGIES = ('default', 'mirrored', 'tpu', 'multi_worker')
DEFAULT_STRATEGY = 'default'
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
