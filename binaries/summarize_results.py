r"""Aggregates a result store into summary tables (CSV and JSON).

  python -m binaries.summarize_results --store_dir=results/cpu

Reads every record under STORE/records, groups them by (family, point) and
writes STORE/summary.csv (one row per point and metric: the point's fields,
mean, std, 95% CI half-width, n) and STORE/summary.json (the same, nested),
then prints one line per point with every measured metric (tables of at
most nine metric columns; --metrics picks some). The sweep binaries do this
after each sweep; run it by hand after merging stores or while a sweep is
running.

  python -m binaries.summarize_results --store_dir=results/cpu --paired=0,3

also prints the paired differences epoch 3 - epoch 0: for each point and
run measured at both epochs, the per-run difference of every metric, then
its mean and 95% Student-t CI half-width over the runs
(`summary.paired_differences`). --paired_by compares another point field
the same way, e.g. two learning rates or augmentation off/on (runs with
the same index share their seed, hence their initialization):

  python -m binaries.summarize_results --store_dir=results/cpu \
      --paired_by=learning_rate --paired=0.003,0.1

A folder written by run_after_kernel or linearized_vs_network (runs.jsonl,
no records/) is converted first: its runs become records/ (runs.jsonl is
kept; see afterkernel.studies.store.convert_runs_to_records).
"""

import os

from afterkernel import errors
from afterkernel.studies import store as store_lib
from afterkernel.studies import summary
from binaries import flags
from binaries import mains

STORE_DIR = flags.define_folder('store_dir')
METRICS = flags.define_list(
    'metrics', None,
    'Metrics shown in the printed tables (default: every measured metric, '
    'headline ones first; the files hold all of them).')
PAIRED = flags.define_list(
    'paired', None,
    'BEFORE,AFTER values of --paired_by, e.g. 0,3 (epochs), 0.003,0.1 '
    '(learning rates) or false,true (augmentation): also print the paired '
    'per-run differences AFTER - BEFORE of every metric with 95% CIs.')
PAIRED_BY = flags.define_string(
    'paired_by', 'epoch',
    'The point field --paired compares: one of '
    f'{", ".join(summary.PAIRABLE_FIELDS)}.')


def main(argv):

  def body():
    mains.require_no_arguments(argv)
    store_dir = mains.require_folder(STORE_DIR, 'the result store to '
                                     'summarize')
    entries = store_lib.summarize_store(store_dir)
    print(summary.format_summary_blocks(entries, METRICS.value))
    field = PAIRED_BY.value
    errors.require(field in summary.PAIRABLE_FIELDS,
                   f'--paired_by must be one of '
                   f'{", ".join(summary.PAIRABLE_FIELDS)}; got {field!r}')
    if PAIRED.value is not None:
      errors.require(len(PAIRED.value) == 2,
                     f'--paired takes two {field} values BEFORE,AFTER; got '
                     f'{",".join(PAIRED.value)}')
      before, after = (summary.parse_point_value(v) for v in PAIRED.value)
      paired = summary.paired_differences(
          store_lib.ResultStore(store_dir).records(), before, after, field)
      print()
      print(summary.format_paired(paired, before, after, METRICS.value,
                                  field))
    directory = os.path.abspath(store_dir)
    print(f'\n{len(entries)} points; wrote '
          f'{os.path.join(directory, store_lib.SUMMARY_CSV)} and '
          f'{os.path.join(directory, store_lib.SUMMARY_JSON)}')

  return mains.main_status(body)


if __name__ == '__main__':
  flags.run(main)
