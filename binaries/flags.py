"""Every binary's flags, generated from its study's configuration dataclass.

One flag per configuration field, named like the field; a binary builds its
configuration by taking a preset (a configuration instance: the study's
presets, or the binary's one base configuration) and replacing the fields
whose flags were given on the command line (`ConfigFlags.apply`). A new field
therefore gets its flag without touching any binary.

What a field's flag looks like is decided here, once for every binary:

  * type: from the annotation. bool -> a real boolean (--flag, --noflag,
    --flag=false); int / float / str -> typed flags; str fields with a fixed
    set of values (`CHOICES`) -> enums; tuples -> comma-separated typed lists
    (`--epochs=0,1,3`); Optional[X] -> X with None allowed as default.
  * help: the field's `metadata['help']`, else its entry in the config
    class's `Attributes:` docstring section (base classes too), else
    `SHARED_HELP`.
  * default: the field's default. A name whose default differs between the
    studies (`PRESET_DEPENDENT`) defaults to None, meaning "the preset's
    value", so that one name has one default in every binary; the help of
    every flag lists the presets that set another value.

One name has one meaning: a flag is defined the first time a binary asks for
it and reused when another binary in the same process asks for the same
name, type and default (`FlagConflictError` otherwise; tests import every
binary into one process). Two names are lists everywhere (`LIST_NAMES`):
--epochs and --num_parameters take one value where the study trains once and
several in the sweeps.

Every bad input is one `error: ...` line on stderr and exit status 2:
`parse_flags` for absl's parsing errors (unknown flag, bad integer, value
outside an enum), `mains.main_status` for errors of the configuration and
the library. Binaries end with `flags.run(main)`. Not a binary itself.
"""

import dataclasses
import inspect
import re
import sys
import signal
import types
import typing
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence

from absl import app
from absl import flags

from afterkernel import data
from afterkernel import distribute
from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel import margin
from afterkernel import models
from afterkernel.kernels import features
from afterkernel.models import architectures
from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import linearized
from afterkernel.studies import scaling_fits

FLAGS = flags.FLAGS
# Flags defined here belong to the binary that asks for them (its --help
# lists them as its own).
flags.disclaim_key_flags()

# The values a field of this name may take, whatever the study: enum flags
# (element-wise for list fields).
CHOICES = {
    'dataset': tuple(data.DATASETS),
    'cifar_test_source': tuple(data.CIFAR_TEST_SOURCES),
    'nn_architecture': tuple(models.ARCHITECTURES),
    'architectures': tuple(models.ARCHITECTURES),
    'svm_solver': tuple(margin.SOLVERS),
    'feature_method': tuple(features.METHODS),
    'distribution_strategy': tuple(distribute.STRATEGIES),
    'task': tuple(linearized.TASKS),
    'parameterization': tuple(architectures.PARAMETERIZATIONS),
    'kernel_method': tuple(kernel_fit.FIT_METHODS),
    'zero_errors': tuple(scaling_fits.ZERO_ERROR_RULES),
    'fit_examples': tuple(after_kernel_vs_m.FIT_EXAMPLES),
    'loss': ('bce', 'mse'),
}
# Names whose field default differs between the studies (e.g. batch_size:
# 32 in ExperimentConfig, 64 in the scaling studies, 20 in the eigentask
# study): their flags default to None = the preset's value.
PRESET_DEPENDENT = frozenset({
    'architecture', 'batch_size', 'dataset', 'epochs', 'learning_rate',
    'loss', 'num_layers', 'num_parameters', 'num_runs', 'num_test',
    'num_train', 'width'})
# Names that are lists in one study and one number in another: always a
# list flag, of exactly one value where the field is a number.
LIST_NAMES = {'epochs': int, 'num_parameters': int}
# Help of names several studies share, where a study's docstring says less
# (grouped entries such as "epochs, batch_size, ...: the optimizer").
SHARED_HELP = {
    'dataset': 'Dataset (afterkernel.data.DATASETS).',
    'plus_class': 'Class labelled 1 (positive).',
    'minus_class': 'Class labelled 0 (negative).',
    'data_dir': ('Folder with local copies (mnist/*-ubyte.gz, '
                 'cifar10/*.bin.gz, ...; layout of /work/shared/data); unset '
                 '= tensorflow-datasets.'),
    'width': 'Hidden units (fully connected) or first-block channels.',
    'num_layers': 'Hidden layers (FC) or convolutions per block.',
    'architecture': 'Network (the study lists the ones it builds).',
    'epochs': ('Epochs of training; the epochs and width sweeps take several '
               '(one trajectory, measured at each).'),
    'batch_size': 'Minibatch size.',
    'learning_rate': 'SGD learning rate.',
    'momentum': 'SGD momentum.',
    'loss': 'bce (logistic on 0/1 targets) or mse (on +-1 targets).',
    'num_runs': 'Runs (seeds seed, seed + 1, ...).',
    'seed': 'First seed; run r uses seed + r.',
    'num_train': 'Training examples.',
    'num_test': 'Test examples.',
    'feature_batch_size': 'Examples per gradient-feature block.',
}
_LIST_KINDS = {int: 'integers', float: 'numbers', bool: 'true/false values',
               str: 'names'}
