"""Benchmark 3: max-margin solvers, time to 99.9% of the optimal margin.

The Gram is a realistic one: the FNTK (VGG-like net at initialization, seed
0) of the first n training images of MNIST 3-vs-8 (permuted with seed 0);
the embedded 8x8 digits are the fallback when MNIST is absent (said so in
the report).

  * optimum: a long working-set run with tolerance `REFERENCE_TOLERANCE`
    gives certified bounds lower <= gamma* <= upper; target = 0.999 * lower
    (lower is within the reference gap of gamma*).
  * afterkernel: `margin.max_margin_from_gram` with solvers 'working_set',
    'dual' and 'stochastic' at tolerance 1e-3, i.e. until the duality gap
    CERTIFIES margin >= 0.999 * upper bound >= 0.999 gamma* (a stricter
    stop than merely reaching it); and at the default 1e-4.
  * original: the primal eager-TF Algorithm 1 loop (`baselines`), timed
    until its margin first reaches the target (it has no certificate and,
    in the original, ran a fixed 120 s). Its per-iteration time is measured
    (median over repeats of `ORIGINAL_TIMED_ITERATIONS` steps, timed inside
    its loop, set-up measured separately); the number of iterations it needs is that of the same
    recursion run by the 'dual' solver (identical in exact arithmetic;
    checked against a full original run when that fits in
    `original_max_seconds`). If it does not fit, its time is extrapolated
    as set-up + iterations x seconds per iteration, and labelled so.

Target (issue 3): >= 100x faster than the original, and the solver <= 10%
of a pipeline's time.
"""

import dataclasses
import time
from typing import Callable, Optional, Sequence

import keras
import numpy as np

from afterkernel.kernels import features
from afterkernel import kernels
from afterkernel import margin
from afterkernel import models
from benchmarks import baselines
from benchmarks import common

SOLVERS = ('working_set', 'dual', 'stochastic')
# Fraction of the optimal margin to reach.
TARGET_FRACTION = 0.999
# Relative gap of the reference ("optimal") run.
REFERENCE_TOLERANCE = 1e-7
REFERENCE_MAX_ITERATIONS = 5_000_000
# Original-solver steps per timed repeat for its per-iteration rate.
ORIGINAL_TIMED_ITERATIONS = 30
# Issue 3's target speed-up over the original solver.
SPEEDUP_TARGET = 100.0


@dataclasses.dataclass(frozen=True)
class MarginConfig:
  n: int


FULL_CONFIGS = (MarginConfig(2000), MarginConfig(4000))
QUICK_CONFIGS = (MarginConfig(500),)


def fntk_problem(n: int, data_dir: Optional[str], batch_size: int):
  """The FNTK features, Gram and labels of n training images; + source."""
  task, source = common.load_task(data_dir)
  n = min(n, len(task.y_train))
  x, y = task.x_train[:n], task.y_train[:n]
  keras.utils.set_random_seed(0)
  model = models.build_model('vgg', x.shape[1:])
  start = time.perf_counter()
  phi = features.gradient_features(model, x, batch_size)
  feature_seconds = time.perf_counter() - start
  start = time.perf_counter()
  gram = kernels.gram(phi)
  gram_seconds = time.perf_counter() - start
  return phi, gram, y, source, feature_seconds, gram_seconds


