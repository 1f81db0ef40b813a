"""Infinite-width NTK and NNGP kernels of fully connected ReLU networks.

The data-scaling study of Vyas et al. (2022) compares a network with its
empirical NTK at initialization and with its infinite-width NTK. The network
family is the model registry's 'ntk_fully_connected'
(`models.ntk.build_ntk_fully_connected`, also reachable here by its 0.1.0
name `build_ntk_fully_connected`, with its layer `NTKBiasDense`):
Flatten -> `depth` x NTKBiasDense(width, relu) -> NTKBiasDense(1), in the
NTK parameterization of Jacot et al. (2018) with biases (as neural-tangents'
`stax.Dense(W_std, b_std, parameterization='ntk')`):
    z_1 = (sigma_w / sqrt(d_0)) W_1 x + sigma_b b_1,
    z_{l+1} = (sigma_w / sqrt(n)) W_{l+1} relu(z_l) + sigma_b b_{l+1},
all W and b drawn from N(0, 1), f(x) = z_{L+1} (one unit), L = depth,
d_0 = number of input values (inputs are flattened), n = width. This module
holds its closed-form limit:

  * `nngp_gram`, `ntk_gram`: the n -> infinity limits of the covariance
    E[f(x) f(x')] at initialization and of the tangent kernel
    Theta(x, x') = grad_theta f(x) . grad_theta f(x') (the latter is also
    constant during gradient-flow training in that limit).

Numerics: float64 throughout; correlations are clipped to [-1, 1]; an input
paired with itself in a symmetric Gram gets correlation exactly 1, because
arccos is ill-conditioned there (t ~ sqrt(2 (1 - rho))): identical or
parallel rows of a *cross* Gram (x_b given) carry a relative error up to
~1e-8 for that reason. Work is vectorized over blocks of rows sized so the
float64 temporaries stay under TEMPORARY_BYTES (`_row_block`); a symmetric
Gram computes only the blocks on and above the diagonal and mirrors them in
place (half the work, no n^2 copy).
The empirical NTK of these models goes through `features`' per-layer and
structured (factored dense-layer) paths: the layers report their scales via
`multipliers()`.

Only fully connected ReLU networks are covered. Convolutional infinite-width
kernels (CNTK, Arora et al. 2019) depend on padding, pooling and the readout,
and computing them costs O(n^2 pixels^2) per layer; use neural-tangents (JAX)
for those, which this TensorFlow library does not depend on.
"""

from typing import Optional, Tuple

import numpy as np

from afterkernel import errors
from afterkernel.models import ntk

# sqrt(2) keeps the ReLU pre-activation variance constant through depth (He).
DEFAULT_WEIGHT_STD = ntk.DEFAULT_NTK_WEIGHT_STD
# No bias by default: the plain arc-cosine recursion of Cho & Saul / Jacot.
DEFAULT_BIAS_STD = ntk.DEFAULT_BIAS_STD
# At most this many rows of x_a per vectorized pass (more gains nothing).
ROW_BLOCK = 1024
# Budget for the per-block temporaries (on top of the (n_a, n_b) output):
# 256 MB keeps a 64k-column Gram well inside a laptop's memory.
TEMPORARY_BYTES = 256 * 2**20
# Live temporaries per (row, column) entry of a block: cov, ntk, and in
# `_relu_expectations` norm, rho, theta and sin (float64) plus bool masks:
# ~6.2 float64 values measured with tracemalloc; 7 (56 bytes) for margin.
BYTES_PER_BLOCK_ENTRY = 56
# Fewer rows than this per pass make the Python loop overhead dominate.
MIN_ROW_BLOCK = 16


# The finite network family lives in the model registry; 0.1.0 names.
NTKBiasDense = ntk.NTKBiasDense
build_ntk_fully_connected = ntk.build_ntk_fully_connected


def _as_float64_rows(x, name: str) -> np.ndarray:
  x = np.asarray(x)
  errors.require(x.ndim >= 2 and x.shape[0] >= 1,
                 f'{name} must have shape (n, ...) with n >= 1 examples, got '
                 f'{x.shape}')
  x = x.reshape(x.shape[0], -1).astype(np.float64)
  errors.require(x.shape[1] >= 1, f'{name} has no feature values: {x.shape}')
  errors.require(bool(np.all(np.isfinite(x))),
                 f'{name} has NaN/inf values')
  return x


