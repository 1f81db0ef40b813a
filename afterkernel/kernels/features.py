"""The one gradient engine: per-example gradients phi_l(x) = d f_l(x) / d theta.

The FNTK and the after kernel are K(u, v) = phi(u).phi(v), with phi(x) the
gradient of the network's scalar output with respect to every trainable
parameter, flattened in `model.trainable_variables` order (one float32 per
parameter). A network with L outputs (trailing output axes flattened) has a
per-example Jacobian J(x), an L x P matrix whose row l is phi_l(x); the
scalar case is L = 1, l = 0. Scalar and L-output models go through the same
code: every block function differentiates output l of a block of inputs.
The conjugate features are the penultimate activations h(x).

Methods (`METHODS`, default `DEFAULT_FEATURE_METHOD` = 'auto'):
  * 'auto': a rule on the model's layers, never a timing at run time:
    'per_layer' for a chain of Dense / NTKDense / Conv2D layers
    (`supports_per_layer`), else 'vectorized'. Grams
    (`kernels.empirical.model_gram`, `model_train_and_cross_gram`) take
    'structured' where the Dense factors save work (`structured_pays`, e.g.
    the fully connected net) and per_layer rows otherwise (e.g. the VGG-like
    net). Measured in BENCHMARKS.md sections 1 and 8 (per_layer is as fast
    as vectorized or faster on every chain net here). All methods give the
    same numbers to float32 rounding.
  * 'per_layer': one batched forward and backward pass, then each layer's
    per-example weight gradients from its inputs and the gradients at its
    outputs (`per_layer`). Near the speed of a batched forward+backward.
    Needs a chain of Dense / NTKDense / Conv2D layers (`supports_per_layer`);
    a Dense layer applied to rank > 2 inputs (b, ..., d_in) is assembled
    here too: its weight gradient sums the outer products over positions.
  * 'structured': as 'per_layer', but Dense layers' gradients stay factored
    (`structured_features`), so a Gram costs n^2 (d_in + d_out) per Dense
    layer instead of n^2 d_in d_out (neural-tangents' structured
    derivatives). Dense layers on rank > 2 inputs are not one outer product,
    so their gradients stay materialized with the convolutions'. It yields
    factors, not feature rows: the Gram functions
    of `kernels.empirical` take it, `gradient_features` does not.
  * 'vectorized': `tf.vectorized_map` over per-example
    `GradientTape.gradient` calls inside one `tf.function`, so a whole block is
    one graph execution (pfor turns the per-example backward passes into
    batched ops). Works for any Keras model (Sequential, functional,
    subclassed). Measured on LeNet-5 (10 outputs), one vectorized map per
    output is ~5x faster than vectorizing a per-example `tape.jacobian`
    (nested pfor falls back to while-loops).
  * 'loop': one example at a time with eager `tape.gradient`. Slow, obvious
    and independent of pfor; it is the reference the tests compare against.
`FEATURE_METHODS` are the methods that produce feature rows (all but
'structured'). Layers always run with `training=False` (inference-mode batch
norm and dropout: the function whose kernel we want).

Models users bring: Sequential, functional and subclassed `keras.Model`s of
one input tensor and one output tensor. Inputs are one in-memory (n, ...)
array (`as_inputs`): a tf.data.Dataset, a list of arrays or a multi-input
model is one AfterKernelError saying what to pass, and so are NaN/inf
inputs (named with the first bad example) and NaN/inf features (naming
non-finite weights, or an overflow). Input dimensions the model leaves None
take the batch's concrete size (one trace per concrete shape). Under a
keras 'mixed_float16' policy the engine runs the layers in float32 while it
traces (`_blocks.float32_compute`): features and Grams are float32 and equal
to those of the float32 model.

Sharding: pass `strategy=` (a `tf.distribute.Strategy`, e.g. from
`distribute.make_strategy`) to split each block of replicas x batch_size
examples evenly across the replicas; each runs the single-device block
function on its part and `strategy.gather` returns the rows in order (same
numbers as one device, to float32 rounding). Without `strategy=`, the strategy
whose `scope()` is entered is used (TF's one-device default strategy outside
any scope), so code run under `distribute.scope(name)` shards every feature
call it makes. 'structured' is sharded the same
way (`structured_features(..., strategy=)`): each replica factors its
examples and the factors are gathered in order, so the fast Gram paths of
`kernels.empirical` run on several replicas too.

Features are produced in blocks (`iter_feature_blocks`) so callers can stream
them into Gram matrices (`kernels.grams`) without holding all n x P values.
"""

import dataclasses
import math
from typing import Callable, Iterator, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel import models
from afterkernel import progress
from afterkernel.kernels import _blocks
from afterkernel.kernels import per_layer

