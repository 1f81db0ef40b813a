"""Power-law fits of the scaling studies' error curves, and their texts.

L(n) = A (1/n + alpha)^beta is fit by least squares on log error
(`scaling.fit_power_law`, with its flag saying whether beta is identified);
beta gets a 95% confidence interval over runs (`scaling.bootstrap_exponent`:
Student t over per-run exponents), and two curves sharing their runs get a
paired interval of their exponents' difference. Zero test errors are
handled by an explicit rule (`ZERO_ERROR_RULES`) before any log fit.
"""

import math
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from afterkernel import errors
from afterkernel import scaling

# log(0) is undefined, so zero test errors need a rule before log fits
# (flooring them at an arbitrary value would move beta with the floor):
# 'exclude' drops every n at which some run of some compared curve made no
# test error, so only measured errors are fit, on one range of n shared by
# the curves compared; 'continuity' fits (k + 1/2) / (m + 1) for k errors
# among m test examples at every n, the standard continuity correction
# (it moves an error of 10 / 2000 by 5%, and of 100 / 2000 by 0.5%).
ZERO_ERROR_RULES = ('exclude', 'continuity')
DEFAULT_ZERO_ERRORS = 'exclude'



def check_zero_errors(rule: str) -> None:
  """Raises AfterKernelError unless `rule` is one of `ZERO_ERROR_RULES`."""
  errors.require_choice(rule, ZERO_ERROR_RULES, 'zero_errors rule')


def zero_error_rule(sizes: Sequence[int], curves: Mapping[str, np.ndarray],
                    test_counts: np.ndarray, rule: str
                    ) -> Tuple[List[int], Dict[str, np.ndarray], List[int]]:
  """Applies a `ZERO_ERROR_RULES` rule to curves that will be log-fit.

  Args:
    sizes: the n, one per column.
    curves: {name: (num_runs, len(sizes)) test errors, NaN = missing}; the
      curves compared with each other (their exponents), handled jointly.
    test_counts: (num_runs, len(sizes)) test examples m behind each error
      (NaN = missing).
    rule: 'exclude' drops the columns (sizes) in which any curve has a zero
      error in any run, for every curve, so that the compared fits cover the
      same n; 'continuity' maps each error k / m to (k + 1/2) / (m + 1).

  Returns:
    (kept sizes, {name: their (num_runs, kept) errors}, excluded sizes).

  Raises:
    AfterKernelError: an unknown rule, or 'continuity' without test counts.
  """
  check_zero_errors(rule)
  sizes = [int(s) for s in sizes]
  if rule == 'exclude':
    zero = np.zeros(len(sizes), bool)
    for values in curves.values():
      zero |= np.any(np.asarray(values) == 0, axis=0)
    keep = np.flatnonzero(~zero)
    return ([sizes[i] for i in keep],
            {k: np.asarray(v, np.float64)[:, keep] for k, v in curves.items()},
            [sizes[i] for i in np.flatnonzero(zero)])
  counts = np.asarray(test_counts, np.float64)
  corrected = {}
  for name, values in curves.items():
    values = np.asarray(values, np.float64)
    errors.require(not np.any(np.isfinite(values) & ~np.isfinite(counts)),
                   'zero_errors=continuity needs the number of test examples '
                   'of every record; use zero_errors=exclude')
    with np.errstate(invalid='ignore'):
      corrected[name] = (np.round(values * counts) + 0.5) / (counts + 1)
  return sizes, corrected, []


def fit_curve(sizes: Sequence[int], values_by_run: np.ndarray,
              num_bootstrap: int, seed: int) -> Dict[str, Any]:
  """Power-law fit of a mean-over-runs curve, with a CI of beta.

  Args:
    sizes: the n, increasing (>= 3).
    values_by_run: (num_runs, len(sizes)) errors, > 0 (NaN = missing); apply
      `zero_error_rule` first.
    num_bootstrap: bootstrap resamples (`scaling.bootstrap_exponent`; used
      with one run).
    seed: bootstrap seed.

  Returns:
    {'A', 'alpha', 'beta', 'rms_log_residual', 'identified',
    'num_points_in_power_regime', 'local_exponent'}: the fit of the mean
    curve (`scaling.fit_power_law`; beta is unreliable when 'identified' is
    False: fewer than 3 sizes below 1/alpha), plus 'beta_low', 'beta_high':
    the 95% interval of `scaling.bootstrap_exponent` ('interval' names its
    method: 'per_run_t' = Student t over the per-run exponents 'run_betas',
    or 'residuals' with one run), 'num_runs' and 'sizes'.

  Raises:
    AfterKernelError: a zero or negative error, or fewer than 3 sizes.
  """
  values = np.asarray(values_by_run, np.float64)
  values = values[~np.all(np.isnan(values), axis=1)]
  errors.require(not np.any(values[np.isfinite(values)] <= 0),
                 'fit_curve got zero or negative errors; apply '
                 'zero_error_rule first')
  sizes = np.asarray(sizes, np.float64)
  fit = scaling.fit_power_law(sizes, np.nanmean(values, axis=0))
  _, low, high = scaling.bootstrap_exponent(
      sizes, values, num_bootstrap=num_bootstrap, seed=seed)
  run_betas = (scaling.per_run_exponents(sizes, values) if len(values) >= 2
               else np.array([]))
  return {'A': float(fit.A), 'alpha': float(fit.alpha),
          'beta': float(fit.beta), 'beta_low': float(low),
          'beta_high': float(high),
          'rms_log_residual': float(fit.rms_log_residual),
          'identified': bool(fit.identified),
          'num_points_in_power_regime': int(fit.num_points_in_power_regime),
          'local_exponent': float(fit.local_exponent),
          'num_runs': int(len(values)),
          'interval': ('per_run_t' if np.sum(np.isfinite(run_betas)) >= 2
                       else 'residuals'),
          'run_betas': [None if not np.isfinite(b) else float(b)
                        for b in run_betas],
          'sizes': [int(s) for s in sizes]}


