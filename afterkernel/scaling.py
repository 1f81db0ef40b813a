"""Data-scaling laws L(n) = A (1/n + alpha)^beta and their exponents.

Vyas et al. ("Limitations of the NTK for understanding generalization in deep
learning", 2022) summarize how the test error of a predictor falls with the
number of training examples n by the law

  L(n) = A (1/n + alpha)^beta,     A > 0, alpha >= 0, beta > 0,

a power law n^-beta for n << 1/alpha that saturates at A alpha^beta (the
error floor) for n >> 1/alpha, and compare the exponents beta of a network and
of its kernels. The law is fitted by least squares on log error,

  min_{A, alpha, beta} sum_i (log A + beta log(1/n_i + alpha) - log L_i)^2,

so every point counts by its relative misfit (errors span decades). For a
fixed alpha the problem is linear in (log A, beta), so alpha is found by
profiling: the closed-form fit on a log grid of alpha (plus alpha = 0), then a
bounded 1-D refinement of log alpha around the best grid point.

`bootstrap_exponent` gives a confidence interval for beta by resampling RUNS
(see its docstring for why, and for the residual bootstrap used when there is
only one run).
"""

import dataclasses
import math
from typing import Tuple

import numpy as np
from scipy import optimize

from afterkernel import errors as errors_lib

# beta > 0 is required; a fit pinned here means the errors do not fall with n.
MIN_BETA = 1e-8
# alpha grid: from 1e-3 / n_max (invisible against 1/n) to 1e2 / n_min (a
# floor reached long before the smallest n; beyond it beta is unidentifiable).
ALPHA_GRID_LOW = 1e-3
ALPHA_GRID_HIGH = 1e2
ALPHA_GRID_SIZE = 81
# Bootstrap resamples: enough for stable 2.5% / 97.5% percentiles.
DEFAULT_NUM_BOOTSTRAP = 1000
DEFAULT_CONFIDENCE = 0.95
BOOTSTRAP_METHODS = ('auto', 'runs', 'residuals')


@dataclasses.dataclass(frozen=True)
class PowerLawFit:
  """A fitted law L(n) = A (1/n + alpha)^beta.

  Attributes:
    A: amplitude (> 0).
    alpha: saturation (>= 0); the error floor is A alpha^beta.
    beta: exponent (> 0); L ~ n^-beta while 1/n >> alpha.
    rms_log_residual: sqrt(mean (log L_fit - log L)^2) over the points.
    num_points: number of (n, error) points fitted.
  """
  A: float  # pylint: disable=invalid-name
  alpha: float
  beta: float
  rms_log_residual: float
  num_points: int

  def predict(self, n) -> np.ndarray:
    """L(n) = A (1/n + alpha)^beta for n (scalar or array, > 0)."""
    n = np.asarray(n, dtype=np.float64)
    return self.A * (1.0 / n + self.alpha)**self.beta

  @property
  def floor(self) -> float:
    """The error as n -> infinity, A alpha^beta."""
    return self.A * self.alpha**self.beta


def _checked_points(n, errors) -> Tuple[np.ndarray, np.ndarray]:
  n = np.asarray(n, dtype=np.float64)
  errors = np.asarray(errors, dtype=np.float64)
  errors_lib.require(n.ndim == 1 and errors.shape == n.shape,
                     f'n and errors must be 1-D of equal length, got shapes '
                     f'{n.shape} and {errors.shape}')
  errors_lib.require(np.all(np.isfinite(n)) and np.all(n > 0),
                     f'n must be finite and positive, got {n[:5].tolist()}')
  bad = ~(np.isfinite(errors) & (errors > 0))
  errors_lib.require(
      not bad.any(),
      f'errors must be finite and > 0 (the fit is on log error), got '
      f'{errors[bad][:3].tolist()} at n={n[bad][:3].tolist()}; use more test '
      'examples or drop those points')
  errors_lib.require(len(np.unique(n)) >= 3,
                     f'fitting A, alpha, beta needs at least 3 distinct n, got '
                     f'{sorted(set(n.tolist()))}')
  return n, errors


