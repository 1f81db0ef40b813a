"""Per-example gradient features phi(x) = d f_theta(x) / d theta, block by block.

The FNTK and the after kernel are K(u, v) = phi(u).phi(v), with phi(x) the
gradient of the network's scalar output with respect to every trainable
parameter, flattened in `model.trainable_variables` order (one float32 per
parameter). The conjugate features are the penultimate activations h(x).

Extraction methods (`FEATURE_METHODS`):
  * 'auto' (default): 'vectorized' when the model does not support
    'per_layer'; 'per_layer' for small jobs (fewer than
    AUTOTUNE_MIN_BLOCKS blocks); otherwise the faster of the two as timed on
    the first block of the job (measured, not modelled: which one wins
    depends on layer shapes and the machine, e.g. per_layer is 1.25x faster
    on the VGG-like net but vectorized 2x faster on mega-VGG on 2 CPU cores,
    see BENCHMARKS.md). The choice is cached per (model, block size). Both
    give the same numbers to float32 rounding; only the speed differs.
  * 'per_layer': one batched forward and backward pass, then each layer's
    per-example weight gradients assembled from its inputs and the
    per-example gradients at its outputs (Dense: an outer product; Conv2D:
    image patches x output gradients, one einsum), as per-sample-gradient
    libraries do. Runs near the speed of a batched forward+backward. Needs a
    chain of layers (Sequential, or functional without branches) whose only
    trainable layers are Dense, NTK-parameterized dense layers
    (`architectures.NTKDense` and subclasses) and Conv2D (channels_last,
    groups=1), and no
    cross-example coupling in inference mode (true of all Keras layers in
    inference mode). TF's pfor cannot do this for convolutions: it turns
    Conv2DBackpropFilter into a while_loop.
  * 'vectorized': `tf.vectorized_map` over per-example
    `GradientTape.gradient` calls inside one `tf.function`, so a whole block is
    one graph execution (pfor turns the per-example backward passes into
    batched ops). Works for any Keras model with a scalar output.
  * 'loop': one example at a time with eager `tape.gradient`. Slow, obvious
    and independent of pfor; it is the reference the tests compare against.

Features are produced in blocks (`iter_feature_blocks`) so callers can stream
them into Gram matrices without holding all n x P values.
"""

import dataclasses
import time
from typing import Callable, Dict, Iterator
import weakref

import keras
import numpy as np
import tensorflow as tf

from afterkernel.models import architectures
from afterkernel import errors
from afterkernel import models

FEATURE_METHODS = ('auto', 'per_layer', 'vectorized', 'loop')
DEFAULT_FEATURE_METHOD = 'auto'
# Examples per vectorized block: big enough to amortize graph overhead, small
# enough that pfor's per-example intermediates (block x activations) fit.
DEFAULT_BATCH_SIZE = 256
# model -> {method: block function}; reusing the tf.function avoids a retrace
# (seconds for conv nets) on every call with the same model.
_BLOCK_FNS = weakref.WeakKeyDictionary()
# 'auto' times both methods only for jobs of at least this many blocks. The
# timing costs about six block calls (two traces, four timed calls) once per
# model: a pipeline extracts features of the same model many times (train,
# test, invariances, streamed chunks), so a 2x faster method repays it.
AUTOTUNE_MIN_BLOCKS = 4
# Timed calls per candidate when autotuning (after one untimed tracing call).
AUTOTUNE_REPEATS = 2


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


class _ChainLayer:
  """How `per_layer` handles one layer of a chain model."""

  def __init__(self, layer):
    self.layer = layer
    self.kind = 'apply'
    # z = kernel_scale * (h @ W) + bias_scale * b: Keras Dense has scales 1;
    # NTK-parameterized dense layers (architectures.NTKDense and subclasses)
    # report theirs through `multipliers()` once built.
    self.use_bias = bool(getattr(layer, 'use_bias', True))
    self.kernel_scale, self.bias_scale = 1.0, 1.0
    if isinstance(layer, keras.layers.Dense):
      self.kind = 'dense'
    elif isinstance(layer, architectures.NTKDense) and layer.built:
      self.kind = 'dense'
      self.kernel_scale, self.bias_scale = layer.multipliers()
    elif isinstance(layer, keras.layers.Conv2D) and not isinstance(
        layer, (keras.layers.Conv2DTranspose, keras.layers.DepthwiseConv2D,
                keras.layers.SeparableConv2D)):
      self.kind = 'conv2d'


