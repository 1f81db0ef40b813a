"""Kernel predictors: one API for every kernel source and every way to fit it.

The studies of Vyas et al. ("Limitations of the NTK for understanding
generalization in deep learning", 2022) compare a network with kernel
predictors built from it: the empirical NTK at initialization, the after
kernel, a kernel snapshotted at training step t and the infinite-width NTK.
This module separates the two halves of that comparison:

Kernel sources (anything with `gram(x_a, x_b=None) -> (n_a, n_b) Gram`):
  * `EmpiricalNTK(model)`: K(u, v) = phi(u).phi(v) with phi the gradient of
    the scalar output with respect to every trainable parameter, for the
    weights the model had WHEN THE KERNEL WAS BUILT (it keeps its own copy,
    so later training does not change it). At initialization this is the
    empirical NTK; after training it is the after kernel; at step t a
    snapshot K^t.
  * `FunctionKernel(fn)`: any fn(x_a, x_b) -> Gram, e.g. the infinite NTK
    `functools.partial(infinite_ntk.ntk_gram, depth=4, weight_std=...,
    bias_std=...)`.
`kernel_grams(kernel, x_train, x_test)` returns the (train, cross) Gram pair
every fit below takes.

Fits (`FIT_METHODS`), all on +-1 labels ({0, 1} are mapped 0 -> -1), all
returning a `FitResult`; f(x) = sum_i a_i K(x, x_i):
  * 'sgd': minibatch SGD with momentum on the kernel's linear model
    f(x) = phi(x).w, w_0 = 0, loss 1/2 mean_B (f - y)^2, i.e. the linearized
    network trained with the network's own batch size, learning rate and
    momentum (the study's "kernel trained like the network"), with optimal
    early stopping: the test error is evaluated at steps growing by a factor
    `eval_growth` (1.1 in the study) and the minimum is reported. Early
    stopping uses the TEST labels, as the study does; the curve is returned.
  * 'ridge': kernel ridge regression (K + lambda I) a = y, lambda chosen
    WITHOUT test labels by closed-form leave-one-out error, among ridges
    above the Gram's rounding-noise floor.
  * 'svm': the hard-margin SVM of `afterkernel.margin` (no bias).

Gram matrices are used in float64 (converted once if given float32).
"""

import dataclasses
import math
from typing import Callable, Optional, Protocol, Sequence, Tuple

import keras
import numpy as np

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import kernels
from afterkernel import margin

FIT_METHODS = ('sgd', 'ridge', 'svm')
# The study's evaluation schedule: steps 1, 2, ..., growing by 10% each time.
DEFAULT_EVAL_GROWTH = 1.1
# Relative ridges r (lambda = r * trace(K) / n): from interpolation (1e-8) to
# heavy shrinkage (10), 3 per decade; LOO picks one without test labels.
# Ridges below the Gram's rounding-noise floor (see `ridge_noise_floor`) are
# dropped: for float32-product Grams the grid starts near 1e-5 to 1e-4.
DEFAULT_RELATIVE_RIDGES = tuple(10.0**k for k in np.arange(-8.0, 1.01, 1 / 3))
# Rounding noise E of a Gram whose entries carry relative errors ~u is
# ||E||_2 ~ c u sqrt(n) ||K||_F / n (Wigner: 2 sigma sqrt(n), sigma ~ 2u |K_ij|,
# so c ~ 4-8). Measured c on float32-product Grams (n = 200-2000; random,
# low-rank, positive, duplicated and fast-decaying features): 3.5-33, higher
# for fast-decaying spectra whose rounding errors are coherent; 8 is typical.
GRAM_NOISE_FACTOR = 8.0
# lambda must exceed the noise estimate by this factor: K + lambda I >= 0.9
# lambda, and in the 14 cases above lambda_min was 2.6-23 ||E||, where test
# predictions from the float32 and the float64 Gram differed by <= 4% (>= 99%
# same sign).
RIDGE_NOISE_MARGIN = 10.0
# LOO MSEs within this relative distance of the minimum are ties (a float32
# Gram does not determine them better); the LARGEST tied ridge is chosen, the
# best-conditioned one.
LOO_TIE_RTOL = 1e-6
# A batch residual |f - y| above this (labels are +-1) means SGD diverged:
# every later evaluation is meaningless, so the run stops.
DIVERGENCE_THRESHOLD = 1e15


