"""The golden cases: which binaries run, how, and how their numbers are read.

Shared by `tests/golden_test.py` (reruns every case with the checked-out code
and compares) and `tests/regenerate_goldens.py` (rewrites
`testdata/golden/<case>.json`). A case is one command line,
`python -m binaries.<name> <flags> --output_dir=<tmp>`, run as a subprocess
so that moving modules inside the library cannot break the test; only the
binaries' module names, their flags and the result files they write are the
contract.

A run's numbers are every JSON / JSON-lines / CSV / .npz result file under
its output folder, flattened to `path/in/the/file -> number` ("records/x.json"
-> {"metrics/svm_error": 0.1, ...}); strings (paths, hashes, names, version
strings) are not recorded, and keys that measure time are dropped by
`EXCLUDED_KEY`. Not a test itself.
"""

import csv
import dataclasses
import glob
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN_DIR = os.path.join(REPO, 'testdata', 'golden')
# Stands for the output folder in the recorded command lines.
OUTPUT_DIR = '{output_dir}'
# Environment of every run (on top of the caller's). One thread per op and
# per op pool and TensorFlow's deterministic kernels make reruns on one
# machine bit-identical (measured: see testdata/README.md); the hash seed
# pins Python's set/dict-of-str iteration order.
ENVIRONMENT = {
    'TF_CPP_MIN_LOG_LEVEL': '2',
    'TF_DETERMINISTIC_OPS': '1',
    'TF_NUM_INTRAOP_THREADS': '1',
    'TF_NUM_INTEROP_THREADS': '1',
    'OMP_NUM_THREADS': '1',
    'PYTHONHASHSEED': '0',
    'CUDA_VISIBLE_DEVICES': '',
}
# Result files whose numbers are recorded (figures are not).
RESULT_SUFFIXES = ('.json', '.jsonl', '.csv', '.npz')
# A flattened key with one of these words in any component measures time or
# the machine, not the science: not recorded, not compared.
EXCLUDED_KEY = re.compile(
    r'(^|[/_])(seconds|timings?|time|timestamp|elapsed|duration|'
    r'hostname|host|pid|version|wall)($|[/_])')
# A config fingerprint in a record file name (see `_point_labels`).
_HASH = re.compile(r'(?<![0-9a-f])[0-9a-f]{16}(?![0-9a-f])')

Number = Union[int, float, bool, None]


@dataclasses.dataclass(frozen=True)
class Case:
  """One golden case: a binary and its flags.

  Attributes:
    name: the case name (testdata/golden/<name>.json, the test method).
    module: the binary, run as `python -m <module>`.
    flags: its flags; OUTPUT_DIR stands for the (temporary) output folder.
  """
  name: str
  module: str
  flags: Tuple[str, ...]
  # Flags added when the case runs but not part of its recorded command:
  # they restore a default the goldens were recorded with and that has
  # changed since (see `RECORDED_DEFAULTS`).
  pinned_flags: Tuple[str, ...] = ()

  def command(self) -> List[str]:
    """The recorded command line (after the interpreter)."""
    return ['-m', self.module, *self.flags]

  def run_command(self) -> List[str]:
    """The command line that reproduces the recorded numbers."""
    return [*self.command(), *self.pinned_flags]


# Defaults of 0.1.0 that have changed, pinned for the cases that use them.
# The SVM solver's default became 'exact' (issue 13): the same certified
# 1e-4 gap, other iterates, so margins differ from 0.1.0's 'working_set' in
# the 5th digit and iteration counts differ.
RECORDED_DEFAULTS = ('--svm_solver=working_set',)
# Grams of conv nets whose only Dense layer is the output became per_layer
# rows (issue 13: the Dense factors save nothing there, and rows measured
# 1.4-1.5x faster at n = 2,048); the VGG-like goldens were recorded with the
# factored path, the same Gram to float32 rounding but other last bits.
RECORDED_GRAM_PATH = ('--feature_method=structured',)

