"""Input checks of the max-margin solvers: labels, finiteness, and the Gram.

A hard-margin solve on a matrix that is not a kernel Gram (asymmetric, or
with a clearly negative eigenvalue) has no meaning: the dual may be
unbounded or the bounds of `certificate` invalid. These checks turn such
input into one `AfterKernelError` instead of a silent solve; they read the
matrix in row blocks, so they allocate no n x n temporary.
"""

from typing import Optional

import numpy as np
import scipy.linalg

from afterkernel import errors

# |K_ij - K_ji| above this fraction of the mean diagonal: not a Gram. Float32
# products of features are symmetric to ~1e-7 of it (measured).
ASYMMETRY_TOLERANCE = 1e-6
# An eigenvalue estimate below -this x mean diagonal: clearly not PSD. Float32
# Grams have rounding eigenvalues near -1e-7 of it at small n; the rounding
# of an n x n Gram has a spectral norm up to ~eps sqrt(n) of it (a float32
# rank-5 Gram of n = 300 gave -1.03e-6 on an AMD EPYC machine), so the
# allowance is the larger of this floor and ROUNDING_FACTOR eps sqrt(n)
# (`negative_eigenvalue_allowance`): 4.8e-5 for float32 at n = 10,000,
# still far above any rounding and far below a wrong matrix's eigenvalues.
NEGATIVE_EIGENVALUE_TOLERANCE = 1e-6
ROUNDING_FACTOR = 4.0
# Up to this n the smallest eigenvalue is computed exactly (LAPACK).
DENSE_EIGENVALUE_MAX_N = 100
# Block Lanczos probe for larger n: block width and passes over K (each an
# (n, n) x (n, 8) product, one read of K). Its estimate is a Ritz value,
# never below the true smallest eigenvalue, so a negative estimate proves
# the matrix indefinite.
PROBE_BLOCK = 8
PROBE_PASSES = 2
# The symmetry check compares tiles of n / SYMMETRY_TILES_PER_SIDE rows,
# between these sizes (a buffer of at most 512 KiB, 1/64 of the Gram's bytes).
SYMMETRY_TILES_PER_SIDE = 8
SYMMETRY_TILE_RANGE = (16, 256)


def signed_labels(labels, n: Optional[int], what: str,
                   need_two_classes: bool) -> np.ndarray:
  """Returns labels as float64 in {-1, +1} (0 -> -1), or raises."""
  labels = np.asarray(labels)
  if labels.ndim == 2 and labels.shape[1] == 1:
    labels = labels[:, 0]
  errors.require(labels.ndim == 1,
                 f'{what} must be 1-D, got shape {labels.shape}')
  if n is not None:
    errors.require(
        labels.shape[0] == n,
        f'{what} has {labels.shape[0]} entries but the data has {n} '
        'examples; pass one label per row')
  errors.require(labels.shape[0] > 0, f'{what} is empty')
  errors.require(
      np.issubdtype(labels.dtype, np.number) or labels.dtype == bool,
      f'{what} must be numeric in {{0, 1}} or {{-1, +1}}, got dtype '
      f'{labels.dtype}')
  values = np.unique(labels)
  errors.require(
      set(values.tolist()) <= {0.0, 1.0} or set(values.tolist()) <= {-1.0, 1.0},
      f'{what} must be in {{0, 1}} or {{-1, +1}}, got values '
      f'{values[:5].tolist()}{"..." if values.size > 5 else ""}')
  if need_two_classes:
    errors.require(
        values.size == 2,
        f'training data has one class: every label is {values[0]:g}; a margin '
        'needs examples of both classes')
  return np.where(labels > 0, 1.0, -1.0)


def _count_nonfinite(array: np.ndarray, block_rows: int = 1024) -> int:
  """Counts NaN/inf entries, in row blocks so no n x n bool temporary."""
  if np.isfinite(array.sum(dtype=np.float64)):
    return 0  # NaN or inf anywhere would make the sum non-finite.
  count = 0
  for start in range(0, array.shape[0], block_rows):
    count += int(np.count_nonzero(~np.isfinite(array[start:start + block_rows])))
  return count


def require_finite(array: np.ndarray, what: str) -> None:
  bad = _count_nonfinite(array)
  errors.require(
      bad == 0,
      f'{what} has {bad} NaN/inf entries of {array.size}; the network may have '
      'diverged (check its loss), recompute it from a finite model')


def require_iteration_args(max_iterations, tolerance, check_every,
                            max_seconds) -> None:
  errors.require_positive(max_iterations, 'max_iterations')
  errors.require_positive(check_every, 'check_every')
  errors.require(
      tolerance is not None and 0 <= tolerance < 1,
      f'tolerance is a relative duality gap and must be in [0, 1), got '
      f'{tolerance!r}')
  if max_seconds is not None:
    errors.require_positive(max_seconds, 'max_seconds')