METHODS = _blocks.METHODS
FEATURE_METHODS = ('auto', 'per_layer', 'vectorized', 'loop')
# A rule on the model's layers (module docstring), measured fastest on every
# net of BENCHMARKS.md; numbers equal to the reference to float32 rounding.
DEFAULT_FEATURE_METHOD = 'auto'
# Examples per block: big enough to amortize graph overhead, small enough
# that pfor's per-example intermediates (block x activations) fit.
DEFAULT_BATCH_SIZE = 256
AUTOTUNE_REPEATS = _blocks.AUTOTUNE_REPEATS
choose_fastest = _blocks.choose_fastest
count_parameters = models.count_parameters
factored_size = per_layer.factored_size
structured_pays = per_layer.structured_pays


def supports_per_layer(model: keras.Model) -> bool:
  """Whether `method='per_layer'` (and 'structured') can handle this model."""
  return per_layer.chain_layers(model) is not None


def rows_method(method: str) -> str:
  """Feature-row method of a Gram method: 'structured' (no rows) -> 'auto'."""
  return DEFAULT_FEATURE_METHOD if method == 'structured' else method


def resolve_method(model: keras.Model, images: np.ndarray,
                   batch_size: int = DEFAULT_BATCH_SIZE,
                   method: str = DEFAULT_FEATURE_METHOD) -> str:
  """The concrete method ('per_layer', 'vectorized' or 'loop') for a job.

  For 'auto', see the module docstring: 'per_layer' for chain models, else
  'vectorized' (a rule on the layers; `images` and `batch_size` are not
  looked at, kept for callers).
  """
  return _blocks.resolve_method(model, images, batch_size, method)


def as_inputs(inputs, model: Optional[keras.Model] = None,
              name: str = 'inputs') -> np.ndarray:
  """`inputs` as one finite float32 (n, ...) array for `model`.

  Refuses, in one AfterKernelError saying what to pass: a tf.data.Dataset, a
  list/dict of arrays or a multi-input model (the engine differentiates a
  model of one input tensor on an in-memory batch), and NaN/inf inputs
  (naming `name` and the first bad example).
  """
  return _blocks.as_input_batch(model, inputs, name)


_as_inputs = as_inputs


def num_outputs(model: keras.Model, inputs: np.ndarray) -> int:
  """L, the number of scalar outputs per example (trailing axes flattened).

  Args:
    model: any Keras model (called once on one example).
    inputs: (n, ...) inputs; only the first is used.

  Returns:
    L >= 1.

  Raises:
    AfterKernelError: if the model returns a list/dict (several heads) or no
      example is given.
  """
  inputs = _as_inputs(inputs, model)
  errors.require(len(inputs) > 0, 'need at least one input example')
  outputs = model(inputs[:1], training=False)
  errors.require(
      not isinstance(outputs, (list, tuple, dict)),
      'the model returns several output tensors; wrap it so that it returns '
      'one (batch, L) tensor (e.g. concatenate the heads)')
  return int(_blocks.output_matrix(outputs).shape[1])


def _check_output_index(model: keras.Model, images: np.ndarray,
                        output_index: Optional[int]) -> int:
  """The output index to differentiate; None asks for a scalar model."""
  if output_index is None:
    try:
      shape = tuple(model.output_shape[1:])
      scalar = all(isinstance(d, int) for d in shape) and math.prod(shape) == 1
    except (AttributeError, ValueError, TypeError):
      shape = None
      scalar = len(images) == 0 or num_outputs(model, images) == 1
    errors.require(scalar,
                   'gradient features need a model with one scalar output, '
                   f'got output shape {shape if shape is not None else "?"}'
                   ' (pass output_index= for a model with several outputs)')
    return 0
  total = num_outputs(model, images) if len(images) else 1
  errors.require(
      isinstance(output_index, (int, np.integer)) and
      0 <= output_index < total,
      f'output_index must be in [0, {total}), got {output_index!r}')
  return int(output_index)


def _current(strategy: Optional[tf.distribute.Strategy]
             ) -> tf.distribute.Strategy:
  """`strategy`, or None: the strategy whose scope is entered (TF's one-device
  default strategy outside any scope)."""
  return tf.distribute.get_strategy() if strategy is None else strategy


def _sharded(strategy: tf.distribute.Strategy) -> bool:
  return (strategy.num_replicas_in_sync > 1 or
          isinstance(strategy, tf.distribute.TPUStrategy))


