"""The one result store: record files, output-folder claim, fingerprints.

Every study writes into an output folder:

  OUT/config.json          the configuration and its fingerprint (`claim`)
  OUT/records/<key>.json   one record per (point, run), written atomically
  OUT/summary.json, .csv   mean/std/95% CI per metric per point (`summary`)

A *record* is a JSON object {'key', 'family', 'point_id', 'point' (the fields
that identify the point: task, architecture, epoch, ...), 'run', 'seed',
'config_fingerprint', 'metrics' (name -> number or None), 'timings', ...}.
Why one file per record rather than one JSON-lines file:
  * a write touches only the new record, so it costs O(record) and can never
    damage a finished one;
  * several processes (e.g. one per architecture, or remote workers) can
    share a store without losing each other's records.
Each file is written with `atomic_write_text` (temporary file, fsync,
`os.replace`), so a process killed at any moment (even `kill -9`) leaves
either no file or a complete one; an orphaned temporary file (a dot-file
ending in '.tmp') is ignored by readers. Resuming is therefore "skip every
key that `has` reports".

Output folders are claimed here (`claim_output_dir`) and configuration
fingerprints hashed here (`config_fingerprint`), for every study.

0.1.0's run_after_kernel wrote one JSON line per run to `runs.jsonl` instead;
`read_runs`/`append_run` read and write that log (run_after_kernel still
writes it), and `convert_runs_to_records` turns such a folder into records/
so that the result tools summarize and plot it (`summary.summarize_store`
does this by itself for a folder with runs.jsonl and no records/; it then
writes summary.json in the per-point schema, which run_after_kernel turns
back into its flat one if the experiment is resumed).
"""

import hashlib
import json
import math
import os
import re
import tempfile
import threading
from typing import Any, Dict, List, Mapping, Sequence

import numpy as np

from afterkernel import errors

CONFIG_FILE = 'config.json'
RUNS_FILE = 'runs.jsonl'
RECORDS_DIR = 'records'
RECORD_SUFFIX = '.json'
# Keys become file names: keep them portable and free of path separators.
KEY_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,199}$')
# Family of the records converted from a 0.1.0 runs.jsonl.
RUNS_FAMILY = 'after_kernel'


def _file_mode() -> int:
  """The mode a new file gets under the process's umask (0o666 & ~umask)."""
  mask = os.umask(0)
  os.umask(mask)
  return 0o666 & ~mask