def require_symmetric(gram: np.ndarray, mean_diagonal: float) -> None:
  """Raises unless max |K_ij - K_ji| <= ASYMMETRY_TOLERANCE * mean K_ii."""
  n = gram.shape[0]
  worst = 0.0
  low, high = SYMMETRY_TILE_RANGE
  tile = min(high, max(low, n // SYMMETRY_TILES_PER_SIDE))
  buffer = np.empty((tile, tile), dtype=gram.dtype)
  for row in range(0, n, tile):
    for column in range(row, n, tile):
      # Tile (I, J) of the upper part against the transpose of tile (J, I).
      block = gram[row:row + tile, column:column + tile]
      out = buffer[:block.shape[0], :block.shape[1]]
      np.subtract(block, gram[column:column + tile, row:row + tile].T, out=out)
      np.abs(out, out=out)
      worst = max(worst, float(out.max()))
  errors.require(
      worst <= ASYMMETRY_TOLERANCE * mean_diagonal,
      f'gram is not symmetric: max |K_ij - K_ji| = {worst:.3g}, '
      f'{worst / mean_diagonal:.3g} of the mean diagonal (allowed '
      f'{ASYMMETRY_TOLERANCE:g}); a kernel Gram matrix is symmetric, pass '
      '(K + K.T) / 2 if the asymmetry is rounding')


def _orthonormal(block: np.ndarray) -> np.ndarray:
  """An orthonormal basis of a thin block's columns (eigen-whitening).

  Directions with tiny singular values (already in the space) are dropped.
  """
  values, vectors = np.linalg.eigh(block.T @ block)
  keep = values > values.max() * 1e-20
  return block @ (vectors[:, keep] / np.sqrt(values[keep]))


def smallest_eigenvalue_estimate(gram: np.ndarray) -> float:
  """An estimate of lambda_min(K) that is >= lambda_min (never too low).

  Exact (LAPACK) for n <= DENSE_EIGENVALUE_MAX_N. For larger n, a block
  Lanczos probe: the Krylov space of a fixed random block V,
  span{V, K V, ..., K^m V} (m = PROBE_PASSES), costs m block products (one
  read of K each) and its smallest Rayleigh-Ritz value lies in
  [lambda_min, lambda_max]; like any Krylov method it finds the extreme
  eigenvalues first, so a clearly negative eigenvalue (one not small
  against the spread of the spectrum) shows up.
  """
  n = gram.shape[0]
  if n <= DENSE_EIGENVALUE_MAX_N:
    return float(scipy.linalg.eigvalsh(np.asarray(gram, np.float64),
                                       subset_by_index=[0, 0])[0])
  basis = _orthonormal(np.random.default_rng(0).normal(size=(n, PROBE_BLOCK)))
  bases = []
  rayleigh_blocks = {}  # (i, j): V_i^T K V_j, i <= j
  for j in range(PROBE_PASSES):
    product = np.asarray(gram @ basis.astype(gram.dtype, copy=False),
                         dtype=np.float64)
    bases.append(basis)
    for i, previous in enumerate(bases):
      rayleigh_blocks[i, j] = previous.T @ product
    if j == PROBE_PASSES - 1:
      break
    # Next block: K V made orthogonal to the space so far (twice, for
    # stability), then orthonormalized.
    for _ in range(2):
      for previous in bases:
        product -= previous @ (previous.T @ product)
    basis = _orthonormal(product)
  # Rayleigh-Ritz on the space, whitened so that rounding in the basis
  # cannot push a Ritz value outside the spectrum.
  count = len(bases)
  rayleigh = np.block([[rayleigh_blocks[i, j] if i <= j else
                        rayleigh_blocks[j, i].T for j in range(count)]
                       for i in range(count)])
  overlap = np.block([[bases[i].T @ bases[j] for j in range(count)]
                      for i in range(count)])
  values, vectors = np.linalg.eigh(overlap)
  keep = values > values.max() * 1e-12
  whiten = vectors[:, keep] / np.sqrt(values[keep])
  rayleigh = whiten.T @ rayleigh @ whiten
  return float(np.linalg.eigvalsh((rayleigh + rayleigh.T) / 2)[0])


def negative_eigenvalue_allowance(gram: np.ndarray) -> float:
  """How far below 0 (in units of the mean diagonal) rounding can push
  lambda_min of `gram`: max(NEGATIVE_EIGENVALUE_TOLERANCE,
  ROUNDING_FACTOR eps(dtype) sqrt(n))."""
  dtype = gram.dtype if np.issubdtype(gram.dtype, np.floating) else np.float64
  return max(NEGATIVE_EIGENVALUE_TOLERANCE,
             ROUNDING_FACTOR * float(np.finfo(dtype).eps) *
             np.sqrt(gram.shape[0]))


def require_positive_semidefinite(gram: np.ndarray,
                                  mean_diagonal: float) -> None:
  """Raises if lambda_min(K) is clearly below 0 (see the constants)."""
  estimate = smallest_eigenvalue_estimate(gram)
  allowance = negative_eigenvalue_allowance(gram)
  errors.require(
      estimate >= -allowance * mean_diagonal,
      f'gram is not positive semidefinite: it has an eigenvalue <= '
      f'{estimate:.3g} ({estimate / mean_diagonal:.3g} of the mean diagonal, '
      f'allowed -{allowance:.3g} for a {gram.dtype} Gram of n = '
      f'{gram.shape[0]}); a kernel Gram matrix is PSD, check how it was '
      'formed')