# ----------------------------------------------------------------------------
# Kernel sources.


class Kernel(Protocol):
  """Anything that can produce Gram matrices K(x_a, x_b)."""

  def gram(self, x_a: np.ndarray, x_b: Optional[np.ndarray] = None
          ) -> np.ndarray:
    """(n_a, n_b) float64 K(x_a[i], x_b[j]); x_b=None means x_a (symmetric)."""


def _require_finite_gram(gram: np.ndarray, what: str) -> None:
  bad = int(np.count_nonzero(~np.isfinite(gram)))
  errors.require(
      bad == 0,
      f'{what} has {bad} NaN/inf entries of {gram.size}; the network or kernel '
      'may have diverged, recompute it from a finite model')


class EmpiricalNTK:
  """The empirical NTK phi(u).phi(v) of a model frozen at construction time.

  phi(x) = d f(x) / d theta over every trainable parameter (see
  `afterkernel.kernels.features`). The model is cloned with a copy of all its weights
  (trainable and not, e.g. BatchNorm statistics), so training the original
  afterwards does not change this kernel: construct it at initialization for
  the NTK, after training for the after kernel, at step t for K^t. The model
  must be Sequential or functional (what `afterkernel.kernels.features` supports);
  its custom layers must be registered Keras serializables (as
  `architectures.NTKDense` is) so that it can be cloned.

  Chain models of Dense/Conv2D layers use the factored Dense features and
  `kernels.structured_gram` (n^2 (d_in + d_out) per Dense layer instead of
  n^2 d_in d_out); others use full gradient features and `kernels.gram`. Both
  give the same Gram to float32 rounding.
  """

  def __init__(self, model: keras.Model,
               batch_size: int = features.DEFAULT_BATCH_SIZE,
               method: str = features.DEFAULT_FEATURE_METHOD):
    """Snapshots `model`.

    Args:
      model: a Keras model with one scalar output per example.
      batch_size: examples per feature-extraction block (memory vs speed;
        unrelated to the training batch size).
      method: feature extraction method for non-chain models, one of
        `features.FEATURE_METHODS`.

    Raises:
      AfterKernelError: bad batch_size or method, or a model Keras cannot
        clone (subclassed models).
    """
    errors.require_positive(batch_size, 'batch_size')
    errors.require(method in features.FEATURE_METHODS,
                   f'method must be one of {features.FEATURE_METHODS}, got '
                   f'{method!r}')
    self.batch_size = int(batch_size)
    self.method = method
    try:
      self._model = keras.models.clone_model(model)
    except (ValueError, TypeError, NotImplementedError) as error:
      first_line = str(error).strip().split('\n')[0]
      raise errors.AfterKernelError(
          f'EmpiricalNTK cannot snapshot model {model.name!r} ({first_line}); '
          'use a Sequential or functional model with registered custom '
          'layers') from error
    # clone_model builds fresh weights: copy every value (trainable or not).
    self._model.set_weights(model.get_weights())
    self.structured = features.supports_per_layer(self._model)

  def _features(self, x: np.ndarray):
    if self.structured:
      return features.structured_features(self._model, x, self.batch_size)
    return features.gradient_features(self._model, x, self.batch_size,
                                      self.method)

  def _gram_of(self, features_a, features_b=None) -> np.ndarray:
    if self.structured:
      out = kernels.structured_gram(features_a, features_b)
    else:
      out = kernels.gram(features_a, features_b)
    return np.asarray(out, dtype=np.float64)

  def gram(self, x_a: np.ndarray, x_b: Optional[np.ndarray] = None
          ) -> np.ndarray:
    """K(x_a, x_b) as float64 (float32 products); x_b=None: symmetric Gram."""
    features_a = self._features(x_a)
    features_b = None if x_b is None else self._features(x_b)
    return self._gram_of(features_a, features_b)

  def train_and_cross_gram(self, x_train: np.ndarray, x_test: np.ndarray
                           ) -> Tuple[np.ndarray, np.ndarray]:
    """(K(x_train, x_train), K(x_test, x_train)); train features taken once."""
    train = self._features(x_train)
    test = self._features(x_test)
    return self._gram_of(train), self._gram_of(test, train)


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
    _require_finite_gram(out, 'kernel function output')
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


