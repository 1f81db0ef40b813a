"""From a model to its empirical NTK Gram: the engine, then `grams`.

The one place that goes from a network to a Gram matrix: gradient features
(or Dense-layer factors) from the gradient engine (`kernels.features`), then
the Gram from `kernels.grams`; neither of those two knows the other.

  * `model_gram(model, x_a, x_b, kind, method)`: the empirical NTK of a model
    with L outputs, traced over outputs (kind 'trace', (n, m); for L = 1 the
    scalar FNTK / after kernel) or all output pairs ('full', (n L, m L)).
    Traced Grams are accumulated output by output, so one output's (n, P)
    gradients exist at a time. method 'structured' keeps Dense layers
    factored (chain models only).
  * `model_train_and_cross_gram`: the training Gram and the (test x train)
    cross-Gram of one network, features of each set taken once; with a
    memory budget the Grams are streamed (`grams.train_and_cross_gram`).
  * Kernel sources with a `gram(x_a, x_b=None)` method, what the kernel fits
    of `afterkernel.kernel_fit` take: `EmpiricalNTK` (a model snapshot) and
    `FunctionKernel` (any fn(x_a, x_b), e.g. the infinite-width NTK), and
    `kernel_grams(kernel, x_train, x_test)`.
"""

import contextlib
from typing import Callable, Iterator, Optional, Protocol, Tuple

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import grams

# Grams default to Dense-layer factors where they save work (fully connected
# nets), else to feature rows (`features.structured_pays`).
DEFAULT_GRAM_METHOD = 'auto'


def _concrete_gram_method(model: keras.Model, method: str) -> str:
  """'auto' -> 'structured' where it saves work (`features.structured_pays`),
  else the method itself (feature rows)."""
  errors.require_choice(method, features.METHODS, 'feature method')
  if method == 'auto' and features.structured_pays(model):
    return 'structured'
  return method


def _output_features(model, inputs, output_index, batch_size, method,
                     strategy):
  if method == 'structured':
    return features.structured_features(model, inputs, batch_size,
                                        output_index=output_index,
                                        strategy=strategy)
  return features.gradient_features(model, inputs, batch_size, method,
                                    output_index=output_index,
                                    strategy=strategy)


def _gram_of(method, features_a, features_b=None) -> np.ndarray:
  if method == 'structured':
    return grams.structured_gram(features_a, features_b)
  return grams.gram(features_a, features_b)


def model_gram(model: keras.Model,
               inputs_a: np.ndarray,
               inputs_b: Optional[np.ndarray] = None,
               kind: str = grams.DEFAULT_KERNEL_KIND,
               batch_size: int = features.DEFAULT_BATCH_SIZE,
               method: str = DEFAULT_GRAM_METHOD,
               strategy: Optional[tf.distribute.Strategy] = None
               ) -> np.ndarray:
  """Empirical NTK Gram of a model with L outputs, traced or full.

  For kind='trace', K = sum_l G_l with G_l[i, j] = J_l(x_i).J_l(x_j),
  accumulated output by output (`grams.traced_gram`).

  Args:
    model: any Keras model returning one (batch, ...) tensor.
    inputs_a: (n, ...) inputs (rows).
    inputs_b: (m, ...) inputs (columns); None means `inputs_a`.
    kind: one of `grams.KERNEL_KINDS`.
    batch_size: examples per block.
    method: one of `features.METHODS`; 'auto' is 'structured' where the
      Dense factors save work (`features.structured_pays`; sharded too),
      else feature rows.
    strategy: shard the gradient blocks over this strategy's replicas.

  Returns:
    (n, m) for 'trace', (n L, m L) for 'full'; float32.
  """
  grams.require_kind(kind)
  inputs_a = features.as_inputs(inputs_a, model, 'inputs_a')
  if inputs_b is not None:
    inputs_b = features.as_inputs(inputs_b, model, 'inputs_b')
  return _finite(_model_gram(model, inputs_a, inputs_b, kind, batch_size,
                             method, strategy), model)