def _profile(log_x_plus_alpha: np.ndarray, log_errors: np.ndarray):
  """Closed-form (log A, beta, SSE) for each row of log(1/n + alpha).

  Args:
    log_x_plus_alpha: (G, k) log(1/n_i + alpha_g).
    log_errors: (k,) log L_i.

  Returns:
    (log_a, beta, sse), each (G,), with beta clipped to >= MIN_BETA (then
    log A refitted: the constrained optimum of a 1-D convex problem).
  """
  z = log_x_plus_alpha
  z_mean = z.mean(axis=1, keepdims=True)
  y_mean = log_errors.mean()
  zc = z - z_mean
  denominator = np.sum(zc**2, axis=1)
  numerator = zc @ (log_errors - y_mean)
  with np.errstate(divide='ignore', invalid='ignore'):
    beta = np.where(denominator > 0, numerator / denominator, MIN_BETA)
  beta = np.maximum(beta, MIN_BETA)
  log_a = y_mean - beta * z_mean[:, 0]
  residual = log_a[:, None] + beta[:, None] * z - log_errors
  return log_a, beta, np.sum(residual**2, axis=1)


def fit_power_law(n, errors) -> PowerLawFit:
  """Least-squares fit of log L(n) = log A + beta log(1/n + alpha).

  Args:
    n: (k,) training-set sizes (> 0; repeats allowed, >= 3 distinct).
    errors: (k,) test errors (or losses) at those sizes, > 0.

  Returns:
    The `PowerLawFit` minimizing the squared log residuals over A > 0,
    alpha >= 0, beta >= MIN_BETA.

  Raises:
    AfterKernelError: mismatched shapes, non-positive or non-finite values,
      or fewer than 3 distinct n.
  """
  n, errors = _checked_points(n, errors)
  x = 1.0 / n
  log_errors = np.log(errors)
  low = ALPHA_GRID_LOW * x.min()
  high = ALPHA_GRID_HIGH * x.max()
  log_grid = np.linspace(math.log(low), math.log(high), ALPHA_GRID_SIZE)
  alphas = np.concatenate([[0.0], np.exp(log_grid)])
  log_a, beta, sse = _profile(np.log(x[None, :] + alphas[:, None]), log_errors)
  best = int(np.argmin(sse))
  candidates = [(sse[best], alphas[best], log_a[best], beta[best])]
  if best > 0:
    # Refine log alpha between the grid neighbours of the best point.
    step = log_grid[1] - log_grid[0]
    centre = log_grid[best - 1]

    def objective(log_alpha):
      return _profile(np.log(x + math.exp(log_alpha))[None, :],
                      log_errors)[2][0]

    refined = optimize.minimize_scalar(
        objective, bounds=(centre - step, centre + step), method='bounded',
        options={'xatol': 1e-10})
    alpha = math.exp(refined.x)
    r_log_a, r_beta, r_sse = _profile(np.log(x + alpha)[None, :], log_errors)
    candidates.append((r_sse[0], alpha, r_log_a[0], r_beta[0]))
  sse_best, alpha, log_a_best, beta_best = min(candidates,
                                               key=lambda c: c[0])
  return PowerLawFit(A=float(math.exp(log_a_best)), alpha=float(alpha),
                     beta=float(beta_best),
                     rms_log_residual=float(math.sqrt(sse_best / len(n))),
                     num_points=len(n))


