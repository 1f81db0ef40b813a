"""Block functions of the one gradient engine, their cache and 'auto'.

Internals of `afterkernel.kernels.features`. A block function maps a block of
inputs and an output index l to the (block, P) gradients d f_l(x_i) / d theta
(trainable parameters flattened in `model.trainable_variables` order); one
is built per (model, method) and kept in `_BLOCK_FNS` so a model's graph is
traced once (seconds for conv nets), whichever public function asks.

Every input batch enters through `as_input_batch` (one array, finite, of the
model's per-example shape), every block function runs its layers in float32
(`float32_compute`, so a mixed_float16 policy does not change the features),
and the one pfor warning that is understood and harmless is filtered
(`PforConvWarningFilter`).
"""

import contextlib
import logging
import time
from typing import Callable, Dict, Optional
import weakref

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import per_layer

# Every method name of the engine (documented in `features`).
METHODS = ('auto', 'per_layer', 'structured', 'vectorized', 'loop')
# model -> {method | 'factors' | ('sharded', ...):
# block function or choice}: the engine's one cache.
_BLOCK_FNS = weakref.WeakKeyDictionary()
# Timed calls per candidate of `choose_fastest` (after one untimed call).
AUTOTUNE_REPEATS = 2


def cache(model: keras.Model) -> Dict[object, object]:
  """The engine's cache entry of `model` (dropped with the model)."""
  return _BLOCK_FNS.setdefault(model, {})


def require_method(method: str, allowed=METHODS) -> None:
  """One AfterKernelError naming the choices for an unknown method."""
  errors.require_choice(method, allowed, 'feature method')


class PforConvWarningFilter(logging.Filter):
  """Drops TF pfor's "Conv2DBackpropFilter uses a while_loop. Fix that!".

  pfor logs it once per traced convolution when 'vectorized' differentiates
  a conv net per example: it says pfor falls back to a loop over examples
  for the filter gradient (slower, same numbers). The engine knows this ('auto'
  prefers 'per_layer' for such nets), so the message is noise to the user.
  Only this message is dropped; every other TF log line passes.
  """

  MESSAGE = 'Conv2DBackpropFilter uses a while_loop'

  def filter(self, record: logging.LogRecord) -> bool:
    return not str(record.msg).startswith(self.MESSAGE)


def install_log_filter() -> None:
  """Adds `PforConvWarningFilter` to TF's logger once (idempotent)."""
  logger = tf.get_logger()
  if not any(isinstance(f, PforConvWarningFilter) for f in logger.filters):
    logger.addFilter(PforConvWarningFilter())


install_log_filter()


@contextlib.contextmanager
def float32_compute(model: keras.Model):
  """Runs every layer of `model` in float32 inside the block (traced once).

  Under a keras 'mixed_float16' (or bfloat16) policy layers compute in half
  precision; gradient features and Grams must be float32 (a half-precision
  phi has ~3 significant digits and overflows at 65504). The layers' dtype
  policies are switched to float32 while the block function is traced (the
  graph keeps float32 ops) and restored afterwards; the variables are float32
  under these policies anyway. A no-op for float32 models.
  """
  layers = [l for l in model._flatten_layers(include_self=True)  # pylint: disable=protected-access
            if getattr(l, 'compute_dtype', 'float32') != 'float32']
  saved = [l._dtype_policy for l in layers]  # pylint: disable=protected-access
  float32 = keras.dtype_policies.get('float32')
  try:
    for layer in layers:
      layer._dtype_policy = float32  # pylint: disable=protected-access
    yield
  finally:
    for layer, policy in zip(layers, saved):
      layer._dtype_policy = policy  # pylint: disable=protected-access


