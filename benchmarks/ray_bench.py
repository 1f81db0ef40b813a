"""Local vs Ray executor: one 8-record sweep, wall times side by side.

  python -m benchmarks.ray_bench [--train_subset=240] [--num_runs=4]
      [--last_epoch=300]

runs the epochs sweep (digits 3-vs-8, fully connected, checkpoints at
epochs 0 and `--last_epoch`, `--num_runs` runs = 2 x num_runs records, 1
unit per run)
twice in one process, into two fresh stores: with the local executor (one
unit after the other, TF with its default threads) and with the Ray
executor on a local Ray instance of 2 CPUs, 1 CPU and 1 TF thread per task
(2 single-threaded workers). The Ray time includes starting Ray and each
worker's TensorFlow import. Prints both wall times, the speedup, and checks
the two stores hold the same records. Needs `pip install -e '.[ray]'`.
"""

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
from afterkernel.studies import after_kernel
from afterkernel.studies import ray_executor
from afterkernel.studies import store as store_lib
from afterkernel.studies import sweeps


def bench_sweep(train_subset: int, num_runs: int,
                last_epoch: int) -> sweeps.Sweep:
  """The benchmark's epochs sweep: 2 checkpoints x `num_runs` runs."""
  return sweeps.Sweep(
      family='epochs', tasks=('digits_3v8',),
      architectures=('fully_connected',), epochs=(0, last_epoch),
      base=after_kernel.ExperimentConfig(
          train_subset=train_subset, test_subset=100, num_translations=100,
          num_zooms=100, num_swaps=100, num_rotations=100,
          ker_alignment_sample_size=100, effective_rank_sample_size=100,
          svm_max_iterations=2000, num_runs=num_runs))


def _quiet(message):
  del message


def main(argv=None) -> int:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument('--train_subset', type=int, default=240)
  parser.add_argument('--num_runs', type=int, default=4)
  parser.add_argument('--last_epoch', type=int, default=300)
  args = parser.parse_args(argv)
  sweep = bench_sweep(args.train_subset, args.num_runs, args.last_epoch)
  ray = ray_executor.import_ray()
  # Workers find this checkout (not only an installed copy).
  root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  path = os.pathsep.join(p for p in (root, os.environ.get('PYTHONPATH')) if p)

  stores, seconds = {}, {}
  for name in ('local', 'ray'):
    stores[name] = store_lib.ResultStore(tempfile.mkdtemp(prefix=name))
    start = time.perf_counter()
    if name == 'local':
      counts = sweeps.run_sweep(sweep, stores[name], log=_quiet)
    else:
      ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
               runtime_env={'env_vars': {'PYTHONPATH': path,
                                         'TF_CPP_MIN_LOG_LEVEL': '2'}})
      seconds['ray start'] = time.perf_counter() - start
      try:
        counts = sweeps.run_sweep(
            sweep, stores[name], log=_quiet,
            executor=ray_executor.ray_executor(num_cpus_per_task=1,
                                               log=_quiet))
      finally:
        ray.shutdown()
    seconds[name] = time.perf_counter() - start
    assert counts['written'] == sweep.num_records(), counts

  same = all(stores['ray'].get(k)['metrics'] == stores['local'].get(k)[
      'metrics'] for k in stores['local'].keys())
  print(f'sweep: {sweep.num_records()} records ({args.num_runs} units of 2 '
        f'checkpoints at epochs 0 and {args.last_epoch}), train_subset='
        f'{args.train_subset}, '
        f'{os.cpu_count()} cores')
  print(f'{"executor":<34}{"wall s":>8}{"speedup":>9}')
  print(f'{"local (1 process, TF default)":<34}{seconds["local"]:>8.1f}'
        f'{1.0:>9.2f}')
  print(f'{"ray (2 tasks x 1 CPU, 1 thread)":<34}{seconds["ray"]:>8.1f}'
        f'{seconds["local"] / seconds["ray"]:>9.2f}')
  print(f'(ray: {seconds["ray start"]:.1f} s of it starting Ray; each '
        'worker also imports TensorFlow once)')
  print(f'records equal (metrics, bit for bit): {same}')
  return 0 if same else 1


if __name__ == '__main__':
  sys.exit(main())
