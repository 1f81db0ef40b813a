"""What every kernel fit returns, and the checks of its inputs.

Part of `afterkernel.kernel_fit`: `FitResult` / `EvaluationCurve`, the label
and Gram checks all fits share, and their error and MSE.
"""

import dataclasses
from typing import Optional

import numpy as np

from afterkernel import errors
from afterkernel.kernels import grams


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


def checked_problem(train_gram, y_train, cross_gram, y_test):
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
    grams.require_finite_gram(gram, what)
  y_train = _signed(y_train, n, 'y_train')
  y_test = _signed(y_test, cross_gram.shape[0], 'y_test')
  return (np.asarray(train_gram, dtype=np.float64),
          np.asarray(cross_gram, dtype=np.float64), y_train, y_test)


def error_rate(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Fraction of examples with sign(f) != y (f = 0 counts as -1)."""
  return float(np.mean(np.where(predictions > 0, 1.0, -1.0) != labels))


def mse(predictions: np.ndarray, labels: np.ndarray) -> float:
  """Mean (f - y)^2 (no 1/2)."""
  return float(np.mean((predictions - labels)**2))