def _relu_expectations(cov, var_a, var_b, diagonal=None
                       ) -> Tuple[np.ndarray, np.ndarray]:
  """E[relu(u) relu(v)] and E[relu'(u) relu'(v)], (u, v) Gaussian.

  (u, v) ~ N(0, [[var_a, cov], [cov, var_b]]) elementwise over the block.
  With rho = cov / sqrt(var_a var_b) clipped to [-1, 1], theta = arccos(rho):
    E[relu(u) relu(v)] = sqrt(var_a var_b) (sin theta + (pi - theta) rho)
                         / (2 pi),
    E[step(u) step(v)] = (pi - theta) / (2 pi)
  (the degree-1 and degree-0 arc-cosine kernels of Cho & Saul 2009). Where a
  variance is 0 the variable is 0 almost surely: both are 0 (relu'(0) = 0, as
  in TensorFlow). `diagonal` = (rows, cols) of entries pairing an input with
  itself, where rho is set to exactly 1: arccos is ill-conditioned there
  (t ~ sqrt(2 (1 - rho))), so a rounding error of 1e-16 in rho would move
  those entries by ~1e-8. Computed in place: at most 4 block-sized float64
  arrays (norm, rho, theta, sin) and one bool mask live at once besides
  `cov`, with the same floating-point operations (so the same bits) as the
  plain expressions above.
  """
  norm = np.multiply.outer(var_a, var_b)
  np.sqrt(norm, out=norm)
  positive = norm > 0
  rho = np.zeros_like(cov)
  np.divide(cov, norm, out=rho, where=positive)
  np.clip(rho, -1.0, 1.0, out=rho)
  if diagonal is not None:
    rho[diagonal] = np.where(positive[diagonal], 1.0, 0.0)
  angle = np.arccos(rho)
  sin_theta = np.multiply(rho, rho)
  np.subtract(1.0, sin_theta, out=sin_theta)
  np.maximum(sin_theta, 0.0, out=sin_theta)
  np.sqrt(sin_theta, out=sin_theta)
  np.subtract(np.pi, angle, out=angle)  # pi - theta from here on.
  np.multiply(rho, angle, out=rho)  # (pi - theta) rho; rho is not needed.
  relu = sin_theta
  relu += rho
  del rho
  relu *= norm
  del norm
  relu /= 2.0 * np.pi
  step = angle
  step /= 2.0 * np.pi
  step[~positive] = 0.0
  return relu, step


def _row_block(num_columns: int) -> int:
  """Rows per pass: TEMPORARY_BYTES / (BYTES_PER_BLOCK_ENTRY num_columns).

  Clamped to [MIN_ROW_BLOCK, ROW_BLOCK] (never above ROW_BLOCK, so a small
  ROW_BLOCK still forces small blocks); e.g. 409 rows for 10k columns, 64
  for 64k.
  """
  budget = TEMPORARY_BYTES // (BYTES_PER_BLOCK_ENTRY * max(num_columns, 1))
  return int(max(1, min(ROW_BLOCK, max(MIN_ROW_BLOCK, budget))))


def _block(a_rows, b_cols, vars_a, vars_b, d0, depth, w2, b2, want_ntk,
           diagonal):
  """The NNGP or NTK Gram of rows a_rows against columns b_cols.

  vars_a / vars_b: per-layer Sigma_l(x, x) of those rows / columns;
  diagonal: (rows, cols) entries that pair an input with itself, or None.
  """
  cov = a_rows @ b_cols.T  # Sigma_1 = w2 x.x' / d0 + b2
  cov *= w2
  cov /= d0
  cov += b2
  if diagonal is not None:
    # Exact rho = 1 on the diagonal, whatever the rounding of a @ a.T.
    cov[diagonal] = vars_a[0][diagonal[0]]
  ntk = cov.copy() if want_ntk else None  # Theta_1 = Sigma_1
  for layer in range(depth):
    relu, step = _relu_expectations(cov, vars_a[layer], vars_b[layer],
                                    diagonal)
    del cov
    relu *= w2
    relu += b2
    cov = relu  # Sigma_{l+1}
    if want_ntk:
      step *= w2
      ntk *= step
      ntk += cov  # Theta_{l+1} = Sigma_{l+1} + Theta_l Sigma'_{l+1}
    del step
  return ntk if want_ntk else cov


def _diagonal_variances(sq_norms, d0, depth, weight_std, bias_std):
  """Sigma_l(x, x) for l = 1..depth: rho = 1 gives Sigma/2 exactly."""
  w2, b2 = weight_std ** 2, bias_std ** 2
  var = w2 * sq_norms / d0 + b2
  out = [var]
  for _ in range(depth - 1):
    var = w2 * var / 2.0 + b2
    out.append(var)
  return out


