"""Timing, peak-memory and reporting helpers shared by the benchmarks.

The machines these run on are shared and noisy, so every benchmark measures
all its variants in ONE process, round-robin (repeat r of every case before
repeat r + 1 of any), and reports medians and in-run ratios; absolute seconds
from different runs should not be compared.

Peak memory is the peak resident set size (RSS) of the process during each
timed call. On Linux the kernel's high-water mark is reset before every call
(`echo 5 > /proc/self/clear_refs`, Linux >= 4.0) and VmHWM read after it, so
each case gets its own peak; elsewhere `resource.getrusage` gives only the
process-wide peak so far, which is reported with a note.
"""

import dataclasses
import gc
import json
import os
import platform
import resource
import statistics
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

# Repeats per case; the median is reported.
DEFAULT_REPEATS = 3
_MIB = 1024.0**2


# ----------------------------------------------------------------------------
# Memory.


def _status_kib(field: str) -> Optional[float]:
  """A 'kB' field of /proc/self/status (e.g. VmRSS, VmHWM), or None."""
  try:
    with open('/proc/self/status', encoding='ascii') as f:
      for line in f:
        if line.startswith(field + ':'):
          return float(line.split()[1])
  except OSError:
    return None
  return None


def current_rss_mib() -> float:
  """Resident set size now, MiB (the process-wide peak off Linux)."""
  kib = _status_kib('VmRSS')
  if kib is None:
    return peak_rss_mib()
  return kib / 1024.0


def peak_rss_mib() -> float:
  """Peak RSS since the last `reset_peak_rss` (Linux) or process start, MiB."""
  kib = _status_kib('VmHWM')
  if kib is not None:
    return kib / 1024.0
  peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
  # ru_maxrss is in KiB on Linux, bytes on macOS.
  return peak / (_MIB if sys.platform == 'darwin' else 1024.0)


def reset_peak_rss() -> bool:
  """Resets the kernel's RSS high-water mark; False where unsupported."""
  try:
    with open('/proc/self/clear_refs', 'w', encoding='ascii') as f:
      f.write('5')
    return True
  except OSError:
    return False


# ----------------------------------------------------------------------------
# Timing.


@dataclasses.dataclass
class Case:
  """One variant to time.

  Attributes:
    name: label in tables.
    fn: the timed call (no arguments).
    warmup: called once before any timing (e.g. to trace a tf.function);
      None means call `fn` once. Its return value is kept in `warmup_result`.
    repeats: timed calls; None means the suite's repeats.
  """
  name: str
  fn: Callable[[], Any]
  warmup: Optional[Callable[[], Any]] = None
  repeats: Optional[int] = None


@dataclasses.dataclass
class Timing:
  """Measured seconds and memory of one `Case`.

  Attributes:
    name: the case's name.
    seconds: every timed call, in order.
    median: median of `seconds`.
    peak_rss_mib: largest peak RSS over the timed calls (process-wide).
    delta_rss_mib: largest (peak during a call - RSS before it): the memory
      the call itself needed on top of what was already held.
    peak_is_per_call: whether the peak could be reset before each call.
    warmup_result: what the warm-up call returned.
    warmup_seconds: how long the warm-up calls took (tracing included).
  """
  name: str
  seconds: List[float]
  median: float
  peak_rss_mib: float
  delta_rss_mib: float
  peak_is_per_call: bool
  warmup_result: Any = None
  warmup_seconds: float = 0.0

  def to_dict(self) -> Dict[str, Any]:
    return {'name': self.name, 'seconds': self.seconds, 'median': self.median,
            'peak_rss_mib': self.peak_rss_mib,
            'delta_rss_mib': self.delta_rss_mib,
            'peak_is_per_call': self.peak_is_per_call,
            'warmup_seconds': self.warmup_seconds}


