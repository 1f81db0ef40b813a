"""The binaries reproduce the golden records of testdata/golden/ number by number.

Each case of `tests/golden_cases.py` (the offline digits demo of
run_after_kernel, the three sweeps, every study binary at its tiny preset,
linearized_vs_network) is rerun as a subprocess, `python -m binaries.<name>`
with the recorded flags and `golden_cases.ENVIRONMENT`, with whatever code is
checked out; every number of every result file it writes must equal the
golden one. So the restructuring of the library (modules moving into
packages, one store, one runner, generated flags) is shown to keep the
results, as long as the binaries keep their names, flags and result files.
A renamed result file or key fails naming it; new files and keys are fine.

Regenerate (only for an intended change of numbers):
`python -m tests.regenerate_goldens [--case=NAME]`.
"""

import glob
import os
import tempfile

from absl.testing import absltest
from absl.testing import parameterized

import golden_cases

# Run-to-run, the cases are bit-identical on one machine under
# golden_cases.ENVIRONMENT (single-threaded deterministic TensorFlow; two
# recordings compared, see testdata/README.md), so floats are compared
# exactly first: (rtol, atol) = (0, 0). A case listed here is compared
# within max(atol, rtol * |golden|) instead, for the reason given.
TOLERANCES = {}
# Another CPU rounds differently (its oneDNN / Eigen kernels differ): on an
# AMD EPYC machine every case differed from the goldens (recorded on the
# machine of issue 12) in the 7th-8th digit of trained weights, losses and
# invariances, and in the 5th of NAD direction entries near 0, while every
# count and iteration number was equal. When the exact comparison fails, the
# numbers are compared again within these tolerances (iterations, counts
# and flags still exactly); set AFTERKERNEL_GOLDEN_EXACT=1 to refuse
# anything but bit-equality (restructurings on the recording machine).
CROSS_MACHINE_TOLERANCE = (1e-4, 1e-5)
EXACT_ENV = 'AFTERKERNEL_GOLDEN_EXACT'
# Metrics whose value is set by rounding, so not compared across machines:
# the sweep_width case's conjugate SVM is certified NOT separable (60
# examples, ~10 penultimate features), and the classifier it reports is the
# near-zero w = Z^T p of the simplex point that proved it, whose signs on
# the test set follow the rounding (0.15 vs 0.175 on 40 test images).
CROSS_MACHINE_UNSTABLE = {
    'sweep_width': ('conjugate_svm_error', 'conjugate_svm_margin'),
}
# The most differences listed in one failure message.
_MAX_LISTED = 40


class GoldenTest(parameterized.TestCase):

  @parameterized.named_parameters(
      (name, name) for name in golden_cases.CASE_NAMES)
  def test_case_reproduces_its_golden_record(self, name):
    case = golden_cases.case_named(name)
    path = golden_cases.golden_path(name)
    self.assertTrue(os.path.exists(path),
                    f'no golden record {path}: run python -m '
                    f'tests.regenerate_goldens --case={name}')
    golden = golden_cases.read_golden(path)
    self.assertEqual(
        golden['command'], case.command(),
        f'{path} was recorded with another command line than the case in '
        'tests/golden_cases.py: regenerate it or restore the case')
    self.assertNotEmpty(golden['results'], f'{path} holds no numbers')
    with tempfile.TemporaryDirectory() as output_dir:
      golden_cases.run_case(case, output_dir)
      results = golden_cases.read_results(output_dir)
    rtol, atol = TOLERANCES.get(name, (0.0, 0.0))
    problems = golden_cases.compare(golden['results'], results, rtol, atol)
    if problems and not os.environ.get(EXACT_ENV):
      unstable = CROSS_MACHINE_UNSTABLE.get(name, ())
      rtol = max(rtol, CROSS_MACHINE_TOLERANCE[0])
      atol = max(atol, CROSS_MACHINE_TOLERANCE[1])
      exact_differences = len(problems)
      problems = golden_cases.compare(
          golden_cases.without_metrics(golden['results'], unstable),
          results, rtol, atol)
      if not problems:
        print(f'golden case {name}: {exact_differences} numbers not '
              f'bit-equal, all within the cross-machine tolerance '
              f'(rtol={rtol}, atol={atol}'
              + (f', {", ".join(unstable)} not compared' if unstable else '')
              + f'); {EXACT_ENV}=1 refuses that')
    listed = '\n'.join(problems[:_MAX_LISTED])
    more = len(problems) - _MAX_LISTED
    self.assertEmpty(
        problems, f'golden case {name} ({" ".join(case.command())}): '
        f'{len(problems)} differences (rtol={rtol}, atol={atol}):\n{listed}'
        + (f'\n... and {more} more' if more > 0 else ''))

  def test_every_golden_record_belongs_to_a_case(self):
    recorded = sorted(os.path.basename(p)[:-len('.json')] for p in
                      glob.glob(os.path.join(golden_cases.GOLDEN_DIR,
                                             '*.json')))
    self.assertEqual(recorded, sorted(golden_cases.CASE_NAMES))

  def test_golden_records_hold_no_times_or_strings(self):
    for name in golden_cases.CASE_NAMES:
      golden = golden_cases.read_golden(golden_cases.golden_path(name))
      for file_name, numbers in golden['results'].items():
        for key, value in numbers.items():
          self.assertIsNone(golden_cases.EXCLUDED_KEY.search(key),
                            f'{name}: {file_name}: {key}')
          self.assertIsInstance(value, (int, float, bool, type(None)),
                                f'{name}: {file_name}: {key}')