_TRUE = ('true', 't', '1', 'yes', 'y', 'on')
_FALSE = ('false', 'f', '0', 'no', 'n', 'off')
# "name: text" or "name, other: text" in an Attributes section.
_DOC_ENTRY = re.compile(
    r'^([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*):\s*(.*)$')
_PRESETS_IN_HELP = 4


class FlagConflictError(Exception):
  """Two binaries define one flag name with another type or default."""


class _ListParser(flags.ArgumentParser):
  """'0,1,3' -> (0, 1, 3): comma-separated values of one type."""

  def __init__(self, name: str, element_type: type,
               choices: Optional[Sequence[str]] = None):
    self.name = name
    self.element_type = element_type
    self.choices = tuple(choices) if choices else None
    self.syntactic_help = ('a comma-separated list of ' +
                           (f'<{"|".join(self.choices)}>' if self.choices
                            else _LIST_KINDS[element_type]))

  def _convert(self, text: str):
    if self.element_type is bool:
      lowered = text.lower()
      if lowered not in _TRUE + _FALSE:
        raise ValueError(text)
      return lowered in _TRUE
    value = self.element_type(text)
    if self.choices and value not in self.choices:
      raise ValueError(text)
    return value

  def parse(self, argument) -> tuple:
    if isinstance(argument, str):
      items = [item.strip() for item in argument.split(',') if item.strip()]
    else:
      items = list(argument)
    try:
      values = tuple(self._convert(str(item)) if isinstance(item, str)
                     else item for item in items)
    except ValueError:
      kind = (f'values from {", ".join(self.choices)}' if self.choices
              else _LIST_KINDS[self.element_type])
      text = argument if isinstance(argument, str) else ','.join(
          map(str, argument))
      raise ValueError(f'--{self.name} takes {kind}, got {text}') from None
    if self.element_type is bool:  # A set of settings: repeats dropped.
      values = tuple(dict.fromkeys(values))
    return values

  def flag_type(self) -> str:
    return f'comma-separated list of {self.element_type.__name__}'


class _ListFlag(flags.Flag):
  """A typed list flag whose parse error is the parser's own sentence."""

  def _parse(self, argument):
    try:
      return self.parser.parse(argument)
    except ValueError as e:
      raise flags.IllegalFlagValueError(str(e)) from None



class _ListSerializer(flags.ArgumentSerializer):
  """(0, 1, 3) -> '0,1,3' (what `_ListParser` reads back)."""

  def serialize(self, value) -> str:
    return ','.join(str(v).lower() if isinstance(v, bool) else str(v)
                    for v in value)


def field_docs(config_class: type) -> Dict[str, str]:
  """Field name -> its text in the `Attributes:` docstring sections.

  Base classes' sections count too (a subclass's entry wins). An entry
  "a, b: text" documents both names; its text is marked as grouped by a
  leading '*' so that `SHARED_HELP` can say more.
  """
  docs: Dict[str, str] = {}
  for klass in reversed(config_class.__mro__):
    if klass is object or not klass.__doc__:
      continue
    lines = inspect.cleandoc(klass.__doc__).splitlines()
    header = next((i for i, line in enumerate(lines)
                   if line.startswith('Attributes') and
                   line.rstrip().endswith(':')), None)
    if header is None:
      continue
    names, text = [], []
    for line in lines[header + 1:] + ['END']:
      indent = len(line) - len(line.lstrip())
      match = _DOC_ENTRY.match(line.strip()) if indent <= 2 else None
      if line.strip() and (match or indent == 0):
        for name in names:
          docs[name] = ('*' if len(names) > 1 else '') + ' '.join(text)
        if not match:
          break
        names = [n.strip() for n in match.group(1).split(',')]
        text = [match.group(2)]
      elif line.strip():
        text.append(line.strip())
  return docs


def _without_optional(hint):
  """X for Optional[X] and X | None; the hint itself otherwise."""
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1:
      return args[0]
  return hint