def as_input_batch(model: keras.Model, inputs, name: str = 'images'
                   ) -> np.ndarray:
  """`inputs` as one finite float32 (n, ...) array, or one clear error.

  The engine differentiates a model of one input tensor on a batch held in
  memory: a tf.data.Dataset, a list/dict of arrays or a multi-input model
  is refused with what to pass instead, NaN/inf inputs are refused naming
  the first bad example (a NaN image would otherwise surface as NaN
  features, far from its cause).

  Args:
    model: the model the inputs are for.
    inputs: array-like (n, ...).
    name: how the message names the inputs.

  Returns:
    float32 array of shape (n, ...).

  Raises:
    AfterKernelError: any of the above.
  """
  errors.require(
      not isinstance(inputs, tf.data.Dataset),
      f'{name} is a tf.data.Dataset; gradient features take the inputs as '
      'one (n, ...) array: pass np.concatenate of the input part of each '
      'batch of dataset.as_numpy_iterator() (no labels)')
  try:
    num_inputs = len(model.inputs)
  except (AttributeError, ValueError, TypeError):  # subclassed: not known
    num_inputs = 1
  errors.require(
      num_inputs <= 1,
      f'model {model.name!r} takes {num_inputs} inputs; gradient features '
      'need a model of one input tensor: wrap it (e.g. one input that is '
      'split inside the model)')
  errors.require(
      not isinstance(inputs, (dict, list, tuple)) or not any(
          isinstance(x, (np.ndarray, tf.Tensor)) for x in
          (inputs.values() if isinstance(inputs, dict) else inputs)),
      f'{name} is a {type(inputs).__name__} of arrays; gradient features '
      'need a model of one input tensor and one (n, ...) array')
  try:
    array = np.asarray(inputs, dtype=np.float32)
  except (TypeError, ValueError) as error:
    raise errors.AfterKernelError(
        f'{name} cannot be read as one float32 (n, ...) array '
        f'({str(error).splitlines()[0]})') from error
  errors.require(array.ndim >= 2,
                 f'{name} must be a batch (n, ...), got shape {array.shape}')
  finite = np.isfinite(array.reshape(len(array), -1)).all(axis=1)
  if not finite.all():
    bad = np.flatnonzero(~finite)
    raise errors.AfterKernelError(
        f'{name} have NaN/inf values in {len(bad)} of {len(array)} examples '
        f'(first: example {bad[0]}); clean or drop them before computing '
        'features')
  return array


def require_finite_features(model: keras.Model, block: np.ndarray,
                            first_example: int) -> None:
  """One clear error if a block of gradient features has NaN/inf values.

  Inputs are checked finite on entry, so non-finite features come from the
  model: its weights (named, e.g. after a diverged training run) or an
  overflow in its forward/backward pass at the named examples.
  """
  # float64 row sums: one pass, no (block, P) boolean copy; float32 values
  # cannot overflow a float64 sum, so only NaN/inf entries make it non-finite.
  finite = np.isfinite(block.sum(axis=1, dtype=np.float64))
  if finite.all():
    return
  bad = first_example + np.flatnonzero(~finite)
  weights = [v.path for v in model.trainable_variables
             if not np.isfinite(keras.ops.convert_to_numpy(v)).all()]
  cause = (f'non-finite weights {", ".join(weights[:3])} (did training '
           'diverge? try a smaller learning rate)' if weights else
           'an overflow in the forward/backward pass (finite inputs and '
           'weights)')
  raise errors.AfterKernelError(
      f'gradient features of model {model.name!r} have NaN/inf values at '
      f'{len(bad)} examples (first: example {bad[0]}): {cause}')


def _input_shape(model: keras.Model) -> Optional[tuple]:
  """The model's per-example input shape, or None if Keras does not know it
  (subclassed models)."""
  try:
    shape = model.input_shape
  except (AttributeError, ValueError, TypeError):
    return None
  if not isinstance(shape, tuple) or (shape and isinstance(shape[0], tuple)):
    return None
  return tuple(shape[1:])


