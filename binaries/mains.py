"""The main bodies the binaries share, after `binaries/flags.py` parsed.

A study binary: preset + flags -> configuration -> the study's run ->
its table (`study_main`). A sweep binary: the paper's sweep + flags -> a
`sweeps.Sweep` -> records in a result store -> summary files and a table
(`sweep_main`). Both return the exit status: 0, or 2 after one `error:` line
(`main_status`). Not a binary itself.
"""

import dataclasses
import os
import signal
import sys
import threading
from typing import Any, Callable, Dict, Mapping, Optional, Sequence

from absl import flags as absl_flags

from afterkernel import distribute
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.studies import ray_executor
from afterkernel.studies import runner
from afterkernel.studies import scaling_common
from afterkernel.studies import store as store_lib
from afterkernel.studies import summary as summary_lib
from afterkernel.studies import sweeps
from binaries import flags

absl_flags.disclaim_key_flags()

# The paper's sweeps measured invariances and alignment on 1000 test images
# and ran 10 initializations; the sweep binaries start from these values
# (ExperimentConfig's defaults, used by run_after_kernel, are 100 and 3).
PAPER_SAMPLE_SIZE = 1000
PAPER_SWEEP_BASE = after_kernel.ExperimentConfig(
    num_runs=sweeps.PAPER_NUM_RUNS, num_translations=PAPER_SAMPLE_SIZE,
    num_zooms=PAPER_SAMPLE_SIZE, num_swaps=PAPER_SAMPLE_SIZE,
    num_rotations=PAPER_SAMPLE_SIZE,
    ker_alignment_sample_size=PAPER_SAMPLE_SIZE)
# The ExperimentConfig fields every sweep binary has flags for; the others
# are set per point (dataset, classes, architecture, augmentation, ...) or
# stay at their defaults.
SWEEP_BASE_FIELDS = (
    'data_dir', 'cifar_test_source', 'train_subset', 'test_subset',
    'num_runs', 'seed', 'batch_size', 'num_translations', 'num_zooms',
    'num_swaps', 'num_rotations', 'ker_alignment_sample_size',
    'effective_rank_sample_size', 'svm_solver', 'svm_max_iterations',
    'svm_tolerance', 'svm_max_seconds', 'svm_min_tolerance',
    'feature_batch_size',
    'distribution_strategy')
# The Sweep fields every sweep binary has flags for (epochs, learning_rates
# and num_parameters only in the families that use them).
SWEEP_FIELDS = ('tasks', 'architectures', 'augmentation')


class ExecutorFlags:
  """--executor, --ray_*, --distribution_strategy.

  Every study and sweep binary has them, with the same defaults: `local`
  (no Ray import); `ray` runs each work unit as a Ray task
  (`studies.ray_executor`). Each unit runs under the tf.distribute strategy
  --distribution_strategy names (`distribute.scoped_executor`; the same
  flag as run_after_kernel's config field).
  """

  def __init__(self, flag_values: absl_flags.FlagValues = absl_flags.FLAGS):
    self.name = flags.define(absl_flags.EnumFlag(
        'executor', 'local',
        'Runs the work units (one per run and sweep point): local = one '
        'after the other in this process; ray = each as a Ray task '
        "(pip install -e '.[ray]'); records are written by this process "
        'either way.', ray_executor.EXECUTORS), flag_values)
    self.address = flags.define(absl_flags.Flag(
        absl_flags.ArgumentParser(), absl_flags.ArgumentSerializer(),
        'ray_address', None,
        'With --executor=ray: the cluster to join (auto = the one `ray start '
        '--head` started here; ray://HOST:10001 a remote head); unset = a '
        'local Ray instance started and stopped by this binary.'),
        flag_values)
    self.num_cpus = flags.define(absl_flags.Flag(
        absl_flags.FloatParser(), absl_flags.ArgumentSerializer(),
        'ray_num_cpus', 1.0,
        'With --executor=ray: CPUs per work unit (also its TF threads).'),
        flag_values)
    self.num_gpus = flags.define(absl_flags.Flag(
        absl_flags.FloatParser(), absl_flags.ArgumentSerializer(),
        'ray_num_gpus', 0.0,
        'With --executor=ray: GPUs per work unit (0 = CPU only).'),
        flag_values)
    self.strategy = flags.define(absl_flags.EnumFlag(
        'distribution_strategy', distribute.DEFAULT_STRATEGY,
        distribute.FLAG_HELP, distribute.STRATEGIES), flag_values)

  def executor(self, log: runner.Log = print) -> runner.Executor:
    """The executor the flags name (`ray_executor.from_flags`), each unit
    under --distribution_strategy (`distribute.scoped_executor`)."""
    return distribute.scoped_executor(
        ray_executor.from_flags(self.name.value, self.address.value,
                                self.num_cpus.value, self.num_gpus.value,
                                log=log), self.strategy.value)