def _element_type(config_class: type, name: str, hint,
                  examples: Iterable[Any]) -> type:
  """int, float, bool or str: from Tuple[X, ...], else from example values."""
  if name in LIST_NAMES:
    return LIST_NAMES[name]
  args = {a for a in typing.get_args(hint) if a is not Ellipsis}
  if not args:
    args = {type(v) for example in examples if example for v in example}
    if args == {int, float}:
      args = {float}
    args = args or {int}
  if len(args) != 1 or not args <= set(_LIST_KINDS):
    raise TypeError(f'{config_class.__name__}.{name} holds '
                    f'{sorted(map(str, args))}; list flags hold one of int, '
                    'float, bool, str')
  return args.pop()


def field_help(config_class: type, name: str) -> str:
  """The help of field `name`'s flag ('' if it is documented nowhere)."""
  field = next(f for f in dataclasses.fields(config_class) if f.name == name)
  if field.metadata.get('help'):
    return field.metadata['help']
  text = field_docs(config_class).get(name, '')
  if name in SHARED_HELP and (not text or text.startswith('*')):
    return SHARED_HELP[name]
  text = text.lstrip('*')
  return text + ('' if not text or text.endswith('.') else '.')


def _preset_note(name: str, default: Any, presets: Mapping[str, Any],
                 every: bool) -> str:
  """'tiny: 16; cpu: 512': the presets' values (`every`) or those that
  differ from `default`."""
  notes = []
  for preset_name, config in presets.items():
    value = getattr(config, name, default)
    if every or value != default:
      if isinstance(value, tuple):
        value = ','.join(map(str, value))
      notes.append(f'{preset_name}: {value}')
  if len(notes) > _PRESETS_IN_HELP:
    notes = notes[:_PRESETS_IN_HELP] + ['...']
  return '; '.join(notes)


def _make_flag(config_class: type, field: dataclasses.Field, hint,
               help_text: str, presets: Mapping[str, Any]) -> flags.Flag:
  """The absl flag of one field (not yet registered)."""
  name = field.name
  default = (None if name in PRESET_DEPENDENT or
             field.default is dataclasses.MISSING else field.default)
  hint = _without_optional(hint)
  note = _preset_note(name, default, presets, name in PRESET_DEPENDENT)
  if name in PRESET_DEPENDENT:
    help_text += ' Unset: the preset\'s value' + (f' ({note})' if note
                                                   else '') + '.'
  elif note:
    help_text += f' Presets that set another value: {note}.'
  if name in LIST_NAMES or hint is tuple or typing.get_origin(hint) is tuple:
    examples = [getattr(c, name, None) for c in presets.values()]
    if isinstance(field.default, tuple):
      examples.append(field.default)
    element = _element_type(config_class, name, hint, examples)
    if default is not None and not isinstance(default, tuple):
      default = (default,)
    return _ListFlag(_ListParser(name, element, CHOICES.get(name)),
                     _ListSerializer(), name, default, help_text)
  if hint is bool:
    return flags.BooleanFlag(name, default, help_text)
  if name in CHOICES:
    return flags.EnumFlag(name, default, help_text, CHOICES[name])
  parsers = {int: flags.IntegerParser, float: flags.FloatParser,
             str: flags.ArgumentParser}
  if hint not in parsers:
    raise TypeError(f'{config_class.__name__}.{name}: no flag for {hint}; '
                    'exclude the field')
  return flags.Flag(parsers[hint](), flags.ArgumentSerializer(), name,
                    default, help_text)


def _signature(flag: flags.Flag):
  return (flag.flag_type(), flag.default,
          tuple(getattr(flag.parser, 'enum_values', None) or ()),
          getattr(flag.parser, 'choices', None))


def define(flag: flags.Flag,
           flag_values: flags.FlagValues = FLAGS) -> flags.FlagHolder:
  """Registers `flag`, or reuses the same flag another binary defined.

  Raises:
    FlagConflictError: a flag of this name exists with another type,
      default or set of values.
  """
  if flag.name in flag_values:
    existing = flag_values[flag.name]
    if _signature(existing) != _signature(flag):
      raise FlagConflictError(
          f'--{flag.name} is defined twice: {_signature(existing)} and '
          f'{_signature(flag)}; one name must have one type and default')
    return flags.FlagHolder(flag_values, existing)
  return flags.DEFINE_flag(flag, flag_values)


