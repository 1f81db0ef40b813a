"""Tests of binaries/flags.py: flags generated from config dataclasses.

Also the properties every binary gets from it: all binaries import into one
process, one flag name has one default everywhere, and each binary's
--helpfull lists its flags with their types and defaults.
"""

import concurrent.futures
import dataclasses
import importlib
import os
import pkgutil
import re
import subprocess
import sys
from typing import Optional, Tuple

from absl import flags as absl_flags
from absl.testing import absltest

from afterkernel import errors
import binaries
from binaries import flags
from binaries import mains

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Modules of binaries/ that are not programs.
_LIBRARIES = ('flags', 'mains')
BINARIES = sorted(m.name for m in pkgutil.iter_modules(binaries.__path__)
                  if m.name not in _LIBRARIES)


@dataclasses.dataclass(frozen=True)
class _Base:
  """A base class.

  Attributes:
    name: what it is called,
      over two lines.
  """
  name: str = 'a'


@dataclasses.dataclass(frozen=True)
class _Config(_Base):
  """A test configuration.

  Attributes (besides _Base's):
    size, rate: how many and how fast.
    cap: an upper bound.
    fast: go fast.
    sizes: several sizes.
    kinds: several kinds.
    weights: several weights.
    switches: several settings.
  """
  size: int = 3
  rate: float = 0.5
  cap: Optional[int] = None
  fast: bool = False
  sizes: tuple = (1, 2)
  kinds: Tuple[str, ...] = ('x', 'y')
  weights: Tuple[float, ...] = (0.5,)
  switches: Tuple[bool, ...] = (False,)
  dataset: str = 'digits'
  epochs: int = 2

  def validate(self):
    errors.require(self.size > 0, f'size must be positive, got {self.size}')


_PRESETS = {'tiny': _Config(), 'big': _Config(size=100, cap=7)}


def _study(values=None):
  values = absl_flags.FlagValues() if values is None else values
  return mains.StudyFlags(_Config, _PRESETS, 'tiny', 'for tests',
                          flag_values=values), values


def _binary_config_classes():
  """{binary: [ConfigFlags, ...]} of every binary module."""
  found = {}
  for name in BINARIES:
    module = importlib.import_module(f'binaries.{name}')
    found[name] = []
    for value in vars(module).values():
      if isinstance(value, (mains.StudyFlags, mains.ConfigBinary)):
        value = value.fields
      if isinstance(value, mains.SweepBinary):
        found[name].extend([value.sweep_flags, value.base_flags])
      if isinstance(value, flags.ConfigFlags):
        found[name].append(value)
  return found


class FieldDocsTest(absltest.TestCase):

  def test_attributes_sections_of_the_class_and_its_bases(self):
    docs = flags.field_docs(_Config)
    self.assertEqual(docs['name'], 'what it is called, over two lines.')
    self.assertEqual(docs['cap'], 'an upper bound.')
    # A grouped entry is marked, so that SHARED_HELP may say more.
    self.assertEqual(docs['size'], '*how many and how fast.')
    self.assertEqual(docs['rate'], docs['size'])
    self.assertNotIn('dataset', docs)