class StudyFlags:
  """A study binary's flags: --preset, --output_dir, one per config field.

  Attributes:
    preset: the --preset holder.
    presets: preset name -> configuration.
    default_preset: the preset used without --preset.
    fields: the configuration's field flags.
    output_dir: the --output_dir holder.
  """

  def __init__(self, config_class: type, presets: Mapping[str, Any],
               default_preset: str, preset_help: str,
               flag_values: absl_flags.FlagValues = absl_flags.FLAGS):
    self.presets = presets
    self.default_preset = default_preset
    self.preset = define_preset(presets, default_preset, preset_help,
                                flag_values)
    self.fields = flags.define_config_flags(config_class, presets,
                                            flag_values=flag_values)
    self.output_dir = flags.define_folder('output_dir', flag_values)
    self.executor = ExecutorFlags(flag_values)

  def config(self, adjust: Optional[Callable[[Dict[str, Any]], None]] = None):
    """The chosen preset with every given flag applied, validated.

    Args:
      adjust: edits the {field: value} overrides before they are applied
        (e.g. classes that follow from a --dataset).

    Raises:
      AfterKernelError: an unknown preset, or a value the config rejects.
    """
    overrides = self.fields.overrides()
    if adjust is not None:
      adjust(overrides)
    config = dataclasses.replace(
        choose_preset(self.preset, self.presets, self.default_preset),
        **overrides)
    if hasattr(config, 'validate'):
      config.validate()
    return config


def define_preset(presets: Mapping[str, Any], default: str, what: str,
                  flag_values: absl_flags.FlagValues = absl_flags.FLAGS
                  ) -> absl_flags.FlagHolder:
  """--preset: the configuration the other flags change.

  Its default is None in every binary (= `default`, named in the help).
  """
  names = ', '.join(f'{n} (default)' if n == default else n for n in presets)
  return flags.define(absl_flags.Flag(
      absl_flags.ArgumentParser(), absl_flags.ArgumentSerializer(), 'preset',
      None,
      f'Base configuration: {names}; {what}. The other flags change its '
      'fields; a flag not given keeps the preset\'s value.'), flag_values)


def choose_preset(holder: absl_flags.FlagHolder, presets: Mapping[str, Any],
                  default: str):
  """The preset --preset names (`default` when unset).

  Raises:
    AfterKernelError: no preset of that name.
  """
  name = holder.value or default
  errors.require(name in presets, f'unknown --preset {name!r}; choose one '
                 f'of {", ".join(presets)}')
  return presets[name]


def require_folder(holder: absl_flags.FlagHolder, what: str) -> str:
  """The folder flag's value; AfterKernelError when it was not given."""
  errors.require(bool(holder.value), f'--{holder.name} is required: {what}')
  return holder.value


def require_no_arguments(argv: Sequence[str]) -> None:
  """AfterKernelError when absl left positional arguments."""
  errors.require(len(argv) <= 1, f'unexpected arguments: {" ".join(argv[1:])}')


# Exit status after Ctrl-C (128 + SIGINT), as shells report it.
INTERRUPTED_STATUS = 130


