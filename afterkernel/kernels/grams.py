"""Every Gram matrix of afterkernel is formed here, from features or factors.

A kernel here is K(u, v) = phi(u).phi(v) for a feature map phi (gradient
features for the FNTK / after kernel, penultimate activations for the
conjugate projection). This module takes arrays or blocks of features (it
knows no models; `kernels.empirical` goes from a model to a Gram through the
gradient engine and these functions) and forms:

  * dense Grams and cross-Grams, G[i, j] = phi_a(i).phi_b(j) (`gram`), also
    from row blocks as they arrive (`gram_from_blocks`);
  * Grams streamed under a memory budget, recomputing features instead of
    holding them (`streamed_gram`, `train_and_cross_gram`);
  * structured Grams of Dense-layer factors (`structured_gram`,
    neural-tangents' structured derivatives);
  * multi-output kernels of Jacobians J(x) (L x P): the trace over outputs
    sum_l J_l(u).J_l(v) (`traced_gram`, `gram_from_jacobians` kind 'trace')
    or all output pairs (kind 'full'), as neural-tangents' `trace_axes`
    (Novak et al. 2022);
  * the feature scale s = mean_i ||phi(x_i)|| used to rescale features to
    average norm 1 before the max-margin solver.
Kernel alignment and effective ranks, numbers that describe a Gram, are in
`afterkernel.kernels` (its metrics).
"""

import math
from typing import Callable, Iterable, Optional

import numpy as np

from afterkernel import errors

# Rows per matmul block: bounds the temporary copy made for float64
# accumulation (block x P) while keeping BLAS calls large.
DEFAULT_BLOCK_SIZE = 2048
# Rows of features recomputed per streamed block in `streamed_gram`.
DEFAULT_STREAM_BLOCK = 512
# Values per slice when checking features for NaN/inf (bounds the temporary).
_FINITE_CHECK_VALUES = 1 << 24
_GIB = 1024**3


