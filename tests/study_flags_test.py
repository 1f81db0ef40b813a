"""Tests of binaries/study_flags.py: flags typed from a config dataclass."""

import contextlib
import dataclasses
import io
from typing import Optional

from absl import flags
from absl.testing import absltest

from afterkernel import errors
from binaries import study_flags


@dataclasses.dataclass(frozen=True)
class _Config:
  name: str = 'a'
  size: int = 3
  rate: float = 0.5
  cap: Optional[int] = None
  fast: bool = False
  sizes: tuple = (1, 2)
  kinds: tuple = ('x', 'y')

  def validate(self):
    errors.require(self.size > 0, f'size must be positive, got {self.size}')


_PRESETS = {'tiny': _Config(), 'big': _Config(size=100, cap=7)}


def _study():
  values = flags.FlagValues()
  study = study_flags.define_flags(_Config, _PRESETS, 'for tests',
                                   {'size': 'How many.'}, flag_values=values)
  return study, values


class DefineFlagsTest(absltest.TestCase):

  def test_one_flag_per_field_typed_from_the_annotations(self):
    study, values = _study()
    values(['prog', '--size=5', '--rate=0.25', '--cap=9', '--fast',
            '--sizes=4,5,6', '--kinds=z', '--output_dir=/tmp/x'])
    config = study_flags.config_from_flags(study)
    self.assertEqual(config, _Config(size=5, rate=0.25, cap=9, fast=True,
                                     sizes=(4, 5, 6), kinds=('z',)))
    self.assertIn('How many.', values['size'].help)

  def test_unset_flags_keep_the_presets_values(self):
    study, values = _study()
    values(['prog', '--preset=big', '--nofast'])
    config = study_flags.config_from_flags(study)
    self.assertEqual(config, _Config(size=100, cap=7, fast=False))

  def test_bad_values_are_afterkernel_errors_naming_the_flag(self):
    for argv, message in ((['--sizes=1,x'], '--sizes must be'),
                          (['--preset=huge'], 'unknown --preset'),
                          (['--size=0'], 'size must be positive')):
      study, values = _study()
      values(['prog'] + argv)
      with self.assertRaisesRegex(errors.AfterKernelError, message):
        study_flags.config_from_flags(study)


  def test_pipe_none_annotations_are_optional_too(self):

    @dataclasses.dataclass(frozen=True)
    class Piped:
      cap: int | None = None

    values = flags.FlagValues()
    study = study_flags.define_flags(Piped, {'tiny': Piped()}, '', {},
                                     flag_values=values)
    values(['prog', '--cap=4'])
    self.assertEqual(study_flags.config_from_flags(study), Piped(cap=4))

  def test_tuples_of_other_types_are_refused_at_definition(self):

    @dataclasses.dataclass(frozen=True)
    class Floats:
      rates: tuple = (0.1, 0.2)

    with self.assertRaisesRegex(TypeError, 'rates'):
      study_flags.define_flags(Floats, {'tiny': Floats()}, '', {},
                               flag_values=flags.FlagValues())


class RunMainTest(absltest.TestCase):

  def _run(self, *argv, positional=('prog',)):
    study, values = _study()
    values(['prog'] + list(argv))
    calls = []

    def run(config, output_dir, log):
      log('running')
      calls.append((config, output_dir))
      return 'result'

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = study_flags.run_main(list(positional), study, run,
                                  lambda result, config: f'table {result}',
                                  'figure', footer='footnote')
    return code, out.getvalue(), err.getvalue(), calls

  def test_runs_the_study_and_prints_its_table(self):
    code, out, err, calls = self._run('--output_dir=/tmp/out', '--size=2')
    self.assertEqual((code, err), (0, ''))
    self.assertEqual(calls, [(_Config(size=2), '/tmp/out')])
    for text in ('running', 'table result', 'footnote', 'figure.png'):
      self.assertIn(text, out)

  def test_bad_input_is_one_error_line_and_status_2_without_running(self):
    for argv, positional in ((('--size=2',), ('prog',)),
                             (('--output_dir=/tmp/o', '--size=-1'),
                              ('prog',)),
                             (('--output_dir=/tmp/o',), ('prog', 'extra'))):
      code, out, err, calls = self._run(*argv, positional=positional)
      self.assertEqual(code, 2)
      self.assertEqual((out, calls), ('', []))
      self.assertLen(err.strip().splitlines(), 1)
      self.assertStartsWith(err, 'error: ')


if __name__ == '__main__':
  absltest.main()