def iter_feature_blocks(model: keras.Model,
                        images: np.ndarray,
                        batch_size: int = DEFAULT_BATCH_SIZE,
                        method: str = DEFAULT_FEATURE_METHOD,
                        *,
                        output_index: Optional[int] = None,
                        strategy: Optional[tf.distribute.Strategy] = None
                        ) -> Iterator[np.ndarray]:
  """Yields gradient features of consecutive blocks of `images`.

  Args:
    model: a Keras model; with one scalar output unless `output_index` is
      given.
    images: (n, ...) float32 inputs.
    batch_size: examples per block (per replica when sharded); the last
      block may be smaller.
    method: one of `FEATURE_METHODS`.
    output_index: differentiate output l of a model with L outputs; None
      requires a scalar model (l = 0).
    strategy: a `tf.distribute.Strategy` to shard each block over its
      replicas ('loop' cannot be sharded); None: the strategy whose scope is
      entered (none entered: one device); one replica: one device.

  Yields:
    float32 arrays of shape (block, P), P = number of trainable parameters,
    in order.

  Raises:
    AfterKernelError: on an unknown method, mismatched input shape, bad
      output index or batch size.
  """
  errors.require(method != 'structured',
                 "method 'structured' gives Dense-layer factors, not feature "
                 'rows: use structured_features or kernels.empirical.model_gram')
  _blocks.require_method(method, FEATURE_METHODS)
  images = _as_inputs(images, model, 'images')
  _blocks.check_inputs(model, images, batch_size)
  index = tf.constant(_check_output_index(model, images, output_index),
                      tf.int32)
  strategy = _current(strategy)
  sharded = _sharded(strategy)
  if sharded:
    errors.require(method != 'loop',
                   f'feature method {method!r} cannot be sharded across '
                   'replicas; choose one of auto, per_layer, vectorized')
  concrete = _blocks.resolve_method(model, images, batch_size, method)
  if sharded:
    start = 0
    for block in _sharded_blocks(model, images, batch_size, concrete, index,
                                 strategy):
      _blocks.require_finite_features(model, block, start)
      start += len(block)
      yield block
    return
  block_fn = _blocks.block_fn(model, concrete, images.shape[1:])
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
    rows = block_fn(tf.constant(block), index).numpy()[:size]
    _blocks.require_finite_features(model, rows, start)
    yield rows


def _sharded_blocks(model, images, batch_size, method, index, strategy):
  """Blocks of R x batch_size examples (R = replicas), cut into R equal parts
  (the last, ragged block padded with zero images whose rows are dropped).

  Yields what `method`'s block function returns for the whole block, as
  numpy: feature rows, or for 'structured' the (dense factors, other rows)
  nest, each part gathered from the replicas in order."""
  step = _blocks.sharded_block_fn(model, strategy, method, images.shape[1:])
  replicas = strategy.num_replicas_in_sync
  block = replicas * batch_size
  for start in range(0, len(images), block):
    part = images[start:start + block]
    per_replica = math.ceil(len(part) / replicas)
    padded = np.zeros((per_replica * replicas,) + images.shape[1:],
                      np.float32)
    padded[:len(part)] = part

    def value_fn(context, padded=padded, per_replica=per_replica):
      first = context.replica_id_in_sync_group * per_replica
      return tf.constant(padded[first:first + per_replica])

    values = strategy.experimental_distribute_values_from_function(value_fn)
    yield tf.nest.map_structure(lambda rows, n=len(part): rows.numpy()[:n],
                                step(values, index))


def gradient_features(model: keras.Model,
                      images: np.ndarray,
                      batch_size: int = DEFAULT_BATCH_SIZE,
                      method: str = DEFAULT_FEATURE_METHOD,
                      *,
                      output_index: Optional[int] = None,
                      strategy: Optional[tf.distribute.Strategy] = None,
                      log: Optional[Callable[[str], None]] = None
                      ) -> np.ndarray:
  """All gradient features phi(x_i) as one (n, P) float32 matrix.

  Args:
    model: a Keras model with one scalar output per example (or any number
      of outputs with `output_index`).
    images: (n, ...) float32 inputs.
    batch_size: examples per block (per replica when sharded).
    method: one of `FEATURE_METHODS`.
    output_index: l for a model with L outputs (row l of each Jacobian).
    strategy: shard blocks over this `tf.distribute.Strategy`'s replicas.
    log: progress printer: a line with an ETA every few seconds (None:
      silent).

  Returns:
    (n, P) float32, row i = d f_l(x_i) / d theta.

  Raises:
    AfterKernelError: bad inputs (not one finite (n, ...) array of the
      model's input shape), bad method/output index, or NaN/inf features.
  """
  images = _as_inputs(images, model, 'images')
  out = np.empty((len(images), count_parameters(model)), np.float32)
  start = 0
  counter = progress.Counter('gradient features of examples', len(images),
                             log)
  for block in iter_feature_blocks(model, images, batch_size, method,
                                   output_index=output_index,
                                   strategy=strategy):
    out[start:start + len(block)] = block
    start += len(block)
    counter.update(start)
  return out