def check_inputs(model: keras.Model, images: np.ndarray,
                 batch_size: int) -> None:
  """Batch size, input shape and trainable variables, checked once."""
  errors.require_positive(batch_size, 'batch_size')
  errors.require(images.ndim >= 2,
                 f'inputs must be a batch (n, ...), got shape {images.shape}')
  expected = _input_shape(model)
  # None dimensions take the batch's concrete size.
  errors.require(
      expected is None or (images.ndim == len(expected) + 1 and all(
          e is None or e == d for e, d in zip(expected, images.shape[1:]))),
      f'images have shape {tuple(images.shape)} but the model expects '
      f'(n,) + {expected}')
  errors.require(bool(model.trainable_variables),
                 f'model {model.name!r} has no trainable variables; build it '
                 '(call it on a batch) and make sure it is trainable')


def output_matrix(outputs) -> tf.Tensor:
  """Model outputs as (batch, L): flattens any trailing output axes."""
  outputs = tf.convert_to_tensor(outputs)
  return tf.reshape(outputs, [tf.shape(outputs)[0], -1])


def flatten_gradients(gradients, variables) -> tf.Tensor:
  """Concatenates per-variable gradients (None -> zeros) into one vector."""
  return tf.concat([
      tf.reshape(tf.zeros_like(v) if g is None else g, [-1])
      for g, v in zip(gradients, variables)
  ], axis=0)


def _one_example_gradient(model, variables, image, index):
  with tf.GradientTape() as tape:
    output = tf.gather(output_matrix(model(image[tf.newaxis],
                                           training=False))[0], index)
  return flatten_gradients(tape.gradient(output, variables), variables)


def _vectorized_block_fn(model: keras.Model):
  """tf.function (images, l) -> (block, P): `tf.vectorized_map` over
  per-example `GradientTape.gradient` calls (the output index is a tensor
  argument, so one trace serves all outputs)."""
  variables = model.trainable_variables

  @tf.function(reduce_retracing=True)
  def block_features(images, index):
    with float32_compute(model):
      return tf.vectorized_map(
          lambda image: _one_example_gradient(model, variables, image, index),
          images)

  return block_features


def _loop_block_fn(model: keras.Model):
  """Eager, one example at a time: the slow, obvious reference."""
  variables = model.trainable_variables

  def block_features(images, index):
    with float32_compute(model):
      return tf.stack([_one_example_gradient(model, variables, image, index)
                       for image in tf.unstack(images)])

  return block_features


def block_fn(model: keras.Model, method: str, input_shape: tuple):
  """The (cached) block function of a concrete or 'auto' method.

  One function per method; a model whose input shape Keras does not fully
  know (None dimensions, subclassed) gets one per (method, per-example
  input shape), so each concrete shape is traced with static sizes
  (per_layer's convolution assembly needs static spatial sizes).
  """
  cached = cache(model)
  known = _input_shape(model)
  key = (method if known is not None and None not in known else
         (method, tuple(input_shape)))
  if key not in cached:
    scope = lambda: float32_compute(model)
    if method in ('auto', 'per_layer'):
      chain = per_layer.chain_layers(model)
      if chain is None:
        errors.require(method == 'auto',
                       f"method 'per_layer' does not support model "
                       f"{model.name!r} (it needs a chain of layers whose "
                       "trainable layers are Dense/Conv2D); use 'vectorized'")
        cached[key] = block_fn(model, 'vectorized', input_shape)
      else:
        cached[key] = per_layer.per_layer_block_fn(model, chain, input_shape,
                                                   scope)
    elif method == 'structured':
      chain = per_layer.chain_layers(model)
      errors.require(chain is not None,
                     f'structured features need a chain model whose trainable '
                     f'layers are Dense/Conv2D; {model.name!r} is not one '
                     '(use gradient_features)')
      cached[key] = per_layer.factor_block_fn(model, chain, input_shape,
                                              scope)
    elif method == 'vectorized':
      cached[key] = _vectorized_block_fn(model)
    else:
      cached[key] = _loop_block_fn(model)
  # One trace per model is by design (its variables are captured), but TF's
  # frequent-retracing detector counts traces per Python function, i.e. over
  # all models: a sweep of 5 models would warn "triggered tf.function
  # retracing". This attribute of tf.function opts out of that detector.
  cached[key]._omit_frequent_tracing_warning = True  # pylint: disable=protected-access
  return cached[key]