def empirical_ntk_fn(model: keras.Model,
                     kind: str = grams.DEFAULT_KERNEL_KIND,
                     batch_size: int = features.DEFAULT_BATCH_SIZE,
                     method: str = DEFAULT_GRAM_METHOD
                     ) -> Callable[..., np.ndarray]:
  """The model's empirical NTK as a function (x1, x2=None) -> Gram.

  The counterpart of neural-tangents' `nt.empirical_ntk_fn(f)` for a Keras
  model at its current weights: `empirical_ntk_fn(model)(x1, x2)` is
  `model_gram(model, x1, x2, kind, batch_size, method)`.

  Args:
    model: any Keras model returning one (batch, ...) tensor.
    kind: one of `grams.KERNEL_KINDS` ('trace' sums over outputs).
    batch_size: examples per block.
    method: one of `features.METHODS`.

  Returns:
    A function of (inputs_a, inputs_b=None).
  """
  grams.require_kind(kind)

  def ntk(inputs_a: np.ndarray,
          inputs_b: Optional[np.ndarray] = None) -> np.ndarray:
    return model_gram(model, inputs_a, inputs_b, kind, batch_size, method)

  return ntk


def _finite(gram_matrix: np.ndarray, model: keras.Model) -> np.ndarray:
  """The Gram, after one clear error if it has NaN/inf entries (finite
  features can still overflow float32 in the products)."""
  grams.require_finite_gram(gram_matrix,
                            f'the empirical NTK Gram of model {model.name!r}')
  return gram_matrix


def _model_gram(model, inputs_a, inputs_b, kind, batch_size, method,
                strategy) -> np.ndarray:
  """`model_gram` on checked inputs."""
  if kind == 'full':
    if _concrete_gram_method(model, method) == 'structured':
      return _structured_full_gram(model, inputs_a, inputs_b, batch_size,
                                   strategy)
    method = features.rows_method(method)
    jac_a = features.per_example_jacobians(model, inputs_a, batch_size, method,
                                           strategy=strategy)
    jac_b = (None if inputs_b is None else features.per_example_jacobians(
        model, inputs_b, batch_size, method, strategy=strategy))
    return grams.gram_from_jacobians(jac_a, jac_b, 'full')
  method = _concrete_gram_method(model, method)

  def output_grams():
    for index in range(features.num_outputs(model, inputs_a)):
      features_a = _output_features(model, inputs_a, index, batch_size,
                                    method, strategy)
      features_b = (None if inputs_b is None else _output_features(
          model, inputs_b, index, batch_size, method, strategy))
      yield _gram_of(method, features_a, features_b)

  return grams.traced_gram(output_grams())


def _structured_full_gram(model, inputs_a, inputs_b, batch_size, strategy
                          ) -> np.ndarray:
  """The (n L, m L) full Gram of a chain model from factored features.

  Block (l, k) = J_l(x_a) J_k(x_b)^T from each output's Dense-factored
  features (`grams.structured_gram`), at rows i L + l and columns j L + k
  as in `grams.gram_from_jacobians`; the (n, L, P) Jacobians never exist.
  """
  count = features.num_outputs(model, inputs_a)

  def per_output(inputs):
    return [features.structured_features(model, inputs, batch_size,
                                         output_index=index,
                                         strategy=strategy)
            for index in range(count)]

  rows = per_output(inputs_a)
  columns = rows if inputs_b is None else per_output(inputs_b)
  out = np.empty((len(rows[0].other) * count,
                  len(columns[0].other) * count), np.float32)
  for l, row in enumerate(rows):
    for k, column in enumerate(columns):
      out[l::count, k::count] = grams.structured_gram(row, column)
  return out


def model_train_and_cross_gram(
    model: keras.Model,
    x_train: np.ndarray,
    x_test: np.ndarray,
    batch_size: int = features.DEFAULT_BATCH_SIZE,
    method: str = DEFAULT_GRAM_METHOD,
    strategy: Optional[tf.distribute.Strategy] = None,
    memory_budget_gb: Optional[float] = None,
    log: Optional[Callable[[str], None]] = None
) -> Tuple[np.ndarray, np.ndarray]:
  """(K(x_train, x_train), K(x_test, x_train)) of a scalar-output model.

  The training features are taken once and used for both Grams. 'structured',
  or 'auto' where factors save work (`features.structured_pays`, e.g. the
  fully connected net), uses the factored Dense features (sharded over
  `strategy` too) if they fit in `memory_budget_gb` (or there is no
  budget); otherwise 'auto' uses feature rows (e.g. per_layer for the
  VGG-like net), streamed under the budget (`grams.train_and_cross_gram`),
  and 'structured' is refused in one line.

  Args:
    model: a Keras model with one scalar output.
    x_train: (n, ...) training inputs.
    x_test: (m, ...) test inputs.
    batch_size: examples per block.
    method: one of `features.METHODS`.
    strategy: shard gradient blocks over this strategy's replicas.
    memory_budget_gb: GiB the held features may take; None = no limit.
    log: optional progress printer.

  Returns:
    (n, n) and (m, n) float32 Grams.
  """
  errors.require_choice(method, features.METHODS, 'feature method')
  x_train = features.as_inputs(x_train, model, 'x_train')
  x_test = features.as_inputs(x_test, model, 'x_test')
  return tuple(_finite(g, model) for g in _train_and_cross_gram(
      model, x_train, x_test, batch_size, method, strategy, memory_budget_gb,
      log))