class CompareTest(absltest.TestCase):
  """The comparison itself catches what it must (fast, no subprocess)."""

  def setUp(self):
    super().setUp()
    self.golden = {'summary.json': {'a/mean': 0.25, 'a/n': 3, 'ok': True,
                                    'none': None, 'nan': float('nan')}}

  def _with(self, **changes):
    return {'summary.json': dict(self.golden['summary.json'], **changes)}

  def test_equal_results_pass_extra_keys_and_files_allowed(self):
    results = self._with(new_metric=1.0)
    results['records/new.json'] = {'x': 1}
    self.assertEmpty(golden_cases.compare(self.golden, results))

  def test_last_bit_change_fails_exactly_and_passes_within_tolerance(self):
    changed = self._with(**{'a/mean': 0.25 + 2**-54})
    problems = golden_cases.compare(self.golden, changed)
    self.assertLen(problems, 1)
    self.assertIn('a/mean', problems[0])
    self.assertEmpty(golden_cases.compare(self.golden, changed, rtol=1e-6))
    self.assertLen(golden_cases.compare(
        self.golden, self._with(**{'a/mean': 0.2501}), rtol=1e-6), 1)

  def test_integers_bools_null_and_nan_compare_exactly(self):
    for key, value in (('a/n', 4), ('ok', False), ('ok', 1), ('none', 0.0),
                       ('nan', 0.0)):
      problems = golden_cases.compare(self.golden, self._with(**{key: value}),
                                      rtol=0.5, atol=0.5)
      self.assertLen(problems, 1, (key, value))
      self.assertIn(key, problems[0])

  def test_csv_rows_match_by_content_not_position(self):
    golden = {'summary.csv': {'0/epoch': 0, '0/mean': 0.5,
                              '1/epoch': 1, '1/mean': 0.25}}
    # A metric measured in addition adds a row and moves the others down.
    moved = {'summary.csv': {'0/epoch': 0, '0/mean': 9.0,
                             '1/epoch': 0, '1/mean': 0.5,
                             '2/epoch': 1, '2/mean': 0.25}}
    self.assertEmpty(golden_cases.compare(golden, moved))
    changed = {'summary.csv': dict(moved['summary.csv'], **{'2/mean': 0.3})}
    problems = golden_cases.compare(golden, changed)
    self.assertLen(problems, 1)
    self.assertIn('golden row 1', problems[0])
    # One new row cannot stand for two golden rows.
    twice = {'summary.csv': {'0/epoch': 0, '0/mean': 0.5,
                             '1/epoch': 0, '1/mean': 0.5}}
    once = {'summary.csv': {'0/epoch': 0, '0/mean': 0.5}}
    self.assertLen(golden_cases.compare(twice, once), 1)

  def test_missing_key_and_file_are_named(self):
    results = {'summary.json': {k: v for k, v in
                                self.golden['summary.json'].items()
                                if k != 'a/n'}}
    problems = golden_cases.compare(self.golden, results)
    self.assertEqual(problems, ["summary.json: missing key 'a/n' (golden 3)"])
    problems = golden_cases.compare(self.golden, {'summary.csv': {}})
    self.assertLen(problems, 1)
    self.assertIn("missing result file 'summary.json'", problems[0])

  def test_without_metrics_drops_their_keys_and_csv_files(self):
    results = {'summary.json': {'0/metrics/conj/mean': 0.1,
                                '0/metrics/conj_other/mean': 0.2},
               'records/r.json': {'metrics/conj': 0.3, 'metrics/x': 0.4},
               'summary.csv': {'0/mean': 0.1}}
    self.assertEqual(golden_cases.without_metrics(results, ('conj',)),
                     {'summary.json': {'0/metrics/conj_other/mean': 0.2},
                      'records/r.json': {'metrics/x': 0.4}})
    self.assertIs(golden_cases.without_metrics(results, ()), results)

  def test_cross_machine_tolerance_still_catches_real_changes(self):
    rtol, atol = CROSS_MACHINE_TOLERANCE
    # A 7th-digit rounding difference passes; a change in the 4th digit, a
    # count, or a flag does not.
    self.assertEmpty(golden_cases.compare(
        self.golden, self._with(**{'a/mean': 0.25 * (1 + 3e-7)}), rtol, atol))
    for key, value in (('a/mean', 0.2501), ('a/n', 4), ('ok', False)):
      self.assertLen(golden_cases.compare(
          self.golden, self._with(**{key: value}), rtol, atol), 1)

  def test_flatten_drops_times_and_strings(self):
    flat = golden_cases.flatten({
        'metrics': {'svm_error': 0.1, 'train_seconds': 3.0},
        'timings': {'gram': 1.0}, 'version': '0.1.0', 'path': '/tmp/x',
        'runs': [{'n': 2}, {'ok': False}]})
    self.assertEqual(flat, {'metrics/svm_error': 0.1, 'runs/0/n': 2,
                            'runs/1/ok': False})


if __name__ == '__main__':
  absltest.main()
