"""Peer libraries' features + Gram, measured beside afterkernel's (issue 3).

Each peer turns images (numpy, NHWC) into the n x n float32 Gram
K[i, j] = J(x_i) . J(x_j), J(x) = d f(x) / d theta the Jacobian of the scalar
logit with respect to every parameter, of the SAME network as an afterkernel
Keras model: the peer rebuilds the model's chain of layers in its framework
and copies the Keras weights in, so its Gram must equal afterkernel's to
float32 rounding (`gram_bench` checks it on every run).

Peers (`PEERS`, selected by `PEER_SETS`):
  * 'TF vectorized_map + matmul': `tf.vectorized_map` over examples of a
    per-example `GradientTape.gradient` (all trainable variables, flattened
    and concatenated) inside a `tf.function`, blocks of `batch_size`, then
    one `tf.matmul(phi, phi, transpose_b=True)`. Pure TF: always available.
  * 'torch.func vmap(jacrev)': `torch.func.functional_call` of a
    `torch.nn.Sequential` under `vmap(jacrev(.))` over examples, blocks of
    `batch_size` into an (n, P) tensor, then `phi @ phi.T`. torch's
    intra-op threads are set to TensorFlow's (`torch_threads`).
  * 'neural-tangents (structured derivatives)' and '(Jacobian contraction)':
    `nt.empirical_ntk_fn(f, trace_axes=(), vmap_axes=0, implementation=...)`
    of a plain-JAX definition of the net (NHWC / HWIO, as Keras), jitted and
    called once on all n examples (neural-tangents computes each example's
    derivatives once; blocks of (x1, x2) pairs would recompute them), then
    `block_until_ready`.
A peer whose package is missing is reported as 'not installed (pip install
...)' by `unavailable_reason`, never dropped.

Supported models: chains of Conv2D (stride 1, odd square kernel, 'same' or
'valid'), MaxPooling2D ('valid'), Flatten and Dense, each with ReLU or no
activation: the VGG-like and fully connected nets of `afterkernel.models`.
The rebuilt nets' parameter counts are asserted equal to the Keras model's.

neural-tangents 0.6.5 (its latest release) reads `jax.interpreters.ad.config`
and `.source_info_util`, which jax dropped in 0.4.26, while jax < 0.4.26
cannot run with NumPy 2; `import_neural_tangents` restores the two aliases
(to `jax.config` and `jax._src.source_info_util`, the objects they named)
before importing it. Tested with jax 0.4.30.
"""

import dataclasses
import importlib
import importlib.metadata
import os
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel import models

TF_VECTORIZED_MAP = 'TF vectorized_map + matmul'
TORCH_FUNC = 'torch.func vmap(jacrev)'
NT_STRUCTURED = 'neural-tangents (structured derivatives)'
NT_JACOBIAN = 'neural-tangents (Jacobian contraction)'

# `pip install -e '.[peers]'` installs these (see setup.py).
TORCH_INSTALL = 'pip install torch==2.13.0'
NT_INSTALL = ('pip install neural-tangents==0.6.5 jax==0.4.30 jaxlib==0.4.30 '
              'tf2jax==0.3.6')
# Largest max |K_peer - K_ours| / max |K_ours| accepted as the same Gram: a
# float32 sum over P ~ 1e5 products in another order differs by ~1e-6.
GRAM_TOLERANCE = 1e-4

GramFn = Callable[[np.ndarray], np.ndarray]


@dataclasses.dataclass(frozen=True)
class Peer:
  """One peer implementation of features + Gram.

  Attributes:
    name: label in tables.
    modules: modules that must import for the peer to run.
    install: the pip command that installs them.
    make: (Keras model, block size) -> a function images -> (n, n) float32
      Gram of the same network (weights copied from the model).
  """
  name: str
  modules: Tuple[str, ...]
  install: str
  make: Callable[[keras.Model, int], GramFn]


# ----------------------------------------------------------------------------
# The model as a framework-neutral chain of layers.


