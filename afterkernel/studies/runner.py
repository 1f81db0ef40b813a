"""The one study runner: config -> work units -> records -> summary -> figure.

A study hands the runner a `Study`: its family name, the points a config
asks for (eigen indices, checkpoint epochs, model kinds, ...), how a (point,
run) is named in the store (`record_key`), its `run_once` and its figures.
`run` then does what every study did by hand before:

  1. validate the config and claim the output folder (`store.claim_output_dir`,
     keyed by the config's fingerprint);
  2. list the work still to do: one `WorkUnit` (run, missing points) per run
     (and per `Study.group` of points) with a missing record (resume = skip
     finished records);
  3. claim each unit as the executor asks for it (`claims`: an OS lock a
     killed process releases; a unit another process holds is skipped, so
     several processes can fill one folder together, never running a run
     twice) and hand the units to the *executor*, which yields the units'
     records; the
     runner writes each through the store as it arrives (a `run_once` that
     yields its records one by one, e.g. per checkpoint, has each stored
     before the next is measured);
  4. summarize the config's records (`summary.summarize`), write
     summary.json / summary.csv, draw the figures.

The executor is the seam for scale-out: `local_executor` runs the units one
after the other in this process; a distributed executor (e.g. Ray tasks)
takes the same `(units, work)` (units is a lazy iterable: each is claimed
when the executor takes it, so take them as workers free up), runs
`list(work(unit))` remotely and yields
the records as units finish. Units are independent (each builds its network
from `config.seed + run`), `work(unit)` is a picklable callable (module-level
functions in `Study`, no lambdas) that loads the study's shared inputs
itself, and only the runner writes records, so workers need no store (a
study that writes side files, as nads does with its directions, needs the
output folder on a shared file system).

Configs: a frozen dataclass deriving from `StudyConfig`, which gives
`to_dict` and `fingerprint` (fields in `FINGERPRINT_IGNORES` do not change a
record: run counts, index lists, data paths). Presets: one dict per study,
looked up with `preset`.
"""

import dataclasses
import queue
import threading
import time
from typing import (Any, Callable, ClassVar, Dict, Iterable, Iterator, List,
                    Mapping, Optional, Sequence, Tuple)

import numpy as np

from afterkernel import errors
from afterkernel.studies import claims
from afterkernel.studies import store
from afterkernel.studies import summary

Record = Dict[str, Any]
Log = Callable[[str], None]