# Sweep flags shared by the three sweep cases: offline digits 3-vs-8, a
# small FC net, small subsets and sample sizes (every metric still measured).
_SWEEP_FLAGS = ('--tasks=digits_3v8', '--architectures=fully_connected',
                '--train_subset=60', '--test_subset=40',
                '--num_translations=10', '--num_zooms=10', '--num_swaps=10',
                '--num_rotations=10', '--ker_alignment_sample_size=10',
                '--effective_rank_sample_size=10',
                '--svm_max_iterations=2000', '--num_runs=1',
                f'--store_dir={OUTPUT_DIR}')


def _study(name: str, *flags: str) -> Case:
  """A study binary at its 'tiny' preset (+ `flags`)."""
  return Case(name, f'binaries.{name}',
              ('--preset=tiny', *flags, f'--output_dir={OUTPUT_DIR}'))


CASES: Tuple[Case, ...] = (
    # The offline digits demo (VGG-like net, FNTK and after kernel, SVM,
    # invariances, alignment, effective ranks, network error), shrunk; the
    # learning rate makes 3 epochs move the kernel (one run of two learns).
    Case('run_after_kernel', 'binaries.run_after_kernel',
         ('--dataset=digits', '--max_num_epochs=3', '--num_runs=2',
          '--train_subset=160', '--test_subset=60', '--learning_rate=0.1',
          '--batch_size=16', '--num_translations=20',
          '--num_zooms=20', '--num_swaps=20', '--num_rotations=20',
          '--ker_alignment_sample_size=20',
          '--effective_rank_sample_size=20', '--train_linear_model',
          f'--output_dir={OUTPUT_DIR}'),
         RECORDED_DEFAULTS + RECORDED_GRAM_PATH),
    Case('sweep_epochs', 'binaries.sweep_epochs',
         ('--epochs=0,1', *_SWEEP_FLAGS), RECORDED_DEFAULTS),
    Case('sweep_learning_rate', 'binaries.sweep_learning_rate',
         ('--learning_rates=0.03,0.3', '--training_loss_target=0.3',
          '--max_num_epochs=4', *_SWEEP_FLAGS), RECORDED_DEFAULTS),
    Case('sweep_width', 'binaries.sweep_width',
         ('--num_parameters=2000,4000', '--epochs=0,1', *_SWEEP_FLAGS),
         RECORDED_DEFAULTS),
    _study('data_scaling'),
    _study('after_kernel_vs_m'),
    _study('kernel_dynamics'),
    _study('eigenfunction_tasks'),
    _study('kernel_rotation'),
    _study('nads'),
    _study('second_order'),
    # No presets: the smallest flags that still train both models at two
    # widths and measure both effective ranks.
    Case('linearized_vs_network', 'binaries.linearized_vs_network',
         ('--dataset=digits', '--num_train=100', '--num_test=60',
          '--architecture=myrtle5', '--width_multipliers=0.0625,0.125',
          '--epochs=2', '--batch_size=25', '--rank_sample_size=20',
          f'--output_dir={OUTPUT_DIR}')),
)
CASE_NAMES = tuple(case.name for case in CASES)


def case_named(name: str) -> Case:
  """The case called `name`; ValueError naming the known ones otherwise."""
  for case in CASES:
    if case.name == name:
      return case
  raise ValueError(f'unknown golden case {name!r}; known: '
                   f'{", ".join(CASE_NAMES)}')


def golden_path(name: str) -> str:
  return os.path.join(GOLDEN_DIR, f'{name}.json')


def _flatten(value: Any, prefix: str, out: Dict[str, Number]) -> None:
  """Adds every number / bool / null leaf of `value` under `prefix`."""
  if isinstance(value, dict):
    for key, item in value.items():
      _flatten(item, f'{prefix}/{key}' if prefix else str(key), out)
  elif isinstance(value, (list, tuple)):
    for index, item in enumerate(value):
      _flatten(item, f'{prefix}/{index}' if prefix else str(index), out)
  elif isinstance(value, np.ndarray):
    _flatten(value.tolist(), prefix, out)
  elif isinstance(value, (bool, int, float)) or value is None:
    if not EXCLUDED_KEY.search(prefix):
      out[prefix] = value
  # Strings (paths, names, hashes, versions) are not numbers: skipped.


