"""Flags and main loop shared by the three scaling-study binaries.

`binaries/data_scaling.py`, `binaries/after_kernel_vs_m.py` and
`binaries/kernel_dynamics.py` differ only in their study; each calls
`define_flags(study)` at import time, which defines --preset, --output_dir and
one override flag per field of the study's configuration
(`afterkernel.scaling_study`), all defaulting to "the preset's value". Not a
binary itself.
"""

import dataclasses
import os
import sys
import typing
from typing import Any, Callable, Dict, Mapping

from absl import flags

from afterkernel import errors
from afterkernel import scaling_study

_CONFIG_CLASSES = {
    scaling_study.DATA_SCALING: scaling_study.DataScalingConfig,
    scaling_study.AFTER_KERNEL_VS_M: scaling_study.AfterKernelVsMConfig,
    scaling_study.KERNEL_DYNAMICS: scaling_study.KernelDynamicsConfig,
}
# Help of the override flags (the config docstrings say more).
_HELP = {
    'dataset': 'Dataset (afterkernel.data.DATASETS); synthetic = Vyas et '
               'al.\'s z_1 z_2 task.',
    'plus_class': 'Class labelled +1 (default 8, or 1 for two-class sets).',
    'minus_class': 'Class labelled -1 (default 3, or 0 for two-class sets).',
    'data_dir': 'Folder with mnist/*-ubyte.gz etc. (layout of '
                '/work/shared/data); unset = tensorflow-datasets.',
    'num_test': 'Test examples per run.',
    'width': 'Hidden units per layer of the FC network.',
    'depth': 'Hidden layers of the FC network.',
    'weight_std': 'sigma_w of the NTK parameterization.',
    'bias_std': 'sigma_b of the NTK parameterization.',
    'learning_rate': 'SGD learning rate (network and kernel SGD).',
    'momentum': 'SGD momentum (network and kernel SGD).',
    'batch_size': 'Minibatch size (network and kernel SGD).',
    'kernel_method': 'How kernels are fit: sgd | ridge | svm.',
    'eval_growth': 'SGD predictors are evaluated at steps growing by this '
                   'factor (optimal early stopping).',
    'feature_batch_size': 'Examples per gradient-feature block.',
    'num_runs': 'Runs (seeds seed, seed+1, ...).',
    'seed': 'First seed.',
    'sample_sizes': 'Training-set sizes n (comma-separated).',
    'max_steps': 'SGD steps of the network and of kernel SGD.',
    'num_bootstrap': 'Bootstrap resamples for the CI of beta (one run only; '
                     'with more, a Student t over per-run betas).',
    'zero_errors': 'Zero test errors in the log fits: exclude (drop every n '
                   'where a run made no test error) or continuity (fit '
                   '(k + 1/2)/(m + 1)); only re-summarizes, records are kept.',
    'train_sizes': 'Network training-set sizes m (0 = NTK at init).',
    'fit_sizes': 'Kernel fit sizes n.',
    'reference_fit_size': 'The n of the K_m(n) vs m panel.',
    'curve_train_sizes': 'The m whose n-curves are fit (empty = all).',
    'fit_examples': 'subset (first n of the data, within the m for n <= m) '
                    'or fresh (n examples disjoint from the m).',
    'epochs': 'Epochs of network training on the m examples.',
    'fit_steps': 'SGD steps of kernel SGD.',
    'num_train': 'Training examples.',
    'train_steps': 'SGD steps of the network.',
    'num_snapshots': 'Log-spaced snapshot steps (plus step 0).',
}


def define_flags(study: str) -> Dict[str, Any]:
  """Defines --preset, --output_dir and the study's override flags.

  Args:
    study: one of `scaling_study.PRESETS`.

  Returns:
    Flag name -> flag holder.
  """
  holders = {
      'preset': flags.DEFINE_enum(
          'preset', 'tiny', list(scaling_study.PRESETS[study]),
          'tiny: embedded digits, seconds (smoke test); cpu: MNIST 3-vs-8, '
          'a real-data run of 5-20 min on 2 cores. Other flags override '
          'its fields.'),
      # Checked in main (not marked required, so tests can import the binary
      # and parse their own flags).
      'output_dir': flags.DEFINE_string(
          'output_dir', None, 'Result folder (records, summary, figure); '
          're-running resumes.'),
  }
  hints = typing.get_type_hints(_CONFIG_CLASSES[study])
  for field in dataclasses.fields(_CONFIG_CLASSES[study]):
    name, hint = field.name, hints[field.name]
    help_text = _HELP.get(name, name) + ' (default: the preset\'s)'
    if hint is tuple:
      holders[name] = flags.DEFINE_list(name, None, help_text)
    elif hint is int:
      holders[name] = flags.DEFINE_integer(name, None, help_text)
    elif hint is float:
      holders[name] = flags.DEFINE_float(name, None, help_text)
    else:  # str and Optional[str]
      holders[name] = flags.DEFINE_string(name, None, help_text)
  return holders


def _int_tuple(name: str, values) -> tuple:
  try:
    return tuple(int(v) for v in values if str(v).strip())
  except ValueError:
    raise errors.AfterKernelError(
        f'--{name} must be comma-separated integers, got '
        f'{",".join(values)}') from None


def config_from_flags(study: str, holders: Mapping[str, Any]):
  """The preset named by --preset with every flag that was set applied.

  A two-class dataset ('synthetic', 'svhn_parity', 'cifar2', ...) chosen
  without --plus_class / --minus_class gets classes 1 vs 0.

  Raises:
    AfterKernelError: an unparsable list flag or an unknown preset.
  """
  overrides = {}
  for name, holder in holders.items():
    if name in ('preset', 'output_dir') or holder.value is None:
      continue
    value = holder.value
    if isinstance(value, list):
      value = _int_tuple(name, value)
    overrides[name] = value
  if 'dataset' in overrides:
    plus, minus = scaling_study.default_classes(overrides['dataset'])
    overrides.setdefault('plus_class', plus)
    overrides.setdefault('minus_class', minus)
  return scaling_study.preset(study, holders['preset'].value, **overrides)


def main(study: str, holders: Mapping[str, Any],
         run: Callable[..., Mapping[str, Any]],
         format_summary: Callable[[Mapping[str, Any]], str]) -> int:
  """Builds the config, runs the study, prints its table; 2 on bad input."""
  try:
    errors.require(bool(holders['output_dir'].value),
                   '--output_dir is required: where results are written')
    config = config_from_flags(study, holders)
    summary = run(config, holders['output_dir'].value,
                  log=lambda m: print(m, flush=True))
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print()
  print(format_summary(summary))
  print(f'\nresults and {scaling_study.FIGURE_NAMES[study]}.png/.pdf in '
        f'{os.path.abspath(holders["output_dir"].value)}')
  return 0