def main_status(body: Callable[[], Optional[int]],
                folder: Optional[absl_flags.FlagHolder] = None) -> int:
  """Runs a binary's body; an AfterKernelError is one line and status 2.

  Ctrl-C (SIGINT) is one line too, saying how many records are saved in
  `folder` (the binary's --output_dir / --store_dir) and that the same
  command resumes; status 130.
  """
  store_lib.INTERRUPT.clear()
  previous = _catch_ctrl_c()
  try:
    status = body() or 0
    if not store_lib.INTERRUPT.is_set():
      return status
    raise KeyboardInterrupt  # Swallowed somewhere: still an interrupted run.
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    saved = ''
    if folder is not None and folder.value:
      count = len(store_lib.ResultStore(folder.value).keys())
      saved = f'{count} record(s) saved in {folder.value}; '
    print(f'interrupted: {saved}the same command resumes from there',
          file=sys.stderr)
    return INTERRUPTED_STATUS
  finally:
    if previous is not None:
      signal.signal(signal.SIGINT, previous)


def _interrupt(signum, frame) -> None:
  """SIGINT: remember it (the store stops at the next record if the
  KeyboardInterrupt gets lost) and raise it as Python does."""
  del signum, frame
  store_lib.INTERRUPT.set()
  raise KeyboardInterrupt


def _catch_ctrl_c():
  """Installs `_interrupt` for SIGINT; returns the previous handler (None
  off the main thread, where handlers cannot be set)."""
  if threading.current_thread() is not threading.main_thread():
    return None
  return signal.signal(signal.SIGINT, _interrupt)


def define_sweep_flags(paper: sweeps.Sweep, sweep_fields: Sequence[str] = (),
                       base_fields: Sequence[str] = ()):
  """The flags of a sweep binary: (Sweep's, its base ExperimentConfig's).

  Args:
    paper: the binary's preset (the paper's sweep of its family).
    sweep_fields: Sweep fields besides `SWEEP_FIELDS`.
    base_fields: ExperimentConfig fields besides `SWEEP_BASE_FIELDS`.
  """
  return (flags.define_config_flags(sweeps.Sweep, {'paper': paper},
                                    only=SWEEP_FIELDS + tuple(sweep_fields)),
          flags.define_config_flags(after_kernel.ExperimentConfig,
                                    {'paper': paper.base},
                                    only=SWEEP_BASE_FIELDS + tuple(
                                        base_fields)))


def sweep_from_flags(paper: sweeps.Sweep, sweep_flags: flags.ConfigFlags,
                     base_flags: flags.ConfigFlags) -> sweeps.Sweep:
  """`paper` with the given flags applied (its base's fields too)."""
  return sweep_flags.apply(dataclasses.replace(
      paper, base=base_flags.apply(paper.base)))


def sweep_main(argv: Sequence[str], build_sweep: Callable[[], sweeps.Sweep],
               store_dir: absl_flags.FlagHolder,
               executor: Optional[ExecutorFlags] = None) -> int:
  """Runs the sweep into --store_dir, summarizes it, prints a table.

  Args:
    argv: what absl left (just the program).
    build_sweep: makes the `Sweep` from the flags; called here so that a bad
      value is reported like any other input error.
    store_dir: the --store_dir flag.
    executor: the --executor flags (None: local).

  Returns:
    0, or 2 after one `error:` line.
  """
  log = lambda message: print(message, flush=True)

  def body():
    require_no_arguments(argv)
    directory = require_folder(store_dir, 'the result store')
    sweep = build_sweep()
    store = store_lib.ResultStore(directory)
    counts = sweeps.run_sweep(
        sweep, store, log=log, executor=runner.local_executor
        if executor is None else executor.executor(log))
    entries = store_lib.summarize(
        [r for r in store.records() if r.get('family') == sweep.family])
    store_lib.write_summary(directory, store_lib.summarize(store.records()))
    print()
    print(summary_lib.format_summary_blocks(entries))
    print(f'\n{counts["written"]} records written, {counts["skipped"]} '
          f'already there, {counts["total"]} in this sweep; store: '
          f'{os.path.abspath(directory)}')

  return main_status(body, store_dir)


