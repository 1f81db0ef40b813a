"""The 'per_layer' and 'structured' methods of the gradient engine.

Internals of `afterkernel.kernels.features` (the one gradient engine): one
batched forward and backward pass, then each layer's per-example weight
gradients assembled from its inputs and the per-example gradients at its
outputs (Dense: an outer product; Conv2D: image windows x output gradients),
as per-sample-gradient libraries do. 'structured' stops one step earlier for
Dense layers and keeps the two factors (see `features.StructuredFeatures`).

Both need a chain of layers (Sequential, or functional without branches)
whose only trainable layers are Dense, NTK-parameterized dense layers
(`architectures.NTKDense` and subclasses) and Conv2D (channels_last,
groups=1), and no cross-example coupling in inference mode (true of all Keras
layers in inference mode). TF's pfor cannot do this for convolutions: it
turns Conv2DBackpropFilter into a while_loop.

Every block function here takes (images, output index l) and differentiates
output l of a model with L outputs (trailing output axes flattened); for a
scalar model l = 0.
"""

import contextlib
import math
from typing import Optional

import keras
import tensorflow as tf

from afterkernel.models import architectures
from afterkernel.models import common as model_common


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


def chain_layers(model: keras.Model):
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
    except (AttributeError, IndexError, TypeError, ValueError):
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
  if not chain or covered != {id(v) for v in model.trainable_variables}:
    return None
  return chain


def factored_size(model: keras.Model) -> Optional[int]:
  """Numbers per example a structured Gram multiplies pairwise, or None.

  A Dense layer on rank-2 inputs enters the structured Gram as its two
  factors, (d_in + 1 with a bias) + d_out numbers per example, where its
  gradient row has (d_in + 1) d_out; every other layer's gradient is
  materialized (its parameter count). Compared with the parameter count P
  (the row length), this is the Gram's cost ratio of 'structured' vs
  feature rows (`structured_pays`). None: not a chain model, or
  a layer's output shape could not be inferred.
  """
  chain = chain_layers(model)
  if chain is None:
    return None
  try:
    shape = tuple(model.inputs[0].shape)
    size = 0
    for entry in chain:
      layer = entry.layer
      if entry.kind == 'dense' and len(shape) == 2:
        d_in, d_out = (int(d) for d in layer.kernel.shape)
        size += d_in + int(entry.use_bias) + d_out
      else:
        size += sum(math.prod(w.shape) for w in layer.trainable_weights)
      shape = tuple(layer.compute_output_shape(shape))
  except Exception:  # pylint: disable=broad-except
    # Keras raises many types for shapes it cannot infer; None only costs
    # speed (feature rows instead of factors), never a wrong number.
    return None
  return size


# 'structured' is chosen for a Gram when its factors are at most this
# fraction of the row length P: a clear saving in the n^2 products. The
# fully connected net (factors ~1.5% of P) then gets it; conv nets whose
# only Dense layer is the output (factors ~100% of P, no saving, and
# measured 1.4-1.5x slower than per_layer rows at n = 2,048, BENCHMARKS.md
# 8f) get per_layer rows.
STRUCTURED_MAX_FRACTION = 0.5


def structured_pays(model: keras.Model) -> bool:
  """Whether Grams of `model` should keep Dense layers factored.

  True for chain models whose structured Gram multiplies at most
  `STRUCTURED_MAX_FRACTION` of the numbers a feature-row Gram does
  (`factored_size` vs the parameter count): the rule behind 'auto' for
  Grams (`kernels.empirical`, as `features.structured_pays`). Same Gram
  either way, to float32 rounding.
  """
  size = factored_size(model)
  return size is not None and size <= STRUCTURED_MAX_FRACTION * max(
      1, model_common.count_parameters(model))


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
  """Runs a chain model; returns the outputs and, per trainable layer, its
  entry, its input and its pre-activation output."""
  h = images
  records = []
  for entry in chain:
    layer = entry.layer
    if entry.kind == 'dense':
      # Keras Dense contracts the last axis of inputs of any rank.
      z = (tf.matmul(h, layer.kernel) if h.shape.rank == 2 else
           tf.tensordot(h, layer.kernel, [[h.shape.rank - 1], [0]]))
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


def _chain_output_gradients(chain, images, index):
  """One batched forward/backward: the records and d f_l(x_i) / d z[i].

  Examples do not interact, so the gradient of the batch sum of output l at
  example i's pre-activations is the gradient of f_l(x_i) alone.
  """
  with tf.GradientTape() as tape:
    outputs, records = _chain_forward(chain, images)
    outputs = tf.reshape(outputs, [tf.shape(outputs)[0], -1])
    total = tf.reduce_sum(tf.gather(outputs, index, axis=1))
  return records, tape.gradient(total, [z for _, _, z in records])


def _layer_gradients(entry, h, output_grad):
  """Per-example gradients of one layer's weights, keyed by variable id."""
  layer = entry.layer
  batch = tf.shape(h)[0]
  if entry.kind == 'dense':
    # Rank > 2 inputs (b, ..., i): the weights are shared over the middle
    # positions, so their gradients sum over them.
    if h.shape.rank > 2:
      kernel = tf.einsum(
          'bpi,bpo->bio', tf.reshape(h, [batch, -1, h.shape[-1]]),
          tf.reshape(output_grad, [batch, -1, output_grad.shape[-1]]))
    else:
      kernel = tf.einsum('bi,bo->bio', h, output_grad)
    if entry.kernel_scale != 1.0:
      kernel = kernel * entry.kernel_scale
    bias_axes = list(range(1, h.shape.rank - 1))
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


def block_signature(input_shape):
  """(images of any batch size, output index): one trace serves every block,
  the ragged last one included."""
  return (tf.TensorSpec((None,) + tuple(input_shape), tf.float32),
          tf.TensorSpec((), tf.int32))


def per_layer_block_fn(model: keras.Model, chain, input_shape,
                       compute_scope=contextlib.nullcontext):
  """A tf.function: (images, l) -> (block, P) gradients of output l.

  Traced once for images of shape (any batch,) + `input_shape`;
  `compute_scope()` is entered while tracing (the engine's float32 scope).
  """
  variables = model.trainable_variables

  @tf.function(input_signature=block_signature(input_shape))
  def block_features(images, index):
    with compute_scope():
      records, output_grads = _chain_output_gradients(chain, images, index)
    grads = {}
    for (entry, h, _), output_grad in zip(records, output_grads):
      grads.update(_layer_gradients(entry, h, output_grad))
    return tf.concat([grads[id(v)] for v in variables], axis=1)

  return block_features


def factor_block_fn(model: keras.Model, chain, input_shape,
                    compute_scope=contextlib.nullcontext):
  """A tf.function: (images, l) -> (Dense factors, other-layer gradients).

  Dense layers applied to rank > 2 inputs (a sum over positions of outer
  products, not one) are materialized with the other layers' gradients.
  """
  del model

  @tf.function(input_signature=block_signature(input_shape))
  def block_factors(images, index):
    with compute_scope():
      records, output_grads = _chain_output_gradients(chain, images, index)
    dense, others = [], []
    for (entry, h, _), output_grad in zip(records, output_grads):
      if entry.kind == 'dense' and h.shape.rank == 2:
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
