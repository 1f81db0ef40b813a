r"""Rewrites the golden records testdata/golden/<case>.json (never a test).

Runs each golden case (`tests/golden_cases.py`) with the checked-out code
and writes its command line and every number its result files hold. Only
regenerate when a change of the numbers is intended (and say why in the
commit); `tests/golden_test.py` compares against these files.

  python -m tests.regenerate_goldens                      # every case
  python -m tests.regenerate_goldens --case=nads --case=sweep_width

Prints each case's wall-clock time. --golden_dir writes elsewhere (e.g. to
diff two recordings for run-to-run determinism).
"""

import os
import sys

from absl import app
from absl import flags

# tests/ is not a package: the helper is imported as the tests import it.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import golden_cases  # pylint: disable=g-import-not-at-top,wrong-import-position

_CASE = flags.DEFINE_multi_enum(
    'case', None, list(golden_cases.CASE_NAMES),
    'Case(s) to regenerate (repeat the flag); default: all.')
_GOLDEN_DIR = flags.DEFINE_string(
    'golden_dir', golden_cases.GOLDEN_DIR, 'Where <case>.json is written.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  names = _CASE.value or golden_cases.CASE_NAMES
  times = []
  for name in names:
    case = golden_cases.case_named(name)
    record = golden_cases.record_case(case)
    path = os.path.join(_GOLDEN_DIR.value, f'{name}.json')
    golden_cases.write_golden(record, path)
    times.append((name, record['seconds_when_recorded']))
    count = sum(len(numbers) for numbers in record['results'].values())
    print(f'{name}: {count} numbers from {len(record["results"])} files in '
          f'{record["seconds_when_recorded"]:.1f} s -> {path}', flush=True)
  print(golden_cases.format_seconds(times))
  print(f'total {sum(seconds for _, seconds in times):.1f} s')


if __name__ == '__main__':
  app.run(main)
