"""Max-margin solvers side by side on one real Gram (issue 13).

The Gram is the FNTK of the fully connected net (`models.build(
'fully_connected', ...)`, seed 0, at initialization) on MNIST 3-vs-8 train
images (permuted with seed 0), float32 as the library forms it
(`kernels.structured_gram`). It is computed once for all 11,982 examples
and cached under `cache_dir` (never in the repository); the n-example
problems are its leading blocks. On each, in one run:

  * exact: the default solver ('exact', greedy dual coordinate descent),
    tolerance 1e-4;
  * JST: Ji-Srebro-Telgarsky Algorithm 1 ('jst1' = 'dual') and its
    working-set variant ('working_set', the 0.1.0 default), each with
    their default iteration budget and a wall-clock cap;
  * libsvm: scikit-learn's SVC(kernel='precomputed') ('sklearn'; with a
    bias, C = 1e6 for unit-scale features), the baseline;
  * on request ('--solvers'): 'interior_point' (Mehrotra on the simplex
    problem) and 'exact_cd' (the default's coordinate descent alone, with
    its full 10^7-step budget and no switch to the interior point: the
    'exact' of versions before the switch).

Any other cached Gram (float32 .npy, n x n, with a labels .npy) is run with
--gram_file / --labels_file instead of the MNIST one (e.g. the CIFAR-10
Grams of BENCHMARKS.md, "Hard Grams"); --max_seconds caps every solver.

Times are of the whole `max_margin_from_gram` call (input checks included),
wall clock and process CPU; 'solve' is the solver alone (wall). Gap = (upper - margin) / upper of the returned
coefficients (none for libsvm, which has no certificate).

  python -m benchmarks.solver_bench --sizes=2000,4000,11982 \\
      --data_dir=/path/to/data --cache_dir=/tmp/afterkernel_solver_bench
  python -m benchmarks.solver_bench --isolate --repeats=1 --sizes=10000 \\
      --gram_file=/tmp/cifar_gram.npy --labels_file=/tmp/cifar_labels.npy \\
      --solvers=exact,interior_point,exact_cd,sklearn
"""

import json
import math
import os
import subprocess
import sys
import time
from typing import Callable, Optional, Sequence
import warnings

from absl import app
from absl import flags
import numpy as np

from afterkernel import margin
from afterkernel.margin import exact
from benchmarks import common

SOLVERS = ('exact', 'sklearn', 'working_set', 'jst1')
# JST solvers: a cap so that one run stays within minutes at n = 11,982.
JST_MAX_SECONDS = 300.0
FULL_SIZES = (2000, 4000, 11982)
GRAM_FILE = 'fc_fntk_mnist38_gram.npy'
LABELS_FILE = 'fc_fntk_mnist38_labels.npy'
DEFAULT_CACHE_DIR = '/tmp/afterkernel_solver_bench'
# Raw results of `--isolate` children, one JSON line each, in cache_dir.
RAW_FILE = 'isolated_results.jsonl'
# Benchmark-only name: coordinate descent without the interior-point switch.
CD_ONLY = 'exact_cd'


def cached_gram(cache_dir: str, data_dir: Optional[str],
                log: Optional[Callable[[str], None]] = None) -> tuple:
  """The full FNTK Gram (float32) and labels, computed once and cached.

  Returns:
    (gram (n, n) float32, labels (n,) in {0, 1}, source description).
  """
  gram_path = os.path.join(cache_dir, GRAM_FILE)
  labels_path = os.path.join(cache_dir, LABELS_FILE)
  task, source = common.load_task(data_dir)
  if not (os.path.exists(gram_path) and os.path.exists(labels_path)):
    import keras  # pylint: disable=g-import-not-at-top
    from afterkernel import kernels  # pylint: disable=g-import-not-at-top
    from afterkernel import models  # pylint: disable=g-import-not-at-top
    from afterkernel.kernels import features  # pylint: disable=g-import-not-at-top
    keras.utils.set_random_seed(0)
    model = models.build('fully_connected', task.x_train.shape[1:])
    start = time.perf_counter()
    gram = kernels.structured_gram(
        features.structured_features(model, task.x_train, 256))
    if log:
      log(f'  FNTK Gram {gram.shape} in {time.perf_counter() - start:.1f} s')
    os.makedirs(cache_dir, exist_ok=True)
    np.save(gram_path, gram)
    np.save(labels_path, np.asarray(task.y_train))
  gram = np.load(gram_path, mmap_mode='r')
  labels = np.load(labels_path)
  return gram, labels, source