def run(configs: Sequence[MarginConfig] = FULL_CONFIGS,
        data_dir: Optional[str] = None,
        repeats: int = common.DEFAULT_REPEATS,
        tolerances: Sequence[float] = (1e-3, 1e-4),
        original_max_seconds: float = 600.0,
        batch_size: int = features.DEFAULT_BATCH_SIZE,
        log: Optional[Callable[[str], None]] = None) -> common.Report:
  """Runs benchmark 3; returns its report."""
  report = common.Report('3. Max-margin: time to 99.9% of the optimal margin')
  rows, reference_rows = [], []
  raw = {}
  for config in configs:
    phi, gram, y, source, feature_seconds, gram_seconds = fntk_problem(
        config.n, data_dir, batch_size)
    n, num_parameters = phi.shape
    name = f'n={n}'
    if log:
      log(f'  {name}: FNTK Gram of VGG ({num_parameters} parameters), '
          f'{source}')
    start = time.perf_counter()
    reference = margin.max_margin_from_gram(
        gram, y, solver='working_set', tolerance=REFERENCE_TOLERANCE,
        max_iterations=REFERENCE_MAX_ITERATIONS)
    reference_seconds = time.perf_counter() - start
    reference_gap = ((reference.margin_upper_bound - reference.margin) /
                     reference.margin_upper_bound)
    target = TARGET_FRACTION * reference.margin
    reference_rows.append([
        name, source, f'{num_parameters:,}', feature_seconds, gram_seconds,
        reference.margin, reference.margin_upper_bound, reference_gap,
        reference.iterations, reference_seconds, target])

    # Iterations the Algorithm 1 recursion needs: the 'dual' solver runs it
    # exactly (same iterates as the primal, in coefficient space).
    trace = margin.max_margin_from_gram(gram, y, solver='dual',
                                        tolerance=1e-3, check_every=1)
    needed = baselines.iterations_to_reach(
        [(it, lower) for it, lower, _ in trace.history], target)

    cases = []
    for tolerance in tolerances:
      for solver in SOLVERS:
        cases.append(common.Case(
            f'{solver} tol {tolerance:g}',
            (lambda s=solver, tol=tolerance: margin.max_margin_from_gram(
                gram, y, solver=s, tolerance=tol))))
    phi64 = phi.astype(np.float64)
    del phi
    original_name = f'original: {ORIGINAL_TIMED_ITERATIONS} iterations'
    cases.append(common.Case(
        original_name,
        lambda: baselines.original_primal_solver(
            phi64, y, max_iterations=ORIGINAL_TIMED_ITERATIONS)))
    # The original's runs are kept (small) for their set-up / loop split.
    original_runs = []
    cases[-1].fn = (lambda f=cases[-1].fn: original_runs.append(f()))
    timings = common.run_cases(cases, repeats, log)
    setup = float(np.median([r.setup_seconds for r in original_runs]))
    per_iteration = float(np.median([r.seconds_per_iteration
                                     for r in original_runs]))
    estimate = (setup + needed * per_iteration if needed is not None
                else None)

    measured = None
    if estimate is not None and estimate <= original_max_seconds:
      if log:
        log(f'    original to the target (estimated {estimate:.0f} s)')
      _, peak, delta, _, measured = common.time_call(
          lambda: baselines.original_primal_solver(
              phi64, y, target_margin=target,
              max_seconds=original_max_seconds))
    original_rss = timings[original_name]
    if measured is not None and measured.reached_target:
      original_seconds = measured.seconds_to_target
      original_kind = (f'measured (1 run, {measured.iterations_to_target} '
                       f'iterations; dual recursion: {needed})')
    else:
      original_seconds = estimate
      original_kind = (f'extrapolated: {setup:.2f} s set-up + {needed} '
                       f'iterations x {per_iteration:.3f} s')
    del phi64

    for case in cases:
      if case.name.startswith('original'):
        continue
      t = timings[case.name]
      result = t.warmup_result
      rows.append([
          name, case.name, t.median, result.iterations,
          result.margin, result.margin >= target,
          ((result.margin_upper_bound - result.margin) /
           result.margin_upper_bound),
          original_seconds / t.median if original_seconds else None,
          t.peak_rss_mib, t.delta_rss_mib])
    rows.append([
        name, f'original primal eager TF ({original_kind})', original_seconds,
        needed, measured.margin if measured else None,
        (measured.reached_target if measured else None), None, 1.0,
        original_rss.peak_rss_mib, original_rss.delta_rss_mib])
    best = min((c.name for c in cases if not c.name.startswith('original')
                and c.name.endswith(f'tol {tolerances[0]:g}')),
               key=lambda c: timings[c].median)
    best_seconds = timings[best].median
    pipeline = feature_seconds + gram_seconds + best_seconds
    raw[name] = {
        'source': source, 'num_parameters': num_parameters,
        'feature_seconds': feature_seconds, 'gram_seconds': gram_seconds,
        'reference': {'margin': reference.margin,
                      'upper': reference.margin_upper_bound,
                      'gap': reference_gap,
                      'iterations': reference.iterations,
                      'seconds': reference_seconds},
        'target': target, 'dual_iterations_to_target': needed,
        'timings': timings,
        'original': {'setup_seconds': setup,
                     'seconds_per_iteration': per_iteration,
                     'estimated_seconds_to_target': estimate,
                     'measured': dataclasses.asdict(measured)
                                 if measured else None,
                     'seconds_used': original_seconds, 'kind': original_kind},
        'best': best, 'speedup_best': (original_seconds / best_seconds
                                       if original_seconds else None),
        'solver_fraction_of_pipeline': best_seconds / pipeline}
    if raw[name]['original']['measured']:
      raw[name]['original']['measured'].pop('margins')
    for t in timings.values():
      t.warmup_result = None
    del gram

  report.tables.append(common.format_table(
      ['n', 'data', 'P', 'features s', 'Gram s', 'reference margin',
       'reference upper bound', 'reference gap', 'reference iterations',
       'reference s', 'target (0.999 x margin)'], reference_rows))
  report.tables.append(common.format_table(
      ['n', 'solver', 'median s', 'iterations', 'margin', 'reached 99.9%',
       'certified gap', 'x faster than original', 'peak RSS MiB',
       'ΔRSS MiB'], rows))
  for name, r in raw.items():
    speedup = r['speedup_best']
    report.notes.append(
        f'{name}: best solver {r["best"]} is {speedup:.0f}x faster than the '
        f'original ({"met" if speedup and speedup >= SPEEDUP_TARGET else "NOT met"}'
        f' for >= {SPEEDUP_TARGET:.0f}x); it is '
        f'{100 * r["solver_fraction_of_pipeline"]:.1f}% of features + Gram + '
        'solver at this n.')
  report.notes.append(
      f'Medians of {repeats} round-robin repeats. afterkernel solvers stop at '
      'a CERTIFIED relative gap (tol 1e-3 implies margin >= 0.999 x optimum); '
      'the original is timed to the first iterate reaching the target, '
      'uncertified (generous to it). The original\'s peak RSS is that of '
      f'its {ORIGINAL_TIMED_ITERATIONS}-iteration runs (it holds Z in '
      'float64 on top of the float64 features).')
  report.raw = raw
  return report