# ----------------------------------------------------------------------------
# Results.


@dataclasses.dataclass(frozen=True)
class EvaluationCurve:
  """Errors of the SGD iterate at the evaluated steps (all arrays aligned).

  Attributes:
    steps: (k,) int SGD steps after which the iterate was evaluated.
    test_error: (k,) fraction of test examples with sign(f) != y.
    test_mse: (k,) mean (f - y)^2 on the test set (no 1/2).
    train_error: (k,) as test_error, on the training set.
    train_mse: (k,) as test_mse, on the training set.
  """
  steps: np.ndarray
  test_error: np.ndarray
  test_mse: np.ndarray
  train_error: np.ndarray
  train_mse: np.ndarray


@dataclasses.dataclass(frozen=True)
class FitResult:
  """A fitted kernel predictor f(x) = sum_i dual_coef[i] K(x, x_i).

  MSEs are mean (f - y)^2 on +-1 labels (no 1/2); errors are the fraction of
  examples with sign(f) != y (f = 0 counts as the minus class).

  Attributes:
    method: one of `FIT_METHODS`.
    test_error: test error of the reported predictor ('sgd': at best_step).
    test_mse: its test MSE.
    train_error: its training error.
    train_mse: its training MSE.
    dual_coef: (n,) coefficients a of the reported predictor.
    test_predictions: (m,) f(x_test) of the reported predictor.
    best_step: 'sgd': the evaluated step with the lowest test error (first
      on ties); None otherwise.
    ridge: 'ridge': the chosen absolute lambda; None otherwise.
    curve: 'sgd': the `EvaluationCurve`; None otherwise.
    details: method-specific scalars ('sgd': final_* errors, diverged,
      steps_run; 'ridge': relative_ridge, loo_mse, loo_error and the grid's
      loo_mse by relative ridge; 'svm': margin, converged, iterations).
  """
  method: str
  test_error: float
  test_mse: float
  train_error: float
  train_mse: float
  dual_coef: np.ndarray
  test_predictions: np.ndarray
  best_step: Optional[int] = None
  ridge: Optional[float] = None
  curve: Optional[EvaluationCurve] = None
  details: dict = dataclasses.field(default_factory=dict)

  def to_record(self) -> dict:
    """Scalar fields and scalar details as one flat dict (a store record)."""
    record = {'method': self.method, 'test_error': self.test_error,
              'test_mse': self.test_mse, 'train_error': self.train_error,
              'train_mse': self.train_mse}
    if self.best_step is not None:
      record['best_step'] = self.best_step
    if self.ridge is not None:
      record['ridge'] = self.ridge
    for key, value in self.details.items():
      if isinstance(value, (bool, int, float, str, np.floating, np.integer,
                            np.bool_)):
        record[key] = value.item() if isinstance(value, np.generic) else value
    return record


# ----------------------------------------------------------------------------
# Input checks.


def _signed(labels, n: int, what: str) -> np.ndarray:
  """Labels in {0, 1} or {-1, +1} as float64 +-1 (0 -> -1), or raises."""
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  errors.require(labels.ndim == 1,
                 f'{what} must be 1-D, got shape {labels.shape}')
  errors.require(labels.shape[0] == n,
                 f'{what} has {labels.shape[0]} entries but the Gram has {n} '
                 'rows; pass one label per example')
  errors.require(n > 0, f'{what} is empty')
  errors.require(np.issubdtype(labels.dtype, np.number) or
                 labels.dtype == bool,
                 f'{what} must be numeric, got dtype {labels.dtype}')
  values = set(np.unique(labels).tolist())
  errors.require(
      values <= {0.0, 1.0} or values <= {-1.0, 1.0},
      f'{what} must take two values, {{0, 1}} or {{-1, +1}}, got '
      f'{sorted(values)[:5]}')
  return np.where(labels > 0, 1.0, -1.0)