def solve(gram: np.ndarray, labels: np.ndarray, solver: str,
          jst_max_seconds: float = JST_MAX_SECONDS) -> tuple:
  """One timed solve; returns (wall s, process CPU s, peak RSS MiB, result).

  On a shared machine the CPU time is the steadier figure: all solvers here
  run on one thread.
  """
  return _solve(gram, labels, solver, jst_max_seconds)[:4]


def _solve(gram, labels, solver, jst_max_seconds, max_seconds=None):
  """`solve` + the RSS the call needed on top of what was held (MiB)."""
  options = {'max_seconds': max_seconds}
  if solver in ('working_set', 'jst1'):
    options['max_seconds'] = min(jst_max_seconds, max_seconds or math.inf)
  with warnings.catch_warnings():
    warnings.simplefilter('ignore', margin.UnconvergedWarning)
    cpu = time.process_time()
    seconds, peak, delta, _, result = common.time_call(
        lambda: _call(gram, labels, solver, options))
    cpu = time.process_time() - cpu
  return seconds, cpu, peak, result, delta


def _call(gram, labels, solver, options):
  """One solve; CD_ONLY is 'exact' with the switch budget out of reach."""
  if solver != CD_ONLY:
    return margin.max_margin_from_gram(gram, labels, solver=solver,
                                       **options)
  saved = margin.api.SWITCH_STEPS_PER_EXAMPLE
  margin.api.SWITCH_STEPS_PER_EXAMPLE = exact.DEFAULT_MAX_ITERATIONS
  try:
    return margin.max_margin_from_gram(gram, labels, solver='exact',
                                       **options)
  finally:
    margin.api.SWITCH_STEPS_PER_EXAMPLE = saved


def _gap(result) -> Optional[float]:
  """(upper - margin) / upper; None without a positive finite upper bound
  (libsvm; not separable with ||Z^T p|| = 0)."""
  upper = result.margin_upper_bound
  if not (np.isfinite(upper) and upper > 0):
    return None
  return float((upper - result.margin) / upper)


# Marks the child's one line of results on its stdout.
CHILD_PREFIX = 'SOLVER_BENCH_RESULT '


def gram_paths(cache_dir: str, gram_file: Optional[str] = None,
               labels_file: Optional[str] = None) -> tuple:
  """(Gram .npy, labels .npy): the given files, else the cached MNIST ones."""
  if gram_file:
    return gram_file, labels_file
  return os.path.join(cache_dir, GRAM_FILE), os.path.join(cache_dir,
                                                          LABELS_FILE)


def child_solve(solver: str, n: int, cache_dir: str,
                jst_max_seconds: float, gram_file: Optional[str] = None,
                labels_file: Optional[str] = None,
                max_seconds: Optional[float] = None) -> dict:
  """One solve in this (fresh) process on the cached Gram's n x n block.

  Returns wall/CPU seconds, the RSS the solve needed beyond the Gram
  ('delta_rss_mib', the kernel's high-water mark reset before the call) and
  the process's peak RSS while solving (Gram and libraries included).
  """
  gram_path, labels_path = gram_paths(cache_dir, gram_file, labels_file)
  gram = np.load(gram_path, mmap_mode='r')
  labels = np.load(labels_path)
  block, y = np.ascontiguousarray(gram[:n, :n]), labels[:n]
  with warnings.catch_warnings():  # compiled code loaded outside the timing
    warnings.simplefilter('ignore')
    margin.max_margin_from_gram(block[:50, :50], y[:50], max_iterations=10)
  seconds, cpu, _, result, delta = _solve(block, y, solver, jst_max_seconds,
                                          max_seconds)
  return {'seconds': seconds, 'cpu_seconds': cpu,
          'solve_seconds': result.seconds, 'iterations': result.iterations,
          'margin': result.margin, 'stop_reason': result.stop_reason,
          'result_solver': result.solver, 'gap': _gap(result),
          'support': int(np.count_nonzero(result.dual_coef)),
          'delta_rss_mib': delta, 'gram_mib': block.nbytes / 2**20,
          # VmHWM since the reset before the solve: the process's peak
          # while solving (Gram and libraries included). Not ru_maxrss:
          # Linux carries it over from the parent across fork + exec.
          'max_rss_mib': common.peak_rss_mib()}