def bootstrap_exponent(n,
                       errors_by_run,
                       num_bootstrap: int = DEFAULT_NUM_BOOTSTRAP,
                       seed: int = 0,
                       confidence: float = DEFAULT_CONFIDENCE,
                       method: str = 'auto') -> Tuple[float, float, float]:
  """The exponent beta of the mean error curve with a bootstrap interval.

  beta is fitted (`fit_power_law`) to the mean over runs of the errors at
  each n. The interval is the percentile interval of beta over resamples:

  * 'runs' (what 'auto' uses with >= 2 runs): draw as many runs as there are,
    with replacement, average them at each n and refit. A run (one seed: its
    initialization, data subsample and SGD order) is the independent unit of
    the experiment; errors of one run at different n are correlated (shared
    seed, nested subsets), and resampling whole runs keeps that correlation
    and makes no assumption about the law being right.
  * 'residuals' (what 'auto' uses with one run): add resampled log residuals
    of the fit to the fitted curve and refit. It needs only one curve but
    assumes the law is correct and the log residuals exchangeable, so it
    understates the uncertainty when the law misfits.

  Args:
    n: (k,) training-set sizes (>= 3 distinct).
    errors_by_run: (num_runs, k) errors; NaN marks a missing (run, n).
    num_bootstrap: number of resamples (> 0).
    seed: seed of the resampling.
    confidence: coverage of the interval, in (0, 1).
    method: one of BOOTSTRAP_METHODS.

  Returns:
    (beta, lo, hi): the fitted exponent and the interval bounds.

  Raises:
    AfterKernelError: bad shapes, a column with no finite error, non-positive
      mean errors, 'runs' with one run, or bad arguments.
  """
  errors_lib.require_positive(num_bootstrap, 'num_bootstrap')
  errors_lib.require(confidence is not None and 0 < confidence < 1,
                     f'confidence must be in (0, 1), got {confidence!r}')
  errors_lib.require(
      method in BOOTSTRAP_METHODS,
      f'method must be one of {BOOTSTRAP_METHODS}, got {method!r}')
  n = np.asarray(n, dtype=np.float64)
  by_run = np.asarray(errors_by_run, dtype=np.float64)
  if by_run.ndim == 1:
    by_run = by_run[None, :]
  errors_lib.require(n.ndim == 1, f'n must be 1-D, got shape {n.shape}')
  errors_lib.require(
      by_run.ndim == 2 and by_run.shape[1] == n.shape[0],
      f'errors_by_run must be (num_runs, {n.shape[0]}) with one column per n, '
      f'got shape {by_run.shape}')
  errors_lib.require(
      np.all(np.isfinite(by_run).any(axis=0)),
      'every n needs at least one run with a finite error; drop the n with '
      'none')
  num_runs = by_run.shape[0]
  if method == 'auto':
    method = 'runs' if num_runs >= 2 else 'residuals'
  errors_lib.require(
      method != 'runs' or num_runs >= 2,
      "bootstrap method 'runs' needs at least 2 runs; use 'residuals' or run "
      'more seeds')
  fitted = fit_power_law(n, np.nanmean(by_run, axis=0))
  rng = np.random.default_rng(seed)
  betas = np.empty(num_bootstrap)
  if method == 'runs':
    for b in range(num_bootstrap):
      sample = by_run[rng.integers(0, num_runs, num_runs)]
      present = np.isfinite(sample).any(axis=0)
      keep = present & (np.nansum(sample, axis=0) > 0)
      # A resample may miss every run of some n (NaN-marked data) or draw
      # only zero errors there: fit the remaining points.
      with np.errstate(invalid='ignore'):
        mean = np.nanmean(sample[:, keep], axis=0)
      if len(np.unique(n[keep])) < 3:
        betas[b] = np.nan
        continue
      betas[b] = fit_power_law(n[keep], mean).beta
  else:
    log_fit = np.log(fitted.predict(n))
    residuals = np.log(np.nanmean(by_run, axis=0)) - log_fit
    for b in range(num_bootstrap):
      sample = log_fit + rng.choice(residuals, size=len(residuals))
      betas[b] = fit_power_law(n, np.exp(sample)).beta
  betas = betas[np.isfinite(betas)]
  errors_lib.require(
      len(betas) > 0,
      'no bootstrap resample could be fitted; use more runs or more n')
  tail = (1 - confidence) / 2 * 100
  lo, hi = np.percentile(betas, [tail, 100 - tail])
  return fitted.beta, float(lo), float(hi)