@dataclasses.dataclass
class _Layer:
  """One layer of a supported chain.

  Attributes:
    kind: 'conv', 'pool', 'flatten' or 'dense'.
    weights: conv kernel (kh, kw, c_in, c_out) and bias; dense kernel
      (d_in, d_out) and bias; empty otherwise. Copies, float32.
    relu: whether a ReLU follows.
    padding: conv padding, 'same' or 'valid'.
    pool: pooling window (= stride).
    input_shape: shape of one example entering the layer (no batch axis).
  """
  kind: str
  weights: List[np.ndarray]
  relu: bool = False
  padding: str = 'valid'
  pool: int = 0
  input_shape: Tuple[int, ...] = ()


# Supported Keras layer classes (exact types: subclasses such as
# DepthwiseConv2D compute something else) -> `_Layer.kind`.
_KINDS = {keras.layers.Conv2D: 'conv', keras.layers.MaxPooling2D: 'pool',
          keras.layers.Flatten: 'flatten', keras.layers.Dense: 'dense'}


def _activation_is_relu(layer) -> bool:
  name = keras.activations.serialize(layer.activation)
  name = name if isinstance(name, str) else name.get('config', name)
  errors.require(name in ('relu', 'linear'),
                 f'peers support ReLU or no activation, layer {layer.name} '
                 f'has {name!r}')
  return name == 'relu'


def chain_layers(model: keras.Model) -> List[_Layer]:
  """The model's layers as a chain the peers can rebuild.

  Args:
    model: a Keras chain of Conv2D / MaxPooling2D / Flatten / Dense layers
      (the VGG-like or fully connected nets of `afterkernel.models`).

  Returns:
    The layers in order, with copies of their weights.

  Raises:
    AfterKernelError: any other layer or option.
  """
  chain = []
  for layer in model.layers:
    if isinstance(layer, keras.layers.InputLayer):
      continue
    shape = tuple(int(d) for d in layer.input.shape[1:])
    weights = [np.array(w, np.float32) for w in layer.get_weights()]
    kind = _KINDS.get(type(layer))
    if kind == 'conv':
      kernel_size = tuple(layer.kernel_size)
      errors.require(
          tuple(layer.strides) == (1, 1) and
          tuple(layer.dilation_rate) == (1, 1) and layer.groups == 1 and
          layer.use_bias and layer.data_format == 'channels_last' and
          kernel_size[0] == kernel_size[1] and kernel_size[0] % 2 == 1,
          f'peers support stride-1 odd square Conv2D with bias, layer '
          f'{layer.name} is not one')
      chain.append(_Layer('conv', weights, _activation_is_relu(layer),
                          padding=layer.padding, input_shape=shape))
    elif kind == 'pool':
      size = tuple(layer.pool_size)
      errors.require(
          size[0] == size[1] and tuple(layer.strides) == size and
          layer.padding == 'valid',
          f'peers support square valid max-pooling with stride = window, '
          f'layer {layer.name} is not one')
      chain.append(_Layer('pool', [], pool=size[0], input_shape=shape))
    elif kind == 'flatten':
      chain.append(_Layer('flatten', [], input_shape=shape))
    elif kind == 'dense':
      errors.require(layer.use_bias,
                     f'peers need Dense with bias, layer {layer.name}')
      chain.append(_Layer('dense', weights, _activation_is_relu(layer),
                          input_shape=shape))
    else:
      raise errors.AfterKernelError(
          f'peers do not support layer {layer.name} '
          f'({type(layer).__name__})')
  return chain


def _require_parameter_count(model: keras.Model, count: int,
                             framework: str) -> None:
  expected = models.count_parameters(model)
  errors.require(count == expected,
                 f'the {framework} net has {count} parameters, the Keras '
                 f'model {expected}')


# ----------------------------------------------------------------------------
# TensorFlow: vectorized_map + matmul.


def tf_vectorized_map_gram(model: keras.Model, batch_size: int) -> GramFn:
  """tf.vectorized_map of per-example tape.gradient, then one tf.matmul.

  Args:
    model: the Keras model (used as is: the same weights).
    batch_size: examples per vectorized_map call.

  Returns:
    images -> (n, n) float32 Gram.
  """
  variables = model.trainable_variables

  def one_example(image):
    with tf.GradientTape() as tape:
      logit = model(image[tf.newaxis], training=False)[0, 0]
    gradients = tape.gradient(logit, variables)
    return tf.concat([tf.reshape(g, [-1]) for g in gradients], axis=0)

  @tf.function(reduce_retracing=True)
  def block_jacobian(images):
    return tf.vectorized_map(one_example, images)

  @tf.function(reduce_retracing=True)
  def gram_of(phi):
    return tf.matmul(phi, phi, transpose_b=True)

  def gram(images: np.ndarray) -> np.ndarray:
    phi = tf.concat([
        block_jacobian(tf.constant(images[start:start + batch_size]))
        for start in range(0, len(images), batch_size)], axis=0)
    return gram_of(phi).numpy()

  return gram


