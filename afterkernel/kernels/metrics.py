"""Numbers that describe a kernel: alignments, spectra, effective ranks.

Every kernel metric of the library lives here, computed from Gram matrices
(or their eigensystems) in float64; `kernels.probe` names them for records
(one vocabulary), and the studies call these functions instead of their own
copies. For a Gram G of a kernel on n inputs and labels y:

  * kernel alignment  A(G, H) = <G, H>_F / (||G||_F ||H||_F)
    (Cristianini et al. 2002), the cosine of two Grams as vectors;
  * centered alignment  A(H_n G H_n, H_n K H_n), H_n = I - 1 1^T / n
    (Cortes, Mohri & Rostamizadeh 2012): the same after removing the
    constant direction, which otherwise dominates the alignment of kernels of
    nonnegative features;
  * kernel-target alignment  A(G, y y^T) = y^T G y / (||G||_F ||y||^2) with
    y in {-1, +1}^n (`label_alignment` for {0, 1} labels), and the unscaled
    target alignment alpha = y^T G y / n^2 = ||E_x[y(x) phi(x)]||^2 of
    Ortiz-Jimenez et al. (2021);
  * the spectrum, and three effective ranks: trace(G) / lambda_max(G) (the
    after-kernel paper's code), the entropy effective rank of Roy &
    Vetterli (2007), exp(H(p)) with p_i = lambda_i / sum_j lambda_j, and
    the same of the Jacobian J with G = J J^T (p_i from sqrt(lambda_i));
  * the eigensystem G u_j = lambda_j u_j, largest first, with one sign
    convention per caller (`SIGN_CONVENTIONS`, see `fix_signs`), its Nystroem
    extension to new inputs, and what it says about labels and training:
    the label energy (cumulative power) E_K = ||U_K^T y|| / ||y||, the
    eigenvector alignment |<u_j, u'_j>|, the energy u_j^T K u_j of another
    Gram along u_j, and the overlap of top-k subspaces.
"""

import dataclasses
from typing import List, Optional, Sequence

import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel.kernels import grams

# How `fix_signs` picks the sign of an eigenvector (defined up to sign):
#   'sum': its entries sum to >= 0 (a zero sum: first non-zero entry > 0).
#     Eigenvectors of Gram matrices on inputs (eigentasks, kernel rotation):
#     the sign of the sum is that of the mean eigenfunction value, so tasks
#     sign(u_j) are reproducible and the top (Perron) vector is positive.
#   'largest': its entry of largest magnitude is positive. Directions in
#     input space (the NADs of `studies.nads`), whose entries may sum to ~0
#     by symmetry (e.g. a checkerboard pattern).
SIGN_CONVENTIONS = ('sum', 'largest')
DEFAULT_SIGN_CONVENTION = 'sum'
# Eigenvalues below this fraction of lambda_1 are numerically zero: the
# Nystroem extension divides by lambda_j and would amplify round-off.
EIGENVALUE_RTOL = 1e-7


def _finite(matrix: np.ndarray, what: str) -> np.ndarray:
  """`matrix` as float64, checked by `grams.require_finite_gram`.

  Non-finite Grams come from diverged training or bad inputs; without this
  check they surface as a misleading "zero Gram" or a LinAlgError.
  """
  m = np.asarray(matrix, np.float64)
  grams.require_finite_gram(m, f'{what}: the Gram matrix')
  return m


# ----------------------------------------------------------------------------
# Alignments.


