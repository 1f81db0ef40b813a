r"""Aggregates a result store into summary tables (CSV and JSON).

  python -m binaries.summarize_results --store_dir=results/cpu

Reads every record under STORE/records, groups them by (family, point) and
writes STORE/summary.csv (one row per point and metric: the point's fields,
mean, std, 95% CI half-width, n) and STORE/summary.json (the same, nested),
then prints one line per point. The sweep binaries do this after each sweep;
run it by hand after merging stores or while a sweep is running.

A folder written by run_after_kernel or linearized_vs_network (runs.jsonl,
no records/) is converted first: its runs become records/ (runs.jsonl is
kept; see afterkernel.studies.store.convert_runs_to_records).
"""

import os

from afterkernel.studies import store as store_lib
from binaries import flags
from binaries import mains

STORE_DIR = flags.define_folder('store_dir')
METRICS = flags.define_list(
    'metrics', store_lib.DEFAULT_TABLE_METRICS,
    'Metrics shown in the printed table (the files hold all of them).')


def main(argv):

  def body():
    mains.require_no_arguments(argv)
    store_dir = mains.require_folder(STORE_DIR, 'the result store to '
                                     'summarize')
    entries = store_lib.summarize_store(store_dir)
    print(store_lib.format_summary(entries, METRICS.value))
    directory = os.path.abspath(store_dir)
    print(f'\n{len(entries)} points; wrote '
          f'{os.path.join(directory, store_lib.SUMMARY_CSV)} and '
          f'{os.path.join(directory, store_lib.SUMMARY_JSON)}')

  return mains.main_status(body)


if __name__ == '__main__':
  flags.run(main)
