"""What the three scaling-study binaries add to `binaries/study_flags.py`.

`binaries/data_scaling.py`, `binaries/after_kernel_vs_m.py` and
`binaries/kernel_dynamics.py` differ only in their study
(`afterkernel.studies.data_scaling`, `.after_kernel_vs_m`,
`.kernel_dynamics`): this module holds their flags' help texts and
one rule, that a two-class dataset chosen without --plus_class /
--minus_class gets classes 1 vs 0. Not a binary itself.
"""

from typing import Any, Callable, Dict, Mapping, Sequence

from absl import flags

from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import data_scaling
from afterkernel.studies import kernel_dynamics
from afterkernel.studies import scaling_common
from binaries import study_flags

# The flags belong to the binary that asks for them (listed by its --help).
flags.disclaim_key_flags()

_STUDIES = {module.STUDY: module for module in
            (data_scaling, after_kernel_vs_m, kernel_dynamics)}
_CONFIG_CLASSES = {
    data_scaling.STUDY: data_scaling.DataScalingConfig,
    after_kernel_vs_m.STUDY: after_kernel_vs_m.AfterKernelVsMConfig,
    kernel_dynamics.STUDY: kernel_dynamics.KernelDynamicsConfig,
}
# Help of the override flags besides study_flags.COMMON_FIELD_HELP (the
# config docstrings say more).
_HELP = {
    'dataset': 'Dataset (afterkernel.data.DATASETS); synthetic = Vyas et '
               'al.\'s z_1 z_2 task.',
    'plus_class': 'Class labelled +1 (default 8, or 1 for two-class sets).',
    'minus_class': 'Class labelled -1 (default 3, or 0 for two-class sets).',
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
    'num_runs': 'Runs (seeds seed, seed+1, ...).',
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


def define_flags(study: str) -> study_flags.StudyFlags:
  """Defines --preset, --output_dir and the study's override flags.

  Args:
    study: the STUDY name of one of the three study modules.
  """
  return study_flags.define_flags(
      _CONFIG_CLASSES[study], _STUDIES[study].PRESETS,
      preset_help='tiny: embedded digits, seconds (smoke test); cpu: MNIST '
      '3-vs-8, a real-data run of 5-20 min on 2 cores',
      field_help=_HELP)


def _builder(study: str) -> Callable[[str, Dict[str, Any]], Any]:
  """(preset, overrides) -> config, with classes 1 vs 0 for two-class sets."""

  def build(preset: str, overrides: Dict[str, Any]):
    if 'dataset' in overrides:
      plus, minus = scaling_common.default_classes(overrides['dataset'])
      overrides.setdefault('plus_class', plus)
      overrides.setdefault('minus_class', minus)
    return _STUDIES[study].preset(preset, **overrides)

  return build


def config_from_flags(study: str, study_flags_: study_flags.StudyFlags):
  """The preset named by --preset with every flag that was set applied.

  Raises:
    AfterKernelError: an unparsable list flag, an unknown preset or field.
  """
  return study_flags.config_from_flags(study_flags_, _builder(study))


def main(argv: Sequence[str], study: str,
         study_flags_: study_flags.StudyFlags,
         run: Callable[..., Mapping[str, Any]],
         format_summary: Callable[[Mapping[str, Any]], str]) -> int:
  """Builds the config, runs the study, prints its table; 2 on bad input."""
  return study_flags.run_main(
      argv, study_flags_, run, lambda summary, _: format_summary(summary),
      scaling_common.FIGURE_NAMES[study], build=_builder(study))