def _checked_problem(train_gram, y_train, cross_gram, y_test):
  """float64 Grams and +-1 labels, validated (shapes, values, finiteness)."""
  train_gram = np.asarray(train_gram)
  cross_gram = np.asarray(cross_gram)
  errors.require(train_gram.ndim == 2 and
                 train_gram.shape[0] == train_gram.shape[1],
                 f'train_gram must be a square (n, n) matrix, got shape '
                 f'{train_gram.shape}')
  n = train_gram.shape[0]
  errors.require(cross_gram.ndim == 2 and cross_gram.shape[1] == n,
                 f'cross_gram must be (n_test, {n}) K(x_test, x_train), got '
                 f'shape {cross_gram.shape}')
  for gram, what in ((train_gram, 'train_gram'), (cross_gram, 'cross_gram')):
    errors.require(np.issubdtype(gram.dtype, np.number),
                   f'{what} must be numeric, got dtype {gram.dtype}')
    _require_finite_gram(gram, what)
  y_train = _signed(y_train, n, 'y_train')
  y_test = _signed(y_test, cross_gram.shape[0], 'y_test')
  return (np.asarray(train_gram, dtype=np.float64),
          np.asarray(cross_gram, dtype=np.float64), y_train, y_test)


def _error(predictions: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean(np.where(predictions > 0, 1.0, -1.0) != labels))


def _mse(predictions: np.ndarray, labels: np.ndarray) -> float:
  return float(np.mean((predictions - labels)**2))


# ----------------------------------------------------------------------------
# SGD with momentum, in the dual.


def eval_steps(max_steps: int, growth: float = DEFAULT_EVAL_GROWTH
               ) -> np.ndarray:
  """Steps round(growth^k) for k = 0, 1, ..., deduplicated, plus max_steps.

  Args:
    max_steps: the last step (always included).
    growth: factor > 1 between consecutive evaluation points.

  Returns:
    Increasing int64 steps starting at 1 and ending at max_steps.
  """
  errors.require_positive(max_steps, 'max_steps')
  errors.require(growth is not None and growth > 1,
                 f'eval_growth must be > 1, got {growth!r}')
  count = int(math.ceil(math.log(max_steps) / math.log(growth))) + 2
  steps = np.round(growth**np.arange(count)).astype(np.int64)
  steps = steps[steps <= max_steps]
  return np.unique(np.append(steps, max_steps))


def _batches(n: int, batch_size: int, rng: np.random.Generator):
  """Keras-fit-style minibatches: a fresh permutation per epoch, consecutive
  chunks of batch_size, the last chunk of an epoch possibly smaller."""
  while True:
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
      yield order[start:start + batch_size]


