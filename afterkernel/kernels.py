"""Gram matrices of feature maps, and numbers that describe a kernel.

A kernel here is K(u, v) = phi(u).phi(v) for a feature map phi (gradient
features for the FNTK / after kernel, penultimate activations for the
conjugate projection). This module forms Gram matrices from feature blocks
and computes:

  * the feature scale s = mean_i ||phi(x_i)|| used to rescale features to
    average norm 1 before the max-margin solver;
  * kernel alignment  A(G, H) = <G, H>_F / (||G||_F ||H||_F)
    (Cristianini et al. 2002), the cosine of the two Gram matrices as vectors;
  * effective rank, in two forms: trace(G) / lambda_max(G), as in the
    after-kernel paper's code, and the entropy effective rank of Roy &
    Vetterli (2007), exp(H(p)) with p_i = lambda_i / sum_j lambda_j over the
    eigenvalues of G (which, for PSD G, are its singular values).
"""

from typing import Iterable, Optional

import numpy as np

from afterkernel import errors

# Rows per matmul block: bounds the temporary copy made for float64
# accumulation (block x P) while keeping BLAS calls large.
DEFAULT_BLOCK_SIZE = 2048


def _as_2d_finite(features: np.ndarray, name: str) -> np.ndarray:
  features = np.asarray(features)
  errors.require(features.ndim == 2,
                 f'{name} must be a 2-D (examples, features) array, got shape '
                 f'{features.shape}')
  bad = int(np.size(features) - np.count_nonzero(np.isfinite(features)))
  errors.require(bad == 0,
                 f'{name} has {bad} NaN/inf values (did training diverge? try '
                 'a smaller --learning_rate)')
  return features


def gram(features_a: np.ndarray,
         features_b: Optional[np.ndarray] = None,
         block_size: int = DEFAULT_BLOCK_SIZE,
         accumulate_float64: bool = False) -> np.ndarray:
  """Gram or cross-Gram matrix G[i, j] = phi_a(i) . phi_b(j).

  Args:
    features_a: (n, P) features.
    features_b: (m, P) features; `None` means `features_a` (symmetric Gram,
      computed once per block pair and mirrored).
    block_size: rows of `features_a` per matmul.
    accumulate_float64: multiply in float64 (slower, for very large P or
      near-singular Grams); otherwise float32 BLAS.

  Returns:
    (n, m) float32 matrix (float64 if `accumulate_float64`).

  Raises:
    AfterKernelError: non-2-D, mismatched widths, or non-finite features.
  """
  errors.require_positive(block_size, 'block_size')
  features_a = _as_2d_finite(features_a, 'features')
  symmetric = features_b is None
  features_b = features_a if symmetric else _as_2d_finite(features_b,
                                                          'features_b')
  errors.require(features_a.shape[1] == features_b.shape[1],
                 'feature widths differ: '
                 f'{features_a.shape[1]} vs {features_b.shape[1]}')
  dtype = np.float64 if accumulate_float64 else np.float32
  b = features_b.astype(dtype, copy=False)
  out = np.empty((features_a.shape[0], features_b.shape[0]), dtype)
  for start in range(0, features_a.shape[0], block_size):
    stop = min(start + block_size, features_a.shape[0])
    a = features_a[start:stop].astype(dtype, copy=False)
    if symmetric:
      # Only the block row left of the diagonal, mirrored: half the flops.
      product = a @ b[:stop].T
      out[start:stop, :stop] = product
      out[:start, start:stop] = product[:, :start].T
      diagonal = out[start:stop, start:stop]
      out[start:stop, start:stop] = (diagonal + diagonal.T) / 2
    else:
      out[start:stop] = a @ b.T
  return out


def gram_from_blocks(blocks: Iterable[np.ndarray],
                     accumulate_float64: bool = False) -> np.ndarray:
  """The Gram of features arriving in row blocks (e.g. `iter_feature_blocks`).

  Each new block is multiplied against itself and all earlier blocks, so the
  features are produced once; they are kept (needed for later rows).

  Args:
    blocks: iterable of (b_k, P) arrays, rows of one feature matrix in order.
    accumulate_float64: multiply in float64.

  Returns:
    (n, n) symmetric Gram matrix.
  """
  seen = []
  rows = []
  dtype = np.float64 if accumulate_float64 else np.float32
  for block in blocks:
    block = _as_2d_finite(block, 'feature block').astype(dtype, copy=False)
    seen.append(block)
    rows.append([block @ earlier.T for earlier in seen])
  errors.require(bool(seen), 'no feature blocks were given')
  n = sum(len(b) for b in seen)
  out = np.empty((n, n), dtype)
  offsets = np.cumsum([0] + [len(b) for b in seen])
  for i, row in enumerate(rows):
    for j, product in enumerate(row):
      out[offsets[i]:offsets[i + 1], offsets[j]:offsets[j + 1]] = product
      out[offsets[j]:offsets[j + 1], offsets[i]:offsets[i + 1]] = product.T
  return out


def feature_scale(features_or_gram: np.ndarray, is_gram: bool = False) -> float:
  """Mean L2 norm of the rows: s = mean_i ||phi_i||.

  Dividing features by s (the Gram by s^2) gives average norm 1, the
  normalization the max-margin solver's step sizes assume.

  Args:
    features_or_gram: (n, P) features, or an (n, n) Gram if `is_gram`.
    is_gram: read norms off the Gram diagonal.

  Returns:
    s > 0.

  Raises:
    AfterKernelError: all features are zero (no signal to normalize).
  """
  if is_gram:
    norms = np.sqrt(np.maximum(np.diag(features_or_gram).astype(np.float64),
                               0.0))
  else:
    norms = np.linalg.norm(np.asarray(features_or_gram, np.float64), axis=1)
  scale = float(np.mean(norms))
  errors.require(scale > 0 and np.isfinite(scale),
                 f'cannot normalize features: mean norm is {scale}')
  return scale


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
