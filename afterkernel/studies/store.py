"""A resumable result store for sweeps: one JSON file per record.

A sweep (see `sweeps`) measures many kernels: for every experiment point
(task, architecture, learning rate, width, augmentation, checkpoint epoch),
run and checkpoint it writes one *record*: the full configuration, seed,
library version, data provenance, timings and every metric. The store keeps
each record in its own file,

  STORE/records/<key>.json

where `key` names (family, point, run) uniquely (see `sweeps.record_key`).
Why one file per record rather than one JSON-lines file:
  * a write touches only the new record, so it costs O(record) and can never
    damage a finished one;
  * several sweep processes (e.g. one per architecture) can share a store
    without losing each other's records, which a rewritten JSON-lines file
    cannot promise.
Each file is written with `results.atomic_write_text` (temporary file, fsync,
`os.replace`), so a process killed at any moment (even `kill -9`) leaves
either no file or a complete one for the record in progress; an orphaned
temporary file (a dot-file ending in '.tmp') is ignored by readers. Resuming
a sweep is therefore "skip every key that `has` reports".

`summarize` groups records by (family, point) and reports, for every metric,
`results.metric_summary` ({mean, std, ci95, n}); `write_summary` writes it as
`summary.json` and as a long-format `summary.csv` (one row per point and
metric) next to the records.
"""

import collections
import csv
import io
import json
import os
import re
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from afterkernel import errors
from afterkernel.studies import results

RECORDS_DIR = 'records'
RECORD_SUFFIX = '.json'
SUMMARY_JSON = 'summary.json'
SUMMARY_CSV = 'summary.csv'
# Keys become file names: keep them portable and free of path separators.
KEY_PATTERN = re.compile(r'^[A-Za-z0-9][A-Za-z0-9_.=+-]{0,199}$')
# Fields of a record's 'point' that identify it in tables and figures, in
# column order (a record may hold a subset; missing ones are left blank).
POINT_FIELDS = ('family', 'task', 'dataset', 'plus_class', 'minus_class',
                'nn_architecture', 'num_parameters', 'use_augmentation',
                'learning_rate', 'training_loss_target', 'train_subset',
                'test_subset', 'epoch')
SUMMARY_COLUMNS = POINT_FIELDS + ('point_id', 'metric', 'mean', 'std', 'ci95',
                                  'n')


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
    results.atomic_write_text(
        path, results.to_json(record, indent=1, sort_keys=True) + '\n')
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


def _group_key(record: Mapping[str, Any]) -> Tuple[str, str]:
  return (str(record.get('family', '')), str(record.get('point_id', '')))