def _kernels(x_a, x_b, depth, weight_std, bias_std, want_ntk: bool):
  """Shared recursion; returns the NNGP or NTK Gram of the output."""
  ntk.check_ntk_hyperparameters(depth, weight_std, bias_std)
  a = _as_float64_rows(x_a, 'x_a')
  symmetric = x_b is None
  b = a if symmetric else _as_float64_rows(x_b, 'x_b')
  errors.require(a.shape[1] == b.shape[1],
                 f'x_a and x_b have {a.shape[1]} vs {b.shape[1]} values per '
                 'example; they must match (inputs are flattened)')
  d0 = a.shape[1]
  w2, b2 = float(weight_std) ** 2, float(bias_std) ** 2
  vars_a = _diagonal_variances(np.einsum('ij,ij->i', a, a), d0, depth,
                               weight_std, bias_std)
  vars_b = vars_a if symmetric else _diagonal_variances(
      np.einsum('ij,ij->i', b, b), d0, depth, weight_std, bias_std)
  out = np.empty((len(a), len(b)), np.float64)
  block = _row_block(len(b))
  for start in range(0, len(a), block):
    stop = min(start + block, len(a))
    rows = slice(start, stop)
    if not symmetric:
      out[rows] = _block(a[rows], b, [v[rows] for v in vars_a], vars_b, d0,
                         depth, w2, b2, want_ntk, None)
      continue
    # Symmetric: only columns >= start; the part left of the diagonal block
    # is the transpose of what earlier passes computed (no n^2 copy).
    out[rows, :start] = out[:start, rows].T
    idx = np.arange(stop - start)
    upper = _block(a[rows], a[start:], [v[rows] for v in vars_a],
                   [v[start:] for v in vars_a], d0, depth, w2, b2, want_ntk,
                   (idx, idx))
    square = upper[:, :stop - start]
    # The diagonal block holds both (i, j) and (j, i): average them so the
    # Gram is exactly symmetric (they differ by the rounding of a @ a.T).
    square += square.T.copy()
    square /= 2.0
    out[rows, start:] = upper
  return out


def nngp_gram(x_a: np.ndarray,
              x_b: Optional[np.ndarray] = None,
              *,
              depth: int,
              weight_std: float = DEFAULT_WEIGHT_STD,
              bias_std: float = DEFAULT_BIAS_STD) -> np.ndarray:
  """Infinite-width NNGP kernel E[f(x) f(x')] of `build_ntk_fully_connected`.

  With d_0 input values, L = depth, sigma_w = weight_std, sigma_b = bias_std:
    Sigma_1(x, x') = sigma_w^2 x.x' / d_0 + sigma_b^2,
    Sigma_{l+1}(x, x') = sigma_w^2 E[relu(u) relu(v)] + sigma_b^2,
      (u, v) ~ N(0, Sigma_l restricted to {x, x'}), in closed form
      sqrt(Sigma_l(x,x) Sigma_l(x',x')) (sin t + (pi - t) cos t) / (2 pi),
      t = arccos of the correlation (clipped to [-1, 1]) (Cho & Saul 2009),
  and the output's covariance is Sigma_{L+1} (Lee et al. 2018; Matthews et al.
  2018). The output's mean is 0, so this is also its covariance.

  Args:
    x_a: (n_a, ...) inputs, flattened to (n_a, d_0).
    x_b: (n_b, ...) inputs with the same d_0; None means x_a (the result is
      then exactly symmetric).
    depth: number of hidden ReLU layers, >= 1.
    weight_std: sigma_w.
    bias_std: sigma_b.

  Returns:
    (n_a, n_b) float64 Gram matrix.

  Raises:
    AfterKernelError: depth < 1, bad stds, mismatched or non-finite inputs.
  """
  return _kernels(x_a, x_b, depth, weight_std, bias_std, want_ntk=False)


def ntk_gram(x_a: np.ndarray,
             x_b: Optional[np.ndarray] = None,
             *,
             depth: int,
             weight_std: float = DEFAULT_WEIGHT_STD,
             bias_std: float = DEFAULT_BIAS_STD) -> np.ndarray:
  """Infinite-width NTK of `build_ntk_fully_connected` (same family).

  With Sigma_l as in `nngp_gram` and
    Sigma'_{l+1}(x, x') = sigma_w^2 E[relu'(u) relu'(v)]
                        = sigma_w^2 (pi - t) / (2 pi),
  the tangent kernel obeys (Jacot et al. 2018; Arora et al. 2019, eq. 4-5)
    Theta_1 = Sigma_1,
    Theta_{l+1}(x, x') = Sigma_{l+1}(x, x')
                         + Theta_l(x, x') Sigma'_{l+1}(x, x'),
  and the network's NTK is Theta_{L+1}: the first term is the gradient with
  respect to layer l+1's weights and biases, the second backpropagates the
  earlier layers' gradients through one ReLU layer. Zero-variance inputs
  (x = 0 with sigma_b = 0) give a zero row, as the network does.

  Args:
    x_a: (n_a, ...) inputs, flattened to (n_a, d_0).
    x_b: (n_b, ...) inputs with the same d_0; None means x_a.
    depth: number of hidden ReLU layers, >= 1.
    weight_std: sigma_w.
    bias_std: sigma_b.

  Returns:
    (n_a, n_b) float64 Gram matrix (exactly symmetric when x_b is None).

  Raises:
    AfterKernelError: depth < 1, bad stds, mismatched or non-finite inputs.
  """
  return _kernels(x_a, x_b, depth, weight_std, bias_std, want_ntk=True)