class StudyConfig:
  """Mixin for a study's frozen config dataclass: dict form and fingerprint.

  Attributes:
    FINGERPRINT_IGNORES: fields that do not change a record, left out of the
      fingerprint so that changing them extends a folder (more runs, more
      indices) instead of conflicting with it.
    ADDED_FIELDS: fields added after folders were written; at their default
      they leave the fingerprint as it was (see `fingerprint`).
  """
  FINGERPRINT_IGNORES: ClassVar[Tuple[str, ...]] = ('num_runs',)
  ADDED_FIELDS: ClassVar[Tuple[str, ...]] = ()

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def fingerprint(self) -> str:
    """`store.config_fingerprint` of the fields that change a record.

    Fields in `ADDED_FIELDS` (added after folders of the study were written)
    are left out while at their default, so an existing folder still
    resumes: its records were computed with exactly those defaults.
    """
    at_default = tuple(
        f.name for f in dataclasses.fields(self)
        if f.name in self.ADDED_FIELDS and getattr(self, f.name) == f.default)
    return store.config_fingerprint(self.to_dict(),
                                    tuple(self.FINGERPRINT_IGNORES) +
                                    at_default)

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field (override)."""


def positive_ints(values: Iterable[Any], name: str) -> None:
  """Raises AfterKernelError unless `values` is non-empty, all ints > 0."""
  values = list(values)
  errors.require(bool(values), f'{name} is empty; give at least one value')
  for value in values:
    errors.require(isinstance(value, (int, np.integer)) and value > 0,
                   f'{name} must hold positive integers, got {value!r}')


def require_positive_int_fields(config: Any, names: Iterable[str]) -> None:
  """Raises AfterKernelError naming the first field that is not an int > 0."""
  for name in names:
    value = getattr(config, name)
    errors.require(isinstance(value, (int, np.integer)) and
                   not isinstance(value, bool) and value > 0,
                   f'{name} must be a positive integer, got {value!r}')


class PointField:
  """entry -> entry['point'][field]: a `Study.sort_key` that pickles.

  (A lambda would not reach remote executors; see the module docstring.)
  """

  def __init__(self, field: str):
    self.field = field

  def __call__(self, entry: Mapping[str, Any]) -> Any:
    return entry['point'][self.field]


def preset(presets: Mapping[str, Any], name: str, study: str = 'study') -> Any:
  """The preset config `name` of a study's `PRESETS` dict.

  Raises:
    AfterKernelError: no such preset (the message lists the choices).
  """
  errors.require(name in presets, f'unknown {study} preset {name!r}; choose '
                 f'one of {", ".join(sorted(presets))}')
  return presets[name]


@dataclasses.dataclass(frozen=True)
class WorkUnit:
  """One independent piece of work: the missing points of one run.

  Attributes:
    run: 0-based run index (the run's seed is `config.seed + run`).
    points: the points of this run without a finished record.
  """
  run: int
  points: Tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Study:
  """What a study module hands the runner.

  Attributes:
    family: the records' family (also the store's key prefix by convention).
    points: config -> the point values it asks for, in order.
    record_key: (point, run) -> the record's store key.
    run_once: (config, context, unit, log) -> the unit's records.
    load: (config, output_dir) -> the inputs shared by every unit (e.g. the
      task), loaded once per process and only if there is work; None: no
      shared inputs (the context is then None).
    sort_key: summary entry -> sort key of the summary (default: the store's
      point order).
    figures: (entries, config, output_dir) -> None, drawn after summarizing.
    whole_runs: a run is measured as a whole (e.g. checkpoints along one
      training run): if any of its records is missing, the unit holds every
      point of the run.
    required_metrics: a record without one of these metrics (written by
      older code) counts as missing.
    noun: what a point is called in progress messages ('tasks', ...).
    group: point -> the unit it belongs to within a run (points of one group
      share a training run, e.g. the checkpoints of one sweep point); None:
      one unit per run.
  """
  family: str
  points: Callable[[Any], Sequence[Any]]
  record_key: Callable[[Any, int], str]
  run_once: Callable[[Any, Any, WorkUnit, Log], List[Record]]
  load: Optional[Callable[[Any, str], Any]] = None
  sort_key: Optional[Callable[[Mapping[str, Any]], Any]] = None
  figures: Optional[Callable[[Sequence[Mapping[str, Any]], Any, str],
                             Any]] = None
  whole_runs: bool = False
  required_metrics: Tuple[str, ...] = ()
  noun: str = 'points'
  group: Optional[Callable[[Any], Any]] = None

  def run(self, config: Any, output_dir: str, log: Log = print,
          executor: 'Executor' = None) -> List[Dict[str, Any]]:
    """`run` of this study: a study module's `run_study = STUDY.run`.

    Args:
      config: the study's config (validated here).
      output_dir: result folder: config.json, records/, summary.json /
        summary.csv and the figures.
      log: progress printer.
      executor: runs the work units (None: `local_executor`).

    Returns:
      The summary entries (`summary.summarize` format), sorted by
      `sort_key`.

    Raises:
      AfterKernelError: bad configuration, data, or a foreign output_dir.
    """
    return run(self, config, output_dir, log, executor or local_executor)


def _finished(result_store: store.ResultStore, key: str,
              required_metrics: Sequence[str]) -> bool:
  if not result_store.has(key):
    return False
  if not required_metrics:
    return True
  try:
    metrics = result_store.get(key).get('metrics', {})
  except errors.AfterKernelError:  # corrupt: measure again
    return False
  return all(name in metrics for name in required_metrics)


def _groups(study: Study, points: Sequence[Any]) -> List[Tuple[Any, ...]]:
  """`points` split by `study.group`, in order of first appearance."""
  if study.group is None:
    return [tuple(points)]
  groups = {}
  for point in points:
    groups.setdefault(study.group(point), []).append(point)
  return [tuple(g) for g in groups.values()]


def missing_work(study: Study, config: Any, result_store: store.ResultStore,
                 log: Log = print) -> List[WorkUnit]:
  """The work units of `config` without finished records in the store.

  Run-major: every group gets run 0 before any gets run 1, so a partial
  study already has whole curves.
  """
  units = []
  for run in range(config.num_runs):
    for points in _groups(study, study.points(config)):
      missing = tuple(p for p in points if not _finished(
          result_store, study.record_key(p, run), study.required_metrics))
      if not missing:
        log(f'run {run}: all {len(points)} {study.noun} already in '
            f'{result_store.directory}; skipped')
        continue
      units.append(WorkUnit(run, points if study.whole_runs else missing))
  return units


class Work:
  """`work(unit)` -> the unit's records; loads the shared inputs once.

  Picklable (holds the study, the config and a log function) so that a
  remote executor can ship it to workers, each loading its own inputs.
  """

  def __init__(self, study: Study, config: Any, output_dir: str,
               log: Log = print):
    self.study, self.config, self.log = study, config, log
    self.output_dir = output_dir
    self._context, self._loaded = None, False

  def __call__(self, unit: WorkUnit) -> Iterable[Record]:
    if not self._loaded:
      if self.study.load is not None:
        self._context = self.study.load(self.config, self.output_dir)
      self._loaded = True
    return self.study.run_once(self.config, self._context, unit, self.log)

  def __getstate__(self):
    state = dict(self.__dict__)
    state.update(_context=None, _loaded=False)  # Workers load their own.
    return state


_DONE = object()


def stream(produce: Callable[[Callable[[Record], None]], None]
           ) -> Iterator[Record]:
  """Turns a callback producer into a generator of records.

  For a `run_once` whose records come out of a callback (e.g. a training
  loop's snapshot hook): `produce(emit)` runs in a helper thread and each
  `emit(record)` waits until the consumer (the runner, which stores it) asks
  for the next one, so a record is stored before the next is measured, as
  if the producer wrote it itself. An exception in `produce` is raised here.
  """
  handoff = queue.Queue(maxsize=1)
  resume = threading.Semaphore(0)
  failure = []

  def emit(record: Record) -> None:
    handoff.put(record)
    resume.acquire()

  def target():
    try:
      produce(emit)
    except BaseException as e:  # pylint: disable=broad-except
      failure.append(e)
    handoff.put(_DONE)

  thread = threading.Thread(target=target, daemon=True)
  thread.start()
  while True:
    item = handoff.get()
    if item is _DONE:
      break
    yield item
    resume.release()
  thread.join()
  if failure:
    raise failure[0]


Executor = Callable[[Sequence[WorkUnit],
                     Callable[[WorkUnit], Iterable[Record]]],
                    Iterable[Record]]


def local_executor(units: Sequence[WorkUnit],
                   work: Callable[[WorkUnit], Iterable[Record]]
                   ) -> Iterator[Record]:
  """Runs the units one after the other in this process."""
  for unit in units:
    yield from work(unit)


def execute(study: Study, config: Any, result_store: store.ResultStore,
            log: Log = print, executor: Executor = local_executor,
            output_dir: Optional[str] = None) -> Dict[str, int]:
  """Runs the missing work of `config` and stores its records.

  The part of `run` without the folder claim and the summary: for callers
  that share one store between configurations (the sweeps).

  Returns:
    {'written': records written now, 'skipped': records found finished}.
  """
  units = missing_work(study, config, result_store, log)
  wanted = sum(len(u.points) for u in units)
  total = len(tuple(study.points(config))) * config.num_runs
  written = 0
  held, busy = [], []
  if units:
    work = Work(study, config, output_dir or result_store.directory, log)
    start = time.time()
    try:
      for record in executor(_LazyUnits(
          _claimed(study, config, units, result_store, held, busy, log)),
                             work):
        result_store.put(record)
        written += 1
        log(progress_line(written, wanted, time.time() - start))
    finally:
      for claim in held:
        claim.release()
  if busy:
    log(f'{len(busy)} unit(s) of work were being run by other processes and '
        'are not in this summary; rerun (or summarize_results) after they '
        'finish')
  return {'written': written, 'skipped': total - wanted,
          'busy': sum(len(u.points) for u in busy)}


class _LazyUnits:
  """Work units claimed as they are iterated, re-iterable.

  The first pass claims each unit when it is asked for (so an executor that
  takes units as workers free up leaves the rest to other processes); later
  passes replay the units already claimed and then go on claiming, so an
  executor may also list the units first and then iterate them again.
  """

  def __init__(self, units: Iterator[WorkUnit]):
    self._units = units
    self._seen = []

  def __iter__(self) -> Iterator[WorkUnit]:
    index = 0
    while True:
      if index < len(self._seen):
        yield self._seen[index]
        index += 1
        continue
      try:
        unit = next(self._units)
      except StopIteration:
        return
      self._seen.append(unit)


def progress_line(done: int, total: int, seconds: float) -> str:
  """'k/n records stored (elapsed, ETA)': the runner's line per record.

  The ETA assumes the remaining records take as long as the stored ones
  did on average (records other processes hold are counted as remaining).
  """
  remaining = max(total - done, 0)
  eta = seconds / done * remaining if done else float('nan')
  return (f'{done}/{total} records stored ({_duration(seconds)} elapsed, '
          f'ETA {_duration(eta)})')


def _duration(seconds: float) -> str:
  if seconds != seconds:  # NaN: no estimate yet.
    return '?'
  if seconds < 120:
    return f'{seconds:.0f} s'
  if seconds < 7200:
    return f'{seconds / 60:.1f} min'
  return f'{seconds / 3600:.1f} h'


def _claimed(study: Study, config: Any, units: Sequence[WorkUnit],
             result_store: store.ResultStore, held: List[Any],
             busy: List[WorkUnit], log: Log) -> Iterator[WorkUnit]:
  """`units` as this process claims them (see `claims`), lazily.

  A unit another live process holds is skipped (appended to `busy`); a unit
  claimed here is re-checked against the store, since another process may
  have finished it after `missing_work` looked. The claims go to `held`;
  the caller releases them when the records are stored.
  """
  groups = {}
  for points in _groups(study, study.points(config)):
    groups[_group_key(study, points[0])] = points
  for unit in units:
    group = groups.get(_group_key(study, unit.points[0]), unit.points)
    name = claims.claim_name(
        study.family, unit.run,
        tuple(study.record_key(p, unit.run) for p in group))
    claim = claims.try_claim(result_store.records_dir, name)
    if claim is None:
      log(f'run {unit.run}: {len(unit.points)} {study.noun} are being run by '
          f'another process ({claims.holder(result_store.records_dir, name)}'
          '); skipped here')
      busy.append(unit)
      continue
    held.append(claim)
    missing = tuple(p for p in unit.points if not _finished(
        result_store, study.record_key(p, unit.run), study.required_metrics))
    if not missing:
      continue
    yield unit if study.whole_runs else WorkUnit(unit.run, missing)


def _group_key(study: Study, point: Any) -> Any:
  return None if study.group is None else study.group(point)


def summarize(study: Study, config: Any, output_dir: str
              ) -> List[Dict[str, Any]]:
  """`summary.summarize` of this config's records (others are ignored)."""
  wanted = {study.record_key(p, r) for p in study.points(config)
            for r in range(config.num_runs)}
  result_store = store.ResultStore(output_dir)
  records = [result_store.get(k) for k in result_store.keys() if k in wanted]
  entries = summary.summarize(records)
  if study.sort_key is not None:
    entries.sort(key=study.sort_key)
  return entries


def run(study: Study, config: Any, output_dir: str, log: Log = print,
        executor: Executor = local_executor) -> List[Dict[str, Any]]:
  """Runs (or resumes) a study; writes records, summary and figures.

  Args:
    study: the study's description.
    config: its config (validated here).
    output_dir: result folder: config.json, records/, summary.json /
      summary.csv and the figures.
    log: progress printer.
    executor: runs the work units (see the module docstring).

  Returns:
    The summary entries (`summary.summarize` format), sorted by
    `study.sort_key`.

  Raises:
    AfterKernelError: bad configuration, data, or a foreign output_dir.
  """
  config.validate()
  store.claim_output_dir(output_dir, config.to_dict(), config.fingerprint())
  execute(study, config, store.ResultStore(output_dir), log, executor,
          output_dir)
  entries = summarize(study, config, output_dir)
  summary.write_summary(output_dir, entries)
  if study.figures is not None:
    study.figures(entries, config, output_dir)
  return entries