def scaling_classes(overrides: Dict[str, Any]) -> None:
  """A two-class --dataset given without --plus_class / --minus_class gets
  its classes 1 vs 0 (the scaling studies' rule; else 8 vs 3)."""
  if 'dataset' in overrides:
    plus, minus = scaling_common.default_classes(overrides['dataset'])
    overrides.setdefault('plus_class', plus)
    overrides.setdefault('minus_class', minus)


def study_main(argv: Sequence[str], study: StudyFlags,
               run: Callable[..., Any],
               format_result: Callable[[Any, Any], str],
               figure_name: str, footer: str = '',
               adjust: Optional[Callable[[Dict[str, Any]], None]] = None
               ) -> int:
  """Builds the config, runs the study, prints its table.

  Args:
    argv: what absl left (just the program).
    study: the binary's flags.
    run: run(config, output_dir, log=..., executor=...) -> result.
    format_result: (result, config) -> the table to print.
    figure_name: the figure's file name without extension.
    footer: printed under the table (what the numbers mean).
    adjust: passed to `study.config`.

  Returns:
    0, or 2 after one `error:` line (nothing is run then).
  """

  def body():
    require_no_arguments(argv)
    directory = require_folder(study.output_dir,
                                     'where results are written')
    config = study.config(adjust)
    log = lambda m: print(m, flush=True)
    result = run(config, directory, log=log,
                 executor=study.executor.executor(log))
    print()
    print(format_result(result, config))
    if footer:
      print(footer)
    print(f'\nresults and {figure_name}.png/.pdf in '
          f'{os.path.abspath(directory)}')

  return main_status(body, study.output_dir)


class StudyBinary(StudyFlags):
  """A study binary: its flags (see `StudyFlags`) and its main.

  A study binary module is then one `StudyBinary(...)` and `main =
  STUDY.main`.

  Attributes (besides `StudyFlags`'):
    run: run(config, output_dir, log=..., executor=...) -> result.
    format_result: (result, config) -> the table to print.
    figure_name: the figure's file name without extension.
    footer: printed under the table (what the numbers mean).
    adjust: edits the overrides before they are applied (`StudyFlags.config`).
  """

  def __init__(self, config_class: type, presets: Mapping[str, Any],
               preset_help: str, *, run: Callable[..., Any],
               format_result: Callable[[Any, Any], str], figure_name: str,
               footer: str = '',
               adjust: Optional[Callable[[Dict[str, Any]], None]] = None,
               default_preset: str = 'tiny',
               flag_values: absl_flags.FlagValues = absl_flags.FLAGS):
    super().__init__(config_class, presets, default_preset, preset_help,
                     flag_values)
    self.run = run
    self.format_result = format_result
    self.figure_name = figure_name
    self.footer = footer
    self.adjust = adjust

  def main(self, argv: Sequence[str]) -> int:
    """`study_main` with this binary's study; returns the exit status."""
    return study_main(argv, self, self.run, self.format_result,
                      self.figure_name, footer=self.footer, adjust=self.adjust)


SCALING_PRESET_HELP = ('tiny: embedded digits, seconds (smoke test); cpu: '
                       'MNIST 3-vs-8, a real-data run of 5-20 min on 2 cores'
                       '; the others (Myrtle on CIFAR, width, ablations, '
                       'paper): see the study module\'s PRESETS')


def scaling_study_binary(study: Any, config_class: type) -> StudyBinary:
  """The binary of one scaling study module.

  Args:
    study: `studies.data_scaling`, `.after_kernel_vs_m` or `.kernel_dynamics`
      (each has STUDY, PRESETS, run and format_summary).
    config_class: the module's configuration dataclass.
  """
  return StudyBinary(
      config_class, study.PRESETS, SCALING_PRESET_HELP, run=study.run,
      format_result=lambda summary, _: study.format_summary(summary),
      figure_name=scaling_common.FIGURE_NAMES[study.STUDY],
      adjust=scaling_classes)


