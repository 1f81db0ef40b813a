"""The one summary schema: mean, std and 95% CI per metric per point.

`summarize` groups store records by (family, point) and reports, for every
metric, `metric_summary` ({mean, std, ci95, n}); `write_summary` writes the
entries as `summary.json` and as a long-format `summary.csv` (one row per
point and metric) next to the records. `summarize_metrics` is the flat form
(metric -> stats over all records) that run_after_kernel writes for its
single point. `paired_differences` compares two checkpoints of the same runs
(e.g. epoch 3 - epoch 0) with a CI of the per-run difference.
"""

import collections
import csv
import io
import math
import os
from typing import (Any, Dict, Iterable, List, Mapping, Optional, Sequence,
                    Tuple)

import numpy as np
from scipy import stats as scipy_stats

from afterkernel import errors
from afterkernel.studies import store

SUMMARY_FILE = SUMMARY_JSON = 'summary.json'
SUMMARY_CSV = 'summary.csv'
# Two-sided confidence level of the reported intervals.
CONFIDENCE = 0.95
# Fields of a record's 'point' that identify it in tables and figures, in
# column order (a record may hold a subset; missing ones are left blank).
POINT_FIELDS = ('family', 'task', 'dataset', 'plus_class', 'minus_class',
                'nn_architecture', 'num_parameters', 'use_augmentation',
                'learning_rate', 'training_loss_target', 'train_subset',
                'test_subset', 'epoch')
SUMMARY_COLUMNS = POINT_FIELDS + ('point_id', 'metric', 'mean', 'std', 'ci95',
                                  'n')


def metric_summary(values: Iterable[Optional[float]]) -> Dict[str, Any]:
  """{mean, std, ci95, n} of the finite values.

  std is the sample standard deviation (ddof=1); ci95 is the half-width of
  the Student-t 95% confidence interval of the mean, t_{0.975, n-1} std /
  sqrt(n). With one value std and ci95 are None (undefined), not 0.

  Args:
    values: per-run values; None and non-finite values are left out.

  Returns:
    The summary dict.
  """
  finite = np.array([v for v in values
                     if v is not None and math.isfinite(v)], np.float64)
  n = len(finite)
  if n == 0:
    return {'mean': None, 'std': None, 'ci95': None, 'n': 0}
  if n == 1:
    return {'mean': float(finite[0]), 'std': None, 'ci95': None, 'n': 1}
  std = float(np.std(finite, ddof=1))
  half_width = float(scipy_stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1) * std /
                     math.sqrt(n))
  return {'mean': float(np.mean(finite)), 'std': std, 'ci95': half_width,
          'n': n}


