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
import sys

from absl import app
from absl import flags

from afterkernel import errors
from afterkernel.studies import store as store_lib

_STORE_DIR = flags.DEFINE_string('store_dir', None,
                                 'The result store to summarize.')
flags.mark_flag_as_required('store_dir')
_METRICS = flags.DEFINE_list(
    'metrics', list(store_lib.DEFAULT_TABLE_METRICS),
    'Metrics shown in the printed table (the files hold all of them).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  try:
    entries = store_lib.summarize_store(_STORE_DIR.value)
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(store_lib.format_summary(entries, _METRICS.value))
  directory = os.path.abspath(_STORE_DIR.value)
  print(f'\n{len(entries)} points; wrote '
        f'{os.path.join(directory, store_lib.SUMMARY_CSV)} and '
        f'{os.path.join(directory, store_lib.SUMMARY_JSON)}')
  return 0


if __name__ == '__main__':
  app.run(main)