def _chain_layers(model: keras.Model):
  """The model's layers as a chain for 'per_layer', or None if unsupported."""
  layers = [l for l in model.layers
            if not isinstance(l, keras.layers.InputLayer)]
  if not isinstance(model, keras.Sequential):
    # A functional model is a chain iff each layer consumes the previous one.
    try:
      previous = model.inputs[0]
      for layer in layers:
        if len(layer._inbound_nodes) != 1:  # pylint: disable=protected-access
          return None
        node = layer._inbound_nodes[0]  # pylint: disable=protected-access
        if (len(node.input_tensors) != 1 or
            node.input_tensors[0] is not previous):
          return None
        previous = node.output_tensors[0]
      if len(model.inputs) != 1 or previous is not model.outputs[0]:
        return None
    except (AttributeError, IndexError, TypeError):
      return None
  chain = [_ChainLayer(l) for l in layers]
  for entry in chain:
    layer = entry.layer
    if entry.kind == 'apply' and layer.trainable_weights:
      return None
    if entry.kind == 'conv2d' and (layer.groups != 1 or
                                   layer.data_format != 'channels_last'):
      return None
    if entry.kind == 'dense' and len(layer.kernel.shape) != 2:
      return None
  covered = {id(v) for e in chain if e.kind != 'apply'
             for v in e.layer.trainable_weights}
  if covered != {id(v) for v in model.trainable_variables}:
    return None
  return chain


def supports_per_layer(model: keras.Model) -> bool:
  """Whether `method='per_layer'` can extract this model's features."""
  return _chain_layers(model) is not None