# ----------------------------------------------------------------------------
# torch.func: vmap(jacrev).


def torch_threads() -> int:
  """TensorFlow's intra-op thread count (0 = its default: every core)."""
  return tf.config.threading.get_intra_op_parallelism_threads() or (
      len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity')
      else os.cpu_count())


def torch_sequential(model: keras.Model):
  """A torch.nn.Sequential (NCHW) computing the Keras model, weights copied.

  Conv kernels go from Keras' (kh, kw, c_in, c_out) to torch's (c_out, c_in,
  kh, kw); Dense kernels from (d_in, d_out) to (d_out, d_in); the rows of a
  Dense kernel right after Flatten are reordered from Keras' (h, w, c)
  flattening to torch's (c, h, w).
  """
  import torch  # pylint: disable=g-import-not-at-top
  modules = []
  flattened_from = None
  for layer in chain_layers(model):
    if layer.kind == 'conv':
      kernel, bias = layer.weights
      conv = torch.nn.Conv2d(kernel.shape[2], kernel.shape[3],
                             kernel.shape[0], padding=layer.padding)
      conv.weight.data = torch.from_numpy(
          np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))
      conv.bias.data = torch.from_numpy(bias)
      modules.append(conv)
    elif layer.kind == 'pool':
      modules.append(torch.nn.MaxPool2d(layer.pool, layer.pool))
    elif layer.kind == 'flatten':
      modules.append(torch.nn.Flatten())
      flattened_from = layer.input_shape
    else:
      kernel, bias = layer.weights
      if flattened_from is not None and len(flattened_from) == 3:
        height, width, channels = flattened_from
        kernel = kernel.reshape(height, width, channels, -1).transpose(
            2, 0, 1, 3).reshape(kernel.shape)
      flattened_from = None
      dense = torch.nn.Linear(kernel.shape[0], kernel.shape[1])
      dense.weight.data = torch.from_numpy(np.ascontiguousarray(kernel.T))
      dense.bias.data = torch.from_numpy(bias)
      modules.append(dense)
    if layer.relu:
      modules.append(torch.nn.ReLU())
  net = torch.nn.Sequential(*modules).eval()
  _require_parameter_count(model, sum(p.numel() for p in net.parameters()),
                           'torch')
  return net