def isolated_solve(solver: str, n: int, cache_dir: str,
                   jst_max_seconds: float, gram_file: Optional[str] = None,
                   labels_file: Optional[str] = None,
                   max_seconds: Optional[float] = None) -> dict:
  """`child_solve` in a fresh Python process (its own peak memory)."""
  extra = [f'--gram_file={gram_file}', f'--labels_file={labels_file}'
          ] if gram_file else []
  if max_seconds is not None:
    extra.append(f'--max_seconds={max_seconds}')
  out = subprocess.run(
      [sys.executable, '-m', 'benchmarks.solver_bench',
       f'--child={solver}:{n}', f'--cache_dir={cache_dir}',
       f'--jst_max_seconds={jst_max_seconds}', *extra],
      capture_output=True, text=True, check=True)
  line = [l for l in out.stdout.splitlines() if l.startswith(CHILD_PREFIX)]
  return json.loads(line[-1][len(CHILD_PREFIX):])


def run_isolated(sizes: Sequence[int] = FULL_SIZES,
                 solvers: Sequence[str] = ('exact', 'jst1', 'sklearn'),
                 data_dir: Optional[str] = None,
                 cache_dir: str = DEFAULT_CACHE_DIR,
                 repeats: int = common.DEFAULT_REPEATS,
                 jst_max_seconds: float = JST_MAX_SECONDS,
                 log: Optional[Callable[[str], None]] = None,
                 gram_file: Optional[str] = None,
                 labels_file: Optional[str] = None,
                 max_seconds: Optional[float] = None) -> common.Report:
  """Every (n, solver) in its own process, interleaved, `repeats` rounds.

  Round r runs every size and solver before round r + 1 starts, so load
  changes on a shared machine hit all of them; medians are reported.
  `gram_file` / `labels_file`: another cached Gram than the MNIST one.
  """
  if gram_file:
    labels, source = np.load(labels_file), gram_file
  else:
    _, labels, source = cached_gram(cache_dir, data_dir, log)
  sizes = [min(n, len(labels)) for n in sizes]
  runs = {(n, s): [] for n in sizes for s in solvers}
  for repeat in range(repeats):
    for n in sizes:
      for solver in solvers:
        runs[n, solver].append(isolated_solve(
            solver, n, cache_dir, jst_max_seconds, gram_file, labels_file,
            max_seconds))
        if log:
          log(f'  round {repeat}: n={n} {solver}: '
              f'{runs[n, solver][-1]["seconds"]:.3f} s')
  median = lambda n, s, key: float(np.median([r[key] for r in runs[n, s]]))
  rows = []
  for n in sizes:
    for solver in solvers:
      last = runs[n, solver][-1]
      rows.append([n, last.get('result_solver', solver),
                   median(n, solver, 'seconds'),
                   median(n, solver, 'cpu_seconds'),
                   median(n, solver, 'solve_seconds'), last['iterations'],
                   last['margin'], last['gap'], last['stop_reason'],
                   last['support'], median(n, solver, 'delta_rss_mib'),
                   median(n, solver, 'max_rss_mib'), last['gram_mib'],
                   median(n, solver, 'seconds') /
                   median(n, 'sklearn', 'seconds')
                   if 'sklearn' in solvers else None])
  report = common.Report('Max-margin solvers, each solve in its own process')
  report.tables.append(common.format_table(
      ['n', 'solver', 'wall s', 'CPU s', 'solve wall s', 'iterations',
       'margin', 'gap', 'stop', 'support', 'solve ΔRSS MiB',
       'peak RSS while solving MiB', 'Gram MiB', 'x libsvm wall'], rows))
  report.notes.append(
      f'Gram: {source}; medians of {repeats} interleaved rounds, each solve '
      f'in a fresh process; JST capped at {jst_max_seconds:g} s; load '
      f'average at the end {common.load_average()} (shared machine).')
  report.raw = {f'n={n}/{s}': v for (n, s), v in runs.items()}
  return report