def kernel_alignment(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
  """Alignment <A, B>_F / (||A||_F ||B||_F) of two Gram matrices.

  Args:
    gram_a: (n, n) Gram matrix.
    gram_b: (n, n) Gram matrix of another kernel on the same examples.

  Returns:
    A value in [-1, 1]; 1 iff one Gram is a positive multiple of the other.

  Raises:
    AfterKernelError: shapes differ, or a Gram is zero.
  """
  a = _finite(gram_a, 'kernel alignment')
  b = _finite(gram_b, 'kernel alignment')
  errors.require(a.shape == b.shape and a.ndim == 2,
                 f'Gram shapes differ: {a.shape} vs {b.shape}')
  denominator = np.linalg.norm(a) * np.linalg.norm(b)
  errors.require(denominator > 0, 'kernel alignment of a zero Gram matrix')
  return float(np.vdot(a, b) / denominator)


def center_gram(gram: np.ndarray) -> np.ndarray:
  """H G H with H = I - 1 1^T / n: the Gram of the centered features.

  Computed as G - row means - column means + grand mean (no n x n H).
  """
  g = np.asarray(gram, np.float64)
  errors.require(g.ndim == 2 and g.shape[0] == g.shape[1] and g.shape[0] > 0,
                 f'a Gram matrix must be square and non-empty, got shape '
                 f'{g.shape}')
  return (g - g.mean(axis=0, keepdims=True) - g.mean(axis=1, keepdims=True) +
          g.mean())


def centered_kernel_alignment(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
  """A(H A H, H B H): kernel alignment after centering both Grams.

  Cortes, Mohri & Rostamizadeh (2012), "Algorithms for learning kernels
  based on centered alignment" (JMLR). Unlike `kernel_alignment`, it does
  not reward two kernels for sharing a large constant component.

  Raises:
    AfterKernelError: shapes differ, or a centered Gram is zero (e.g. a
      constant kernel).
  """
  a, b = np.asarray(gram_a), np.asarray(gram_b)
  errors.require(a.shape == b.shape,
                 f'Gram shapes differ: {a.shape} vs {b.shape}')
  return kernel_alignment(center_gram(a), center_gram(b))


def _as_targets(gram: np.ndarray, targets: np.ndarray) -> tuple:
  g = _finite(gram, 'alignment with targets')
  y = np.asarray(targets, np.float64).reshape(-1)
  errors.require(bool(np.all(np.isfinite(y))),
                 'alignment with targets: the targets hold NaN or inf')
  errors.require(g.shape == (len(y), len(y)),
                 f'Gram shape {g.shape} does not match {len(y)} targets')
  return g, y


def target_alignment(gram: np.ndarray, targets: np.ndarray) -> float:
  """alpha(f) = ||E_x[f(x) grad f(x)]||^2 = f^T K f / n^2 (Ortiz-Jimenez).

  With K = Phi Phi^T, (1/n) Phi^T f is the empirical E[f(x) phi(x)] and its
  squared norm is f^T K f / n^2; only the Gram is needed.

  Args:
    gram: (n, n) Gram of the gradient features on the n inputs.
    targets: (n,) values f(x_i), e.g. the task's +-1 labels.

  Returns:
    alpha >= 0 (for PSD K); it scales with ||K||.
  """
  g, y = _as_targets(gram, targets)
  return float(y @ g @ y / len(y)**2)


def kernel_target_alignment(gram: np.ndarray, targets: np.ndarray) -> float:
  """A(K, y y^T) = y^T K y / (||K||_F ||y||^2), in [-1, 1]; scale-free.

  The kernel alignment of K with the ideal kernel y y^T (Cristianini et al.
  2002), without forming y y^T.

  Args:
    gram: (n, n) Gram matrix.
    targets: (n,) targets y (for labels use `label_alignment`).

  Raises:
    AfterKernelError: size mismatch, or a zero Gram or zero targets.
  """
  g, y = _as_targets(gram, targets)
  denominator = np.linalg.norm(g) * float(y @ y)
  errors.require(denominator > 0, 'alignment of a zero Gram or zero targets')
  return float(y @ g @ y / denominator)


def signed_labels(labels: np.ndarray) -> np.ndarray:
  """Binary labels, {0, 1} or {-1, +1}, as float64 -1 / +1 (> 0 is +1).

  Raises:
    AfterKernelError: a label is not in {0, 1, -1}.
  """
  labels = np.asarray(labels, np.float64)
  errors.require(bool(np.all((labels == 0) | (labels == 1) | (labels == -1))),
                 'binary labels must be 0/1 or -1/+1, got values '
                 f'{np.unique(labels)[:5].tolist()}')
  return data.signed_labels(labels > 0)


def label_alignment(gram: np.ndarray, labels: np.ndarray) -> float:
  """A(K, y y^T) with y = `signed_labels(labels)` in {-1, +1}^n.

  Args:
    gram: (n, n) Gram matrix.
    labels: (n,) binary labels, {0, 1} or {-1, +1}.

  Returns:
    A value in [-1, 1].
  """
  return kernel_target_alignment(gram, signed_labels(labels))


# ----------------------------------------------------------------------------
# Spectra and effective ranks.


def _eigenvalues(gram_matrix: np.ndarray) -> np.ndarray:
  """Ascending eigenvalues of (G + G^T) / 2, negative round-off clipped."""
  g = _finite(gram_matrix, 'spectrum / effective rank')
  errors.require(g.ndim == 2 and g.shape[0] == g.shape[1],
                 f'a Gram matrix must be square, got shape {g.shape}')
  return np.maximum(np.linalg.eigvalsh((g + g.T) / 2), 0.0)


def spectrum(gram_matrix: np.ndarray) -> np.ndarray:
  """Eigenvalues lambda_1 >= lambda_2 >= ... >= 0 of a PSD Gram (float64).

  The matrix is symmetrized; tiny negative round-off eigenvalues are 0.
  """
  return _eigenvalues(gram_matrix)[::-1]


def trace_effective_rank(gram_matrix: np.ndarray) -> float:
  """trace(G) / lambda_max(G): the after-kernel paper's effective rank."""
  eigenvalues = _eigenvalues(gram_matrix)
  errors.require(eigenvalues[-1] > 0, 'effective rank of a zero Gram matrix')
  return float(eigenvalues.sum() / eigenvalues[-1])


def entropy_effective_rank(gram_matrix: np.ndarray) -> float:
  """Roy & Vetterli (2007) effective rank exp(-sum_i p_i log p_i).

  p_i = lambda_i / sum_j lambda_j over the eigenvalues of the PSD matrix G.
  Ranges from 1 (rank one) to n (all eigenvalues equal).
  """
  return _entropy_rank(_eigenvalues(gram_matrix))


def jacobian_effective_rank(gram_matrix: np.ndarray,
                            rtol: Optional[float] = None) -> float:
  """Roy & Vetterli effective rank of a Jacobian J, from G = J J^T.

  The entropy effective rank of J's singular values sigma_i =
  sqrt(lambda_i(G)) (Roy & Vetterli define it on singular values; on G's
  eigenvalues, `entropy_effective_rank`, it is the rank of sigma_i^2).
  With G the (n L, n L) full empirical NTK this is the effective rank of
  the (n L)-row Jacobian embedding of Samarin et al. (2020, Fig 5).
  Eigenvalues below rtol * lambda_max are taken as 0: the square root
  would turn a float32 Gram's round-off (~eps * lambda_max) into singular
  values ~sqrt(eps) * sigma_max that a rank-deficient J does not have.

  Args:
    gram_matrix: PSD (N, N) Gram J J^T.
    rtol: relative eigenvalue cut; None = N * float32 epsilon (the
      `numpy.linalg.matrix_rank` convention at float32 precision).

  Returns:
    exp(-sum_i p_i log p_i), p_i = sigma_i / sum_j sigma_j; in [1, N].
  """
  eigenvalues = _eigenvalues(gram_matrix)
  cut = (len(eigenvalues) * float(np.finfo(np.float32).eps)
         if rtol is None else rtol)
  eigenvalues[eigenvalues < cut * eigenvalues[-1]] = 0.0
  return _entropy_rank(np.sqrt(eigenvalues))


def _entropy_rank(values: np.ndarray) -> float:
  """exp of the entropy of values / sum(values) (non-negative values)."""
  total = values.sum()
  errors.require(total > 0, 'effective rank of a zero Gram matrix')
  p = values[values > 0] / total
  return float(np.exp(-np.sum(p * np.log(p))))


# ----------------------------------------------------------------------------
# Eigensystems.


def fix_signs(vectors: np.ndarray,
              convention: str = DEFAULT_SIGN_CONVENTION) -> np.ndarray:
  """Flips the columns of `vectors` to one sign convention.

  Args:
    vectors: (n, k) array, column j one eigen/singular vector.
    convention: one of `SIGN_CONVENTIONS`: 'sum' (each column sums to >= 0;
      a sum within round-off of 0 counts as 0, and then the first non-zero
      entry is made positive) or 'largest' (the entry of largest magnitude
      of each column is positive; the first such entry on ties).

  Returns:
    The flipped copy (each column multiplied by +1 or -1).

  Raises:
    AfterKernelError: an unknown convention.
  """
  errors.require_choice(convention, SIGN_CONVENTIONS, 'sign convention')
  vectors = np.asarray(vectors)
  if convention == 'largest':
    largest = vectors[np.argmax(np.abs(vectors), axis=0),
                      np.arange(vectors.shape[1])]
    return vectors * np.where(largest < 0, -1.0, 1.0)[None, :]
  sums = vectors.sum(axis=0)
  scale = np.abs(vectors).max(axis=0)
  signs = np.where(sums > 1e-12 * vectors.shape[0] * scale, 1.0,
                   np.where(sums < -1e-12 * vectors.shape[0] * scale, -1.0,
                            0.0))
  for column in np.flatnonzero(signs == 0):
    nonzero = np.flatnonzero(vectors[:, column])
    signs[column] = (1.0 if not len(nonzero) or vectors[nonzero[0], column] > 0
                     else -1.0)
  return vectors * signs


@dataclasses.dataclass(frozen=True)
class Eigensystem:
  """Eigenpairs of a symmetric PSD Gram, largest first.

  Attributes:
    eigenvalues: (n,) float64, descending (tiny negative round-off clipped
      to 0).
    eigenvectors: (n, n) float64; column j-1 is u_j (unit norm, sign fixed
      by `fix_signs`; 'sum' by default: its entries sum to >= 0).
    gram: the (symmetrized, float64) Gram they decompose.
  """
  eigenvalues: np.ndarray
  eigenvectors: np.ndarray
  gram: np.ndarray

  @property
  def size(self) -> int:
    return len(self.eigenvalues)

  @property
  def trace_effective_rank(self) -> float:
    """sum_j lambda_j / lambda_1 (`trace_effective_rank` of the Gram, summed
    largest first)."""
    errors.require(self.eigenvalues[0] > 0,
                   'effective rank of a zero Gram matrix')
    return float(self.eigenvalues.sum() / self.eigenvalues[0])


def eigensystem(gram: np.ndarray,
                sign_convention: str = DEFAULT_SIGN_CONVENTION
                ) -> Eigensystem:
  """Eigendecomposition of a Gram matrix, sorted by decreasing eigenvalue.

  Args:
    gram: (n, n) symmetric PSD matrix (float32 or float64).
    sign_convention: how eigenvector signs are fixed (`fix_signs`).

  Returns:
    The `Eigensystem` (float64; the matrix is symmetrized as (G + G^T) / 2).

  Raises:
    AfterKernelError: not square, or non-finite entries.
  """
  g = np.asarray(gram, np.float64)
  errors.require(g.ndim == 2 and g.shape[0] == g.shape[1] and g.shape[0] > 0,
                 f'a Gram matrix must be square and non-empty, got shape '
                 f'{g.shape}')
  errors.require(bool(np.all(np.isfinite(g))),
                 'the Gram matrix has NaN/inf entries (did training diverge? '
                 'try a smaller learning_rate)')
  g = (g + g.T) / 2
  values, vectors = np.linalg.eigh(g)
  order = np.argsort(values)[::-1]
  return Eigensystem(eigenvalues=np.maximum(values[order], 0.0),
                     eigenvectors=fix_signs(vectors[:, order],
                                            sign_convention), gram=g)


def check_eigen_indices(system: Eigensystem,
                        indices: Sequence[int]) -> List[int]:
  """1-based eigen indices j, checked: in range, lambda_j not numerically 0.

  Raises:
    AfterKernelError: no index, an index out of [1, n], or lambda_j <=
      EIGENVALUE_RTOL * lambda_1.
  """
  indices = [int(j) for j in indices]
  errors.require(bool(indices), 'no eigen indices given')
  for j in indices:
    errors.require(1 <= j <= system.size,
                   f'eigen index {j} is out of range: the Gram has '
                   f'{system.size} eigenvectors, indices are 1-based')
    errors.require(
        system.eigenvalues[j - 1] > EIGENVALUE_RTOL * system.eigenvalues[0],
        f'eigenvalue {j} is numerically zero ({system.eigenvalues[j - 1]:.3g}'
        f' vs lambda_1 = {system.eigenvalues[0]:.3g}); its eigenfunction is '
        'not defined off the training set; use a smaller index or more '
        'training inputs')
  return indices


def nystroem_extension(cross_gram: np.ndarray, system: Eigensystem,
                       indices: Sequence[int]) -> np.ndarray:
  """Eigenfunctions at new inputs: phi_j(x) = sum_i K(x, x_i) u_ij / lambda_j.

  At a training input (a row of the training Gram) this returns u_ij
  exactly, since K u_j = lambda_j u_j.

  Args:
    cross_gram: (m, n) kernel values K(x, x_i) between m new inputs and the
      n inputs of `system`.
    system: the training Gram's `Eigensystem`.
    indices: 1-based eigen indices j.

  Returns:
    (m, len(indices)) float64, column k = phi_{indices[k]} at the m inputs.

  Raises:
    AfterKernelError: shape mismatch, index out of range, or a numerically
      zero eigenvalue.
  """
  cross = np.asarray(cross_gram, np.float64)
  errors.require(cross.ndim == 2 and cross.shape[1] == system.size,
                 f'cross_gram must be (m, {system.size}), got {cross.shape}')
  columns = np.array(check_eigen_indices(system, indices)) - 1
  return (cross @ system.eigenvectors[:, columns] /
          system.eigenvalues[columns])


def label_energy(system: Eigensystem, labels: np.ndarray,
                 ks: Sequence[int]) -> np.ndarray:
  """E_K = ||U_K^T y|| / ||y|| for each K in `ks` (cumulative label power).

  The fraction (in norm) of the labels that the K largest kernel directions
  explain; E_K^2 is the cumulative power of y along u_1, ..., u_K.

  Args:
    system: `eigensystem` of the Gram on the n inputs.
    labels: (n,) targets y (use +-1 labels; {0, 1} labels would measure the
      constant direction too).
    ks: numbers of top eigenvectors, each in [1, n].

  Returns:
    (len(ks),) float64 in [0, 1], non-decreasing in K; 1 at K = n.

  Raises:
    AfterKernelError: size mismatch, zero labels, or K out of range.
  """
  y = np.asarray(labels, np.float64).reshape(-1)
  errors.require(len(y) == system.size,
                 f'{len(y)} labels for a Gram of {system.size} inputs')
  norm = np.linalg.norm(y)
  errors.require(norm > 0, 'label energy of all-zero labels is undefined')
  for k in ks:
    errors.require(isinstance(k, (int, np.integer)) and 1 <= k <= system.size,
                   f'K = {k!r} must be an integer in [1, {system.size}]')
  cumulative = np.cumsum((system.eigenvectors.T @ y)**2)
  # Round-off can push the total a hair above ||y||^2.
  return np.minimum(np.sqrt(cumulative[np.asarray(ks, int) - 1]) / norm, 1.0)


def eigenvector_alignment(before: Eigensystem, after: Eigensystem,
                          num: int) -> np.ndarray:
  """a_j = |<u_j^before, u_j^after>| for j = 1..num (a cosine in [0, 1]).

  Equals sqrt of the kernel alignment of the rank-one projections u u^T and
  v v^T, since <u u^T, v v^T>_F = (u.v)^2; the absolute value removes the
  arbitrary sign of eigenvectors.
  """
  errors.require(before.size == after.size,
                 f'eigensystems of {before.size} and {after.size} inputs')
  errors.require(1 <= num <= before.size,
                 f'num must be in [1, {before.size}], got {num}')
  return np.abs(np.sum(before.eigenvectors[:, :num] *
                       after.eigenvectors[:, :num], axis=0))


def initial_eigenvector_energy(initial: Eigensystem, gram: np.ndarray,
                               num: int) -> np.ndarray:
  """Rayleigh quotients r_j = u_j^0^T K u_j^0 of a Gram along initial u_j^0.

  Args:
    initial: eigensystem of the Gram at initialization (u_j^0 unit vectors).
    gram: (n, n) current Gram K_t on the same n inputs.
    num: J, the first eigenvectors to use.

  Returns:
    (J,) float64: r_j for j = 1..J; lambda_j^0 when `gram` is the initial
    Gram. Divide by trace(K_t) for the share of the kernel's energy.

  Raises:
    AfterKernelError: size mismatch or num out of range.
  """
  g = np.asarray(gram, np.float64)
  errors.require(g.shape == (initial.size, initial.size),
                 f'Gram of shape {g.shape} for an eigensystem of '
                 f'{initial.size} inputs')
  errors.require(1 <= num <= initial.size,
                 f'num must be in [1, {initial.size}], got {num}')
  vectors = initial.eigenvectors[:, :num]
  return np.sum(vectors * (g @ vectors), axis=0)


def subspace_overlap(before: Eigensystem, after: Eigensystem, k: int) -> float:
  """||U_k^before^T U_k^after||_F^2 / k: 1 iff the top-k subspaces agree."""
  errors.require(before.size == after.size and 1 <= k <= before.size,
                 f'k must be in [1, {before.size}] for equal-size systems')
  product = before.eigenvectors[:, :k].T @ after.eigenvectors[:, :k]
  return float(np.sum(product**2) / k)