def _train_and_cross_gram(model, x_train, x_test, batch_size, method,
                          strategy, memory_budget_gb, log):
  """`model_train_and_cross_gram` on checked inputs."""
  num_features = features.count_parameters(model)
  factored = _concrete_gram_method(model, method) == 'structured'
  if factored and memory_budget_gb is not None:
    # What the factored path holds: Dense factors and the other layers'
    # gradient rows of every train and test example.
    held_gb = (len(x_train) + len(x_test)) * (
        features.factored_size(model) or num_features) * 4 / 2**30
    factored = held_gb <= memory_budget_gb
    if not factored and method == 'structured':
      raise errors.AfterKernelError(
          f"feature method 'structured' would hold {held_gb:.3g} GiB of "
          f'Dense factors and layer gradients, above memory_budget_gb='
          f"{memory_budget_gb:g}; use 'auto' to stream feature rows under "
          'the budget')
  if factored:
    # Dense layers' Gram contributions from factors: same numbers, far less
    # work for fully connected nets.
    train = features.structured_features(model, x_train, batch_size,
                                         strategy=strategy, log=log)
    return (grams.structured_gram(train),
            grams.structured_gram(
                features.structured_features(model, x_test, batch_size,
                                             strategy=strategy, log=log),
                train))
  method = features.rows_method(method)
  return grams.train_and_cross_gram(
      lambda x: features.gradient_features(model, x, batch_size, method,
                                           strategy=strategy, log=log),
      num_features, x_train, x_test, memory_budget_gb=memory_budget_gb,
      log=log)


class Kernel(Protocol):
  """Anything that can produce Gram matrices K(x_a, x_b)."""

  def gram(self, x_a: np.ndarray, x_b: Optional[np.ndarray] = None
          ) -> np.ndarray:
    """(n_a, n_b) float64 K(x_a[i], x_b[j]); x_b=None means x_a (symmetric)."""