def flatten(value: Any) -> Dict[str, Number]:
  """Nested JSON-like `value` -> {'a/b/0/c': number}, time keys dropped."""
  out: Dict[str, Number] = {}
  _flatten(value, '', out)
  return out


def _csv_number(text: str) -> Optional[Number]:
  """A CSV cell as a number, or None for text and empty cells."""
  try:
    return int(text)
  except ValueError:
    pass
  try:
    return float(text)
  except ValueError:
    return None


def read_result_file(path: str) -> Dict[str, Number]:
  """The flattened numbers of one result file (by its suffix)."""
  if path.endswith('.jsonl'):
    with open(path, encoding='utf-8') as f:
      lines = [json.loads(line) for line in f if line.strip()]
    return flatten(lines)
  if path.endswith('.json'):
    with open(path, encoding='utf-8') as f:
      return flatten(json.load(f))
  if path.endswith('.csv'):
    with open(path, encoding='utf-8', newline='') as f:
      rows = list(csv.DictReader(f))
    # Rows by position, cells by column name; text cells are not numbers.
    cells = {}
    for index, row in enumerate(rows):
      for column, text in row.items():
        number = _csv_number(text or '')
        if number is not None:
          cells[f'{index}/{column}'] = number
    return flatten(cells)
  if path.endswith('.npz'):
    with np.load(path) as arrays:
      return flatten({name: arrays[name] for name in arrays.files})
  raise ValueError(f'not a result file: {path}')


def _point_labels(output_dir: str,
                  relatives: Sequence[str]) -> Dict[str, str]:
  """{hash-named record file: the same name with the hash spelled out}.

  Sweep records are named <family>-<16 hex digits>-run<r>.json, the hex
  digits a fingerprint of the record's point. A fingerprint is no result
  (hashing another set of config fields changes it, not the science), so
  the hash is replaced by the point fields that differ between this run's
  records, e.g. width-epoch=0,num_parameters=2000-run0000.json.
  """
  points = {}
  for relative in relatives:
    if _HASH.search(os.path.basename(relative)) and relative.endswith('.json'):
      with open(os.path.join(output_dir, relative), encoding='utf-8') as f:
        record = json.load(f)
      if isinstance(record, dict) and isinstance(record.get('point'), dict):
        points[relative] = record['point']
  keys = sorted({key for point in points.values() for key in point})
  varying = [key for key in keys
             if len({json.dumps(p.get(key), sort_keys=True)
                     for p in points.values()}) > 1]
  labels = {}
  for relative, point in points.items():
    label = ','.join(f'{key}={json.dumps(point.get(key))}'
                     for key in varying) or 'point'
    labels[relative] = _HASH.sub(label, relative, count=1)
  if len(set(labels.values())) != len(labels):
    raise ValueError(f'{output_dir}: two records of the same point: '
                     f'{sorted(labels)}')
  return labels


def read_results(output_dir: str) -> Dict[str, Dict[str, Number]]:
  """{relative path: flattened numbers} of every result file of a run.

  Hash-named records are listed under `_point_labels`' names.
  """
  relatives = sorted(
      os.path.relpath(path, output_dir).replace(os.sep, '/')
      for path in glob.glob(os.path.join(output_dir, '**', '*'),
                            recursive=True)
      if os.path.isfile(path) and path.endswith(RESULT_SUFFIXES))
  labels = _point_labels(output_dir, relatives)
  results = {labels.get(relative, relative):
             read_result_file(os.path.join(output_dir, relative))
             for relative in relatives}
  results.update(legacy_views(output_dir))
  return results


def _read_json(path: str) -> Any:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def _legacy_summary_key(entry: Dict[str, Any]) -> Optional[str]:
  """The 0.1.0 top-level summary key of a one-store summary entry.

  run_after_kernel's summary.json was the metrics of its one point (no key,
  None); linearized_vs_network's was keyed by the width multiplier.
  """
  if entry.get('family') == 'linearized':
    return str(entry['point']['width'])
  return None