def summarize(records: Iterable[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  """Aggregates records over runs, one entry per (family, point).

  Args:
    records: store records; each has 'family', 'point_id', 'point' (a dict of
      `POINT_FIELDS`), 'run' and 'metrics' (name -> number or None).

  Returns:
    Entries sorted by point, each {'family', 'point_id', 'point', 'runs'
    (sorted run indices), 'metrics': name -> {mean, std, ci95, n}} with
    `results.metric_summary` (ci95 = Student-t half-width; None for n < 2).

  Raises:
    AfterKernelError: two records of one point claim the same run (a store
      that two different sweeps wrote inconsistently).
  """
  groups = collections.OrderedDict()
  for record in records:
    groups.setdefault(_group_key(record), []).append(record)
  entries = []
  for (family, point_id), members in groups.items():
    runs = [m.get('run') for m in members]
    errors.require(len(set(runs)) == len(runs),
                   f'point {point_id} of family {family} has duplicate runs '
                   f'{sorted(runs)}; the store is inconsistent')
    names = sorted({name for m in members for name in m.get('metrics', {})
                    if _is_number_or_none_everywhere(members, name)})
    entries.append({
        'family': family, 'point_id': point_id,
        'point': dict(members[0].get('point', {})),
        'runs': sorted(runs),
        'metrics': {name: results.metric_summary(
            m.get('metrics', {}).get(name) for m in members)
                    for name in names},
    })
  entries.sort(key=lambda e: _sort_key(e['point']) + (e['point_id'],))
  return entries


def _is_number_or_none_everywhere(members, name) -> bool:
  for member in members:
    value = member.get('metrics', {}).get(name)
    if value is not None and (isinstance(value, bool) or
                              not isinstance(value, (int, float))):
      return False
  return True


def _sort_key(point: Mapping[str, Any]) -> tuple:
  # None sorts first; mixed types compare by their text.
  return tuple((point.get(f) is not None,
                (0, point.get(f)) if isinstance(point.get(f), (int, float))
                else (1, str(point.get(f))))
               for f in POINT_FIELDS)


def summary_rows(entries: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
  """Long-format rows of `summarize` output: one per (point, metric)."""
  rows = []
  for entry in entries:
    for name, stats in entry['metrics'].items():
      row = {field: entry['point'].get(field) for field in POINT_FIELDS}
      row.update(family=entry['family'], point_id=entry['point_id'],
                 metric=name, **stats)
      rows.append(row)
  return rows


def format_csv(entries: Sequence[Mapping[str, Any]]) -> str:
  """`summary_rows` as CSV text with header `SUMMARY_COLUMNS`."""
  buffer = io.StringIO()
  writer = csv.DictWriter(buffer, fieldnames=SUMMARY_COLUMNS,
                          lineterminator='\n')
  writer.writeheader()
  for row in summary_rows(entries):
    writer.writerow({k: '' if v is None else v for k, v in row.items()})
  return buffer.getvalue()


def write_summary(directory: str,
                  entries: Sequence[Mapping[str, Any]]) -> Tuple[str, str]:
  """Writes `summary.json` and `summary.csv` atomically; returns their paths."""
  json_path = os.path.join(directory, SUMMARY_JSON)
  csv_path = os.path.join(directory, SUMMARY_CSV)
  results.atomic_write_text(
      json_path, results.to_json(list(entries), indent=1, sort_keys=True) +
      '\n')
  results.atomic_write_text(csv_path, format_csv(entries))
  return json_path, csv_path


def summarize_store(directory: str) -> List[Dict[str, Any]]:
  """Summarizes every record of the store at `directory` and writes tables.

  Returns:
    The `summarize` entries (also written by `write_summary`).

  Raises:
    AfterKernelError: the directory holds no records.
  """
  store = ResultStore(directory)
  records = store.records()
  errors.require(bool(records), f'no records in {store.records_dir}; run a '
                 'sweep with --store_dir pointing there first')
  entries = summarize(records)
  write_summary(directory, entries)
  return entries


# Metrics shown by `format_summary` unless told otherwise.
DEFAULT_TABLE_METRICS = ('svm_error', 'nn_error', 'conjugate_svm_error',
                         'swap_inv', 'trans_inv', 'kalignment')


def format_summary(entries: Sequence[Mapping[str, Any]],
                   metrics: Sequence[str] = DEFAULT_TABLE_METRICS) -> str:
  """A readable table of `summarize` entries: one line per point.

  Cells are 'mean±ci95' (just the mean for a single run); the point columns
  shown are those that vary between entries.
  """
  if not entries:
    return '(no records)'
  varying = [f for f in POINT_FIELDS
             if len({repr(e['point'].get(f)) for e in entries}) > 1 or
             f in ('family', 'epoch')]
  header = varying + ['n'] + list(metrics)
  lines = []
  for entry in entries:
    cells = [str(entry['point'].get(f, '')) for f in varying]
    cells.append(str(len(entry['runs'])))
    for name in metrics:
      stats = entry['metrics'].get(name)
      if not stats or stats['mean'] is None:
        cells.append('-')
      elif stats['ci95'] is None:
        cells.append(f'{stats["mean"]:.4f}')
      else:
        cells.append(f'{stats["mean"]:.4f}±{stats["ci95"]:.4f}')
    lines.append(cells)
  widths = [max(len(h), *(len(row[i]) for row in lines))
            for i, h in enumerate(header)]
  text = ['  '.join(h.ljust(w) for h, w in zip(header, widths))]
  text.extend('  '.join(c.ljust(w) for c, w in zip(row, widths))
              for row in lines)
  text.append('(mean±95% CI half-width over the n runs of each point)')
  return '\n'.join(text)
