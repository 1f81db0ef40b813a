"""A Ray executor for the one study runner: each work unit is a Ray task.

`ray_executor(...)` returns an `runner.Executor`: pass it to a study's
`run` / `run_study` or to `sweeps.run_sweep` (the binaries do with
`--executor=ray`). Ray core tasks, not Ray Tune: the runner already owns
the grid, resume and storage; Tune would bring a second trial store and
its own checkpoint folders, and all a record needs is "run this unit with
these resources, retry if its worker dies".

Guarantees (see `runner`'s module docstring for the seam):

* Records are written by the driver only, through the one store, by key and
  atomically (`store.ResultStore.put`). Workers need no store and no shared
  file system (except for studies that write side files, e.g. nads).
* Units are pulled from the runner's lazy iterable as tasks finish: at most
  `max_in_flight` tasks run at once (default: as many as the cluster's CPUs
  (and GPUs) hold), so the claims (`claims`) of units not yet started stay
  free for other driver processes filling the same folder.
* A worker killed mid-unit (OOM, preemption, kill -9) is retried by Ray up
  to `max_retries` times; its records reach the driver only when the retry
  finishes, and they are written by key, so there is never a duplicate nor
  a half record. An exception raised by the study itself is not retried: it
  is raised in the driver, like the local executor does.
* A killed driver releases its claims (OS locks); running the same command
  again resumes from the records stored so far.
* Each task sets TensorFlow's intra- and inter-op threads to its CPUs
  before it works, so tasks packed on one node do not oversubscribe cores.

Ray is imported only when the executor runs; without it the error is one
line saying `pip install -e '.[ray]'`.
"""

import sys
import time
from typing import Any, Callable, Iterable, Iterator, List, Optional

from afterkernel import errors
from afterkernel.studies import runner

# Ray's own default for tasks; a unit lost with its node 3 times is more
# likely a unit that kills its worker (e.g. out of memory) than bad luck.
DEFAULT_MAX_RETRIES = 3
INSTALL_HINT = ("--executor=ray needs Ray: pip install -e '.[ray]'")


def import_ray():
  """The `ray` module; AfterKernelError with the install line if missing."""
  try:
    import ray  # pylint: disable=g-import-not-at-top
  except ImportError as e:
    raise errors.AfterKernelError(f'{INSTALL_HINT} ({e})') from None
  return ray


def set_tf_threads(num_threads: int) -> None:
  """Sets TF's intra- and inter-op threads of this process to `num_threads`.

  TF fixes them when its runtime starts; a Ray worker that already ran a
  unit keeps the value it set then (the same one: every task of one
  executor asks for the same CPUs). A worker whose TF started with other
  values says so on stderr instead of failing the unit.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  threading = tf.config.threading
  if (threading.get_intra_op_parallelism_threads() == num_threads and
      threading.get_inter_op_parallelism_threads() == num_threads):
    return
  try:
    threading.set_intra_op_parallelism_threads(num_threads)
    threading.set_inter_op_parallelism_threads(num_threads)
  except RuntimeError as e:  # TF already initialized in this worker.
    print(f'ray_executor: TF threads stay at intra='
          f'{threading.get_intra_op_parallelism_threads()}, inter='
          f'{threading.get_inter_op_parallelism_threads()} ({e})',
          file=sys.stderr)


def run_unit(work: Callable[[runner.WorkUnit], Iterable[runner.Record]],
             unit: runner.WorkUnit, num_threads: int) -> List[runner.Record]:
  """The body of one Ray task: TF threads, then all of the unit's records."""
  if num_threads > 0:
    set_tf_threads(num_threads)
  return list(work(unit))


def _threads(num_cpus_per_task: float) -> int:
  return max(1, int(num_cpus_per_task))