def run(sizes: Sequence[int] = FULL_SIZES,
        solvers: Sequence[str] = SOLVERS,
        data_dir: Optional[str] = None,
        cache_dir: str = DEFAULT_CACHE_DIR,
        gram: Optional[np.ndarray] = None,
        labels: Optional[np.ndarray] = None,
        log: Optional[Callable[[str], None]] = None) -> common.Report:
  """Runs every solver on the n x n leading block for each n in `sizes`."""
  report = common.Report('Max-margin solvers on the FC FNTK of MNIST 3-vs-8')
  if gram is None:
    gram, labels, source = cached_gram(cache_dir, data_dir, log)
  else:
    source = 'given Gram'
  rows = []
  raw = {'source': source, 'machine': common.machine_info()}
  for n in sizes:
    n = min(n, len(labels))
    block = np.ascontiguousarray(gram[:n, :n])
    y = labels[:n]
    # Load the compiled code outside the timings (a one-off per process).
    with warnings.catch_warnings():
      warnings.simplefilter('ignore')
      margin.max_margin_from_gram(block[:50, :50], y[:50], max_iterations=10)
    timed = {}
    for solver in solvers:
      if log:
        log(f'  n={n}: {solver}')
      timed[solver] = solve(block, y, solver)
    baseline = timed['sklearn'][1] if 'sklearn' in timed else None
    for solver, (seconds, cpu, peak, result) in timed.items():
      gap = _gap(result)
      rows.append([
          n, solver, seconds, cpu, result.seconds, result.iterations,
          result.margin, gap, result.stop_reason,
          int(np.count_nonzero(result.dual_coef)), peak,
          cpu / baseline if baseline else None])
      raw[f'n={n}/{solver}'] = {
          'seconds': seconds, 'cpu_seconds': cpu,
          'solve_seconds': result.seconds,
          'iterations': result.iterations, 'margin': result.margin,
          'upper': result.margin_upper_bound, 'gap': gap,
          'stop_reason': result.stop_reason, 'peak_rss_mib': peak}
  report.tables.append(common.format_table(
      ['n', 'solver', 'wall s', 'CPU s', 'solve wall s', 'iterations',
       'margin', 'gap', 'stop', 'support', 'peak RSS MiB',
       'x libsvm CPU time'], rows))
  report.notes.append(f'Gram: {source}; float32, leading n x n blocks; '
                      f'load average {common.load_average()}.')
  report.notes.append(
      'margin: normalized, features rescaled to mean norm 1; libsvm fits a '
      'bias (its margin is that of f + b) and has no certificate.')
  report.raw = raw
  return report


def _define_flags() -> dict:
  """The command-line flags (defined only when run as a program)."""
  return {
      'sizes': flags.DEFINE_list('sizes', [str(n) for n in FULL_SIZES],
                                 'Numbers of examples (leading blocks).'),
      'solvers': flags.DEFINE_list('solvers', list(SOLVERS),
                                   'Solvers to run.'),
      'data_dir': flags.DEFINE_string(
          'data_dir', None, 'Folder with mnist/ (default: '
          'benchmarks.common.default_data_dir()).'),
      'cache_dir': flags.DEFINE_string(
          'cache_dir', DEFAULT_CACHE_DIR,
          'Where the Gram is cached (not the repository).'),
      'isolate': flags.DEFINE_bool(
          'isolate', False, 'Each solve in its own process, interleaved '
          'rounds (peak memory per solve).'),
      'repeats': flags.DEFINE_integer('repeats', common.DEFAULT_REPEATS,
                                      'Rounds with --isolate.'),
      'jst_max_seconds': flags.DEFINE_float(
          'jst_max_seconds', JST_MAX_SECONDS, 'Wall-clock cap of JST.'),
      'child': flags.DEFINE_string('child', None,
                                   'Internal: solver:n of one child solve.'),
      'gram_file': flags.DEFINE_string(
          'gram_file', None, 'A cached n x n Gram (.npy) to run instead of '
          'the MNIST one (needs --labels_file).'),
      'labels_file': flags.DEFINE_string('labels_file', None,
                                         'Labels (.npy) of --gram_file.'),
      'max_seconds': flags.DEFINE_float(
          'max_seconds', None, 'Wall-clock cap of every solver.'),
  }


def main(argv, defined):
  del argv
  if defined['child'].value:
    solver, n = defined['child'].value.split(':')
    result = child_solve(solver, int(n), defined['cache_dir'].value,
                         defined['jst_max_seconds'].value,
                         defined['gram_file'].value,
                         defined['labels_file'].value,
                         defined['max_seconds'].value)
    # Every child's raw result is also appended next to the cached Gram, so
    # an interrupted run keeps what it measured.
    with open(os.path.join(defined['cache_dir'].value, RAW_FILE), 'a',
              encoding='utf-8') as f:
      f.write(json.dumps({'solver': solver, 'n': int(n), **result}) + '\n')
    print(CHILD_PREFIX + json.dumps(result))
    return
  if defined['isolate'].value:
    print(run_isolated([int(n) for n in defined['sizes'].value],
                       defined['solvers'].value,
                       defined['data_dir'].value or common.default_data_dir(),
                       defined['cache_dir'].value, defined['repeats'].value,
                       defined['jst_max_seconds'].value, log=print,
                       gram_file=defined['gram_file'].value,
                       labels_file=defined['labels_file'].value,
                       max_seconds=defined['max_seconds'].value).text())
    return
  report = run([int(n) for n in defined['sizes'].value],
               defined['solvers'].value,
               defined['data_dir'].value or common.default_data_dir(),
               defined['cache_dir'].value, log=print)
  print(report.text())


if __name__ == '__main__':
  _FLAGS = _define_flags()
  app.run(lambda argv: main(argv, _FLAGS))
