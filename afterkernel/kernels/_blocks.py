"""Block functions of the one gradient engine, their cache and 'auto'.

Internals of `afterkernel.kernels.features`. A block function maps a block of
inputs and an output index l to the (block, P) gradients d f_l(x_i) / d theta
(trainable parameters flattened in `model.trainable_variables` order); one
is built per (model, method) and kept in `_BLOCK_FNS` so a model's graph is
traced once (seconds for conv nets), whichever public function asks.
"""

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
# model -> {method | 'factors' | ('auto_choice', batch) | ('sharded', ...):
# block function or choice}: the engine's one cache.
_BLOCK_FNS = weakref.WeakKeyDictionary()
# 'auto' times both methods only for jobs of at least this many blocks. The
# timing costs about six block calls (two traces, four timed calls) once per
# model: a pipeline extracts features of the same model many times (train,
# test, invariances, streamed chunks), so a 2x faster method repays it.
AUTOTUNE_MIN_BLOCKS = 4
# Timed calls per candidate when autotuning (after one untimed tracing call).
AUTOTUNE_REPEATS = 2


def cache(model: keras.Model) -> Dict[object, object]:
  """The engine's cache entry of `model` (dropped with the model)."""
  return _BLOCK_FNS.setdefault(model, {})


def require_method(method: str, allowed=METHODS) -> None:
  """One AfterKernelError naming the choices for an unknown method."""
  errors.require_choice(method, allowed, 'feature method')


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
  errors.require(
      expected is None or (images.ndim == len(expected) + 1 and
                           tuple(images.shape[1:]) == expected),
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
    return tf.vectorized_map(
        lambda image: _one_example_gradient(model, variables, image, index),
        images)

  return block_features


def _loop_block_fn(model: keras.Model):
  """Eager, one example at a time: the slow, obvious reference."""
  variables = model.trainable_variables

  def block_features(images, index):
    return tf.stack([_one_example_gradient(model, variables, image, index)
                     for image in tf.unstack(images)])

  return block_features


def block_fn(model: keras.Model, method: str):
  """The (cached) block function of a concrete or 'auto' method."""
  cached = cache(model)
  if method not in cached:
    if method in ('auto', 'per_layer'):
      chain = per_layer.chain_layers(model)
      if chain is None:
        errors.require(method == 'auto',
                       f"method 'per_layer' does not support model "
                       f"{model.name!r} (it needs a chain of layers whose "
                       "trainable layers are Dense/Conv2D); use 'vectorized'")
        cached[method] = block_fn(model, 'vectorized')
      else:
        cached[method] = per_layer.per_layer_block_fn(model, chain)
    elif method == 'structured':
      chain = per_layer.chain_layers(model)
      errors.require(chain is not None,
                     f'structured features need a chain model whose trainable '
                     f'layers are Dense/Conv2D; {model.name!r} is not one '
                     '(use gradient_features)')
      cached[method] = per_layer.factor_block_fn(model, chain)
    elif method == 'vectorized':
      cached[method] = _vectorized_block_fn(model)
    else:
      cached[method] = _loop_block_fn(model)
  return cached[method]


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

  'auto': 'vectorized' without per_layer support, 'per_layer' for jobs under
  AUTOTUNE_MIN_BLOCKS blocks, else the faster of the two on the job's first
  block (timed once per model and block size, then cached).
  """
  if method != 'auto':
    return method
  if per_layer.chain_layers(model) is None:
    return 'vectorized'
  cached = cache(model)
  key = ('auto_choice', batch_size)
  if key in cached:
    return cached[key]
  if len(images) < AUTOTUNE_MIN_BLOCKS * batch_size:
    return 'per_layer'
  block = tf.constant(np.asarray(images[:batch_size], np.float32))
  index = tf.constant(0, tf.int32)
  functions = {name: block_fn(model, name)
               for name in ('per_layer', 'vectorized')}
  cached[key] = choose_fastest(
      {name: (lambda fn=fn: fn(block, index).numpy())
       for name, fn in functions.items()})
  return cached[key]


def sharded_block_fn(model: keras.Model, strategy: tf.distribute.Strategy,
                     method: str):
  """A tf.function: (per-replica image blocks, l) -> all rows, in order.

  Each replica runs the single-device block function of `method` on its
  part; `strategy.gather` concatenates the parts in replica order.
  """
  cached = cache(model)
  key = ('sharded', id(strategy), method)
  if key not in cached or cached[key][0] is not strategy:
    single = block_fn(model, method)

    @tf.function(reduce_retracing=True)
    def step(per_replica_images, index):
      per_replica = strategy.run(single, args=(per_replica_images, index))
      return strategy.gather(per_replica, axis=0)

    cached[key] = (strategy, step)
  return cached[key][1]