def time_call(fn: Callable[[], Any]) -> tuple:
  """Runs fn once; returns (seconds, peak RSS MiB, delta MiB, per_call, result)."""
  gc.collect()
  per_call = reset_peak_rss()
  before = current_rss_mib()
  start = time.perf_counter()
  result = fn()
  seconds = time.perf_counter() - start
  peak = peak_rss_mib()
  return seconds, peak, max(peak - before, 0.0), per_call, result


def run_cases(cases: Sequence[Case], repeats: int = DEFAULT_REPEATS,
              log: Optional[Callable[[str], None]] = None,
              warmups: int = 1) -> Dict[str, Timing]:
  """Warms up every case, then times them round-robin; returns name -> Timing.

  Round-robin (repeat r of every case before repeat r + 1 of any) spreads
  load changes on a shared machine over all cases, so in-run ratios are
  more trustworthy than back-to-back blocks of repeats. `warmups` untimed
  calls per case come first: the first traces tf.functions; a second one
  lets the process's memory reach its steady state (in a fresh process the
  second call of a memory-hungry case was still up to 3x slower).
  """
  warm = {}
  for case in cases:
    start = time.perf_counter()
    for _ in range(warmups):
      result = (case.warmup or case.fn)()
    warm[case.name] = (result, time.perf_counter() - start)
    if log:
      log(f'    warm-up {case.name}: {warm[case.name][1]:.2f} s')
  records = {case.name: ([], [], []) for case in cases}
  per_call_all = True
  for r in range(max(c.repeats or repeats for c in cases)):
    for case in cases:
      if r >= (case.repeats or repeats):
        continue
      seconds, peak, delta, per_call, result = time_call(case.fn)
      del result
      per_call_all = per_call_all and per_call
      times, peaks, deltas = records[case.name]
      times.append(seconds)
      peaks.append(peak)
      deltas.append(delta)
      if log:
        log(f'    {case.name} repeat {r + 1}: {seconds:.3f} s, peak RSS '
            f'{peak:.0f} MiB')
  return {
      case.name: Timing(
          name=case.name, seconds=records[case.name][0],
          median=statistics.median(records[case.name][0]),
          peak_rss_mib=max(records[case.name][1]),
          delta_rss_mib=max(records[case.name][2]),
          peak_is_per_call=per_call_all,
          warmup_result=warm[case.name][0],
          warmup_seconds=warm[case.name][1])
      for case in cases
  }


# ----------------------------------------------------------------------------
# Reports.


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
  """A Markdown pipe table (pasteable into BENCHMARKS.md)."""
  def cell(value):
    if value is None:
      return '—'
    if isinstance(value, float):
      return fmt(value)
    return str(value)
  lines = ['| ' + ' | '.join(headers) + ' |',
           '|' + '|'.join('---' for _ in headers) + '|']
  lines += ['| ' + ' | '.join(cell(v) for v in row) + ' |' for row in rows]
  return '\n'.join(lines)


def fmt(value: Optional[float], digits: int = 3) -> str:
  """A number with `digits` significant digits, no exponent for common sizes."""
  if value is None:
    return '—'
  if value == 0 or not np.isfinite(value):
    return str(value)
  magnitude = abs(value)
  if magnitude >= 10**digits:
    return f'{value:,.0f}'
  if magnitude >= 1e-3:
    decimals = max(digits - 1 - int(np.floor(np.log10(magnitude))), 0)
    return f'{value:.{decimals}f}'
  return f'{value:.{digits - 1}e}'


@dataclasses.dataclass
class Report:
  """What one benchmark found: printed tables, notes and raw numbers."""
  title: str
  tables: List[str] = dataclasses.field(default_factory=list)
  notes: List[str] = dataclasses.field(default_factory=list)
  raw: Dict[str, Any] = dataclasses.field(default_factory=dict)

  def text(self) -> str:
    parts = [f'## {self.title}', '']
    for table in self.tables:
      parts += [table, '']
    parts += [f'* {note}' for note in self.notes]
    return '\n'.join(parts).rstrip() + '\n'