def per_example_jacobians(model: keras.Model,
                          inputs: np.ndarray,
                          batch_size: int = DEFAULT_BATCH_SIZE,
                          method: str = DEFAULT_FEATURE_METHOD,
                          output_indices: Optional[Sequence[int]] = None,
                          *,
                          strategy: Optional[tf.distribute.Strategy] = None
                          ) -> np.ndarray:
  """All per-example Jacobians J(x_i) = d f(x_i) / d theta, (n, L, P).

  Memory is n L P float32 values; for large nets prefer the traced Gram of
  `kernels.empirical.model_gram`, which holds one output's (n, P) block at a
  time.

  Args:
    model: any Keras model (Sequential, functional or subclassed) returning
      one (batch, ...) tensor; trailing output axes are flattened to L.
    inputs: (n, ...) inputs.
    batch_size: examples per block.
    method: one of `FEATURE_METHODS`.
    output_indices: compute only these outputs (in this order); default all.
    strategy: shard blocks over this strategy's replicas.

  Returns:
    (n, L', P) float32, L' = len(output_indices) or L.
  """
  inputs = _as_inputs(inputs, model)
  total = num_outputs(model, inputs)
  indices = list(range(total)) if output_indices is None else list(
      output_indices)
  for index in indices:
    errors.require(isinstance(index, (int, np.integer)) and 0 <= index < total,
                   f'output index {index!r} is not in [0, {total})')
  out = np.empty((len(inputs), len(indices), count_parameters(model)),
                 np.float32)
  for position, index in enumerate(indices):
    out[:, position] = gradient_features(model, inputs, batch_size, method,
                                         output_index=index, strategy=strategy)
  return out


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
                        batch_size: int = DEFAULT_BATCH_SIZE,
                        *,
                        output_index: Optional[int] = None,
                        strategy: Optional[tf.distribute.Strategy] = None,
                        log: Optional[Callable[[str], None]] = None
                        ) -> StructuredFeatures:
  """Gradient features with Dense layers factored (method 'structured').

  Args:
    model: a chain model (see `supports_per_layer`).
    images: (n, ...) float32 inputs.
    batch_size: examples per batched forward/backward pass (per replica
      when sharded).
    output_index: l for a model with L outputs; None requires one output.
    strategy: shard each block over this `tf.distribute.Strategy`'s
      replicas (each computes its examples' factors, gathered in order);
      None: the strategy whose scope is entered; one replica: one device.
    log: progress printer (a line with an ETA every few seconds).

  Returns:
    The factored features of `images`; `kernels.grams.structured_gram`
    turns two of them into a Gram matrix equal to phi_a phi_b^T.

  Raises:
    AfterKernelError: unsupported model or bad input.
  """
  images = _as_inputs(images, model, 'images')
  _blocks.check_inputs(model, images, batch_size)
  index = tf.constant(_check_output_index(model, images, output_index),
                      tf.int32)
  dense_parts, other_parts = [], []
  start = 0
  counter = progress.Counter('factored features of examples', len(images),
                             log)
  for dense, other in _structured_blocks(model, images, batch_size, index,
                                         strategy):
    dense_parts.append([(h, g) for h, g in dense])
    other_parts.append(other)
    for part in [other] + [x for pair in dense for x in pair]:
      _blocks.require_finite_features(model, part, start)
    start += len(other)
    counter.update(start)
  dense = [(np.concatenate([block[i][0] for block in dense_parts]),
            np.concatenate([block[i][1] for block in dense_parts]))
           for i in range(len(dense_parts[0]))]
  return StructuredFeatures(dense=dense,
                            other=np.concatenate(other_parts))


def _structured_blocks(model, images, batch_size, index, strategy):
  """(dense factors, other rows) of consecutive blocks, as numpy."""
  strategy = _current(strategy)
  if _sharded(strategy):
    yield from _sharded_blocks(model, images, batch_size, 'structured', index,
                               strategy)
    return
  block_fn = _blocks.block_fn(model, 'structured', images.shape[1:])
  for start in range(0, len(images), batch_size):
    yield tf.nest.map_structure(
        lambda t: t.numpy(),
        block_fn(tf.constant(images[start:start + batch_size]), index))


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
  images = _as_inputs(images, model, 'images')
  _blocks.check_inputs(model, images, batch_size)
  _check_output_index(model, images, None)
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
