"""Gram matrices of feature maps, and numbers that describe a kernel.

A kernel here is K(u, v) = phi(u).phi(v) for a feature map phi (gradient
features for the FNTK / after kernel, penultimate activations for the
conjugate projection). Gram matrices are formed in `kernels.grams` (its
names are re-exported here); this module computes:

  * the feature scale s = mean_i ||phi(x_i)|| used to rescale features to
    average norm 1 before the max-margin solver;
  * kernel alignment  A(G, H) = <G, H>_F / (||G||_F ||H||_F)
    (Cristianini et al. 2002), the cosine of the two Gram matrices as vectors;
  * effective rank, in two forms: trace(G) / lambda_max(G), as in the
    after-kernel paper's code, and the entropy effective rank of Roy &
    Vetterli (2007), exp(H(p)) with p_i = lambda_i / sum_j lambda_j over the
    eigenvalues of G (which, for PSD G, are its singular values).
"""

import numpy as np

from afterkernel import errors
# Every Gram is formed in `kernels.grams`; its names stay importable here.
from afterkernel.kernels.grams import DEFAULT_BLOCK_SIZE
from afterkernel.kernels.grams import DEFAULT_STREAM_BLOCK
from afterkernel.kernels.grams import feature_scale
from afterkernel.kernels.grams import gram
from afterkernel.kernels.grams import gram_from_blocks
from afterkernel.kernels.grams import streamed_gram
from afterkernel.kernels.grams import structured_gram
from afterkernel.kernels.grams import train_and_cross_gram


def kernel_alignment(gram_a: np.ndarray, gram_b: np.ndarray) -> float:
  """Alignment <A, B>_F / (||A||_F ||B||_F) of two Gram matrices.

  Args:
    gram_a: (n, n) Gram matrix.
    gram_b: (n, n) Gram matrix of another kernel on the same examples.

  Returns:
    A value in [-1, 1]; 1 iff one Gram is a positive multiple of the other.
  """
  a = np.asarray(gram_a, np.float64)
  b = np.asarray(gram_b, np.float64)
  errors.require(a.shape == b.shape and a.ndim == 2,
                 f'Gram shapes differ: {a.shape} vs {b.shape}')
  denominator = np.linalg.norm(a) * np.linalg.norm(b)
  errors.require(denominator > 0, 'kernel alignment of a zero Gram matrix')
  return float(np.vdot(a, b) / denominator)


def _eigenvalues(gram_matrix: np.ndarray) -> np.ndarray:
  g = np.asarray(gram_matrix, np.float64)
  errors.require(g.ndim == 2 and g.shape[0] == g.shape[1],
                 f'a Gram matrix must be square, got shape {g.shape}')
  # Clip the tiny negative eigenvalues that round-off gives a PSD matrix.
  return np.maximum(np.linalg.eigvalsh((g + g.T) / 2), 0.0)


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
  eigenvalues = _eigenvalues(gram_matrix)
  total = eigenvalues.sum()
  errors.require(total > 0, 'effective rank of a zero Gram matrix')
  p = eigenvalues[eigenvalues > 0] / total
  return float(np.exp(-np.sum(p * np.log(p))))