def torch_func_gram(model: keras.Model, batch_size: int) -> GramFn:
  """torch.func vmap(jacrev(functional_call)) per block, then phi @ phi.T.

  Sets torch's intra-op threads to `torch_threads()` (process-wide).

  Args:
    model: the Keras model whose weights are copied.
    batch_size: examples per vmap call.

  Returns:
    images (NHWC) -> (n, n) float32 Gram.
  """
  import torch  # pylint: disable=g-import-not-at-top
  from torch import func  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(torch_threads())
  net = torch_sequential(model)
  params = {name: p.detach() for name, p in net.named_parameters()}
  names = list(params)
  num_parameters = sum(p.numel() for p in params.values())

  def logit(parameters, image):
    return func.functional_call(net, parameters, (image[None],))[0, 0]

  per_example_jacobian = func.vmap(func.jacrev(logit), in_dims=(None, 0))

  def gram(images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(np.ascontiguousarray(
        np.moveaxis(images, -1, 1) if images.ndim == 4 else images))
    phi = torch.empty((len(images), num_parameters), dtype=torch.float32)
    with torch.no_grad():
      for start in range(0, len(images), batch_size):
        jacobian = per_example_jacobian(params, x[start:start + batch_size])
        phi[start:start + batch_size] = torch.cat(
            [jacobian[name].reshape(len(jacobian[name]), -1)
             for name in names], dim=1)
      return (phi @ phi.T).numpy()

  return gram


# ----------------------------------------------------------------------------
# neural-tangents: empirical_ntk_fn on a plain-JAX net.


def import_neural_tangents():
  """Imports neural_tangents, restoring the jax aliases 0.6.5 still reads."""
  import jax  # pylint: disable=g-import-not-at-top
  from jax.interpreters import ad  # pylint: disable=g-import-not-at-top
  if not hasattr(ad, 'config'):
    ad.config = jax.config
  if not hasattr(ad, 'source_info_util'):
    from jax._src import source_info_util  # pylint: disable=g-import-not-at-top
    ad.source_info_util = source_info_util
  return importlib.import_module('neural_tangents')


def jax_apply_fn(model: keras.Model) -> Tuple[Callable, List[Dict[str, Any]]]:
  """f(params, images) -> (n, 1) logits in plain JAX, and the Keras weights.

  Layouts are Keras' (NHWC images, HWIO kernels, (d_in, d_out) dense
  kernels), so the weights are used as they are.

  Returns:
    (apply function, params: one {'kernel', 'bias'} dict per conv / dense).
  """
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from jax import lax  # pylint: disable=g-import-not-at-top
  chain = chain_layers(model)
  params = [{'kernel': jnp.asarray(layer.weights[0]),
             'bias': jnp.asarray(layer.weights[1])}
            for layer in chain if layer.kind in ('conv', 'dense')]
  _require_parameter_count(
      model, sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(
          params)), 'JAX')

  def apply(parameters, images):
    x = images
    weights = iter(parameters)
    for layer in chain:
      if layer.kind == 'conv':
        w = next(weights)
        x = lax.conv_general_dilated(
            x, w['kernel'], (1, 1), layer.padding.upper(),
            dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + w['bias']
      elif layer.kind == 'pool':
        x = lax.reduce_window(x, -jnp.inf, lax.max,
                              (1, layer.pool, layer.pool, 1),
                              (1, layer.pool, layer.pool, 1), 'VALID')
      elif layer.kind == 'flatten':
        x = x.reshape(x.shape[0], -1)
      else:
        w = next(weights)
        x = x @ w['kernel'] + w['bias']
      if layer.relu:
        x = jax.nn.relu(x)
    return x

  return apply, params


def _neural_tangents_gram(model: keras.Model, implementation_name: str
                          ) -> GramFn:
  import jax  # pylint: disable=g-import-not-at-top
  nt = import_neural_tangents()
  apply, params = jax_apply_fn(model)
  kernel_fn = jax.jit(nt.empirical_ntk_fn(
      apply, trace_axes=(), vmap_axes=0,
      implementation=getattr(nt.NtkImplementation, implementation_name)))

  def gram(images: np.ndarray) -> np.ndarray:
    k = kernel_fn(images, None, params).block_until_ready()
    return np.asarray(k, np.float32).reshape(len(images), len(images))

  return gram


def nt_structured_gram(model: keras.Model, batch_size: int) -> GramFn:
  """neural-tangents' STRUCTURED_DERIVATIVES NTK on all n at once.

  Args:
    model: the Keras model whose weights are used.
    batch_size: unused (neural-tangents gets all examples in one call).

  Returns:
    images -> (n, n) float32 Gram.
  """
  del batch_size
  return _neural_tangents_gram(model, 'STRUCTURED_DERIVATIVES')


def nt_jacobian_gram(model: keras.Model, batch_size: int) -> GramFn:
  """neural-tangents' JACOBIAN_CONTRACTION NTK on all n at once.

  Args:
    model: the Keras model whose weights are used.
    batch_size: unused (neural-tangents gets all examples in one call).

  Returns:
    images -> (n, n) float32 Gram.
  """
  del batch_size
  return _neural_tangents_gram(model, 'JACOBIAN_CONTRACTION')


# ----------------------------------------------------------------------------
# Registry.


PEERS = {
    TF_VECTORIZED_MAP: Peer(TF_VECTORIZED_MAP, ('tensorflow',),
                            'pip install tensorflow', tf_vectorized_map_gram),
    TORCH_FUNC: Peer(TORCH_FUNC, ('torch',), TORCH_INSTALL, torch_func_gram),
    NT_STRUCTURED: Peer(NT_STRUCTURED, ('jax', 'neural_tangents'), NT_INSTALL,
                        nt_structured_gram),
    NT_JACOBIAN: Peer(NT_JACOBIAN, ('jax', 'neural_tangents'), NT_INSTALL,
                      nt_jacobian_gram),
}
# --peers choices: every peer, the always-available pure-TF one, or none.
PEER_SETS = {'all': tuple(PEERS), 'tf': (TF_VECTORIZED_MAP,), 'none': ()}


def unavailable_reason(peer: Peer) -> Optional[str]:
  """Why `peer` cannot run here ('not installed (pip install ...)'), or None."""
  for module in peer.modules:
    try:
      if module == 'neural_tangents':
        import_neural_tangents()
      else:
        importlib.import_module(module)
    except ModuleNotFoundError as error:
      return f'not installed: no module {error.name!r} ({peer.install})'
    except Exception as error:  # pylint: disable=broad-except
      return (f'import failed: {type(error).__name__}: {error} '
              f'({peer.install})')
  return None


def versions(names: Sequence[str] = ('torch', 'jax', 'jaxlib',
                                     'neural-tangents')) -> Dict[str, str]:
  """Installed versions of the peer packages ('not installed' otherwise)."""
  found = {}
  for name in names:
    try:
      found[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
      found[name] = 'not installed'
  return found


def max_relative_difference(gram: np.ndarray, reference: np.ndarray) -> float:
  """max |gram - reference| / max |reference| (inf if the shapes differ)."""
  gram = np.asarray(gram, np.float64)
  reference = np.asarray(reference, np.float64)
  if gram.shape != reference.shape:
    return float('inf')
  return float(np.max(np.abs(gram - reference)) / np.max(np.abs(reference)))


@dataclasses.dataclass
class GramCheck:
  """How a peer's Gram compares with afterkernel's.

  Attributes:
    max_relative_difference: max |K_peer - K_ours| / max |K_ours|, all n^2.
    kink_examples: examples set aside as at a ReLU / max-pool kink (see
      `compare_grams`).
    max_relative_difference_others: the same maximum over the Gram of the
      other examples.
    passed: whether the others agree to `GRAM_TOLERANCE` and the set-aside
      examples are at most `MAX_KINK_FRACTION` of n.
  """
  max_relative_difference: float
  kink_examples: int
  max_relative_difference_others: float
  passed: bool


# At most this fraction of the examples may be set aside as at a kink.
MAX_KINK_FRACTION = 0.01


def compare_grams(gram: np.ndarray, reference: np.ndarray,
                  tolerance: float = GRAM_TOLERANCE) -> GramCheck:
  """Checks that two Grams of the same network agree to float32 rounding.

  A ReLU pre-activation within float32 rounding of zero (we found one of
  4.9e-9 among the 61K of the VGG-like net on one noise image in 64) takes
  either branch depending on the summation order of the framework's
  convolution, so that example's gradient differs by ~1% between two
  correct float32 implementations, and so do its Gram row and column. Such
  examples are set aside greedily (the one with the most entries beyond
  `tolerance`, until none is left), at most `MAX_KINK_FRACTION` of n (at
  least 1); every entry between the remaining examples must agree to
  `tolerance` relative to max |reference|. A wrong weight layout or
  parameterization changes every row and fails.

  Args:
    gram: (n, n) peer Gram.
    reference: (n, n) afterkernel Gram.
    tolerance: largest accepted |difference| / max |reference|.

  Returns:
    The comparison.
  """
  gram = np.asarray(gram, np.float64)
  reference = np.asarray(reference, np.float64)
  if gram.shape != reference.shape:
    return GramCheck(float('inf'), 0, float('inf'), False)
  scale = np.max(np.abs(reference))
  difference = np.abs(gram - reference) / scale
  over = difference > tolerance
  keep = np.ones(len(reference), bool)
  limit = max(1, int(MAX_KINK_FRACTION * len(reference)))
  while (~keep).sum() < limit:
    counts = (over & keep[:, None] & keep[None, :]).sum(axis=1)
    if not counts.any():
      break
    keep[np.argmax(counts)] = False
  others = difference[np.ix_(keep, keep)]
  others_max = float(others.max()) if others.size else 0.0
  return GramCheck(float(difference.max()), int((~keep).sum()), others_max,
                   others_max <= tolerance)
