"""Flags and main loop shared by the study binaries.

The study binaries (data_scaling, after_kernel_vs_m, kernel_dynamics,
second_order, eigenfunction_tasks, kernel_rotation, nads) differ only in
their configuration class, presets, run function and printed table. Each
calls `define_flags` at import time, which defines --preset, --output_dir and
one override flag per field of the configuration dataclass, typed from its
annotations and defaulting to "the preset's value"; `run_main` builds the
configuration, runs the study and prints its table, turning every bad input
into one `error: ...` line and exit status 2 (`parse_flags` does the same for
absl's own flag-parsing errors). Not a binary itself.

A new configuration field therefore gets its flag without touching the
binary; only its help text (`field_help`) is worth adding.
"""

import dataclasses
import os
import sys
import types
import typing
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from absl import flags

from afterkernel import errors

FLAGS = flags.FLAGS
# The flags belong to the binary that asks for them (listed by its --help,
# removed with it by tests/binary_flags.py).
flags.disclaim_key_flags()
# Flags every study binary has besides the configuration fields.
PRESET = 'preset'
OUTPUT_DIR = 'output_dir'

# Help of fields that several studies share; a binary's field_help wins.
COMMON_FIELD_HELP = {
    'data_dir': ('Folder with mnist/*-ubyte.gz etc. (layout of '
                 '/work/shared/data); unset = tensorflow-datasets.'),
    'dataset': 'Dataset (afterkernel.data.DATASETS).',
    'plus_class': 'Class labelled 1.',
    'minus_class': 'Class labelled 0.',
    'width': 'Hidden units (FC) or first-block channels.',
    'num_layers': 'Hidden layers (FC) or convolutions per block.',
    'batch_size': 'Minibatch size.',
    'learning_rate': 'SGD learning rate.',
    'momentum': 'SGD momentum.',
    'num_runs': 'Initializations (seeds seed, seed + 1, ...).',
    'seed': 'First seed.',
    'num_train': 'Training examples.',
    'num_test': 'Test examples.',
    'architecture': 'fully_connected or vgg.',
    'feature_batch_size': 'Examples per gradient-feature block.',
    'epochs': 'Epochs per model and task.',
    'loss': 'bce (logistic, 0/1 targets) or mse (+-1).',
}


@dataclasses.dataclass(frozen=True)
class StudyFlags:
  """The flags of one study binary.

  Attributes:
    holders: flag name -> absl flag holder (--preset, --output_dir and one
      per configuration field).
    presets: preset name -> configuration.
    list_types: element type (int or str) of each list-valued field.
  """
  holders: Dict[str, Any]
  presets: Mapping[str, Any]
  list_types: Dict[str, type]


def _without_optional(hint):
  """X for Optional[X] and X | None; the hint itself otherwise."""
  if typing.get_origin(hint) in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if len(args) == 1:
      return args[0]
  return hint


def _list_element_type(name: str, hint, presets: Mapping[str, Any]) -> type:
  """int or str: from Tuple[X, ...], else from the presets' values.

  Raises:
    TypeError: elements of another type (a flag for them is not written
      yet), or a mix.
  """
  args = {a for a in typing.get_args(hint) if a is not Ellipsis}
  if not args:
    args = {type(value) for config in presets.values()
            for value in getattr(config, name)} or {int}
  if args == {bool} or len(args) != 1 or not args <= {int, str}:
    raise TypeError(f'study_flags: field {name!r} holds '
                    f'{sorted(map(str, args))}; only tuples of int or of str '
                    'become list flags')
  return args.pop()


