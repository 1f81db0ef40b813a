r"""Runs the afterkernel benchmarks of issue 3 and prints Markdown tables.

From the project root:

  .venv/bin/python -m benchmarks.run_all --quick    # ~5 min, small sizes
  .venv/bin/python -m benchmarks.run_all            # BENCHMARKS.md sizes
  .venv/bin/python -m benchmarks.run_all --only=gram --peers=tf

The Gram benchmark also times the peer libraries of issue 3 (--peers=all:
TF vectorized_map, and torch.func / neural-tangents where installed, see
`pip install -e '.[peers]'`; --peers=tf: only the pure-TF one; --peers=none).

Every benchmark measures all its variants in one process, round-robin, and
prints the medians of --repeats calls side by side with their ratios and
peak RSS; compare ratios, not absolute seconds across runs. By default
(--isolate) each configuration (one network, one n) runs in a fresh
subprocess, so that earlier configurations cannot slow later ones (we saw
2-5x on large fresh allocations after other models had run in the same
process) and peak RSS is that of the configuration alone. MNIST is read from
--data_dir (default $AFTERKERNEL_DATA_DIR, else ../shared/data next to the
checkout); without it the benchmarks fall back to noise images / the
embedded digits and say so.
"""

import json
import os
import subprocess
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top,wrong-import-position
from absl import app
from absl import flags

from benchmarks import common
# pylint: enable=g-import-not-at-top,wrong-import-position

BENCHMARKS = ('features', 'gram', 'margin', 'end_to_end')

_QUICK = flags.DEFINE_bool(
    'quick', False, 'Small sizes (about 5 minutes on 2 quiet cores); the '
    'full run takes about 25 minutes.')
_ONLY = flags.DEFINE_list(
    'only', list(BENCHMARKS), f'Benchmarks to run, of {", ".join(BENCHMARKS)}.')
_DATA_DIR = flags.DEFINE_string(
    'data_dir', None, 'Folder with mnist/*.gz (the layout of '
    '../shared/data); default $AFTERKERNEL_DATA_DIR, else ../shared/data.')
_REPEATS = flags.DEFINE_integer('repeats', common.DEFAULT_REPEATS,
                                'Timed repeats per case (median reported).')
_MARGIN_SIZES = flags.DEFINE_list(
    'margin_sizes', None, 'Training-set sizes n of the max-margin benchmark; '
    'default 2000,4000 (quick: 500).')
_ORIGINAL_MAX_SECONDS = flags.DEFINE_float(
    'original_max_seconds', None, 'Longest run of the original solver to its '
    'target before its time is extrapolated instead; default 600 (quick: 30).')
_PEERS = flags.DEFINE_enum(
    'peers', 'all', ['all', 'tf', 'none'], 'Peers timed beside afterkernel '
    'in the gram benchmark: all (missing packages get a "not installed" '
    'row), tf (only TF vectorized_map + matmul) or none.')
_ISOLATE = flags.DEFINE_bool(
    'isolate', True, 'Run each configuration in a fresh subprocess.')
_CONFIG_INDEX = flags.DEFINE_integer(
    'config_index', None, 'Internal (--noisolate children): run only this '
    'configuration of the one --only benchmark.')
_CHILD_JSON = flags.DEFINE_string(
    'child_json', None, 'Internal: where a child writes its report.')
_OUTPUT_JSON = flags.DEFINE_string(
    'output_json', None, 'Also write every raw number here (JSON).')
_VERBOSE = flags.DEFINE_bool('verbose', True, 'Progress lines on stderr.')

# Flags passed on to children unchanged.
_PASSED_FLAGS = ('quick', 'data_dir', 'repeats', 'margin_sizes',
                 'original_max_seconds', 'peers', 'verbose')


def _log(message: str) -> None:
  if _VERBOSE.value:
    print(f'[{time.strftime("%H:%M:%S")}] {message}', file=sys.stderr,
          flush=True)


def _configs(name: str, quick: bool) -> list:
  """The configurations of one benchmark ([None] if it has just one)."""
  # Imported here so --helpfull does not pay for TensorFlow.
  # pylint: disable=g-import-not-at-top
  from benchmarks import features_bench
  from benchmarks import gram_bench
  from benchmarks import margin_bench
  if name == 'features':
    return list(features_bench.QUICK_CONFIGS if quick
                else features_bench.FULL_CONFIGS)
  if name == 'gram':
    return list(gram_bench.QUICK_CONFIGS if quick else gram_bench.FULL_CONFIGS)
  if name == 'margin':
    if _MARGIN_SIZES.value:
      return [margin_bench.MarginConfig(int(n)) for n in _MARGIN_SIZES.value]
    return list(margin_bench.QUICK_CONFIGS if quick
                else margin_bench.FULL_CONFIGS)
  return [None]