class DefineFlagsTest(absltest.TestCase):

  def test_one_flag_per_field_typed_from_the_annotations(self):
    study, values = _study()
    values(['prog', '--size=5', '--rate=0.25', '--cap=9', '--fast',
            '--sizes=4,5,6', '--kinds=z', '--weights=1,2.5',
            '--switches=true,false,true', '--output_dir=/tmp/x'])
    self.assertEqual(study.config(), _Config(
        size=5, rate=0.25, cap=9, fast=True, sizes=(4, 5, 6), kinds=('z',),
        weights=(1.0, 2.5), switches=(True, False)))
    self.assertEqual(values['sizes'].flag_type(),
                     'comma-separated list of int')
    self.assertEqual(values['size'].flag_type(), 'int')
    self.assertEqual(values['fast'].flag_type(), 'bool')
    self.assertEqual(values['dataset'].flag_type(), 'string enum')

  def test_help_comes_from_the_docstring_or_shared_help(self):
    _, values = _study()
    self.assertStartsWith(values['cap'].help, 'an upper bound.')
    self.assertStartsWith(values['name'].help, 'what it is called, over two')
    self.assertStartsWith(values['size'].help, 'how many and how fast.')
    self.assertIn(flags.SHARED_HELP['dataset'], values['dataset'].help)
    # The presets' values are in the help.
    self.assertIn('big: 100', values['size'].help)

  def test_booleans_are_real_booleans(self):
    for argv, expected in ((['--fast'], True), (['--fast=false'], False),
                           (['--fast=False'], False), (['--nofast'], False),
                           (['--fast=true'], True), ([], False)):
      study, values = _study()
      values(['prog'] + argv)
      self.assertIs(study.config().fast, expected, argv)

  def test_unset_flags_keep_the_presets_values(self):
    study, values = _study()
    values(['prog', '--preset=big', '--nofast'])
    self.assertEqual(study.config(), _Config(size=100, cap=7, fast=False))
    # Given explicitly, a flag wins even when it equals its default.
    study, values = _study()
    values(['prog', '--preset=big', '--size=3'])
    self.assertEqual(study.config().size, 3)

  def test_defaults_are_field_defaults_or_none_where_studies_differ(self):
    _, values = _study()
    self.assertEqual(values['size'].default, 3)
    self.assertEqual(values['sizes'].default, (1, 2))
    self.assertIsNone(values['cap'].default)
    self.assertIn('dataset', flags.PRESET_DEPENDENT)
    self.assertIsNone(values['dataset'].default)
    self.assertIn("Unset: the preset's value (tiny: digits; big: digits)",
                  values['dataset'].help)
    self.assertIsNone(values['preset'].default)

  def test_parse_errors_name_the_flag(self):
    for argv, message in ((['--sizes=1,x'], '--sizes takes integers, got 1,x'),
                          (['--weights=a'], '--weights takes numbers'),
                          (['--switches=maybe'], '--switches takes true/false'),
                          (['--dataset=imagenet'], 'value should be one of'),
                          (['--size=x'], '--size')):
      _, values = _study()
      with self.assertRaisesRegex(absl_flags.IllegalFlagValueError, message):
        values(['prog'] + argv)

  def test_bad_values_are_afterkernel_errors_naming_the_flag(self):
    for argv, message in ((['--preset=huge'], 'unknown --preset'),
                          (['--size=0'], 'size must be positive'),
                          (['--epochs=1,2'], '--epochs takes one value')):
      study, values = _study()
      values(['prog'] + argv)
      with self.assertRaisesRegex(errors.AfterKernelError, message):
        study.config()

  def test_list_names_are_lists_everywhere(self):
    # --epochs is an integer field here, a list in the sweeps.
    study, values = _study()
    values(['prog', '--epochs=7'])
    self.assertEqual(study.config().epochs, 7)
    self.assertEqual(values['epochs'].flag_type(),
                     'comma-separated list of int')

  def test_pipe_none_annotations_are_optional_too(self):

    @dataclasses.dataclass(frozen=True)
    class Piped:
      """Piped.

      Attributes:
        cap: a cap.
      """
      cap: int | None = None

    values = absl_flags.FlagValues()
    config_flags = flags.define_config_flags(Piped, flag_values=values)
    values(['prog', '--cap=4'])
    self.assertEqual(config_flags.apply(Piped()), Piped(cap=4))

  def test_unsupported_fields_are_refused_at_definition(self):

    @dataclasses.dataclass(frozen=True)
    class Mixed:
      pairs: tuple = ((1, 2),)
      table: dict = dataclasses.field(default_factory=dict)

    for name in ('pairs', 'table'):
      with self.assertRaisesRegex(TypeError, name):
        flags.define_config_flags(Mixed, only=(name,),
                                  flag_values=absl_flags.FlagValues())


class RegistryTest(absltest.TestCase):

  def test_the_same_flag_is_reused(self):
    values = absl_flags.FlagValues()
    first, _ = _study(values)
    second, _ = _study(values)
    self.assertIs(values['size'], values['size'])
    values(['prog', '--size=4'])
    self.assertEqual(first.config().size, 4)
    self.assertEqual(second.config().size, 4)

  def test_another_default_or_type_is_a_conflict(self):
    values = absl_flags.FlagValues()
    _study(values)

    @dataclasses.dataclass(frozen=True)
    class Other:
      size: int = 4
      rate: str = 'fast'

    for name in ('size', 'rate'):
      with self.assertRaisesRegex(flags.FlagConflictError, f'--{name}'):
        flags.define_config_flags(Other, only=(name,), flag_values=values)