def define_flags(config_class: type,
                 presets: Mapping[str, Any],
                 preset_help: str,
                 field_help: Mapping[str, str],
                 default_preset: str = 'tiny',
                 flag_values: flags.FlagValues = FLAGS) -> StudyFlags:
  """Defines --preset, --output_dir and an override flag per config field.

  Args:
    config_class: the study's frozen configuration dataclass.
    presets: preset name -> instance of `config_class`.
    preset_help: what the presets are (appended to the list of names).
    field_help: field name -> help text, over COMMON_FIELD_HELP (the field
      name is used for a field in neither).
    default_preset: the preset used without --preset.
    flag_values: where the flags are defined (tests pass their own).

  Returns:
    The `StudyFlags` to pass to `config_from_flags` / `run_main`.
  """
  holders = {
      # Plain strings, checked when the configuration is built, so an
      # unknown preset is the same one-line error as any other bad value.
      PRESET: flags.DEFINE_string(
          PRESET, default_preset,
          f'Base configuration: {", ".join(presets)} ({preset_help}). The '
          'other flags override its fields.', flag_values=flag_values),
      # Checked in run_main (not marked required, so tests can import the
      # binary and parse their own flags).
      OUTPUT_DIR: flags.DEFINE_string(
          OUTPUT_DIR, None, 'Result folder (config, records, summary, '
          'figure); re-running the same command resumes.',
          flag_values=flag_values),
  }
  list_types = {}
  hints = typing.get_type_hints(config_class)
  field_help = {**COMMON_FIELD_HELP, **field_help}
  for field in dataclasses.fields(config_class):
    name = field.name
    hint = _without_optional(hints[name])
    help_text = field_help.get(name, name) + " (default: the preset's)"
    if hint is tuple or typing.get_origin(hint) is tuple:
      list_types[name] = _list_element_type(name, hint, presets)
      define = flags.DEFINE_list
    else:
      define = {bool: flags.DEFINE_boolean, int: flags.DEFINE_integer,
                float: flags.DEFINE_float}.get(hint, flags.DEFINE_string)
    holders[name] = define(name, None, help_text, flag_values=flag_values)
  return StudyFlags(holders, presets, list_types)


def _as_tuple(name: str, values: Sequence[str], element_type: type) -> tuple:
  values = [v.strip() for v in values if v.strip()]
  if element_type is str:
    return tuple(values)
  try:
    return tuple(int(v) for v in values)
  except ValueError:
    raise errors.AfterKernelError(
        f'--{name} must be comma-separated integers, got '
        f'{",".join(values)}') from None


def overrides_from_flags(study: StudyFlags) -> Dict[str, Any]:
  """{field: value} of every configuration flag that was set."""
  overrides = {}
  for name, holder in study.holders.items():
    if name in (PRESET, OUTPUT_DIR) or holder.value is None:
      continue
    value = holder.value
    if name in study.list_types:
      value = _as_tuple(name, value, study.list_types[name])
    overrides[name] = value
  return overrides


def replace_preset(presets: Mapping[str, Any], preset: str,
                   overrides: Mapping[str, Any]):
  """presets[preset] with `overrides`, validated if it has `validate()`."""
  errors.require(preset in presets, f'unknown --preset {preset!r}; choose '
                 f'one of {", ".join(presets)}')
  config = dataclasses.replace(presets[preset], **overrides)
  if hasattr(config, 'validate'):
    config.validate()
  return config


def config_from_flags(study: StudyFlags,
                      build: Optional[Callable[[str, Dict[str, Any]],
                                               Any]] = None):
  """The preset named by --preset with every flag that was set applied.

  Args:
    study: from `define_flags`.
    build: (preset name, overrides) -> configuration; None means
      `replace_preset` on the study's presets.

  Raises:
    AfterKernelError: an unknown preset, an unparsable list or a value the
      configuration rejects.
  """
  overrides = overrides_from_flags(study)
  preset = study.holders[PRESET].value
  if build is None:
    return replace_preset(study.presets, preset, overrides)
  return build(preset, overrides)


def parse_flags(argv):
  """absl flag parsing whose errors are one `error:` line and exit code 2."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {str(e).splitlines()[0]}', file=sys.stderr)
    sys.exit(2)


def run_main(argv: Sequence[str],
             study: StudyFlags,
             run: Callable[..., Any],
             format_result: Callable[[Any, Any], str],
             figure_name: str,
             footer: str = '',
             build: Optional[Callable[[str, Dict[str, Any]], Any]] = None
             ) -> int:
  """Builds the config, runs the study, prints its table; 2 on bad input.

  Args:
    argv: the positional arguments absl left (must be just the program).
    study: from `define_flags`.
    run: run(config, output_dir, log=...) -> result.
    format_result: (result, config) -> the table to print.
    figure_name: the figure's file name without extension.
    footer: printed under the table (what the numbers mean).
    build: as for `config_from_flags`.

  Returns:
    The exit status: 0, or 2 with one `error:` line on stderr.
  """
  output_dir = study.holders[OUTPUT_DIR].value
  try:
    errors.require(len(argv) <= 1,
                   f'unexpected arguments: {" ".join(argv[1:])}')
    errors.require(bool(output_dir),
                   '--output_dir is required: where results are written')
    config = config_from_flags(study, build)
    result = run(config, output_dir, log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(format_result(result, config))
  if footer:
    print(footer)
  print(f'\nresults and {figure_name}.png/.pdf in '
        f'{os.path.abspath(output_dir)}')
  return 0
