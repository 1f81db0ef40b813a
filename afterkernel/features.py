"""Per-example gradient features phi(x) = d f_theta(x) / d theta, block by block.

The FNTK and the after kernel are K(u, v) = phi(u).phi(v), with phi(x) the
gradient of the network's scalar output with respect to every trainable
parameter, flattened in `model.trainable_variables` order (one float32 per
parameter). The conjugate features are the penultimate activations h(x).

Extraction methods (`FEATURE_METHODS`):
  * 'vectorized' (default): `tf.vectorized_map` over per-example
    `GradientTape.gradient` calls inside one `tf.function`, so a whole block is
    one graph execution (pfor turns the per-example backward passes into
    batched ops). Works for any Keras model with a scalar output.
  * 'loop': one example at a time with eager `tape.gradient`. Slow, obvious
    and independent of pfor; it is the reference the tests compare against.

Features are produced in blocks (`iter_feature_blocks`) so callers can stream
them into Gram matrices without holding all n x P values.
"""

from typing import Iterator
import weakref

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel import models

FEATURE_METHODS = ('vectorized', 'loop')
DEFAULT_FEATURE_METHOD = 'vectorized'
# Examples per vectorized block: big enough to amortize graph overhead, small
# enough that pfor's per-example intermediates (block x activations) fit.
DEFAULT_BATCH_SIZE = 256
# model -> {method: block function}; reusing the tf.function avoids a retrace
# (seconds for conv nets) on every call with the same model.
_BLOCK_FNS = weakref.WeakKeyDictionary()


def _check_inputs(model: keras.Model, images: np.ndarray,
                  batch_size: int) -> None:
  errors.require_positive(batch_size, 'batch_size')
  expected = tuple(model.input_shape[1:])
  errors.require(
      images.ndim == len(expected) + 1 and tuple(images.shape[1:]) == expected,
      f'images have shape {tuple(images.shape)} but the model expects '
      f'(n,) + {expected}')
  errors.require(tuple(model.output_shape[1:]) == (1,),
                 'gradient features need a model with one scalar output, got '
                 f'output shape {model.output_shape}')


def _flatten_gradients(gradients, variables) -> tf.Tensor:
  """Concatenates per-variable gradients (None -> zeros) into one vector."""
  return tf.concat([
      tf.reshape(tf.zeros_like(v) if g is None else g, [-1])
      for g, v in zip(gradients, variables)
  ], axis=0)


def _vectorized_block_fn(model: keras.Model):
  """A tf.function mapping a block of images to its (block, P) features."""
  variables = model.trainable_variables

  def one_example(image):
    with tf.GradientTape() as tape:
      logit = model(image[tf.newaxis], training=False)[0, 0]
    return _flatten_gradients(tape.gradient(logit, variables), variables)

  @tf.function(reduce_retracing=True)
  def block_features(images):
    return tf.vectorized_map(one_example, images)

  return block_features


def _loop_block_fn(model: keras.Model):
  variables = model.trainable_variables

  def block_features(images):
    rows = []
    for image in tf.unstack(images):
      with tf.GradientTape() as tape:
        logit = model(image[tf.newaxis], training=False)[0, 0]
      rows.append(_flatten_gradients(tape.gradient(logit, variables),
                                     variables))
    return tf.stack(rows)

  return block_features


def iter_feature_blocks(model: keras.Model,
                        images: np.ndarray,
                        batch_size: int = DEFAULT_BATCH_SIZE,
                        method: str = DEFAULT_FEATURE_METHOD
                        ) -> Iterator[np.ndarray]:
  """Yields gradient features of consecutive blocks of `images`.

  Args:
    model: a Keras model with one scalar output per example.
    images: (n, ...) float32 inputs.
    batch_size: examples per block (the last block may be smaller).
    method: one of `FEATURE_METHODS`.

  Yields:
    float32 arrays of shape (block, P), P = number of trainable parameters,
    in order.

  Raises:
    AfterKernelError: on an unknown method or mismatched input shape.
  """
  errors.require(method in FEATURE_METHODS,
                 f'unknown feature method {method!r}; choose one of '
                 f'{", ".join(FEATURE_METHODS)}')
  images = np.asarray(images, dtype=np.float32)
  _check_inputs(model, images, batch_size)
  cached = _BLOCK_FNS.setdefault(model, {})
  if method not in cached:
    cached[method] = (_vectorized_block_fn(model) if method == 'vectorized'
                      else _loop_block_fn(model))
  block_fn = cached[method]
  for start in range(0, len(images), batch_size):
    yield block_fn(tf.constant(images[start:start + batch_size])).numpy()


def gradient_features(model: keras.Model,
                      images: np.ndarray,
                      batch_size: int = DEFAULT_BATCH_SIZE,
                      method: str = DEFAULT_FEATURE_METHOD) -> np.ndarray:
  """All gradient features phi(x_i) as one (n, P) float32 matrix.

  Args:
    model: a Keras model with one scalar output per example.
    images: (n, ...) float32 inputs.
    batch_size: examples per block.
    method: one of `FEATURE_METHODS`.

  Returns:
    (n, P) float32, row i = d f(x_i) / d theta.
  """
  out = np.empty((len(images), models.count_parameters(model)), np.float32)
  start = 0
  for block in iter_feature_blocks(model, images, batch_size, method):
    out[start:start + len(block)] = block
    start += len(block)
  return out


def conjugate_features(model: keras.Model,
                       images: np.ndarray,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> np.ndarray:
  """Penultimate activations h(x) (the input of the final Dense), (n, d).

  Args:
    model: a model whose last layer is the output Dense (see `models`).
    images: (n, ...) float32 inputs.
    batch_size: examples per forward pass.

  Returns:
    (n, d) float32.
  """
  images = np.asarray(images, dtype=np.float32)
  _check_inputs(model, images, batch_size)
  conjugate = models.conjugate_model(model)
  blocks = [
      keras.ops.convert_to_numpy(
          conjugate(images[s:s + batch_size], training=False))
      for s in range(0, len(images), batch_size)
  ]
  return np.concatenate(blocks).reshape(len(images), -1).astype(np.float32)


def parameter_vector(model: keras.Model) -> np.ndarray:
  """The trainable parameters flattened in the same order as the features."""
  return np.concatenate(
      [np.ravel(keras.ops.convert_to_numpy(v)) for v in
       model.trainable_variables]).astype(np.float32)