def power_law(sizes: np.ndarray, fit: Mapping[str, Any]) -> np.ndarray:
  """A (1/n + alpha)^beta at `sizes`."""
  sizes = np.asarray(sizes, np.float64)
  return fit['A'] * (1.0 / sizes + fit['alpha'])**fit['beta']


def values_by_run(records, metric: str, sizes: Sequence[int], field: str,
                   num_runs: int, where=lambda r: True) -> np.ndarray:
  """(num_runs, len(sizes)) values of `metric` by (run, point[field]),
  NaN where missing."""
  values = np.full((num_runs, len(sizes)), np.nan)
  column = {s: i for i, s in enumerate(sizes)}
  for r in records:
    size = r['point'].get(field)
    value = r['metrics'].get(metric)
    if size in column and where(r) and value is not None:
      values[r['run'], column[size]] = value
  return values


def test_counts(records, sizes: Sequence[int], field: str, num_runs: int,
                 default: int) -> np.ndarray:
  """Test examples behind each (run, size) record: its data['n_test'] (the
  examples actually used), else `default`."""
  counts = np.full((num_runs, len(sizes)), np.nan)
  column = {s: i for i, s in enumerate(sizes)}
  for r in records:
    size = r['point'].get(field)
    if size in column:
      counts[r['run'], column[size]] = r.get('data', {}).get('n_test',
                                                              default)
  return counts


def beta_text(fit: Mapping[str, Any]) -> str:
  """beta [95% CI] as table text ('-' without a fit)."""
  if fit is None:
    return '-'
  if fit.get('beta_low') is None:
    return f'{fit["beta"]:.3f}'
  return f'{fit["beta"]:.3f} [{fit["beta_low"]:.3f}, {fit["beta_high"]:.3f}]'


def identified_text(fit: Optional[Mapping[str, Any]]) -> str:
  """Whether beta is identified (`scaling.PowerLawFit`), as table text."""
  if fit is None or 'identified' not in fit:
    return '-'
  return 'yes' if fit['identified'] else 'NO: saturated, beta unreliable'


def local_text(fit: Optional[Mapping[str, Any]]) -> str:
  """The local slope of a fit as table text."""
  if fit is None or fit.get('local_exponent') is None:
    return '-'
  return f'{fit["local_exponent"]:.3f}'


def paired_beta_difference(sizes: Sequence[int], first: np.ndarray,
                           second: np.ndarray,
                           confidence: float = scaling.DEFAULT_CONFIDENCE
                           ) -> Optional[Dict[str, Any]]:
  """beta(first) - beta(second) run by run, with a paired Student-t CI.

  Run r of both curves shares its seed (data subset, initialization), so the
  per-run difference d_r = beta_r(first) - beta_r(second)
  (`scaling.per_run_exponents`) removes the run-to-run variation the two
  share; the interval is mean(d) +- t_{R-1} sd(d) / sqrt(R). It answers
  "does the network's exponent exceed its kernel's" more sharply than two
  overlapping intervals.

  Args:
    sizes: the n, one per column.
    first: (num_runs, len(sizes)) positive errors (NaN = missing).
    second: the same for the other predictor, same runs.
    confidence: coverage of the interval.

  Returns:
    {'mean', 'low', 'high', 'per_run', 'num_runs'}, or None with fewer than
    2 runs where both curves can be fit.
  """
  if len(sizes) < 3:
    return None
  d = (scaling.per_run_exponents(sizes, first) -
       scaling.per_run_exponents(sizes, second))
  finite = d[np.isfinite(d)]
  if len(finite) < 2:
    return None
  half = (stats.t.ppf((1 + confidence) / 2, len(finite) - 1) *
          np.std(finite, ddof=1) / math.sqrt(len(finite)))
  return {'mean': float(finite.mean()), 'low': float(finite.mean() - half),
          'high': float(finite.mean() + half),
          'per_run': [None if not np.isfinite(v) else float(v) for v in d],
          'num_runs': int(len(finite))}


def zero_errors_text(summary: Mapping[str, Any]) -> str:
  """One line: the zero-error rule and the sizes it excluded."""
  zero = summary.get('zero_errors') or {}
  rule = zero.get('rule', DEFAULT_ZERO_ERRORS)
  if rule == 'continuity':
    return ('(zero errors: every error k/m fit as (k + 1/2)/(m + 1), '
            'continuity correction)')
  excluded = zero.get('excluded_sizes') or []
  if not excluded:
    return '(zero errors: none; every n is fit)'
  return (f'(zero errors: n = {", ".join(str(n) for n in excluded)} left out '
          'of every fit, a run had no test error there)')

