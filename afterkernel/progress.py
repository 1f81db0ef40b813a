"""Progress lines with an ETA for the long stages: records, features, solver.

Every stage that can run for more than a few seconds prints a line at most
every `EVERY_SECONDS` with what is done and an estimate of what is left:
the study runner per record, the gradient-feature engine per block of
examples and the max-margin solver per check of its certificate. The
estimates are plain extrapolations (average time per item; for the solver
the recent rate at which the log of the relative gap falls), printed as
'ETA ~x' or 'ETA ?' when there is nothing to extrapolate from.
"""

import math
import time
from typing import Callable, Optional

# At most one progress line per stage this often (seconds).
EVERY_SECONDS = 10.0


def duration(seconds: float) -> str:
  """'42 s', '3.5 min', '1.2 h'; '?' for NaN or inf (no estimate)."""
  if not math.isfinite(seconds):
    return '?'
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds / 60:.1f} min'
  return f'{seconds / 3600:.1f} h'


def items_eta(done: int, total: int, seconds: float) -> float:
  """Seconds left if the remaining items take the average so far (NaN: none
  done yet)."""
  if done <= 0:
    return float('nan')
  return seconds / done * max(total - done, 0)


class Counter:
  """Prints 'label: k/n (elapsed, ETA ~t)' at most every `every` seconds.

  Attributes:
    label: what is counted, e.g. 'features: examples'.
    total: the number of items of the stage.
  """

  def __init__(self, label: str, total: int,
               log: Optional[Callable[[str], None]],
               every: Optional[float] = None):
    self.label = label
    self.total = int(total)
    self._log = log
    self._every = EVERY_SECONDS if every is None else every
    self._start = time.perf_counter()
    self._last = self._start

  def update(self, done: int) -> None:
    """Reports `done` items finished (a line only if one is due)."""
    now = time.perf_counter()
    if self._log is None or now - self._last < self._every or \
        done >= self.total:
      return
    self._last = now
    elapsed = now - self._start
    self._log(f'    {self.label} {done}/{self.total} ({duration(elapsed)} '
              f'elapsed, ETA ~{duration(items_eta(done, self.total, elapsed))})')


class GapEta:
  """ETA of an iterative solver from the fall of log(relative gap).

  Each call compares the gap with the one of the previous call: if it fell,
  the remaining time is log(gap / tolerance) at that rate; if it did not
  (or is not finite yet) there is no estimate.
  """

  def __init__(self, tolerance: float):
    self.tolerance = float(tolerance)
    self._previous = None

  def text(self, gap: float) -> str:
    """', ETA ~t' or ', ETA ?' for the current relative gap."""
    now = time.perf_counter()
    previous, self._previous = self._previous, (now, gap)
    if (previous is None or not 0 < gap < math.inf or
        not 0 < previous[1] < math.inf or gap >= previous[1] or
        now <= previous[0]):
      return ', ETA ?'
    rate = (math.log(previous[1]) - math.log(gap)) / (now - previous[0])
    left = max(0.0, (math.log(gap) - math.log(self.tolerance)) / rate)
    return f', ETA ~{duration(left)}'