def choose_fastest(candidates: Dict[str, Callable[[], object]],
                   repeats: int = AUTOTUNE_REPEATS) -> str:
  """Name of the candidate with the smallest median time over `repeats` calls.

  Each candidate is called once untimed (tracing), then the candidates are
  timed round-robin so a load change on a shared machine hits all of them.
  """
  errors.require(bool(candidates), 'choose_fastest needs candidates')
  for fn in candidates.values():
    fn()
  seconds = {name: [] for name in candidates}
  for _ in range(repeats):
    for name, fn in candidates.items():
      start = time.perf_counter()
      fn()
      seconds[name].append(time.perf_counter() - start)
  return min(candidates, key=lambda name: float(np.median(seconds[name])))


def resolve_method(model: keras.Model, images: np.ndarray, batch_size: int,
                   method: str) -> str:
  """The concrete method ('per_layer', 'vectorized' or 'loop') for a job.

  'auto', by the model's layers (no timing at run time): 'per_layer' for a
  chain of Dense / Conv2D layers (`per_layer.chain_layers`), else
  'vectorized'. Measured (BENCHMARKS.md sections 1 and 8): per_layer is at
  least as fast as vectorized on every chain net here (FC, VGG-like,
  mega-VGG within 5%), so a timed choice only added its own cost.
  """
  del images, batch_size  # The rule depends on the model alone.
  if method != 'auto':
    return method
  return 'vectorized' if per_layer.chain_layers(model) is None else 'per_layer'


def sharded_block_fn(model: keras.Model, strategy: tf.distribute.Strategy,
                     method: str, input_shape: tuple):
  """A tf.function: (per-replica image blocks, l) -> all rows, in order.

  Each replica runs the single-device block function of `method` on its
  part; `strategy.gather` concatenates the parts in replica order.
  """
  cached = cache(model)
  key = ('sharded', id(strategy), method, tuple(input_shape))
  if key not in cached or cached[key][0] is not strategy:
    single = block_fn(model, method, input_shape)
    if getattr(single, 'input_signature', None) is not None:
      # strategy.run hands the function per-replica values while `step` is
      # traced, which a fixed input signature refuses: use the same body
      # without it.
      single = tf.function(single.python_function, reduce_retracing=True)

    @tf.function(reduce_retracing=True)
    def step(per_replica_images, index):
      per_replica = strategy.run(single, args=(per_replica_images, index))
      # Each output (feature rows, or each of 'structured''s factors) on its
      # own: `gather` of a whole nest does not concatenate the replicas.
      return tf.nest.map_structure(
          lambda value: _gather_rows(strategy, value), per_replica)

    # As for `block_fn`: one trace per model and block shape, by design.
    step._omit_frequent_tracing_warning = True  # pylint: disable=protected-access
    cached[key] = (strategy, step)
  return cached[key][1]


def _gather_rows(strategy: tf.distribute.Strategy, value) -> tf.Tensor:
  """The replicas' parts of one output, concatenated along rows in order.

  An output without columns (e.g. the convolution gradients of a net that
  has none) is made locally: gathering empty tensors crashes TensorFlow's
  collectives (a segfault with two CPU replicas).
  """
  part = strategy.experimental_local_results(value)[0]
  if 0 in part.shape[1:]:
    rows = tf.shape(part)[0] * strategy.num_replicas_in_sync
    return tf.zeros(tf.concat([[rows], tf.shape(part)[1:]], 0), part.dtype)
  return strategy.gather(value, axis=0)