def _as_2d_finite(features: np.ndarray, name: str) -> np.ndarray:
  features = np.asarray(features)
  errors.require(features.ndim == 2,
                 f'{name} must be a 2-D (examples, features) array, got shape '
                 f'{features.shape}')
  # Checked in slices of ~16M values: np.isfinite on the whole array would
  # allocate a boolean copy (2.2 GB for a 2,452 x 905,591 chunk of mega-VGG
  # features) on top of a memory budget.
  rows = max(1, _FINITE_CHECK_VALUES // max(1, features.shape[1]))
  bad, bad_rows = 0, []
  for s in range(0, features.shape[0], rows):
    finite = np.isfinite(features[s:s + rows])
    bad += int(finite.size - np.count_nonzero(finite))
    bad_rows.extend(s + np.flatnonzero(~finite.all(axis=1)))
  # Features of the gradient engine are checked where they are made (inputs
  # and weights named there); this names the rows of features given here.
  errors.require(bad == 0,
                 f'{name} has {bad} NaN/inf values in {len(bad_rows)} rows '
                 f'(first: row {bad_rows[0] if bad_rows else -1}); features of '
                 'finite inputs and weights are finite: check the inputs, '
                 'then the model (did training diverge?)')
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
  if symmetric and features_a.dtype == dtype:
    # One product of the matrix with its own transpose: numpy hands it to
    # BLAS syrk (upper triangle only, mirrored: half the multiply-adds of a
    # GEMM, exactly symmetric) with no temporary copy. Measured faster than
    # the row blocks below once n > block_size (BENCHMARKS.md, section 8);
    # for n <= block_size it is the same single syrk call as before.
    return features_a @ features_a.T
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


def streamed_gram(feature_fn: Callable[[np.ndarray], np.ndarray],
                  num_features: int,
                  rows: np.ndarray,
                  columns: Optional[np.ndarray] = None,
                  memory_budget_gb: Optional[float] = None,
                  stream_block: Optional[int] = None,
                  accumulate_float64: bool = False,
                  log: Optional[Callable[[str], None]] = None) -> np.ndarray:
  """Gram of feature_fn(rows) vs feature_fn(columns) within a memory budget.

  If all features fit in the budget they are computed once and multiplied
  (`gram`). Otherwise the features are never all held: a chunk of row
  features as large as the budget allows stays in memory while the column
  features are recomputed block by block and multiplied against it; then the
  next chunk. Recomputing beats spilling to disk here: features come at
  hundreds to thousands of examples per second (a few hundred MB/s), while
  a spill of the mega-VGG features of MNIST (12k x 905k float32 = 43 GB)
  would have to be written once and read back once per chunk. With chunks
  of C rows, about n + n^2 / (2C) feature rows are computed for a
  symmetric Gram of n examples (2x for n = 3C).

  Args:
    feature_fn: maps (m, ...) inputs to (m, num_features) float32 features;
      must be deterministic (e.g. gradient features of a fixed model).
    num_features: P, the width of feature_fn's output.
    rows: (n, ...) inputs of the Gram's rows.
    columns: (m, ...) inputs of its columns; None means `rows` (symmetric).
    memory_budget_gb: GiB the features may take (the held row chunk, the
      column block being multiplied and the next one being computed),
      besides the (n, m) output and the feature function's own working
      memory (about 2 GiB for mega-VGG at 256-example blocks); None means no
      limit.
    stream_block: rows per recomputed column block; None means
      DEFAULT_STREAM_BLOCK, or a quarter of the rows the budget holds if
      that is smaller (so the held chunk stays the larger part).
    accumulate_float64: multiply in float64 (output float64).
    log: optional progress printer.

  Returns:
    The (n, m) Gram matrix.

  Raises:
    AfterKernelError: a budget too small for one block of each side.
  """
  errors.require_positive(num_features, 'num_features')
  symmetric = columns is None
  columns = rows if symmetric else columns
  n, m = len(rows), len(columns)
  row_bytes = 4 * num_features * (2 if accumulate_float64 else 1)
  if memory_budget_gb is None or (n + (0 if symmetric else m)) * row_bytes <= (
      memory_budget_gb * _GIB):
    features_rows = feature_fn(rows)
    features_columns = None if symmetric else feature_fn(columns)
    return gram(features_rows, features_columns,
                accumulate_float64=accumulate_float64)
  errors.require_positive(memory_budget_gb, 'memory_budget_gb')
  budget_rows = int(memory_budget_gb * _GIB // row_bytes)
  if stream_block is None:
    stream_block = max(1, min(DEFAULT_STREAM_BLOCK, budget_rows // 4))
  errors.require_positive(stream_block, 'stream_block')
  # The budget holds the row chunk, the column block being multiplied and
  # the block feature_fn is filling while it computes the next one.
  chunk = budget_rows - 2 * stream_block
  errors.require(
      chunk >= stream_block,
      f'memory_budget_gb={memory_budget_gb} holds fewer than '
      f'{3 * stream_block} feature rows of {num_features} parameters '
      f'({3 * stream_block * row_bytes / _GIB:.2f} GiB needed); raise it')
  dtype = np.float64 if accumulate_float64 else np.float32
  out = np.empty((n, m), dtype)
  num_chunks = math.ceil(n / chunk)
  for index, start in enumerate(range(0, n, chunk)):
    stop = min(start + chunk, n)
    if log:
      log(f'    streamed Gram: row chunk {index + 1}/{num_chunks} '
          f'({stop - start} rows)')
    held = _as_2d_finite(feature_fn(rows[start:stop]), 'features').astype(
        dtype, copy=False)
    # Symmetric: the chunk's own block, then only the columns after it.
    column_start = start if symmetric else 0
    if symmetric:
      out[start:stop, start:stop] = gram(held, block_size=len(held),
                                         accumulate_float64=accumulate_float64)
      column_start = stop
    for block_start in range(column_start, m, stream_block):
      block_stop = min(block_start + stream_block, m)
      block = _as_2d_finite(feature_fn(columns[block_start:block_stop]),
                            'features').astype(dtype, copy=False)
      product = held @ block.T
      out[start:stop, block_start:block_stop] = product
      if symmetric:
        out[block_start:block_stop, start:stop] = product.T
    del held
  return out


def train_and_cross_gram(feature_fn: Callable[[np.ndarray], np.ndarray],
                         num_features: int,
                         train_inputs: np.ndarray,
                         test_inputs: np.ndarray,
                         memory_budget_gb: Optional[float] = None,
                         log: Optional[Callable[[str], None]] = None) -> tuple:
  """The training Gram and the (test x train) cross-Gram of one feature map.

  When the features of both sets fit in `memory_budget_gb` (or there is no
  budget) each example's features are computed once; otherwise both Grams
  are streamed (`streamed_gram`), recomputing features instead of holding
  them.

  Args:
    feature_fn: deterministic map from inputs to (m, num_features) features.
    num_features: width of the features.
    train_inputs: (n, ...) training inputs.
    test_inputs: (m, ...) test inputs.
    memory_budget_gb: GiB the held features may take; None = no limit.
    log: optional progress printer.

  Returns:
    (train_gram (n, n), cross_gram (m, n)), float32.
  """
  needed = (len(train_inputs) + len(test_inputs)) * num_features * 4
  if memory_budget_gb is None or needed <= memory_budget_gb * _GIB:
    train_features = feature_fn(train_inputs)
    test_features = feature_fn(test_inputs)
    return (gram(train_features),
            gram(test_features, train_features))
  if log:
    log(f'    features need {needed / _GIB:.1f} GiB > budget '
        f'{memory_budget_gb} GiB: streaming the Grams')
  return (streamed_gram(feature_fn, num_features, train_inputs,
                        memory_budget_gb=memory_budget_gb, log=log),
          streamed_gram(feature_fn, num_features, test_inputs, train_inputs,
                        memory_budget_gb=memory_budget_gb, log=log))


def structured_gram(features_a, features_b=None) -> np.ndarray:
  """phi_a phi_b^T from `features.StructuredFeatures`, Dense layers factored.

  K = sum over Dense layers of (H_a H_b^T) * (G_a G_b^T)  (elementwise)
      + other_a other_b^T,
  which equals the Gram of the full gradient features (tested) at
  n^2 (d_in + d_out) cost per Dense layer instead of n^2 d_in d_out.

  Args:
    features_a: StructuredFeatures of the rows.
    features_b: StructuredFeatures of the columns; None means features_a.

  Returns:
    (n_a, n_b) float32 Gram matrix.
  """
  symmetric = features_b is None
  features_b = features_a if symmetric else features_b
  out = gram(features_a.other, None if symmetric else features_b.other)
  for (inputs_a, grads_a), (inputs_b, grads_b) in zip(features_a.dense,
                                                      features_b.dense):
    out += (inputs_a @ inputs_b.T) * (grads_a @ grads_b.T)
  return out


KERNEL_KINDS = ('trace', 'full')
# The trace over outputs: an (n, m) Gram needing one output's gradients at a
# time, and for L = 1 the scalar after kernel.
DEFAULT_KERNEL_KIND = 'trace'


def require_kind(kind: str) -> None:
  errors.require_choice(kind, KERNEL_KINDS, 'kernel kind')


def traced_gram(grams: Iterable[np.ndarray]) -> np.ndarray:
  """The sum of per-output (or per-block) Grams, K = sum_l G_l.

  With G_l[i, j] = J_l(x_i).J_l(x_j) this is the multi-output NTK traced
  over outputs; summed as an iterator, only one G_l's features need to
  exist at a time (600 MNIST images through LeNet-5: 150 MB instead of
  1.5 GB for all ten outputs).

  Args:
    grams: iterable of equally shaped Gram matrices.

  Returns:
    Their sum, accumulated in order.

  Raises:
    AfterKernelError: no Gram given.
  """
  result = None
  for term in grams:
    result = term if result is None else result + term
  errors.require(result is not None, 'traced_gram needs at least one Gram')
  return result


def gram_from_jacobians(jacobians_a: np.ndarray,
                        jacobians_b: Optional[np.ndarray] = None,
                        kind: str = DEFAULT_KERNEL_KIND) -> np.ndarray:
  """The empirical NTK of Jacobians already in memory.

  Args:
    jacobians_a: (n, L, P) per-example Jacobians.
    jacobians_b: (m, L, P); None means `jacobians_a` (symmetric).
    kind: 'trace' -> (n, m) sum over outputs of J_l(x_i).J_l(x_j);
      'full' -> (n L, m L), entry (i L + l, j L + k) = J_l(x_i).J_k(x_j).

  Returns:
    float32 Gram matrix.

  Raises:
    AfterKernelError: unknown kind or mismatched shapes.
  """
  require_kind(kind)
  a = np.asarray(jacobians_a)
  b = a if jacobians_b is None else np.asarray(jacobians_b)
  errors.require(a.ndim == 3 and b.ndim == 3 and a.shape[1:] == b.shape[1:],
                 f'Jacobians must be (n, L, P) with equal L and P, got '
                 f'{a.shape} and {b.shape}')
  if kind == 'full':
    flat_b = None if jacobians_b is None else b.reshape(-1, b.shape[2])
    return gram(a.reshape(-1, a.shape[2]), flat_b)
  # Trace over outputs = Gram of the concatenated rows [J_1, ..., J_L].
  flat_b = None if jacobians_b is None else b.reshape(len(b), -1)
  return gram(a.reshape(len(a), -1), flat_b)


def require_finite_gram(gram_matrix: np.ndarray, what: str) -> None:
  """Raises one AfterKernelError naming `what` if a Gram has NaN/inf."""
  bad = int(np.count_nonzero(~np.isfinite(gram_matrix)))
  errors.require(
      bad == 0,
      f'{what} has {bad} NaN/inf entries of {gram_matrix.size}; the network or kernel '
      'may have diverged, recompute it from a finite model')