def merge_reports(reports: Sequence[Report]) -> Report:
  """One report from several runs of the same benchmark on other configs.

  Tables with the same header are concatenated row-wise (in order of first
  appearance); notes are concatenated without repeats; raw dicts are merged.
  """
  merged = Report(reports[0].title)
  tables = {}
  for report in reports:
    for table in report.tables:
      header, rows = '\n'.join(table.splitlines()[:2]), table.splitlines()[2:]
      tables.setdefault(header, []).extend(rows)
    for note in report.notes:
      if note not in merged.notes:
        merged.notes.append(note)
    merged.raw.update(report.raw)
  merged.tables = [header + '\n' + '\n'.join(rows)
                   for header, rows in tables.items()]
  return merged


def machine_info() -> Dict[str, Any]:
  """Versions, cores and load average, recorded with every run."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  return {
      'python': platform.python_version(),
      'tensorflow': tf.__version__,
      'keras': keras.__version__,
      'numpy': np.__version__,
      'cpu_count': os.cpu_count(),
      'machine': platform.machine(),
      'load_average': load_average(),
      'time': time.strftime('%Y-%m-%d %H:%M:%S %Z'),
  }


def load_average() -> Optional[List[float]]:
  """1-, 5- and 15-minute load averages (None where unavailable)."""
  try:
    return [round(v, 2) for v in os.getloadavg()]
  except OSError:
    return None


def to_jsonable(value: Any) -> Any:
  """Converts numpy scalars / arrays and Timings for json.dump."""
  if isinstance(value, Timing):
    return value.to_dict()
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [to_jsonable(v) for v in value]
  if isinstance(value, np.generic):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  return value


def write_json(path: str, payload: Dict[str, Any]) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(to_jsonable(payload), f, indent=1, sort_keys=True)
    f.write('\n')


# ----------------------------------------------------------------------------
# Data.


def default_data_dir() -> str:
  """$AFTERKERNEL_DATA_DIR, else <project root>/../shared/data."""
  if os.environ.get('AFTERKERNEL_DATA_DIR'):
    return os.environ['AFTERKERNEL_DATA_DIR']
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  return os.path.join(os.path.dirname(root), 'shared', 'data')


def has_mnist(data_dir: Optional[str]) -> bool:
  return bool(data_dir) and os.path.exists(
      os.path.join(data_dir, 'mnist', 'train-images-idx3-ubyte.gz'))


def load_task(data_dir: Optional[str], plus_class: int = 8,
              minus_class: int = 3, seed: int = 0):
  """MNIST plus-vs-minus from `data_dir` if present, else the embedded digits.

  Returns:
    (task permuted with `seed`, a one-line description of the source).
  """
  from afterkernel import data  # pylint: disable=g-import-not-at-top
  if has_mnist(data_dir):
    task = data.load_binary_task('mnist', plus_class, minus_class,
                                 data_dir=data_dir)
    source = f'MNIST {plus_class}-vs-{minus_class} (local IDX files)'
  else:
    task = data.load_binary_task('digits', plus_class, minus_class)
    source = (f'embedded 8x8 digits {plus_class}-vs-{minus_class} (MNIST not '
              f'found in {data_dir!r}: FALLBACK, not MNIST)')
  return data.permute(task, seed), source


def mnist_shaped_images(n: int, data_dir: Optional[str],
                        shape=(28, 28, 1)) -> tuple:
  """n images of `shape` for speed benchmarks: real MNIST when available.

  Speed does not depend on pixel values much (ReLU patterns aside), but real
  digits are used when present; otherwise uniform noise in [0, 1].

  Returns:
    (float32 images (n,) + shape, description of their source).
  """
  if tuple(shape) == (28, 28, 1) and has_mnist(data_dir):
    task, _ = load_task(data_dir)
    pool = np.concatenate([task.x_train, task.x_test])
    reps = -(-n // len(pool))
    return (np.tile(pool, (reps, 1, 1, 1))[:n].astype(np.float32),
            'MNIST 3/8 digits')
  rng = np.random.default_rng(0)
  return (rng.random((n,) + tuple(shape), dtype=np.float32),
          f'uniform noise {tuple(shape)}')