def study_binary(study: Any, config_class: type, preset_help: str,
                 footer: str = '') -> StudyBinary:
  """The binary of one study module with a `run_study` and a `format_table`.

  Args:
    study: e.g. `studies.eigentasks`, `.nads`, `.second_order`,
      `.kernel_rotation` (each has PRESETS, run_study, format_table(entries)
      and FIGURE_NAME).
    config_class: the module's configuration dataclass.
    preset_help: one line on the presets (shown by --help).
    footer: printed under the table (what the numbers mean).
  """
  return StudyBinary(
      config_class, study.PRESETS, preset_help, run=study.run_study,
      format_result=lambda entries, _: study.format_table(entries),
      figure_name=study.FIGURE_NAME, footer=footer)


class SweepBinary:
  """A sweep binary: the paper's sweep of its family, its flags, its main.

  Attributes:
    paper: the preset (`sweeps.Sweep`) the flags change.
    sweep_flags: flags of the Sweep's fields.
    base_flags: flags of its base ExperimentConfig's fields.
    store_dir: the --store_dir holder.
  """

  def __init__(self, paper: sweeps.Sweep, sweep_fields: Sequence[str] = (),
               base_fields: Sequence[str] = ()):
    self.paper = paper
    self.sweep_flags, self.base_flags = define_sweep_flags(
        paper, sweep_fields, base_fields)
    self.store_dir = flags.define_folder('store_dir')
    self.executor = ExecutorFlags()

  def sweep(self) -> sweeps.Sweep:
    """The paper's sweep with the given flags applied."""
    return sweep_from_flags(self.paper, self.sweep_flags, self.base_flags)

  def main(self, argv: Sequence[str]) -> int:
    """`sweep_main` of this sweep; returns the exit status."""
    return sweep_main(argv, self.sweep, self.store_dir, self.executor)


class ConfigBinary:
  """A binary that starts from a config class's defaults (no presets).

  One flag per field (`flags.define_config_flags`) and --output_dir; its
  main runs `run(config, output_dir[, executor=])` and prints `report(result,
  output_dir)`.

  Attributes:
    base: the configuration the flags change (the class's defaults).
    fields: the field flags.
    output_dir: the --output_dir holder.
  """

  def __init__(self, config_class: type, name: str,
               run: Callable[..., Any],
               report: Callable[[Any, str], str], on_runner: bool = False):
    self.base = config_class()
    self.fields = flags.define_config_flags(config_class, {name: self.base})
    self.output_dir = flags.define_folder('output_dir')
    # A study on the one runner also gets --executor / --ray_* and its run
    # an `executor=` argument.
    self.executor = ExecutorFlags() if on_runner else None
    self._run = run
    self._report = report

  def config(self):
    """The configuration the flags describe."""
    return self.fields.apply(self.base)

  def main(self, argv: Sequence[str]) -> int:
    """Runs and reports; 0, or 2 after one `error:` line."""

    def body():
      require_no_arguments(argv)
      output_dir = require_folder(self.output_dir, 'where results are written')
      extra = {} if self.executor is None else {
          'executor': self.executor.executor()}
      print(self._report(self._run(self.config(), output_dir, **extra),
                         output_dir))

    return main_status(body, self.output_dir)


def scaling_usage(doc: str, study: Any, records: str, real_data: str) -> str:
  """A scaling binary's usage: `doc`, its two commands, flags and outputs.

  Args:
    doc: the binary's docstring (what it runs and prints).
    study: the study module (its STUDY names the binary and the figure).
    records: what one record is per run, e.g. 'n' or 'm, n'.
    real_data: what the 'cpu' preset runs, e.g. 'MNIST 3-vs-8, 2 runs'.
  """
  name = study.STUDY
  figure = scaling_common.FIGURE_NAMES[name]
  return (f'{doc}\n  # Smoke run (embedded 8x8 digits, seconds):\n'
          f'  python -m binaries.{name} --preset=tiny --output_dir=/tmp/{name}'
          f'\n  # Real data ({real_data}):\n'
          f'  python -m binaries.{name} --preset=cpu --data_dir=../shared/data '
          f'\\\n      --output_dir=results/{name}\n\n'
          f'Every flag other than --preset overrides one field of the '
          f'preset (the config\nclass of {study.__name__}). Writes '
          f'config.json, records/*.json (one\nper {records} and run; '
          f're-running resumes), summary.json/.csv, fits.json and\n'
          f'{figure}.png/.pdf to --output_dir.\n')
