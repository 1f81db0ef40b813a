"""What pinning the SVM test error down costs: one solve vs `tighten`.

A certified solve at relative gap g bounds the test error of the exact
max-margin classifier only to an interval (`margin.stability`); the
probe's default re-solves, warm started, at g / 100, g / 10^4, ... down to
`stability.DEFAULT_MIN_TOLERANCE` until the interval is one value. On each
given problem (an .npz with the training Gram 'k', the test cross-Gram 'c'
(m x n), the test points' K(x, x) 't', and labels 'y', 'yt'), in one run:

  * once: one solve at the tolerance (the default before `tighten`), its
    test error and certified interval;
  * tightened: `stability.tighten` from the same tolerance (the default
    now): rounds, the final gap, error and interval;
  * cold: one solve straight at the floor tolerance, from scratch.

It prints seconds (wall) and the ratio to 'once', and whether the
tightened and cold errors agree (both exact when their intervals are one
value). `grams_for_tol`-style files are made by the library from real
data (RESULTS.md names the ones measured); nothing is cached here.

  python -m benchmarks.tighten_bench --problems=/tmp/a.npz,/tmp/b.npz
"""

import os
import time
from typing import Dict, Optional, Sequence

from absl import app
from absl import flags
import numpy as np

from afterkernel import margin
from afterkernel import training
from afterkernel.margin import stability
from benchmarks import common

_PROBLEMS = flags.DEFINE_list('problems', [], '.npz files with k, c, t, y, '
                              'yt (module docstring).')
_SOLVER = flags.DEFINE_string('solver', 'exact', 'one of '
                              'margin.WARM_START_SOLVERS')
_TOLERANCE = flags.DEFINE_float('tolerance', margin.DEFAULT_TOLERANCE,
                                'the first (untightened) relative gap')
_MIN_TOLERANCE = flags.DEFINE_float('min_tolerance',
                                    stability.DEFAULT_MIN_TOLERANCE,
                                    'the floor of the tightening')


def _problem(arrays: Dict[str, np.ndarray], solver: str):
  """(solve(tolerance, previous), error_bounds(result), decisions(result))."""
  gram, cross = arrays['k'], arrays['c']
  labels, test_labels = arrays['y'], arrays['yt']
  test_norms = np.sqrt(np.maximum(arrays['t'].astype(np.float64), 0.0))

  def solve(tolerance, previous, max_seconds=None):
    return margin.max_margin_from_gram(gram, labels, solver=solver,
                                       tolerance=tolerance,
                                       warm_start=previous,
                                       max_seconds=max_seconds)

  def decisions(result):
    return margin.decision_function(result, cross)

  def error_bounds(result):
    if stability.prediction_radius(result) is None:
      return None, None
    return stability.certified_error_bounds(
        result, decisions(result), stability.gram_weight_norm(result, gram),
        test_norms, test_labels)

  return solve, error_bounds, decisions


def _row(name, label, seconds, base_seconds, result, bounds, rounds, error,
         iterations):
  gap = ((result.margin_upper_bound - result.margin) /
         result.margin_upper_bound if result.margin_upper_bound > 0 else None)
  return [name, label, seconds, seconds / base_seconds, rounds, gap,
          iterations, error, bounds[0], bounds[1]]


def run(problems: Dict[str, Dict[str, np.ndarray]], solver: str = 'exact',
        tolerance: float = margin.DEFAULT_TOLERANCE,
        min_tolerance: float = stability.DEFAULT_MIN_TOLERANCE,
        log=None) -> common.Report:
  """Measures the three ways on each problem (name -> arrays); `log`, if
  given, gets each problem's rows as they are measured."""
  report = common.Report('Pinning the SVM test error down: one solve vs '
                         f'tighten ({solver}, {tolerance:.0e} -> '
                         f'{min_tolerance:.0e})')
  rows = []
  for name, arrays in problems.items():
    solve, error_bounds, decisions = _problem(arrays, solver)
    test_labels = arrays['yt']
    started = time.perf_counter()
    once = solve(tolerance, None)
    once_bounds = error_bounds(once)
    once_seconds = time.perf_counter() - started
    once_error = training.sign_error(decisions(once), test_labels)
    started = time.perf_counter()
    rounds = []

    def counted(tol, previous, max_seconds, rounds=rounds, solve=solve):
      rounds.append(tol)
      return solve(tol, previous, max_seconds)

    tight, tight_bounds, iterations = stability.tighten(
        counted, error_bounds, tolerance, min_tolerance)
    tight_seconds = time.perf_counter() - started
    tight_error = training.sign_error(decisions(tight), test_labels)
    started = time.perf_counter()
    cold = solve(min_tolerance, None)
    cold_bounds = error_bounds(cold)
    cold_seconds = time.perf_counter() - started
    cold_error = training.sign_error(decisions(cold), test_labels)
    rows.append(_row(name, 'once', once_seconds, once_seconds, once,
                     once_bounds, 1, once_error, once.iterations))
    rows.append(_row(name, 'tightened', tight_seconds, once_seconds, tight,
                     tight_bounds, len(rounds), tight_error, iterations))
    rows.append(_row(name, 'cold at floor', cold_seconds, once_seconds, cold,
                     cold_bounds, 1, cold_error, cold.iterations))
    report.raw[name] = dict(
        n=len(arrays['y']), m=len(test_labels),
        once=dict(seconds=once_seconds, error=once_error,
                  bounds=once_bounds, iterations=once.iterations),
        tightened=dict(seconds=tight_seconds, error=tight_error,
                       bounds=tight_bounds, iterations=iterations,
                       tolerances=rounds, converged=tight.converged),
        cold=dict(seconds=cold_seconds, error=cold_error, bounds=cold_bounds,
                  iterations=cold.iterations, converged=cold.converged))
    if log is not None:
      log(common.format_table(['problem', 'way', 'seconds'],
                              [row[:3] for row in rows[-3:]]))
    report.notes.append(
        f'{name} (n = {len(arrays["y"])}, m = {len(test_labels)}): '
        f'tightened error {tight_error:.4f} vs cold-at-floor {cold_error:.4f}'
        f' ({"agree" if tight_error == cold_error else "DIFFER"})')
  report.tables.append(common.format_table(
      ['problem', 'way', 'seconds', 'x once', 'solves', 'final gap',
       'iterations', 'test error', 'lower', 'upper'], rows))
  return report


def _load(path: str) -> Dict[str, np.ndarray]:
  with np.load(path) as data:
    return {key: data[key] for key in ('k', 'c', 't', 'y', 'yt')}


def main(argv: Sequence[str]) -> None:
  del argv
  problems = {os.path.splitext(os.path.basename(path))[0]: _load(path)
              for path in _PROBLEMS.value}
  if not problems:
    raise app.UsageError('give --problems=FILE.npz[,...] (module docstring)')
  print(run(problems, _SOLVER.value, _TOLERANCE.value, _MIN_TOLERANCE.value,
            log=lambda text: print(text, flush=True)).text())


if __name__ == '__main__':
  app.run(main)
