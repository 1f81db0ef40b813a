"""Result files: one JSON line per run, a summary with confidence intervals.

An experiment's output directory holds
  * `config.json`: the experiment configuration (written once);
  * `runs.jsonl`: one JSON object per finished run (config hash, run index,
    seed, timings, every metric);
  * `summary.json`: per metric {mean, std, ci95, n} over the finished runs.

Every write goes to a temporary file in the same directory followed by
`os.replace`, which is atomic on POSIX: a crash (even `kill -9`) leaves either
the old or the new file, never a truncated one, and a failing run never
touches what earlier runs wrote. Re-running the same configuration resumes:
runs already in `runs.jsonl` are skipped by the runner.
"""

import hashlib
import json
import math
import os
import tempfile
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import numpy as np
from scipy import stats as scipy_stats

from afterkernel import errors

CONFIG_FILE = 'config.json'
RUNS_FILE = 'runs.jsonl'
SUMMARY_FILE = 'summary.json'
# Two-sided confidence level of the reported intervals.
CONFIDENCE = 0.95


def atomic_write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (temp file + fsync + rename)."""
  directory = os.path.dirname(os.path.abspath(path))
  os.makedirs(directory, exist_ok=True)
  handle, temporary = tempfile.mkstemp(
      dir=directory, prefix='.' + os.path.basename(path) + '.', suffix='.tmp')
  try:
    with os.fdopen(handle, 'w', encoding='utf-8') as f:
      f.write(text)
      f.flush()
      os.fsync(f.fileno())
    os.replace(temporary, path)
  except BaseException:
    if os.path.exists(temporary):
      os.remove(temporary)
    raise


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


def summarize(records: Iterable[Mapping[str, Any]]) -> Dict[str, Dict[str, Any]]:
  """Maps every metric found in the records' 'metrics' to `metric_summary`."""
  records = list(records)
  names = sorted({name for r in records for name in r.get('metrics', {})})
  return {name: metric_summary(r['metrics'].get(name) for r in records)
          for name in names}


def write_summary(output_dir: str, summary: Mapping[str, Any]) -> str:
  """Writes `summary.json` atomically and returns its path."""
  path = os.path.join(output_dir, SUMMARY_FILE)
  atomic_write_text(path, to_json(summary, indent=2, sort_keys=True) + '\n')
  return path


def format_table(summary: Mapping[str, Mapping[str, Any]],
                 pairs: Iterable[tuple] = ()) -> str:
  """A readable text table of a summary.

  Args:
    summary: metric -> {mean, std, ci95, n}.
    pairs: (row label, FNTK metric, after-kernel metric) rows shown side by
      side; the other metrics follow, one per row, after a blank line.

  Returns:
    The table, one line per row.
  """

  def cell(name):
    entry = summary.get(name)
    if not entry or entry['mean'] is None:
      return '-'
    text = f'{entry["mean"]:.4f}'
    if entry['ci95'] is not None:
      text += f' ± {entry["ci95"]:.4f}'
    return text

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


def config_fingerprint(fields: Mapping[str, Any],
                       ignored: Sequence[str] = ()) -> str:
  """16-hex-digit hash of the config fields that change results.

  Args:
    fields: the configuration as a JSON-serializable mapping.
    ignored: fields that do not change results (run counts, data paths,
      speed knobs), left out so that changing them reuses the records.
  """
  kept = {k: v for k, v in fields.items() if k not in ignored}
  return hashlib.sha256(json.dumps(kept, sort_keys=True).encode()
                        ).hexdigest()[:16]


def claim_output_dir(output_dir: str, config_dict: Mapping[str, Any],
                     fingerprint: str) -> None:
  """Writes output_dir/config.json, or checks that the existing one matches.

  Studies call this before writing anything, so a second configuration can
  never mix its records into a folder (results would silently average two
  experiments); re-running the same configuration resumes. Fields left out
  of the fingerprint (more runs, more sizes or indices) extend the folder:
  config.json is then rewritten to the latest configuration, so it matches
  what the summary covers.

  Raises:
    AfterKernelError: no output_dir, or it holds another configuration
      (nothing is changed then).
  """
  errors.require(bool(output_dir), 'output_dir is required: where results '
                 'are written')
  path = os.path.join(output_dir, CONFIG_FILE)
  text = to_json({'fingerprint': fingerprint, 'config': dict(config_dict)},
                 indent=2, sort_keys=True) + '\n'
  if os.path.exists(path):
    with open(path, encoding='utf-8') as f:
      previous_text = f.read()
    try:
      previous = json.loads(previous_text)
    except json.JSONDecodeError:
      previous = {}
    errors.require(
        isinstance(previous, dict) and
        previous.get('fingerprint') == fingerprint,
        f'{output_dir} already holds results of a different configuration '
        f'({path}); choose another --output_dir (nothing was changed)')
    if previous_text != text:
      atomic_write_text(path, text)
  else:
    atomic_write_text(path, text)