def legacy_views(output_dir: str) -> Dict[str, Dict[str, Number]]:
  """The 0.1.0 files `runs.jsonl` / `summary.json` rebuilt from the store.

  0.1.0's run_after_kernel and linearized_vs_network wrote `runs.jsonl` (one
  line per run, in run order) and a `summary.json` of their own schema;
  since the one store (issue 12, listed in CHANGELOG.md) they write
  `records/<key>.json` and the one summary schema (a list of entries, each
  with its `point` and `metrics`). This renames, it does not recompute: the
  records' contents become the lines of `runs.jsonl` (sorted by width, then
  run, the order 0.1.0 ran them in) and each summary entry's `metrics`
  becomes the old summary's (per width for the linearization study), so the
  golden numbers recorded from 0.1.0 are compared with the numbers the new
  files hold. Nothing is returned for a folder that has a runs.jsonl (0.1.0
  code) or no store records.
  """
  if os.path.exists(os.path.join(output_dir, 'runs.jsonl')):
    return {}
  paths = glob.glob(os.path.join(output_dir, 'records', '*.json'))
  records = [_read_json(path) for path in paths]
  records = [r for r in records if isinstance(r, dict) and
             r.get('family') in ('after_kernel', 'linearized')]
  if not records:
    return {}
  records.sort(key=lambda r: (float(r.get('width', 0.0)), r['run']))
  views = {'runs.jsonl': flatten(records)}
  summary_path = os.path.join(output_dir, 'summary.json')
  if os.path.exists(summary_path):
    summary = _read_json(summary_path)
    if isinstance(summary, list):
      old = {}
      for entry in summary:
        key = _legacy_summary_key(entry)
        if key is None:
          old.update(entry['metrics'])
        else:
          old[key] = entry['metrics']
      views['summary.json'] = flatten(old)
  return views


def run_case(case: Case, output_dir: str,
             python: str = sys.executable) -> Tuple[float, str]:
  """Runs `case` into `output_dir` from the repository root.

  Returns:
    (wall-clock seconds, the run's combined stdout and stderr).

  Raises:
    RuntimeError: the binary exited with a non-zero status (with its output).
  """
  command = [python] + [part.replace(OUTPUT_DIR, output_dir)
                        for part in case.run_command()]
  environment = dict(os.environ, **ENVIRONMENT)
  environment['PYTHONPATH'] = os.pathsep.join(
      p for p in (REPO, os.environ.get('PYTHONPATH')) if p)
  start = time.perf_counter()
  process = subprocess.run(command, cwd=REPO, env=environment,
                           capture_output=True, text=True, check=False)
  seconds = time.perf_counter() - start
  output = process.stdout + process.stderr
  if process.returncode != 0:
    raise RuntimeError(f'golden case {case.name}: {" ".join(command)} exited '
                       f'with status {process.returncode}:\n{output[-4000:]}')
  return seconds, output


def record_case(case: Case, python: str = sys.executable) -> Dict[str, Any]:
  """Runs `case` in a fresh folder; returns its golden record."""
  with tempfile.TemporaryDirectory() as output_dir:
    seconds, _ = run_case(case, output_dir, python)
    results = read_results(output_dir)
  return {
      'case': case.name,
      'command': case.command(),
      'environment': ENVIRONMENT,
      'seconds_when_recorded': round(seconds, 1),
      'results': results,
  }


def _same_number(golden: Number, value: Number, rtol: float,
                 atol: float) -> bool:
  """Equality of one golden number and a new one (see `compare`)."""
  if golden is None or value is None:
    return golden is None and value is None
  if isinstance(golden, bool) or isinstance(value, bool):
    return (isinstance(golden, bool) and isinstance(value, bool) and
            golden == value)
  if isinstance(golden, int):
    # Counts, iterations, epochs, sizes: exactly (4 and 4.0 are equal).
    return value == golden
  if math.isnan(golden) or math.isnan(value):
    return math.isnan(golden) and math.isnan(value)
  if math.isinf(golden) or math.isinf(value) or rtol == atol == 0:
    return value == golden
  return abs(value - golden) <= max(atol, rtol * abs(golden))