def ray_executor(address: Optional[str] = None, num_cpus_per_task: float = 1,
                 num_gpus_per_task: float = 0,
                 max_retries: int = DEFAULT_MAX_RETRIES,
                 max_in_flight: Optional[int] = None,
                 local_num_cpus: Optional[int] = None,
                 log: runner.Log = print) -> runner.Executor:
  """An executor that runs each work unit as a Ray task.

  Args:
    address: Ray cluster to join: None starts a local Ray instance for the
      run and shuts it down after; 'auto' joins the cluster `ray start
      --head` started on this machine; 'ray://host:10001' a remote head. If
      Ray is already initialized in this process, that instance is used
      (and left running).
    num_cpus_per_task: CPUs Ray reserves per unit; also TF's threads in it.
    num_gpus_per_task: GPUs Ray reserves per unit (0: CPU only; TF in a task
      sees only the GPUs Ray gave it).
    max_retries: times a unit whose worker died is run again.
    max_in_flight: units running at once; None: as many as the cluster's
      resources hold at start (at least 1).
    local_num_cpus: CPUs of the local instance (address None); None: all.
    log: progress printer (driver side).

  Returns:
    `executor(units, work)` -> the units' records, unit by unit as they
    finish (not in unit order; the store is keyed, the summary sorted).

  Raises:
    AfterKernelError: bad resources (here), or no Ray installed (when run).
  """
  errors.require(num_cpus_per_task > 0, 'num_cpus_per_task (--ray_num_cpus) '
                 f'must be > 0, got {num_cpus_per_task!r}')
  errors.require(num_gpus_per_task >= 0, 'num_gpus_per_task (--ray_num_gpus)'
                 f' must be >= 0, got {num_gpus_per_task!r}')
  errors.require(max_retries >= 0, f'max_retries must be >= 0, got '
                 f'{max_retries!r}')
  errors.require(max_in_flight is None or max_in_flight > 0,
                 f'max_in_flight must be > 0, got {max_in_flight!r}')

  def executor(units: Iterable[runner.WorkUnit],
               work: Callable[[runner.WorkUnit], Iterable[runner.Record]]
               ) -> Iterator[runner.Record]:
    ray = import_ray()
    started = not ray.is_initialized()
    if started:
      ray.init(address=address, num_cpus=local_num_cpus if address is None
               else None, include_dashboard=False, log_to_driver=True)
    try:
      yield from _run(ray, units, work)
    finally:
      if started:
        ray.shutdown()

  def _run(ray, units, work):
    task = ray.remote(run_unit).options(
        num_cpus=num_cpus_per_task, num_gpus=num_gpus_per_task,
        max_retries=max_retries, retry_exceptions=False)
    limit = max_in_flight or _capacity(ray.cluster_resources(),
                                       num_cpus_per_task, num_gpus_per_task)
    work_ref = ray.put(work)
    pending = {}
    units = iter(units)
    exhausted, done, start = False, 0, time.time()
    try:
      while True:
        while not exhausted and len(pending) < limit:
          unit = next(units, None)
          if unit is None:
            exhausted = True
            break
          ref = task.remote(work_ref, unit, _threads(num_cpus_per_task))
          pending[ref] = unit
        if not pending:
          return
        ready, _ = ray.wait(list(pending), num_returns=1)
        unit = pending.pop(ready[0])
        records = ray.get(ready[0])
        done += 1
        log(f'ray: run {unit.run}, {len(records)} record(s) done '
            f'({done} unit(s) in {time.time() - start:.0f} s, '
            f'{len(pending)} running)')
        yield from records
    finally:
      for ref in pending:  # Driver interrupted or a unit failed.
        ray.cancel(ref, force=True)

  return executor


def _capacity(resources: Any, num_cpus: float, num_gpus: float) -> int:
  """Units the cluster's resources hold at once (at least 1)."""
  capacity = int(resources.get('CPU', 1) // num_cpus)
  if num_gpus > 0:
    capacity = min(capacity, int(resources.get('GPU', 0) // num_gpus))
  return max(1, capacity)


def from_flags(executor: str, address: Optional[str], num_cpus: float,
               num_gpus: float, log: runner.Log = print) -> runner.Executor:
  """The executor the --executor / --ray_* flags name.

  'local' is `runner.local_executor` (Ray is not imported); 'ray' is
  `ray_executor(address, num_cpus, num_gpus)`.

  Raises:
    AfterKernelError: an unknown executor name or bad resources.
  """
  errors.require(executor in EXECUTORS, f'unknown --executor {executor!r}; '
                 f'choose one of {", ".join(EXECUTORS)}')
  if executor == 'local':
    return runner.local_executor
  return ray_executor(address=address, num_cpus_per_task=num_cpus,
                      num_gpus_per_task=num_gpus, log=log)


# --executor values: 'local' runs units one after the other in the binary's
# process (the default: nothing to install); 'ray' spreads them as Ray tasks.
EXECUTORS = ('local', 'ray')