def _same_padding(size: int, kernel: int, stride: int, dilation: int):
  """TF's SAME padding (before, after) along one axis."""
  out = -(-size // stride)
  total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
  return total // 2, total - total // 2


def _conv2d_per_example_kernel_grads(layer, h, output_grad):
  """Per-example d f / d kernel of a Conv2D: (batch, kh, kw, c_in, c_out).

  For each kernel offset (i, j), the gradient is the shifted (strided,
  dilated) input window contracted with the output gradient over output
  positions: a batched (c_in x positions) @ (positions x c_out) matmul.
  kh * kw batched matmuls beat `extract_patches` + einsum several-fold on
  CPU, because no patch tensor is materialized.
  """
  kh, kw = layer.kernel_size
  sh, sw = layer.strides
  dh, dw = layer.dilation_rate
  out_h, out_w = output_grad.shape[1], output_grad.shape[2]
  if layer.padding == 'same':
    pad_h = _same_padding(h.shape[1], kh, sh, dh)
    pad_w = _same_padding(h.shape[2], kw, sw, dw)
    h = tf.pad(h, [[0, 0], list(pad_h), list(pad_w), [0, 0]])
  batch = tf.shape(h)[0]
  c_in = h.shape[3]
  grad = tf.reshape(output_grad, [batch, out_h * out_w, -1])
  rows = []
  for i in range(kh):
    for j in range(kw):
      window = h[:, i * dh:i * dh + (out_h - 1) * sh + 1:sh,
                 j * dw:j * dw + (out_w - 1) * sw + 1:sw, :]
      window = tf.reshape(window, [batch, out_h * out_w, c_in])
      rows.append(tf.matmul(window, grad, transpose_a=True))
  return tf.stack(rows, axis=1)


def _chain_forward(chain, images):
  """Runs a chain model; returns the logits and, per trainable layer, its
  entry, its input and its pre-activation output."""
  h = images
  records = []
  for entry in chain:
    layer = entry.layer
    if entry.kind == 'dense':
      z = tf.matmul(h, layer.kernel)
      if entry.kernel_scale != 1.0:
        z = z * entry.kernel_scale
      if entry.use_bias:
        z = z + (layer.bias if entry.bias_scale == 1.0
                 else layer.bias * entry.bias_scale)
      records.append((entry, h, z))
      h = layer.activation(z)
    elif entry.kind == 'conv2d':
      z = tf.nn.conv2d(h, layer.kernel, strides=(1,) + layer.strides + (1,),
                       padding=layer.padding.upper(),
                       dilations=(1,) + layer.dilation_rate + (1,))
      if layer.use_bias:
        z = z + layer.bias
      records.append((entry, h, z))
      h = layer.activation(z)
    else:
      h = layer(h, training=False)
  return h, records


def _chain_output_gradients(chain, images):
  """One batched forward/backward: the records and d f(x_i) / d z_l[i].

  Examples do not interact, so the gradient of the batch sum of logits at
  example i's pre-activations is the gradient of f(x_i) alone.
  """
  with tf.GradientTape() as tape:
    logits, records = _chain_forward(chain, images)
    total = tf.reduce_sum(logits)
  return records, tape.gradient(total, [z for _, _, z in records])


def _layer_gradients(entry, h, output_grad):
  """Per-example gradients of one layer's weights, keyed by variable id."""
  layer = entry.layer
  batch = tf.shape(h)[0]
  if entry.kind == 'dense':
    kernel = tf.einsum('bi,bo->bio', h, output_grad)
    if entry.kernel_scale != 1.0:
      kernel = kernel * entry.kernel_scale
    bias_axes = []
  else:
    kernel = _conv2d_per_example_kernel_grads(layer, h, output_grad)
    bias_axes = [1, 2]
  grads = {id(layer.kernel): tf.reshape(kernel, [batch, -1])}
  if entry.use_bias:
    bias = (tf.reduce_sum(output_grad, axis=bias_axes) if bias_axes
            else output_grad)
    if entry.bias_scale != 1.0:
      bias = bias * entry.bias_scale
    grads[id(layer.bias)] = bias
  return grads


def _per_layer_block_fn(model: keras.Model, chain):
  """A tf.function: images -> (block, P) features from one fwd/bwd pass."""
  variables = model.trainable_variables

  @tf.function(reduce_retracing=True)
  def block_features(images):
    records, output_grads = _chain_output_gradients(chain, images)
    grads = {}
    for (entry, h, _), output_grad in zip(records, output_grads):
      grads.update(_layer_gradients(entry, h, output_grad))
    return tf.concat([grads[id(v)] for v in variables], axis=1)

  return block_features


def _factor_block_fn(model: keras.Model, chain):
  """A tf.function: images -> (dense factors, other-layer features)."""
  del model

  @tf.function(reduce_retracing=True)
  def block_factors(images):
    records, output_grads = _chain_output_gradients(chain, images)
    dense, others = [], []
    for (entry, h, _), output_grad in zip(records, output_grads):
      if entry.kind == 'dense':
        if entry.kernel_scale != 1.0:
          h = h * entry.kernel_scale
        if entry.use_bias:
          h = tf.concat([h, tf.fill([tf.shape(h)[0], 1],
                                    tf.constant(entry.bias_scale, h.dtype))],
                        axis=1)
        dense.append((h, output_grad))
      else:
        others.extend(_layer_gradients(entry, h, output_grad).values())
    other = (tf.concat(others, axis=1) if others
             else tf.zeros([tf.shape(images)[0], 0]))
    return dense, other

  return block_factors


@dataclasses.dataclass
class StructuredFeatures:
  """Gradient features of a chain model, with Dense layers kept factored.

  For a Dense layer z = h W + b, d f / d(W, b) = (h, 1) outer d f / d z, so
  its contribution to K(u, v) is ((h_u, 1).(h_v, 1)) (g_u . g_v): two small
  Grams multiplied elementwise, n^2 (d_in + d_out) work instead of
  n^2 d_in d_out (the structured-derivatives trick of neural-tangents).
  Convolution gradients are kept materialized, concatenated in `other`.

  Attributes:
    dense: per Dense layer, (inputs with a ones column if it has a bias
      (n, d_in[+1]), output gradients (n, d_out)), float32.
    other: (n, P_other) float32 per-example gradients of the other trainable
      layers (convolutions).
  """
  dense: list
  other: np.ndarray

  @property
  def num_examples(self) -> int:
    return len(self.other)


def structured_features(model: keras.Model,
                        images: np.ndarray,
                        batch_size: int = DEFAULT_BATCH_SIZE
                        ) -> StructuredFeatures:
  """Gradient features with Dense layers factored (see StructuredFeatures).

  Args:
    model: a chain model (see `supports_per_layer`).
    images: (n, ...) float32 inputs.
    batch_size: examples per batched forward/backward pass.

  Returns:
    The factored features of `images`; `kernels.structured_gram` turns two
    of them into a Gram matrix equal to phi_a phi_b^T.

  Raises:
    AfterKernelError: unsupported model or bad input.
  """
  images = np.asarray(images, dtype=np.float32)
  _check_inputs(model, images, batch_size)
  chain = _chain_layers(model)
  errors.require(chain is not None,
                 f'structured features need a chain model whose trainable '
                 f'layers are Dense/Conv2D; {model.name!r} is not one (use '
                 'gradient_features)')
  cached = _BLOCK_FNS.setdefault(model, {})
  if 'factors' not in cached:
    cached['factors'] = _factor_block_fn(model, chain)
  dense_parts, other_parts = [], []
  for start in range(0, len(images), batch_size):
    dense, other = cached['factors'](tf.constant(images[start:start +
                                                        batch_size]))
    dense_parts.append([(h.numpy(), g.numpy()) for h, g in dense])
    other_parts.append(other.numpy())
  dense = [(np.concatenate([block[i][0] for block in dense_parts]),
            np.concatenate([block[i][1] for block in dense_parts]))
           for i in range(len(dense_parts[0]))]
  return StructuredFeatures(dense=dense,
                            other=np.concatenate(other_parts))


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


def _block_fn(model: keras.Model, method: str):
  """The (cached) block function of `method` for `model`."""
  cached = _BLOCK_FNS.setdefault(model, {})
  if method not in cached:
    if method in ('auto', 'per_layer'):
      chain = _chain_layers(model)
      if chain is None:
        errors.require(method == 'auto',
                       f"method 'per_layer' does not support model "
                       f"{model.name!r} (it needs a chain of layers whose "
                       "trainable layers are Dense/Conv2D); use 'vectorized'")
        cached[method] = _block_fn(model, 'vectorized')
      else:
        cached[method] = _per_layer_block_fn(model, chain)
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


def resolve_method(model: keras.Model, images: np.ndarray,
                   batch_size: int = DEFAULT_BATCH_SIZE,
                   method: str = DEFAULT_FEATURE_METHOD) -> str:
  """The concrete method ('per_layer', 'vectorized' or 'loop') for a job.

  For 'auto', see the module docstring: 'vectorized' without per_layer
  support, 'per_layer' for jobs under AUTOTUNE_MIN_BLOCKS blocks, else the
  faster of the two on the job's first block (timed once per model and
  block size, then cached).
  """
  if method != 'auto':
    return method
  if not supports_per_layer(model):
    return 'vectorized'
  cached = _BLOCK_FNS.setdefault(model, {})
  key = ('auto_choice', batch_size)
  if key in cached:
    return cached[key]
  if len(images) < AUTOTUNE_MIN_BLOCKS * batch_size:
    return 'per_layer'
  block = tf.constant(np.asarray(images[:batch_size], np.float32))
  functions = {name: _block_fn(model, name)
               for name in ('per_layer', 'vectorized')}
  cached[key] = choose_fastest(
      {name: (lambda fn=fn: fn(block).numpy())
       for name, fn in functions.items()})
  return cached[key]


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
  concrete = resolve_method(model, images, batch_size, method)
  block_fn = _block_fn(model, concrete)
  # pfor graphs: pad a ragged last block to the full size, so one trace
  # serves every block (a retrace costs seconds for conv nets) and pfor
  # never runs the shape-generalized trace on a single example, which fails
  # for functional models with branches (InvalidArgumentError in MatMul).
  pad = concrete == 'vectorized' and len(images) > batch_size
  for start in range(0, len(images), batch_size):
    block = images[start:start + batch_size]
    size = len(block)
    if pad and size < batch_size:
      block = np.concatenate(
          [block, np.zeros((batch_size - size,) + block.shape[1:],
                           np.float32)])
    yield block_fn(tf.constant(block)).numpy()[:size]


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
