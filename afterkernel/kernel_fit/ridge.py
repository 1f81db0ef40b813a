"""Kernel ridge regression, the ridge chosen by leave-one-out error.

Part of `afterkernel.kernel_fit` (fit method 'ridge').
"""

import math
from typing import Optional, Sequence

import numpy as np

from afterkernel import errors
from afterkernel.kernel_fit import results

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
              ridges: Optional[Sequence[float]] = None) -> results.FitResult:
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
  train_gram, cross_gram, y_train, y_test = results.checked_problem(
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
    loo_mse.append(results.mse(loo_predictions, y_train))
    loo_error.append(results.error_rate(loo_predictions, y_train))
    coefs.append(coef)
  tied = np.flatnonzero(np.asarray(loo_mse) <= min(loo_mse) *
                        (1 + LOO_TIE_RTOL))
  best = int(max(tied, key=lambda i: usable[i]))
  coef = coefs[best]
  train_predictions = symmetric @ coef
  test_predictions = cross_gram @ coef
  return results.FitResult(
      method='ridge', test_error=results.error_rate(test_predictions, y_test),
      test_mse=results.mse(test_predictions, y_test),
      train_error=results.error_rate(train_predictions, y_train),
      train_mse=results.mse(train_predictions, y_train), dual_coef=coef,
      test_predictions=test_predictions, ridge=float(usable[best] * scale),
      details={'relative_ridge': float(usable[best]),
               'loo_mse': loo_mse[best], 'loo_error': loo_error[best],
               'grid_relative_ridges': usable,
               'grid_loo_mse': tuple(loo_mse),
               'noise_floor_relative_ridge': float(floor),
               'num_ridges_below_floor': len(ridges) - len(usable)})