def fit_sgd(train_gram: np.ndarray,
            y_train: np.ndarray,
            cross_gram: np.ndarray,
            y_test: np.ndarray,
            *,
            learning_rate: float,
            batch_size: int,
            momentum: float,
            max_steps: int,
            eval_growth: float = DEFAULT_EVAL_GROWTH,
            seed: int = 0) -> FitResult:
  """SGD with momentum on the kernel's linear model, optimally early-stopped.

  The primal problem is f(x) = phi(x).w, w_0 = 0, minibatch loss
  L_B(w) = 1/(2|B|) sum_{i in B} (phi_i.w - y_i)^2 and Keras SGD momentum
  (nesterov=False):  v <- momentum v - lr grad L_B(w),  w <- w + v.
  Since grad L_B = Phi^T r with r_i = (f_i - y_i) / |B| on B and 0 elsewhere,
  w and v stay in the row space of Phi: w = Phi^T a, v = Phi^T u with

    u <- momentum u - lr r,   a <- a + u,

  exactly (tested against an explicit primal run). Each step needs only the
  batch predictions f_B = K[B, :] a: O(|B| n) work, no features. Batches are
  Keras-style epochs of a fresh random permutation (last batch of an epoch
  possibly smaller; batch_size > n means full batch).

  Test and training error and MSE are evaluated after the steps of
  `eval_steps(max_steps, eval_growth)`; the reported point is the one with
  the lowest test error (optimal early stopping with test labels, as in
  Vyas et al. 2022). A run whose coefficients blow up (learning rate too
  large for the kernel's top eigenvalue, lr lambda_max / n > 2 (1 + momentum)
  for full batch) stops with details['diverged'] = True; the best point
  before is reported.

  Args:
    train_gram: (n, n) K(x_train, x_train).
    y_train: (n,) labels in {0, 1} or {-1, +1}.
    cross_gram: (m, n) K(x_test, x_train).
    y_test: (m,) labels in {0, 1} or {-1, +1}.
    learning_rate: the network's SGD learning rate (> 0). For a network
      trained on mean (f - y)^2 without the 1/2, pass twice its rate.
    batch_size: the network's batch size (> 0).
    momentum: the network's momentum, in [0, 1).
    max_steps: number of SGD steps (> 0).
    eval_growth: factor > 1 between evaluation steps.
    seed: seed of the minibatch order.

  Returns:
    A `FitResult` with best_step and curve set.

  Raises:
    AfterKernelError: bad shapes, labels, non-finite Grams or bad
      hyper-parameters.
  """
  train_gram, cross_gram, y_train, y_test = _checked_problem(
      train_gram, y_train, cross_gram, y_test)
  errors.require_positive(learning_rate, 'learning_rate')
  errors.require_positive(batch_size, 'batch_size')
  errors.require(momentum is not None and 0 <= momentum < 1,
                 f'momentum must be in [0, 1), got {momentum!r}')
  steps_to_eval = eval_steps(max_steps, eval_growth)
  n = train_gram.shape[0]
  batch_size = min(int(batch_size), n)
  rng = np.random.default_rng(seed)
  batches = _batches(n, batch_size, rng)
  a = np.zeros(n)
  u = np.zeros(n)
  curve = {key: [] for key in ('steps', 'test_error', 'test_mse',
                               'train_error', 'train_mse')}
  best = None  # (test_error, step, a copy)
  diverged = False
  step = 0
  for target in steps_to_eval:
    while step < target:
      batch = next(batches)
      # einsum, not `@`: a (|B|, n) mat-vec is too small for threaded BLAS,
      # which was 5-10x slower on a busy 2-core machine.
      residual = np.einsum('ij,j->i', train_gram[batch], a) - y_train[batch]
      if not np.max(np.abs(residual)) < DIVERGENCE_THRESHOLD:  # NaN too.
        diverged = True
        break
      u *= momentum
      u[batch] -= (learning_rate / len(batch)) * residual
      a += u
      step += 1
    if diverged:
      break
    train_predictions = train_gram @ a
    test_predictions = cross_gram @ a
    test_error = _error(test_predictions, y_test)
    curve['steps'].append(step)
    curve['test_error'].append(test_error)
    curve['test_mse'].append(_mse(test_predictions, y_test))
    curve['train_error'].append(_error(train_predictions, y_train))
    curve['train_mse'].append(_mse(train_predictions, y_train))
    if best is None or test_error < best[0]:
      best = (test_error, step, a.copy(), test_predictions,
              len(curve['steps']) - 1)
  curve = EvaluationCurve(
      steps=np.asarray(curve['steps'], dtype=np.int64),
      **{k: np.asarray(v, dtype=np.float64) for k, v in curve.items()
         if k != 'steps'})
  details = {'diverged': diverged, 'steps_run': step,
             'learning_rate': float(learning_rate), 'momentum': float(momentum),
             'batch_size': batch_size}
  if best is None:  # Diverged before the first evaluation.
    nan = float('nan')
    return FitResult(method='sgd', test_error=nan, test_mse=nan,
                     train_error=nan, train_mse=nan, dual_coef=a,
                     test_predictions=np.full(len(y_test), nan), best_step=None,
                     curve=curve, details=details)
  _, best_step, best_coef, best_predictions, index = best
  details.update(final_test_error=float(curve.test_error[-1]),
                 final_test_mse=float(curve.test_mse[-1]),
                 final_train_mse=float(curve.train_mse[-1]),
                 min_test_mse=float(curve.test_mse.min()))
  return FitResult(method='sgd', test_error=float(curve.test_error[index]),
                   test_mse=float(curve.test_mse[index]),
                   train_error=float(curve.train_error[index]),
                   train_mse=float(curve.train_mse[index]),
                   dual_coef=best_coef, test_predictions=best_predictions,
                   best_step=int(best_step), curve=curve, details=details)