class EmpiricalNTK:
  """The empirical NTK phi(u).phi(v) of a model frozen at construction time.

  phi(x) = d f(x) / d theta over every trainable parameter (see
  `afterkernel.kernels.features`). The model is cloned with a copy of all
  its weights (trainable and not, e.g. BatchNorm statistics), so training
  the original afterwards does not change this kernel: construct it at
  initialization for the NTK, after training for the after kernel, at step
  t for K^t. Models Keras cannot clone (subclassed ones, unregistered
  custom layers) are kept as they are with a copy of their weights, swapped
  in while a Gram is computed and restored afterwards.

  Chain models whose Dense factors save work (`features.structured_pays`,
  e.g. fully connected nets) use the factored Dense features and
  `grams.structured_gram` (n^2 (d_in + d_out) per Dense layer instead of
  n^2 d_in d_out); others use full gradient features (`method`) and
  `grams.gram`. Both give the same Gram to float32 rounding (`model_gram`
  with method 'structured' or `method`).
  """

  def __init__(self, model: keras.Model,
               batch_size: int = features.DEFAULT_BATCH_SIZE,
               method: str = features.DEFAULT_FEATURE_METHOD):
    """Snapshots `model`.

    Args:
      model: a Keras model with one scalar output per example.
      batch_size: examples per feature-extraction block (memory vs speed;
        unrelated to the training batch size).
      method: feature extraction method, one of `features.FEATURE_METHODS`;
        'auto' takes the Dense factors where they save work
        (`features.structured_pays`), else feature rows.

    Raises:
      AfterKernelError: bad batch_size or method.
    """
    errors.require_positive(batch_size, 'batch_size')
    errors.require(method in features.FEATURE_METHODS,
                   f'method must be one of {features.FEATURE_METHODS}, got '
                   f'{method!r}')
    self.batch_size = int(batch_size)
    self.method = method
    self._weights = None
    try:
      self._model = keras.models.clone_model(model)
    except (ValueError, TypeError, NotImplementedError, AttributeError):
      # Subclassed models (and unregistered custom layers) cannot be cloned:
      # keep the model itself and a copy of every weight, swapped in for
      # each Gram and back out afterwards -- the same function as a clone.
      self._model = model
      self._weights = [np.array(w, copy=True) for w in model.get_weights()]
    else:
      # clone_model builds fresh weights: copy every value (trainable or
      # not).
      self._model.set_weights(model.get_weights())
    self.structured = features.structured_pays(self._model)

  @contextlib.contextmanager
  def _frozen_model(self) -> Iterator[keras.Model]:
    """The model at the snapshot's weights (swapped in if not a clone)."""
    if self._weights is None:
      yield self._model
      return
    current = self._model.get_weights()
    self._model.set_weights(self._weights)
    try:
      yield self._model
    finally:
      self._model.set_weights(current)

  @property
  def _method(self) -> str:
    return ('structured' if self.structured and self.method == 'auto'
            else self.method)

  def gram(self, x_a: np.ndarray, x_b: Optional[np.ndarray] = None
          ) -> np.ndarray:
    """K(x_a, x_b) as float64 (float32 products); x_b=None: symmetric Gram."""
    with self._frozen_model() as model:
      return np.asarray(model_gram(model, x_a, x_b,
                                   batch_size=self.batch_size,
                                   method=self._method), dtype=np.float64)

  def train_and_cross_gram(self, x_train: np.ndarray, x_test: np.ndarray
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """(K(x_train, x_train), K(x_test, x_train)); train features taken once."""
    with self._frozen_model() as model:
      train_gram, cross_gram = model_train_and_cross_gram(
          model, x_train, x_test, batch_size=self.batch_size,
          method=self._method)
    return (np.asarray(train_gram, dtype=np.float64),
            np.asarray(cross_gram, dtype=np.float64))


class FunctionKernel:
  """A kernel given by a function fn(x_a, x_b) -> (n_a, n_b) Gram.

  For example the infinite-width NTK:
  `FunctionKernel(functools.partial(infinite_ntk.ntk_gram, depth=4,
  weight_std=math.sqrt(2), bias_std=0.0))`. A symmetric Gram is requested as
  fn(x_a, x_a) (so fn need not accept None) and symmetrized.
  """

  def __init__(self, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]):
    errors.require(callable(fn), f'FunctionKernel needs a callable, got {fn!r}')
    self.fn = fn

  def gram(self, x_a: np.ndarray, x_b: Optional[np.ndarray] = None
          ) -> np.ndarray:
    """fn(x_a, x_b) as float64, checked for shape and finiteness."""
    symmetric = x_b is None
    x_b = x_a if symmetric else x_b
    out = np.asarray(self.fn(x_a, x_b), dtype=np.float64)
    expected = (len(x_a), len(x_b))
    errors.require(out.shape == expected,
                   f'kernel function returned shape {out.shape}, expected '
                   f'{expected} (one row per x_a, one column per x_b)')
    grams.require_finite_gram(out, 'kernel function output')
    if symmetric:
      out = (out + out.T) / 2
    return out


def kernel_grams(kernel: Kernel, x_train: np.ndarray, x_test: np.ndarray
                 ) -> Tuple[np.ndarray, np.ndarray]:
  """The (train_gram, cross_gram) pair every fit takes.

  Args:
    kernel: a `Kernel` (e.g. `EmpiricalNTK`, `FunctionKernel`).
    x_train: (n, ...) training inputs.
    x_test: (m, ...) test inputs.

  Returns:
    train_gram (n, n) K(x_train, x_train) and cross_gram (m, n)
    K(x_test, x_train), both float64.
  """
  if hasattr(kernel, 'train_and_cross_gram'):
    train_gram, cross_gram = kernel.train_and_cross_gram(x_train, x_test)
  else:
    train_gram, cross_gram = kernel.gram(x_train), kernel.gram(x_test, x_train)
  return (np.asarray(train_gram, dtype=np.float64),
          np.asarray(cross_gram, dtype=np.float64))
