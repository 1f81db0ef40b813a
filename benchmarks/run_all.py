r"""Runs the afterkernel benchmarks of issue 3 and prints Markdown tables.

From the project root:

  .venv/bin/python -m benchmarks.run_all --quick    # ~5 min, small sizes
  .venv/bin/python -m benchmarks.run_all            # BENCHMARKS.md sizes

Every benchmark measures all its variants in this one process, round-robin,
and prints the medians of --repeats calls side by side with their ratios and
peak RSS; compare ratios, not absolute seconds across runs. MNIST is read
from --data_dir (default $AFTERKERNEL_DATA_DIR, else ../shared/data next to
the checkout); without it the benchmarks fall back to noise images / the
embedded digits and say so.
"""

import os
import sys
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

from absl import app  # pylint: disable=g-import-not-at-top
from absl import flags

from benchmarks import common

BENCHMARKS = ('features', 'gram', 'margin', 'end_to_end')

_QUICK = flags.DEFINE_bool(
    'quick', False, 'Small sizes (about 5 minutes on 2 cores); the full run '
    'takes about an hour.')
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
_OUTPUT_JSON = flags.DEFINE_string(
    'output_json', None, 'Also write every raw number here (JSON).')
_VERBOSE = flags.DEFINE_bool('verbose', True,
                             'Progress lines on stderr.')


def _log(message: str) -> None:
  if _VERBOSE.value:
    print(f'[{time.strftime("%H:%M:%S")}] {message}', file=sys.stderr,
          flush=True)


def _run_one(name: str, data_dir: str, quick: bool, repeats: int):
  # Imported here so --helpfull does not pay for TensorFlow.
  # pylint: disable=g-import-not-at-top
  from benchmarks import end_to_end_bench
  from benchmarks import features_bench
  from benchmarks import gram_bench
  from benchmarks import margin_bench
  if name == 'features':
    return features_bench.run(
        features_bench.QUICK_CONFIGS if quick else features_bench.FULL_CONFIGS,
        data_dir=data_dir, repeats=repeats, log=_log)
  if name == 'gram':
    return gram_bench.run(
        gram_bench.QUICK_CONFIGS if quick else gram_bench.FULL_CONFIGS,
        data_dir=data_dir, repeats=repeats, log=_log)
  if name == 'margin':
    if _MARGIN_SIZES.value:
      configs = tuple(margin_bench.MarginConfig(int(n))
                      for n in _MARGIN_SIZES.value)
    else:
      configs = (margin_bench.QUICK_CONFIGS if quick
                 else margin_bench.FULL_CONFIGS)
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


def main(argv):
  del argv
  unknown = set(_ONLY.value) - set(BENCHMARKS)
  if unknown:
    raise app.UsageError(f'unknown --only entries {sorted(unknown)}; choose '
                         f'from {", ".join(BENCHMARKS)}')
  data_dir = _DATA_DIR.value or common.default_data_dir()
  start = time.time()
  info = common.machine_info()
  command = ' '.join(['python -m benchmarks.run_all'] + sys.argv[1:])
  print(f'# afterkernel benchmarks ({"quick" if _QUICK.value else "full"})\n')
  print(f'Command: `{command}`  ')
  print(f'Machine: {info["cpu_count"]} CPUs ({info["machine"]}), Python '
        f'{info["python"]}, TensorFlow {info["tensorflow"]}, Keras '
        f'{info["keras"]}, NumPy {info["numpy"]}  ')
  print(f'Started {info["time"]}, load average {info["load_average"]}  ')
  print(f'MNIST: {"found in " + data_dir if common.has_mnist(data_dir) else "NOT found (" + data_dir + "): fallbacks used"}\n',
        flush=True)
  payload = {'command': command, 'machine': info, 'reports': {}}
  for name in BENCHMARKS:
    if name not in _ONLY.value:
      continue
    _log(f'benchmark {name} (load average {common.load_average()})')
    bench_start = time.time()
    report = _run_one(name, data_dir, _QUICK.value, _REPEATS.value)
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