class ConfigFlags:
  """The flags of one configuration dataclass's fields, as given by a user.

  Attributes:
    config_class: the dataclass.
    holders: field name -> absl flag holder.
  """

  def __init__(self, config_class: type, holders: Dict[str, Any],
               flag_values: flags.FlagValues):
    self.config_class = config_class
    self.holders = holders
    self._flag_values = flag_values
    hints = typing.get_type_hints(config_class)
    self._scalar = {name for name in holders
                    if name in LIST_NAMES and _without_optional(hints[name])
                    is not tuple and typing.get_origin(
                        _without_optional(hints[name])) is not tuple}

  def overrides(self) -> Dict[str, Any]:
    """{field: value} of every flag given on the command line.

    Raises:
      AfterKernelError: several values for a field that takes one.
    """
    result = {}
    for name in self.holders:
      flag = self._flag_values[name]
      if flag.using_default_value:
        continue
      value = flag.value
      if name in self._scalar and value is not None:
        errors.require(len(value) == 1, f'--{name} takes one value here, '
                       f'got {",".join(map(str, value))}')
        value = value[0]
      result[name] = value
    return result

  def apply(self, config):
    """`config` (a preset) with the fields whose flags were given replaced."""
    return dataclasses.replace(config, **self.overrides())


def define_config_flags(config_class: type,
                        presets: Optional[Mapping[str, Any]] = None,
                        exclude: Iterable[str] = (),
                        only: Optional[Iterable[str]] = None,
                        flag_values: flags.FlagValues = FLAGS) -> ConfigFlags:
  """One flag per field of `config_class` (see the module docstring).

  Args:
    config_class: a dataclass.
    presets: name -> instance the binary starts from (for the help's notes
      of values other than the default, and the element type of bare
      `tuple` fields).
    exclude: fields that get no flag (set by the binary itself).
    only: if given, just these fields.
    flag_values: where the flags go (tests pass their own).
  """
  presets = presets or {}
  hints = typing.get_type_hints(config_class)
  exclude = set(exclude)
  only = None if only is None else set(only)
  holders = {}
  for field in dataclasses.fields(config_class):
    if field.name in exclude or (only is not None and field.name not in only):
      continue
    # tests/flags_test.py finds the fields documented nowhere.
    help_text = field_help(config_class, field.name) or field.name
    flag = _make_flag(config_class, field, hints[field.name], help_text,
                      presets)
    holders[field.name] = define(flag, flag_values)
  return ConfigFlags(config_class, holders, flag_values)


def define_list(name: str, default: Optional[Sequence[Any]], help_text: str,
                element_type: type = str,
                choices: Optional[Sequence[str]] = None,
                flag_values: flags.FlagValues = FLAGS) -> flags.FlagHolder:
  """A comma-separated list flag of a binary without a config dataclass
  (summarize_results, plot_results); its value is a tuple."""
  return define(_ListFlag(
      _ListParser(name, element_type, choices), _ListSerializer(), name,
      None if default is None else tuple(default), help_text), flag_values)


def define_string(name: str, default: Optional[str], help_text: str,
                  flag_values: flags.FlagValues = FLAGS) -> flags.FlagHolder:
  """A string flag of a binary without a config dataclass."""
  return define(flags.Flag(flags.ArgumentParser(), flags.ArgumentSerializer(),
                           name, default, help_text), flag_values)


# The two folder flags: a study's result folder, a sweep's record store.
FOLDERS = {
    'output_dir': ('Result folder (config.json, records, summary.json/.csv, '
                   'figures); re-running the same command resumes.'),
    'store_dir': ('Result store: one JSON file per record under '
                  'STORE/records, summary.csv / summary.json beside them; '
                  're-running the same command resumes.'),
}


def define_folder(name: str,
                  flag_values: flags.FlagValues = FLAGS) -> flags.FlagHolder:
  """--output_dir or --store_dir (`FOLDERS`), default None.

  Checked by `require_folder` when main runs, not by absl, so that a test
  can import the binary and parse its own flags.
  """
  return define(flags.Flag(flags.ArgumentParser(), flags.ArgumentSerializer(),
                           name, None, FOLDERS[name]), flag_values)


def parse_flags(argv: Sequence[str]) -> Sequence[str]:
  """absl flag parsing whose errors are one `error:` line and exit code 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)


def run(main: Callable[[Sequence[str]], int],
        parser: Callable[[Sequence[str]], Sequence[str]] = parse_flags
        ) -> None:
  """`app.run(main)` with `parse_flags` (or the binary's own `parser`,
  which ends in it): the last line of every binary.

  A file-size limit (`ulimit -f`) would kill the process with SIGXFSZ in
  the middle of a write; ignoring the signal turns it into an error the
  store reports in one line (records already written are kept).
  """
  if hasattr(signal, 'SIGXFSZ'):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
  app.run(main, flags_parser=parser)