class BinariesTest(absltest.TestCase):
  """Properties of every binary in binaries/."""

  def test_every_binary_imports_into_one_process(self):
    self.assertLen(BINARIES, 15)
    for name in BINARIES:
      module = importlib.import_module(f'binaries.{name}')
      self.assertTrue(callable(module.main), name)

  def test_docstring_shows_a_command_line_and_what_it_prints(self):
    for name in BINARIES:
      doc = importlib.import_module(f'binaries.{name}').__doc__
      self.assertIn(f'python -m binaries.{name} --', doc, name)
      self.assertRegex(doc, r'(?i)\b(prints?|writes)\b', name)

  def test_every_field_flag_has_a_help_text(self):
    for name, config_flags in _binary_config_classes().items():
      for config in config_flags:
        for field_name in config.holders:
          self.assertNotEmpty(
              flags.field_help(config.config_class, field_name),
              f'{name}: --{field_name} has no documentation')

  def test_preset_dependent_names_are_those_whose_defaults_differ(self):
    defaults = {}
    for config_flags in (c for cs in _binary_config_classes().values()
                         for c in cs):
      for field in dataclasses.fields(config_flags.config_class):
        if field.name in config_flags.holders:
          default = field.default
          if field.name in flags.LIST_NAMES and not isinstance(default,
                                                               tuple):
            default = None if default is None else (default,)
          defaults.setdefault(field.name, set()).add(default)
    differing = {name for name, values in defaults.items() if len(values) > 1}
    self.assertEqual(differing, set(flags.PRESET_DEPENDENT))


def _helpfull(name: str) -> str:
  process = subprocess.run(
      [sys.executable, '-m', f'binaries.{name}', '--helpfull'], cwd=_REPO,
      capture_output=True, text=True, timeout=600, check=False,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3'))
  return process.stdout


def _flag_entries(text: str, module_path: str):
  """{flag: its help block} of the flags listed under `module_path`."""
  section = text.split(f'{module_path}:\n', 1)[1].split('\n\n', 1)[0]
  entries = {}
  for block in re.split(r'\n(?=  --)', section):
    match = re.match(r'\s*--(?:\[no\])?(\w+):', block)
    if match:  # absl wraps lines; one space between words
      entries[match.group(1)] = ' '.join(block.split())
  return entries


class HelpfullTest(absltest.TestCase):
  """Each binary's --helpfull, as a user runs it."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    with concurrent.futures.ThreadPoolExecutor(max_workers=3) as pool:
      cls.texts = dict(zip(BINARIES, pool.map(_helpfull, BINARIES)))

  def test_lists_every_flag_with_its_type_and_default(self):
    for name in BINARIES:
      module = importlib.import_module(f'binaries.{name}')
      entries = _flag_entries(self.texts[name], module.__file__)
      own = {f.name for f in absl_flags.FLAGS.get_key_flags_for_module(
          module)} | {h.name for c in _binary_config_classes()[name]
                      for h in c.holders.values()}
      self.assertTrue(own, name)
      for flag_name in own:
        self.assertIn(flag_name, entries, f'{name}: --{flag_name}')
        flag = absl_flags.FLAGS[flag_name]
        block = entries[flag_name]
        if flag.default is not None:
          self.assertIn('(default: ', block, f'{name}: --{flag_name}')
        type_marks = {'int': '(an integer', 'float': '(a number',
                      'bool': f'--[no]{flag_name}', 'string enum': '<'}
        mark = type_marks.get(flag.flag_type(), '')
        if flag.flag_type().startswith('comma-separated'):
          mark = '(a comma-separated list of'
        self.assertIn(mark, block, f'{name}: --{flag_name}')

  def test_one_flag_name_has_one_default_in_every_binary(self):
    seen = {}
    for name in BINARIES:
      module = importlib.import_module(f'binaries.{name}')
      for flag_name, block in _flag_entries(self.texts[name],
                                            module.__file__).items():
        default = re.search(r"\(default: ('.*?')\)", block)
        value = default.group(1) if default else None
        seen.setdefault(flag_name, {})[name] = value
    shared = {flag: by_binary for flag, by_binary in seen.items()
              if len(by_binary) > 1}
    self.assertGreater(len(shared), 20)
    for flag_name, by_binary in shared.items():
      self.assertLen(set(by_binary.values()), 1, (flag_name, by_binary))


if __name__ == '__main__':
  absltest.main()