def compare(golden: Dict[str, Dict[str, Number]],
            results: Dict[str, Dict[str, Number]],
            rtol: float = 0.0, atol: float = 0.0) -> List[str]:
  """Every difference of `results` from `golden`, one line each.

  Each golden file must be among the results and each of its keys must be
  in that file with an equal value: ints and bools exactly, floats within
  max(atol, rtol * |golden|) (exactly when both are 0), null and NaN only as
  themselves. Files and keys the new code writes in addition are allowed.
  CSV files are compared row by row by content, not by row position (see
  `_compare_csv_rows`).
  """
  problems = []
  for name, numbers in sorted(golden.items()):
    if name not in results:
      problems.append(f'missing result file {name!r} (the run wrote: '
                      f'{", ".join(sorted(results)) or "nothing"})')
      continue
    new = results[name]
    if name.endswith('.csv'):
      problems.extend(_compare_csv_rows(name, numbers, new, rtol, atol))
      continue
    for key, expected in numbers.items():
      if key not in new:
        problems.append(f'{name}: missing key {key!r} (golden {expected!r})')
      elif not _same_number(expected, new[key], rtol, atol):
        problems.append(f'{name}: {key} = {new[key]!r}, golden {expected!r}')
  return problems


def without_metrics(results: Dict[str, Dict[str, Number]],
                    metrics: Sequence[str]) -> Dict[str, Dict[str, Number]]:
  """`results` without the keys of `metrics` (a key path holding one of the
  names as a component) and, if any are named, without CSV files, whose
  rows carry no metric name to drop them by (summary.json holds the same
  numbers)."""
  if not metrics:
    return results
  names = set(metrics)
  return {
      file_name: {key: value for key, value in numbers.items()
                  if not names & set(key.split('/'))}
      for file_name, numbers in results.items()
      if not file_name.endswith('.csv')}


def _csv_rows(numbers: Dict[str, Number]) -> List[Dict[str, Number]]:
  """'<row>/<column>' numbers -> one {column: number} per row, in order."""
  rows: Dict[int, Dict[str, Number]] = {}
  for key, value in numbers.items():
    index, column = key.split('/', 1)
    rows.setdefault(int(index), {})[column] = value
  return [rows[i] for i in sorted(rows)]


def _compare_csv_rows(name: str, golden: Dict[str, Number],
                      results: Dict[str, Number], rtol: float,
                      atol: float) -> List[str]:
  """Each golden CSV row must equal a distinct row of the new file.

  A CSV row (e.g. one point and metric of summary.csv) is a result; its
  position is not: a metric the new code measures in addition adds rows and
  moves the others down. So rows are matched by content, each new row used
  once, with `_same_number` per cell; rows the new code writes in addition
  are allowed, as keys are.
  """
  unused = _csv_rows(results)
  problems = []
  for index, row in enumerate(_csv_rows(golden)):
    match = next((i for i, candidate in enumerate(unused)
                  if set(row) <= set(candidate) and all(
                      _same_number(value, candidate[column], rtol, atol)
                      for column, value in row.items())), None)
    if match is None:
      problems.append(f'{name}: golden row {index} {row} has no equal row')
    else:
      unused.pop(match)
  return problems


def write_golden(record: Dict[str, Any], path: str) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path, 'w', encoding='utf-8') as f:
    json.dump(record, f, indent=1, sort_keys=True, allow_nan=True)
    f.write('\n')


def read_golden(path: str) -> Dict[str, Any]:
  with open(path, encoding='utf-8') as f:
    return json.load(f)


def format_seconds(times: Sequence[Tuple[str, float]]) -> str:
  return '\n'.join(f'{name:24s} {seconds:6.1f} s' for name, seconds in times)