# ----------------------------------------------------------------------------
# Kernel ridge regression with leave-one-out ridge selection.


def _unit_roundoff(gram: np.ndarray) -> float:
  """2^-24 if every entry is a float32 number, else 2^-53.

  `EmpiricalNTK` and `kernels.gram` multiply in float32 and return float64
  copies, so exact float32 representability identifies float32 products; a
  float64 computation (e.g. `infinite_ntk`) almost never lands on float32
  numbers everywhere (small integer Grams do, and then get the float32 floor,
  which only removes ridges below ~1e-6).
  """
  rows = max(1, 2**20 // max(gram.shape[1], 1))  # ~4 MB float32 per block.
  with np.errstate(over='ignore', invalid='ignore'):
    for start in range(0, gram.shape[0], rows):
      block = gram[start:start + rows]
      if not np.array_equal(block.astype(np.float32), block):
        return float(np.finfo(np.float64).eps) / 2
  return float(np.finfo(np.float32).eps) / 2


def ridge_noise_floor(eigenvalues: np.ndarray, unit_roundoff: float) -> float:
  """Smallest ridge lambda the rounding noise of a Gram allows.

  A Gram computed with unit roundoff u (2^-24 for the float32 products of
  `EmpiricalNTK`) is K + E with entry errors ~u |K_ij|, so ||E||_2 ~
  c u sqrt(n) ||K||_F / n (a Wigner matrix; c = 3.5-33 measured on float32
  Grams, GRAM_NOISE_FACTOR = 8 used). Eigenvalues of K below ||E|| are
  rounding noise, visible as negative eigenvalues; their magnitude is a
  second, direct estimate. With lambda below the noise, (K + lambda I)^{-1}
  amplifies rounding (the review's n=200, P=60 example: LOO MSE 1.19 reported,
  7235 for the predictor actually returned). The floor is

    lambda_min = RIDGE_NOISE_MARGIN * max(-min(s), GRAM_NOISE_FACTOR u
                                          sqrt(n) ||K||_F / n),

  e.g. a relative ridge (lambda_min n / trace K) of 5e-6 to 2e-4 for
  n = 1000 float32-product Grams (~1e-4 for positive, NTK-like ones), and
  ~1e-13 for float64 ones.

  Args:
    eigenvalues: (n,) eigenvalues s of the symmetrized Gram, ascending.
    unit_roundoff: u of the arithmetic that produced the Gram.

  Returns:
    lambda_min (absolute, same units as K).
  """
  n = len(eigenvalues)
  frobenius = float(np.sqrt(np.sum(np.square(eigenvalues))))
  noise = max(-float(eigenvalues[0]),
              GRAM_NOISE_FACTOR * unit_roundoff * math.sqrt(n) * frobenius / n)
  return RIDGE_NOISE_MARGIN * noise


def fit_ridge(train_gram: np.ndarray,
              y_train: np.ndarray,
              cross_gram: np.ndarray,
              y_test: np.ndarray,
              ridges: Optional[Sequence[float]] = None) -> FitResult:
  """Kernel ridge regression, the ridge chosen by leave-one-out MSE.

  a = (K + lambda I)^{-1} y with lambda = r trace(K) / n for each relative
  ridge r of the grid (scale-free, so one grid serves kernels of any scale).
  With K = U diag(s) U^T (one eigendecomposition of the symmetrized Gram, NOT
  clipped: the scored operator is the one that predicts) and
  G = (K + lambda I)^{-1}, the leave-one-out residual of example i is exactly
  y_i - f_{-i}(x_i) = a_i / G_ii (the hat matrix H = K G has
  1 - H_ii = lambda G_ii and y - K a = lambda a), so every r costs O(n^2).

  Ridges below the rounding-noise floor of the Gram (`ridge_noise_floor`:
  10x the larger of the most negative eigenvalue and the estimated float32 /
  float64 product noise) are dropped: there K + lambda I is (nearly)
  indefinite and the predictor is rounding noise. Among the rest, the r with
  the smallest LOO MSE is used, ties (within LOO_TIE_RTOL) going to the
  LARGER ridge; no test label is involved. Training predictions are
  K_sym a with the same symmetrized K, so details['loo_mse'] is the exact
  LOO MSE of the returned predictor.

  Args:
    train_gram: (n, n) K(x_train, x_train).
    y_train: (n,) labels in {0, 1} or {-1, +1}.
    cross_gram: (m, n) K(x_test, x_train).
    y_test: (m,) labels in {0, 1} or {-1, +1}.
    ridges: RELATIVE ridges r > 0 to choose from; None means
      DEFAULT_RELATIVE_RIDGES (1e-8 ... 10, 3 per decade).

  Returns:
    A `FitResult` with `ridge` = the absolute lambda; details hold
    relative_ridge, loo_mse, loo_error, the grid actually scored
    ('grid_relative_ridges', 'grid_loo_mse' as tuples),
    'noise_floor_relative_ridge' and 'num_ridges_below_floor'.

  Raises:
    AfterKernelError: bad shapes, labels, non-finite Grams, bad ridges, a
      zero Gram, or every ridge below the noise floor.
  """
  train_gram, cross_gram, y_train, y_test = _checked_problem(
      train_gram, y_train, cross_gram, y_test)
  ridges = DEFAULT_RELATIVE_RIDGES if ridges is None else tuple(ridges)
  errors.require(len(ridges) > 0, 'ridges is empty; pass at least one value')
  errors.require(all(np.isfinite(r) and r > 0 for r in ridges),
                 f'ridges are relative ridges r > 0 (lambda = r trace(K) / n), '
                 f'got {list(ridges)[:5]}')
  n = train_gram.shape[0]
  scale = float(np.trace(train_gram)) / n
  errors.require(scale > 0, 'train_gram has a non-positive trace: it is not a '
                 'kernel Gram matrix (or every feature is zero)')
  symmetric = (train_gram + train_gram.T) / 2
  eigenvalues, eigenvectors = np.linalg.eigh(symmetric)
  floor = ridge_noise_floor(eigenvalues, _unit_roundoff(train_gram)) / scale
  usable = tuple(float(r) for r in ridges if r >= floor)
  errors.require(
      usable,
      f'every relative ridge is below the rounding-noise floor {floor:.3g} of '
      f'train_gram (max given {max(ridges):.3g}); pass ridges >= {floor:.3g}')
  projected = eigenvectors.T @ y_train
  squared = eigenvectors**2
  loo_mse, loo_error, coefs = [], [], []
  for relative in usable:
    lam = relative * scale
    inverse = 1.0 / (eigenvalues + lam)
    coef = eigenvectors @ (inverse * projected)
    g_diag = squared @ inverse
    loo_predictions = y_train - coef / g_diag
    loo_mse.append(_mse(loo_predictions, y_train))
    loo_error.append(_error(loo_predictions, y_train))
    coefs.append(coef)
  tied = np.flatnonzero(np.asarray(loo_mse) <= min(loo_mse) *
                        (1 + LOO_TIE_RTOL))
  best = int(max(tied, key=lambda i: usable[i]))
  coef = coefs[best]
  train_predictions = symmetric @ coef
  test_predictions = cross_gram @ coef
  return FitResult(
      method='ridge', test_error=_error(test_predictions, y_test),
      test_mse=_mse(test_predictions, y_test),
      train_error=_error(train_predictions, y_train),
      train_mse=_mse(train_predictions, y_train), dual_coef=coef,
      test_predictions=test_predictions, ridge=float(usable[best] * scale),
      details={'relative_ridge': float(usable[best]),
               'loo_mse': loo_mse[best], 'loo_error': loo_error[best],
               'grid_relative_ridges': usable,
               'grid_loo_mse': tuple(loo_mse),
               'noise_floor_relative_ridge': float(floor),
               'num_ridges_below_floor': len(ridges) - len(usable)})


# ----------------------------------------------------------------------------
# Hard-margin SVM.


def fit_svm(train_gram: np.ndarray,
            y_train: np.ndarray,
            cross_gram: np.ndarray,
            y_test: np.ndarray,
            **margin_options) -> FitResult:
  """Hard-margin SVM (no bias) of `afterkernel.margin` as a kernel predictor.

  The decision function is rescaled to the canonical SVM form
  min_i y_i f(x_i) = 1 (support vectors on the margin at +-1), so MSEs are
  comparable with the least-squares fits; errors do not depend on the scale.
  On non-separable data (margin <= 0) no rescaling is applied.

  Args:
    train_gram: (n, n) K(x_train, x_train).
    y_train: (n,) labels in {0, 1} or {-1, +1}, both classes present.
    cross_gram: (m, n) K(x_test, x_train).
    y_test: (m,) labels in {0, 1} or {-1, +1}.
    **margin_options: passed to `margin.max_margin_from_gram` (solver,
      max_iterations, tolerance, ...).

  Returns:
    A `FitResult`; details hold margin, converged, iterations.

  Raises:
    AfterKernelError: bad shapes, labels (or one class), non-finite Grams.
  """
  train_gram, cross_gram, y_train, y_test = _checked_problem(
      train_gram, y_train, cross_gram, y_test)
  result = margin.max_margin_from_gram(train_gram, y_train, **margin_options)
  train_predictions = train_gram @ result.dual_coef
  smallest = float(np.min(y_train * train_predictions))
  factor = 1.0 / smallest if smallest > 0 else 1.0
  coef = result.dual_coef * factor
  train_predictions = train_predictions * factor
  test_predictions = margin.decision_function(result, cross_gram) * factor
  return FitResult(
      method='svm', test_error=_error(test_predictions, y_test),
      test_mse=_mse(test_predictions, y_test),
      train_error=_error(train_predictions, y_train),
      train_mse=_mse(train_predictions, y_train), dual_coef=coef,
      test_predictions=test_predictions,
      details={'margin': float(result.margin),
               'converged': bool(result.converged),
               'iterations': int(result.iterations)})


# ----------------------------------------------------------------------------
# Dispatcher.


def fit(method: str,
        train_gram: np.ndarray,
        y_train: np.ndarray,
        cross_gram: np.ndarray,
        y_test: np.ndarray,
        *,
        learning_rate: Optional[float] = None,
        batch_size: Optional[int] = None,
        momentum: float = 0.0,
        max_steps: Optional[int] = None,
        eval_growth: float = DEFAULT_EVAL_GROWTH,
        seed: int = 0,
        ridges: Optional[Sequence[float]] = None,
        svm_options: Optional[dict] = None) -> FitResult:
  """Fits a kernel predictor by `method`; options of other methods are ignored.

  One call signature for all methods, so a study can loop over FIT_METHODS
  with the network's hyper-parameters: 'sgd' uses learning_rate, batch_size,
  momentum, max_steps, eval_growth, seed (the first, second and fourth are
  required); 'ridge' uses ridges; 'svm' uses svm_options (keyword arguments
  of `margin.max_margin_from_gram`).

  Args:
    method: one of `FIT_METHODS`.
    train_gram, y_train, cross_gram, y_test: as for `fit_sgd`.
    learning_rate, batch_size, momentum, max_steps, eval_growth, seed: 'sgd'.
    ridges: 'ridge' relative ridges.
    svm_options: 'svm' solver options.

  Returns:
    The method's `FitResult`.

  Raises:
    AfterKernelError: unknown method, missing SGD hyper-parameters, or
      anything the method raises.
  """
  errors.require(method in FIT_METHODS,
                 f'fit method must be one of {FIT_METHODS}, got {method!r}')
  if method == 'sgd':
    missing = [name for name, value in (('learning_rate', learning_rate),
                                        ('batch_size', batch_size),
                                        ('max_steps', max_steps))
               if value is None]
    errors.require(not missing, f"fit method 'sgd' needs {', '.join(missing)}"
                   ' (the network\'s hyper-parameters)')
    return fit_sgd(train_gram, y_train, cross_gram, y_test,
                   learning_rate=learning_rate, batch_size=batch_size,
                   momentum=momentum, max_steps=max_steps,
                   eval_growth=eval_growth, seed=seed)
  if method == 'ridge':
    return fit_ridge(train_gram, y_train, cross_gram, y_test, ridges=ridges)
  return fit_svm(train_gram, y_train, cross_gram, y_test,
                 **(svm_options or {}))