def _write_error(path: str, error: OSError) -> errors.AfterKernelError:
  """One line for a failed write (full disk, file-size limit, permissions)."""
  return errors.AfterKernelError(
      f'could not write {path}: {error.strerror or error} (disk full, '
      'file-size limit or permissions?); files already written are kept')


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (temp file + fsync + rename).

  The file gets the permissions of any new file under the user's umask
  (mkstemp's private 0600 would make a shared results folder unreadable to
  the team). A failed write (disk full, `ulimit -f`, permissions) leaves
  the previous file untouched and raises one AfterKernelError.
  """
  directory = os.path.dirname(os.path.abspath(path))
  try:
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        dir=directory, prefix='.' + os.path.basename(path) + '.',
        suffix='.tmp')
  except OSError as e:
    raise _write_error(path, e) from None
  try:
    with os.fdopen(handle, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(temporary, _file_mode())
    os.replace(temporary, path)
  except BaseException as e:
    if os.path.exists(temporary):
      os.remove(temporary)
    if isinstance(e, OSError):
      raise _write_error(path, e) from None
    raise


def check_output_dir(output_dir: str) -> None:
  """Raises one AfterKernelError unless `output_dir` is a usable folder.

  Usable: it exists and is a writable directory, or it can be created (its
  nearest existing ancestor is a writable directory). Nothing is created.
  """
  errors.require(bool(output_dir), 'output_dir is required: where results '
                 'are written')
  path = os.path.abspath(output_dir)
  if os.path.exists(path):
    errors.require(os.path.isdir(path), f'output folder {output_dir} is an '
                   'existing file, not a folder; choose another')
    errors.require(os.access(path, os.W_OK | os.X_OK),
                   f'output folder {output_dir} is not writable')
    return
  parent = os.path.dirname(path)
  while not os.path.exists(parent):
    parent = os.path.dirname(parent)
  errors.require(os.path.isdir(parent), f'output folder {output_dir} cannot '
                 f'be created: {parent} is a file')
  errors.require(os.access(parent, os.W_OK | os.X_OK),
                 f'output folder {output_dir} cannot be created: {parent} '
                 'is not writable')


def _jsonable(value: Any) -> Any:
  """Maps numpy scalars/arrays and non-finite floats to plain JSON values."""
  if isinstance(value, dict):
    return {str(k): _jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple)):
    return [_jsonable(v) for v in value]
  if isinstance(value, np.ndarray):
    return _jsonable(value.tolist())
  if isinstance(value, np.generic):
    value = value.item()
  if isinstance(value, float) and not math.isfinite(value):
    return None
  return value


def to_json(value: Any, **kwargs) -> str:
  """`json.dumps` that accepts numpy values and writes NaN/inf as null."""
  return json.dumps(_jsonable(value), allow_nan=False, **kwargs)


def config_fingerprint(fields: Mapping[str, Any],
                       ignored: Sequence[str] = ()) -> str:
  """16-hex-digit hash of the config fields that change results.

  The one fingerprint of the library: sha256 of the sorted-key JSON of the
  kept fields.

  Args:
    fields: the configuration as a JSON-serializable mapping.
    ignored: fields that do not change results (run counts, data paths,
      speed knobs), left out so that changing them reuses the records.
  """
  kept = {k: v for k, v in fields.items() if k not in ignored}
  return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()
                        ).hexdigest()[:16]


def claim_output_dir(output_dir: str, config_dict: Mapping[str, Any],
                     fingerprint: str, extra: Mapping[str, Any] = None,
                     rewrite: bool = True) -> None:
  """Writes output_dir/config.json, or checks that the existing one matches.

  Studies call this before writing anything, so a second configuration can
  never mix its records into a folder (results would silently average two
  experiments); re-running the same configuration resumes. Fields left out
  of the fingerprint (more runs, more sizes or indices) extend the folder:
  config.json is then rewritten to the latest configuration (unless
  `rewrite` is False), so it matches what the summary covers. A config.json
  without any result beside it (a command that failed before its first
  record) does not hold the folder: the new configuration takes it.

  Args:
    output_dir: the folder.
    config_dict: the configuration, stored under 'config'.
    fingerprint: `config_fingerprint` of it.
    extra: more top-level fields of config.json (e.g. a 'version').
    rewrite: whether a matching config.json is rewritten to this config.

  Raises:
    AfterKernelError: no output_dir, it is a file or not writable, its
      config.json is corrupt, or it holds results of another configuration
      (nothing is changed then).
  """
  check_output_dir(output_dir)
  path = os.path.join(output_dir, CONFIG_FILE)
  content = {'fingerprint': fingerprint, 'config': dict(config_dict)}
  content.update(extra or {})
  text = to_json(content, indent=2, sort_keys=True) + '\n'
  if os.path.exists(path) and _holds_results(output_dir):
    with open(path, encoding='utf-8') as f:
      previous_text = f.read()
    try:
      previous = json.loads(previous_text)
    except json.JSONDecodeError:
      raise errors.AfterKernelError(
          f'{path} is not valid JSON (truncated or edited?); the folder holds '
          'results, so it is not overwritten: repair or remove that file, or '
          'choose another --output_dir') from None
    errors.require(
        isinstance(previous, dict) and
        previous.get('fingerprint') == fingerprint,
        f'{output_dir} already holds results of a different configuration '
        f'({path}{_differing_fields(previous, config_dict)}); choose another '
        '--output_dir (nothing was changed)')
    if rewrite and previous_text != text:
      atomic_write_text(path, text)
  elif not os.path.exists(path) or _read_text(path) != text:
    # New folder, or a config.json without any result (e.g. a command that
    # failed before its first record): this configuration takes it.
    atomic_write_text(path, text)


def _differing_fields(previous: Any, config: Mapping[str, Any]) -> str:
  """', fields that differ: a, b' between a stored and a new config."""
  stored = previous.get('config') if isinstance(previous, dict) else None
  if not isinstance(stored, dict):
    return ''
  new = json.loads(to_json(dict(config)))
  names = sorted(name for name in set(stored) | set(new)
                 if stored.get(name, _MISSING) != new.get(name, _MISSING))
  return f'; fields that differ: {", ".join(names)}' if names else ''


_MISSING = object()


def _read_text(path: str) -> str:
  with open(path, encoding='utf-8', errors='replace') as f:
    return f.read()


def _holds_results(output_dir: str) -> bool:
  """Whether the folder has any record or a 0.1.0 runs.jsonl."""
  if os.path.exists(os.path.join(output_dir, RUNS_FILE)):
    return True
  return bool(ResultStore(output_dir).keys())


# Set by the binaries' Ctrl-C handler (`binaries.mains.main_status`). A
# KeyboardInterrupt can be lost when the signal lands while a library runs
# code that guards against exceptions; the store then stops the run at the
# next record it writes, so Ctrl-C always ends a run at a record boundary.
INTERRUPT = threading.Event()


class ResultStore:
  """A directory of records, one atomically written JSON file each.

  Attributes:
    directory: the store's root folder (created on the first `put`).
  """

  def __init__(self, directory: str):
    errors.require(bool(directory), 'the result store needs a directory; '
                   'pass --store_dir')
    self.directory = directory

  @property
  def records_dir(self) -> str:
    return os.path.join(self.directory, RECORDS_DIR)

  def path(self, key: str) -> str:
    """The file that holds (or will hold) record `key`."""
    errors.require(isinstance(key, str) and KEY_PATTERN.match(key) is not None,
                   f'bad record key {key!r}: use letters, digits and _.=+- '
                   '(at most 200 characters, not starting with a dot)')
    return os.path.join(self.records_dir, key + RECORD_SUFFIX)

  def has(self, key: str) -> bool:
    """Whether a finished record `key` exists."""
    return os.path.exists(self.path(key))

  def put(self, record: Mapping[str, Any]) -> str:
    """Writes `record` (which must carry a 'key') atomically; returns its path.

    An existing record with the same key is replaced (atomically), so a
    re-measured record never appears twice.
    """
    errors.require('key' in record, 'a record needs a "key" field')
    path = self.path(record['key'])
    atomic_write_text(path, to_json(record, indent=1, sort_keys=True) + '\n')
    if INTERRUPT.is_set():
      raise KeyboardInterrupt  # The record is safe; stop the run here.
    return path

  def get(self, key: str) -> Dict[str, Any]:
    """The record `key`; raises AfterKernelError if it is missing or corrupt."""
    path = self.path(key)
    errors.require(os.path.exists(path),
                   f'no record {key!r} in {self.directory}')
    return _read_record(path)

  def keys(self) -> List[str]:
    """Keys of all finished records, sorted."""
    if not os.path.isdir(self.records_dir):
      return []
    return sorted(name[:-len(RECORD_SUFFIX)]
                  for name in os.listdir(self.records_dir)
                  if name.endswith(RECORD_SUFFIX) and not name.startswith('.'))

  def records(self) -> List[Dict[str, Any]]:
    """All finished records, sorted by key."""
    return [_read_record(self.path(key)) for key in self.keys()]


def _read_record(path: str) -> Dict[str, Any]:
  with open(path, encoding='utf-8') as f:
    text = f.read()
  try:
    record = json.loads(text)
  except json.JSONDecodeError as e:
    raise errors.AfterKernelError(
        f'{path} is not valid JSON ({e.msg}); it was not written by '
        'afterkernel or was edited; move it away and re-run') from None
  errors.require(isinstance(record, dict) and 'key' in record,
                 f'{path} holds no afterkernel record (no "key" field)')
  return record


# ----------------------------------------------------------------------------
# The run log of run_after_kernel (0.1.0 format: one JSON line per run).


def read_runs(output_dir: str) -> List[Dict[str, Any]]:
  """The run records in `output_dir/runs.jsonl` ([] if there are none)."""
  path = os.path.join(output_dir, RUNS_FILE)
  if not os.path.exists(path):
    return []
  records = []
  with open(path, encoding='utf-8') as f:
    for number, line in enumerate(f, 1):
      if line.strip():
        try:
          records.append(json.loads(line))
        except json.JSONDecodeError as e:
          raise errors.AfterKernelError(
              f'{path} line {number} is not valid JSON ({e.msg}); the file was '
              'not written by afterkernel or was edited') from None
  return records


def append_run(output_dir: str, record: Mapping[str, Any]) -> None:
  """Adds one run record to `runs.jsonl`, rewriting the file atomically."""
  path = os.path.join(output_dir, RUNS_FILE)
  existing = ''
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      existing = f.read()
    if existing and not existing.endswith('\n'):
      existing += '\n'
  atomic_write_text(path, existing + to_json(record, sort_keys=True) + '\n')


def run_to_record(run: Mapping[str, Any]) -> Dict[str, Any]:
  """A runs.jsonl line as a store record of family `RUNS_FAMILY`.

  The point is the run's configuration fingerprint (one point per
  experiment), and its width for the linearized study's runs (which hold
  one run per width); metrics, timings, seed and data are kept as they are.
  """
  errors.require('run' in run and 'metrics' in run,
                 'a runs.jsonl line needs "run" and "metrics" fields')
  point_id = str(run.get('config_fingerprint', 'unknown'))
  point = {'family': RUNS_FAMILY}
  if run.get('width') is not None:
    point_id += f'_w{float(run["width"]):g}'
    point['width'] = float(run['width'])
  record = dict(run)
  record.update(key=f'{RUNS_FAMILY}_{point_id}_run{int(run["run"]):04d}',
                family=RUNS_FAMILY, point_id=point_id, point=point)
  return record


def convert_runs_to_records(output_dir: str) -> List[str]:
  """Writes records/ for every line of `output_dir/runs.jsonl`.

  Lets the result tools (summarize_results, plot_results) read a folder
  written by run_after_kernel; runs.jsonl is left untouched.

  Returns:
    The keys written.

  Raises:
    AfterKernelError: the folder has no runs.jsonl, or a line is corrupt.
  """
  runs = read_runs(output_dir)
  errors.require(bool(runs),
                 f'no runs in {os.path.join(output_dir, RUNS_FILE)}')
  result_store = ResultStore(output_dir)
  return [os.path.basename(result_store.put(run_to_record(run)))[
      :-len(RECORD_SUFFIX)] for run in runs]


# 0.1.0 names of the summary functions (`store.summarize`, ...), now in
# `summary`; resolved lazily because `summary` imports this module.
_SUMMARY_NAMES = ('summarize', 'write_summary', 'summarize_store',
                  'format_summary', 'summary_rows', 'format_csv',
                  'SUMMARY_JSON', 'SUMMARY_CSV', 'POINT_FIELDS',
                  'SUMMARY_COLUMNS', 'DEFAULT_TABLE_METRICS')


def __getattr__(name: str) -> Any:
  if name in _SUMMARY_NAMES:
    from afterkernel.studies import summary  # pylint: disable=g-import-not-at-top
    return getattr(summary, name)
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