def _run_one(name: str, configs: list, data_dir: str, quick: bool,
             repeats: int) -> common.Report:
  """Runs benchmark `name` on `configs` in this process."""
  # pylint: disable=g-import-not-at-top
  from benchmarks import end_to_end_bench
  from benchmarks import features_bench
  from benchmarks import gram_bench
  from benchmarks import margin_bench
  if name == 'features':
    return features_bench.run(configs, data_dir=data_dir, repeats=repeats,
                              log=_log)
  if name == 'gram':
    return gram_bench.run(configs, data_dir=data_dir, repeats=repeats,
                          log=_log, peers=_PEERS.value)
  if name == 'margin':
    max_seconds = _ORIGINAL_MAX_SECONDS.value or (30.0 if quick else 600.0)
    return margin_bench.run(
        configs, data_dir=data_dir, repeats=repeats,
        tolerances=(1e-3,) if quick else (1e-3, 1e-4),
        original_max_seconds=max_seconds, log=_log)
  return end_to_end_bench.run(
      data_dir=data_dir,
      protocol=(end_to_end_bench.QUICK_PROTOCOL if quick
                else end_to_end_bench.FULL_PROTOCOL),
      repeats=1 if quick else repeats,
      original_feature_examples=32 if quick else
      end_to_end_bench.ORIGINAL_FEATURE_EXAMPLES, log=_log)


def _run_child(name: str, index: int) -> common.Report:
  """Runs configuration `index` of `name` in a fresh Python process."""
  with tempfile.TemporaryDirectory() as scratch:
    path = os.path.join(scratch, 'report.json')
    command = [sys.executable, '-m', 'benchmarks.run_all', f'--only={name}',
               f'--config_index={index}', '--noisolate',
               f'--child_json={path}']
    for flag in _PASSED_FLAGS:
      value = flags.FLAGS[flag].value
      if value is None:
        continue
      if isinstance(value, bool):
        command.append(f'--{"" if value else "no"}{flag}')
      elif isinstance(value, list):
        command.append(f'--{flag}={",".join(value)}')
      else:
        command.append(f'--{flag}={value}')
    subprocess.run(command, check=True,
                   cwd=os.path.dirname(os.path.dirname(
                       os.path.abspath(__file__))))
    with open(path, encoding='utf-8') as f:
      payload = json.load(f)
  return common.Report(payload['title'], payload['tables'], payload['notes'],
                       payload['raw'])


def main(argv):
  del argv
  unknown = set(_ONLY.value) - set(BENCHMARKS)
  if unknown:
    raise app.UsageError(f'unknown --only entries {sorted(unknown)}; choose '
                         f'from {", ".join(BENCHMARKS)}')
  data_dir = _DATA_DIR.value or common.default_data_dir()
  if _CHILD_JSON.value:  # A child: one configuration, report to a file.
    name = _ONLY.value[0]
    configs = _configs(name, _QUICK.value)
    if _CONFIG_INDEX.value is not None:
      configs = [configs[_CONFIG_INDEX.value]]
    report = _run_one(name, configs, data_dir, _QUICK.value, _REPEATS.value)
    common.write_json(_CHILD_JSON.value, {
        'title': report.title, 'tables': report.tables,
        'notes': report.notes, 'raw': report.raw})
    return

  start = time.time()
  info = common.machine_info()
  command = ' '.join(['python -m benchmarks.run_all'] + sys.argv[1:])
  print(f'# afterkernel benchmarks ({"quick" if _QUICK.value else "full"})\n')
  print(f'Command: `{command}`  ')
  print(f'Machine: {info["cpu_count"]} CPUs ({info["machine"]}), Python '
        f'{info["python"]}, TensorFlow {info["tensorflow"]}, Keras '
        f'{info["keras"]}, NumPy {info["numpy"]}  ')
  print(f'Started {info["time"]}, load average {info["load_average"]}  ')
  found = common.has_mnist(data_dir)
  print(f'MNIST: {"found in " if found else "NOT found in "}{data_dir}'
        f'{"" if found else " (fallbacks used)"}  ')
  print(f'Isolation: {"one fresh process per configuration" if _ISOLATE.value else "one process"}\n',
        flush=True)
  payload = {'command': command, 'machine': info, 'reports': {}}
  for name in BENCHMARKS:
    if name not in _ONLY.value:
      continue
    _log(f'benchmark {name} (load average {common.load_average()})')
    bench_start = time.time()
    if _ISOLATE.value:
      report = common.merge_reports([
          _run_child(name, index)
          for index in range(len(_configs(name, _QUICK.value)))])
    else:
      report = _run_one(name, _configs(name, _QUICK.value), data_dir,
                        _QUICK.value, _REPEATS.value)
    seconds = time.time() - bench_start
    print(report.text())
    print(f'({name}: {seconds:.0f} s wall clock, load average now '
          f'{common.load_average()})\n', flush=True)
    payload['reports'][name] = {'title': report.title, 'notes': report.notes,
                                'tables': report.tables, 'raw': report.raw,
                                'seconds': seconds}
  payload['total_seconds'] = time.time() - start
  payload['final_load_average'] = common.load_average()
  print(f'Total {payload["total_seconds"]:.0f} s; load average at the end '
        f'{payload["final_load_average"]}.')
  if _OUTPUT_JSON.value:
    common.write_json(_OUTPUT_JSON.value, payload)
    print(f'Raw numbers: {_OUTPUT_JSON.value}')


if __name__ == '__main__':
  app.run(main)