def summarize_metrics(records: Iterable[Mapping[str, Any]]
                      ) -> Dict[str, Dict[str, Any]]:
  """Maps every metric found in the records' 'metrics' to `metric_summary`."""
  records = list(records)
  names = sorted({name for r in records for name in r.get('metrics', {})})
  return {name: metric_summary(r['metrics'].get(name) for r in records)
          for name in names}


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
    `metric_summary` (ci95 = Student-t half-width; None for n < 2).

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
        'metrics': {name: metric_summary(
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
  store.atomic_write_text(
      json_path, store.to_json(list(entries), indent=1, sort_keys=True) + '\n')
  store.atomic_write_text(csv_path, format_csv(entries))
  return json_path, csv_path


def write_metrics_summary(output_dir: str,
                          metrics: Mapping[str, Any]) -> str:
  """Writes a `summarize_metrics` dict as `summary.json`; returns its path."""
  path = os.path.join(output_dir, SUMMARY_JSON)
  store.atomic_write_text(path,
                          store.to_json(metrics, indent=2, sort_keys=True) +
                          '\n')
  return path


def summarize_store(directory: str) -> List[Dict[str, Any]]:
  """Summarizes every record of the store at `directory` and writes tables.

  A folder of 0.1.0's run_after_kernel (runs.jsonl, no records/) is
  converted first (`store.convert_runs_to_records`).

  Returns:
    The `summarize` entries (also written by `write_summary`).

  Raises:
    AfterKernelError: the directory holds no records.
  """
  result_store = store.ResultStore(directory)
  records = result_store.records()
  if not records and os.path.exists(os.path.join(directory, store.RUNS_FILE)):
    store.convert_runs_to_records(directory)
    records = result_store.records()
  errors.require(bool(records), f'no records in {result_store.records_dir}; '
                 'run a sweep or study with its output folder there first')
  entries = summarize(records)
  write_summary(directory, entries)
  return entries


# Metrics shown by `format_summary` unless told otherwise.
# Every measured headline metric, and the convergence of the SVM behind the
# error (share of runs whose solve reached its certified gap).
DEFAULT_TABLE_METRICS = ('svm_error', 'svm_converged', 'nn_error',
                         'conjugate_svm_error', 'trans_inv', 'rotation_inv',
                         'zoom_inv', 'swap_inv', 'kalignment')


def _cell(stats: Optional[Mapping[str, Any]], separator: str = '±') -> str:
  if not stats or stats['mean'] is None:
    return '-'
  if stats['ci95'] is None:
    return f'{stats["mean"]:.4f}'
  return f'{stats["mean"]:.4f}{separator}{stats["ci95"]:.4f}'


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
             (f in ('family', 'epoch') and
              any(f in e['point'] for e in entries))]
  header = varying + ['n'] + list(metrics)
  lines = []
  for entry in entries:
    cells = [str(entry['point'].get(f, '')) for f in varying]
    cells.append(str(len(entry['runs'])))
    cells.extend(_cell(entry['metrics'].get(name)) for name in metrics)
    lines.append(cells)
  widths = [max(len(h), *(len(row[i]) for row in lines))
            for i, h in enumerate(header)]
  text = ['  '.join(h.ljust(w) for h, w in zip(header, widths))]
  text.extend('  '.join(c.ljust(w) for c, w in zip(row, widths))
              for row in lines)
  text.append('(mean±95% CI half-width over the n runs of each point)')
  return '\n'.join(text)


def format_table(summary: Mapping[str, Mapping[str, Any]],
                 pairs: Iterable[tuple] = ()) -> str:
  """A readable text table of a `summarize_metrics` dict.

  Args:
    summary: metric -> {mean, std, ci95, n}.
    pairs: (row label, FNTK metric, after-kernel metric) rows shown side by
      side; the other metrics follow, one per row, after a blank line.

  Returns:
    The table, one line per row.
  """

  def cell(name):
    return _cell(summary.get(name), ' ± ')

  lines = [f'{"metric":<28} {"FNTK (epoch 0)":>22} {"after kernel":>22}']
  shown = set()
  for label, ntk_name, ak_name in pairs:
    if ntk_name in summary or ak_name in summary:
      lines.append(f'{label:<28} {cell(ntk_name):>22} {cell(ak_name):>22}')
      shown.update((ntk_name, ak_name))
  others = [name for name in summary if name not in shown]
  if others:
    lines.append('')
    lines.extend(f'{name:<28} {cell(name):>22}' for name in others)
  counts = sorted({entry['n'] for entry in summary.values()})
  lines.append(f'(mean ± 95% CI half-width over n = '
               f'{"/".join(map(str, counts))} runs)')
  return '\n'.join(lines)


def measured_metrics(entries: Sequence[Mapping[str, Any]],
                     first: Sequence[str] = DEFAULT_TABLE_METRICS
                     ) -> Tuple[str, ...]:
  """Every metric with a value in some entry: `first` (in order), then the rest
  alphabetically. Printed summaries use it so no measured metric is hidden."""
  names = {name for entry in entries
           for name, stats in entry['metrics'].items()
           if stats.get('mean') is not None}
  return (tuple(name for name in first if name in names) +
          tuple(sorted(names - set(first))))


def format_summary_blocks(entries: Sequence[Mapping[str, Any]],
                          metrics: Optional[Sequence[str]] = None,
                          per_block: int = len(DEFAULT_TABLE_METRICS)) -> str:
  """`format_summary` of `metrics` (default: every measured metric) as
  tables of at most `per_block` metric columns, so wide stores stay
  readable."""
  metrics = measured_metrics(entries) if metrics is None else tuple(metrics)
  blocks = [metrics[i:i + per_block]
            for i in range(0, len(metrics), per_block)] or [()]
  return '\n\n'.join(format_summary(entries, block) for block in blocks)


# Paired differences between two checkpoints of the same runs.

# Point fields whose values `paired_differences` can compare (epochs,
# learning rates, augmentation on/off, ...): every point field but the
# family and the task fields (two tasks always differ in dataset or
# classes too). A pair shares every other point field.
PAIRABLE_FIELDS = tuple(f for f in POINT_FIELDS if f not in (
    'family', 'task', 'dataset', 'plus_class', 'minus_class'))


def parse_point_value(text: str) -> Any:
  """A point field's value from its command-line spelling: 'true'/'false'
  -> bool, then int, then float, else the string itself."""
  lowered = text.strip().lower()
  if lowered in ('true', 'false'):
    return lowered == 'true'
  for kind in (int, float):
    try:
      return kind(text)
    except ValueError:
      pass
  return text.strip()


def paired_differences(records: Iterable[Mapping[str, Any]], before: Any,
                       after: Any, field: str = 'epoch'
                       ) -> List[Dict[str, Any]]:
  """Mean and 95% CI of the per-run difference `after - before` of each metric.

  Records are paired when they share family, every point field but `field`
  (task, architecture, augmentation, ...) and the run index (hence the seed:
  for epochs the same training trajectory, for other fields such as the
  learning rate the same initialization and data order); one pair per run.
  The differences of a metric over the pairs are summarized by `metric_summary` (Student t), so
  the interval accounts for the runs' correlation between the checkpoints,
  which two separate per-point intervals ignore.

  Args:
    records: store records.
    before: value of point[field] subtracted (e.g. epoch 0).
    after: value of point[field] it is subtracted from (e.g. epoch 3).
    field: the point field that tells the two sides apart, one of
      `PAIRABLE_FIELDS` (booleans such as use_augmentation pair only with
      booleans).

  Returns:
    One entry per group with at least one pair, sorted like `summarize`:
    {'family', 'point' (the `before` record's point with `field` removed),
    'runs' (paired run indices), 'metrics': name -> {mean, std, ci95, n}}
    for every metric numeric in both records of every pair.

  Raises:
    AfterKernelError: an unknown field, `before` equals `after` (or one is
      a boolean and the other not), a value no record has, or two records
      of one group claim the same run and value.
  """
  errors.require(field in PAIRABLE_FIELDS,
                 f'paired differences compare one of the point fields '
                 f'{", ".join(PAIRABLE_FIELDS)}; got {field!r}')
  # True == 1 in Python: booleans pair only with booleans.
  same_kind = lambda value: isinstance(value, bool) == isinstance(before, bool)
  errors.require(same_kind(after) and before != after,
                 f'paired differences need two different {field} values of '
                 f'one kind; got {before!r} and {after!r}')
  groups = collections.OrderedDict()
  records = list(records)
  present = {value for value in (r.get('point', {}).get(field)
                                 for r in records) if same_kind(value)}
  for wanted in (before, after):
    errors.require(
        not records or wanted in present,
        f'no record has {field} = {wanted!r}; values of that kind present: '
        f'{", ".join(repr(v) for v in sorted(present, key=repr)) or "none"}')
  for record in records:
    point = record.get('point', {})
    value = point.get(field)
    if not same_kind(value) or value not in (before, after):
      continue
    key = (str(record.get('family', '')),
           repr(tuple(point.get(f) for f in POINT_FIELDS if f != field)))
    runs = groups.setdefault(key, {}).setdefault(record.get('run'), {})
    side = 'before' if value == before else 'after'
    errors.require(side not in runs,
                   f'two records of run {record.get("run")} at {field} = '
                   f'{value!r} in one group of family {key[0]}')
    runs[side] = record
  entries = []
  for (family, _), runs in groups.items():
    pairs = [(run, sides) for run, sides in sorted(
        runs.items(), key=lambda item: str(item[0]))
             if len(sides) == 2]
    if not pairs:
      continue
    members = [sides[s] for _, sides in pairs for s in ('before', 'after')]
    names = sorted({name for m in members for name in m.get('metrics', {})
                    if _is_number_or_none_everywhere(members, name)})
    point = {k: v for k, v in pairs[0][1]['before'].get('point', {}).items()
             if k != field}
    entries.append({
        'family': family, 'point': point, 'runs': [run for run, _ in pairs],
        'metrics': {name: metric_summary(_difference(sides, name)
                                         for _, sides in pairs)
                    for name in names},
    })
  entries.sort(key=lambda e: _sort_key(e['point']))
  return entries


def _difference(sides: Mapping[str, Mapping[str, Any]],
                name: str) -> Optional[float]:
  low = sides['before'].get('metrics', {}).get(name)
  high = sides['after'].get('metrics', {}).get(name)
  return None if low is None or high is None else float(high) - float(low)


def format_paired(entries: Sequence[Mapping[str, Any]], before: Any,
                  after: Any, metrics: Optional[Sequence[str]] = None,
                  field: str = 'epoch') -> str:
  """`paired_differences` entries as `format_summary_blocks` tables.

  Cells are 'mean±ci95' of `after - before` per run; an interval that
  excludes 0 is a difference beyond the runs' noise.
  """
  if not entries:
    return f'(no runs measured at both {field} {before} and {field} {after})'
  return (f'paired differences ({field} {after} - {field} {before}, per '
          f'run):\n' + format_summary_blocks(entries, metrics).replace(
              '(mean±95% CI half-width over the n runs of each point)',
              '(mean±95% CI half-width of the per-run difference over the '
              'n paired runs)'))
