"""The original after-kernel script's command lines, read by this library.

google-research's after_kernel/run_ak_experiment.py (Long 2021, "Properties
of the after kernel") took 27 argparse flags. `command_line` rewrites such a
command line into run_after_kernel's flags, and `original_config` gives the
experiment it meant; `test_accuracy_line` / `write_outputs` write the two
files it wrote. Everything here is reimplemented from reading that script.

What differs, and how it is mapped:
  * spellings: --nn_architecture=VGG / MLP / Sum are vgg / fully_connected /
    sum; --num_epochs (the name its README uses) is --max_num_epochs;
    --svm_time_limit is --svm_max_seconds; --svm_solver=jst1 / jst2 /
    sklearn are passed on when `margin.SOLVERS` has them, else refused in one
    line naming the solver to use instead (`SOLVER_INSTEAD`).
  * its `type=bool` flags (--use_augmentation, --train_linear_model,
    --use_conjugate_kernel) took a value and read every non-empty one as
    True; "--flag True" / "--flag=1" turn them on here too, a value that
    reads as false (which the original took as True) is refused.
  * its defaults (`ORIGINAL_DEFAULTS`): MNIST, 5 runs, up to 1000 epochs, no
    SVM, no invariances, --num_parameters=1e5, jst1 with a 120 s limit.
  * its network (`original_network`): --num_layers is the VGG net's total
    number of convolutions, int(num_layers / num_blocks) per block;
    --num_parameters picks the smallest width whose *approximate* count
    reaches it (`models.original_width`; VGG, MLP) and is the Sum net's
    hidden width.
A command line that uses an original-only spelling (`ORIGINAL_ONLY_FLAGS`,
the capitalized architecture names) is read as an original one: original
defaults and meanings. --original forces that reading, --nooriginal keeps
this library's; --original_sizing takes only the network sizing.
"""

import dataclasses
import math
import os
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from afterkernel import errors
from afterkernel import margin
from afterkernel import models
from afterkernel.studies import after_kernel

# The original's defaults that differ from ExperimentConfig's, in its terms
# translated to this library's fields. Its --svm_solver default jst1 is
# set by `original_config` (it may not be available).
ORIGINAL_NUM_PARAMETERS = 100_000
ORIGINAL_NUM_LAYERS = 4
ORIGINAL_DEFAULTS = after_kernel.ExperimentConfig(
    dataset='mnist', num_parameters=ORIGINAL_NUM_PARAMETERS,
    num_layers=ORIGINAL_NUM_LAYERS, max_num_epochs=1000, num_runs=5,
    train_linear_model=False, svm_max_seconds=120.0, num_translations=0,
    num_zooms=0, num_swaps=0, num_rotations=0, ker_alignment_sample_size=0,
    effective_rank_sample_size=0)
ORIGINAL_SOLVER = 'jst1'
ORIGINAL_TEST_ACCURACY_OUTPUT = '/tmp/ak.txt'
ORIGINAL_MODEL_SUMMARY_OUTPUT = '/tmp/ak_model.txt'
# Flags only the original had: using one makes a command line original.
ORIGINAL_ONLY_FLAGS = ('num_epochs', 'svm_time_limit', 'test_accuracy_output',
                       'model_summary_output')
# Original flag name -> this library's.
FLAG_ALIASES = {'num_epochs': 'max_num_epochs',
                'svm_time_limit': 'svm_max_seconds'}
# The original's solver names -> the solver of this library that runs the
# same algorithm, for when its own names are not available.
SOLVER_INSTEAD = {
    'jst1': ('dual', 'Algorithm 1 of Ji, Srebro & Telgarsky 2021, what jst1 '
                     'ran, stopped by the duality gap'),
    'jst2': ('stochastic', 'their Algorithm 2, what jst2 ran'),
    'sklearn': ('working_set', 'the exact hard-margin SVM that sklearn\'s '
                               'LinearSVC(C=100) approximated'),
}
# The original's argparse `type=bool` flags.
ORIGINAL_BOOLEANS = ('use_augmentation', 'train_linear_model',
                     'use_conjugate_kernel')
_FALSE_WORDS = ('false', 'f', '0', 'no', 'n', 'off')
_MODE_FLAGS = ('original', 'nooriginal')
# This library's architecture names -> the original's (for its output file).
_ORIGINAL_NAMES = {ours: name
                   for name, ours in models.ORIGINAL_ARCHITECTURES.items()}


@dataclasses.dataclass(frozen=True)
class _Token:
  """One --name[=value] of a command line (value None: a bare flag)."""
  name: str
  value: Optional[str]


def _tokens(argv: Sequence[str]) -> Tuple[List[Any], Optional[bool]]:
  """Arguments as _Token (flags) or str (the rest); what --original /
  --nooriginal said (None: neither given). "--name value" is joined for the names whose
  spelling differs (an argparse habit absl shares only for non-booleans)."""
  joined = tuple(FLAG_ALIASES) + ORIGINAL_BOOLEANS + (
      'nn_architecture', 'svm_solver', 'test_accuracy_output',
      'model_summary_output')
  result, explicit, index = [], None, 0
  while index < len(argv):
    arg = argv[index]
    index += 1
    if arg == '--':
      result.extend(argv[index - 1:])
      break
    if not arg.startswith('--') or len(arg) == 2:
      result.append(arg)
      continue
    name, equals, value = arg[2:].partition('=')
    if name in _MODE_FLAGS:  # The last one wins, as absl reads it.
      explicit = (name == 'original') == (value.lower() not in _FALSE_WORDS)
    if (not equals and name in joined and index < len(argv) and
        not argv[index].startswith('--')):
      value, equals = argv[index], '='
      index += 1
    result.append(_Token(name, value if equals else None))
  return result, explicit


def _is_original(tokens: Sequence[Any]) -> bool:
  return any(isinstance(t, _Token) and (
      t.name in ORIGINAL_ONLY_FLAGS or
      (t.name == 'nn_architecture' and t.value in
       models.ORIGINAL_ARCHITECTURES)) for t in tokens)


def _check_solver(value: str) -> None:
  if value in SOLVER_INSTEAD and value not in margin.SOLVERS:
    instead, what = SOLVER_INSTEAD[value]
    errors.require(False, f'--svm_solver={value} (the original script\'s '
                   'name) is not among this version\'s solvers '
                   f'({", ".join(margin.SOLVERS)}); use --svm_solver='
                   f'{instead} instead ({what})')


def _original_boolean(name: str, value: Optional[str]) -> str:
  """The flag argparse `type=bool` meant, or an error if it reads false."""
  if value is None:
    return f'--{name}'
  errors.require(
      value.lower() not in _FALSE_WORDS,
      f'--{name}={value}: the original script read every non-empty value as '
      f'True (argparse type=bool), so it turned {name} on; write --{name} '
      'to turn it on, or leave the flag out to keep it off')
  return f'--{name}' if value else f'--no{name}'


def command_line(argv: Sequence[str]) -> List[str]:
  """An original (or this library's) command line as run_after_kernel flags.

  Args:
    argv: the program name, then its arguments.

  Returns:
    The arguments with the original's spellings rewritten (module
    docstring), and --original appended when an original-only spelling was
    used and neither --original nor --nooriginal was given.

  Raises:
    AfterKernelError: an original solver name this version lacks, or an
      original boolean given a value that reads as false.
  """
  tokens, explicit = _tokens(argv[1:])
  original = _is_original(tokens) if explicit is None else explicit
  result = [argv[0]]
  for token in tokens:
    if not isinstance(token, _Token):
      result.append(token)
      continue
    name, value = FLAG_ALIASES.get(token.name, token.name), token.value
    if name == 'nn_architecture' and value is not None:
      value = models.ORIGINAL_ARCHITECTURES.get(value, value)
    if name == 'svm_solver' and value is not None:
      _check_solver(value)
    if name in ORIGINAL_BOOLEANS and original:
      result.append(_original_boolean(name, value))
      continue
    result.append(f'--{name}' + ('' if value is None else f'={value}'))
  if original and explicit is None:
    result.append('--original')
  return result


def original_network(config: after_kernel.ExperimentConfig,
                     input_shape: Sequence[int]
                     ) -> after_kernel.ExperimentConfig:
  """`config` with the network the original script built for its flags.

  The original's --num_layers (VGG: total convolutions, default 4) and
  --num_parameters (default 1e5; `models.original_width`) become an explicit
  `width` and convolutions per block; unset ones take the original's
  defaults.

  Raises:
    AfterKernelError: an architecture the original did not have, a --width
      (the original had none), fewer layers than blocks, or an image side
      that max-pooling does not divide (the original padded its pooling,
      'same'; these nets pad none, so they would differ).
  """
  arch = config.nn_architecture
  errors.require(arch in _ORIGINAL_NAMES,
                 f'the original script had no {arch} net; use one of '
                 f'{", ".join(models.ORIGINAL_ARCHITECTURES)}')
  errors.require(config.width is None, 'original sizing chooses the width '
                 'from --num_parameters; drop --width')
  num_parameters = config.num_parameters or ORIGINAL_NUM_PARAMETERS
  num_layers = config.num_layers or ORIGINAL_NUM_LAYERS
  width = models.original_width(
      models.OriginalNet(arch, input_shape, num_layers, config.num_blocks,
                         config.filter_size), num_parameters)
  if arch == 'sum':
    return dataclasses.replace(config, width=width, num_parameters=None,
                               num_layers=None)
  if arch == 'vgg':
    shrink = config.pool_size**config.num_blocks
    errors.require(
        all(int(side) % shrink == 0 for side in input_shape[:2]),
        f'{config.num_blocks} poolings of size {config.pool_size} do not '
        f'divide the {input_shape[0]}x{input_shape[1]} images: the original '
        'padded its max-pooling (\'same\'), this VGG does not, so the nets '
        'would differ; use fewer blocks')
    num_layers = models.original_layers_per_block(num_layers,
                                                  config.num_blocks)
  return dataclasses.replace(config, width=width, num_parameters=None,
                             num_layers=num_layers)


def original_config(overrides: Mapping[str, Any],
                    log=print) -> after_kernel.ExperimentConfig:
  """The original's defaults (`ORIGINAL_DEFAULTS`) with the given fields.

  Its default solver jst1 becomes 'dual' (the same algorithm, logged) when
  this version has no 'jst1'. The network is not yet sized
  (`original_network`).
  """
  config = dataclasses.replace(ORIGINAL_DEFAULTS, **overrides)
  if 'svm_solver' not in overrides:
    solver = ORIGINAL_SOLVER
    if solver not in margin.SOLVERS:
      solver = SOLVER_INSTEAD[ORIGINAL_SOLVER][0]
      if config.train_linear_model:
        log(f'svm_solver: the original\'s default {ORIGINAL_SOLVER} is '
            f'{solver} here ({SOLVER_INSTEAD[ORIGINAL_SOLVER][1]})')
    config = dataclasses.replace(config, svm_solver=solver)
  return config


def default_output_dir(test_accuracy_output: str,
                       config: after_kernel.ExperimentConfig) -> str:
  """Where an original command line (no --output_dir) keeps its runs:
  <folder of the accuracy file>/<its stem>_runs/<config fingerprint>."""
  stem = os.path.splitext(os.path.basename(test_accuracy_output))[0] or 'ak'
  return os.path.join(os.path.dirname(test_accuracy_output) or '.',
                      f'{stem}_runs', config.fingerprint())


# The metrics of the original's output line, in its order: the network's
# test error, the after kernel's SVM, then (FNTK, after kernel) pairs.
_SVM_METRICS = ('linear_error', 'margin')
_PAIRS = (('num_translations', 'trans_inv'), ('num_zooms', 'zoom_inv'),
          ('num_rotations', 'rotation_inv'),
          ('ker_alignment_sample_size', 'kalignment'),
          ('num_swaps', 'swap_inv'),
          ('effective_rank_sample_size', 'eff_rank'))


def _mean_and_width(summary: Mapping[str, Mapping[str, Any]], metric: str,
                    measured: bool) -> List[Any]:
  """[mean, std / sqrt(n)] ('' where the original wrote nothing).

  The original's "ciwidth" is the standard error of the mean (sample std,
  n - 1), left empty for one run.
  """
  entry = summary.get(metric)
  if not measured or entry is None or entry.get('mean') is None:
    return ['', '']
  n = int(entry['n'])
  width = ('' if n < 2 else float(entry['std'] or 0.0) / math.sqrt(n))
  return [float(entry['mean']), width]


def test_accuracy_line(config: after_kernel.ExperimentConfig,
                       summary: Mapping[str, Mapping[str, Any]]) -> str:
  """The original's line of results: 38 tab-separated fields and a newline.

  max_num_epochs, use_augmentation, use_conjugate_kernel; mean and standard
  error over runs of: network test error, after-kernel SVM test error and
  margin, FNTK / after-kernel translation, zoom, rotation invariance,
  alignment with the conjugate kernel, swap invariance, effective rank
  (trace / max); then the parameter count, the architecture (original
  spelling), svm_solver and its time limit (empty without the SVM), and the
  learning rate (None: the Keras default). An unmeasured field is empty.

  Args:
    config: the experiment that ran.
    summary: its summary, metric -> {mean, std, n, ...}.
  """
  fields = [config.max_num_epochs, config.use_augmentation,
            config.use_conjugate_kernel]
  fields += _mean_and_width(summary, 'nn_error', True)
  for metric in _SVM_METRICS:
    fields += _mean_and_width(summary, metric, config.train_linear_model)
  for count, metric in _PAIRS:
    for prefix in ('ntk_', 'ak_'):
      fields += _mean_and_width(summary, prefix + metric,
                                getattr(config, count) > 0)
  count = summary.get('parameter_count', {}).get('mean')
  fields += [int(count) if count is not None else '',
             _ORIGINAL_NAMES.get(config.nn_architecture,
                                 config.nn_architecture),
             config.svm_solver if config.train_linear_model else '',
             config.svm_max_seconds if config.train_linear_model else '',
             config.learning_rate]
  return '\t'.join(str(field) for field in fields) + '\n'


def write_outputs(config: after_kernel.ExperimentConfig,
                  summary: Mapping[str, Mapping[str, Any]],
                  input_shape: Sequence[int],
                  test_accuracy_output: Optional[str],
                  model_summary_output: Optional[str]) -> Dict[str, str]:
  """Writes the original's two files; returns {what: path} of those written.

  The accuracy line is appended (one line per command, as the original);
  the Keras summary of the network is written only if its file does not
  exist yet (as the original).
  """
  written = {}
  if test_accuracy_output:
    with open(test_accuracy_output, 'a') as out:
      out.write(test_accuracy_line(config, summary))
    written['test accuracies'] = test_accuracy_output
  if model_summary_output and not os.path.exists(model_summary_output):
    model = after_kernel.build_network(config, input_shape)
    lines = []
    model.summary(print_fn=lambda line, **_: lines.append(line))
    with open(model_summary_output, 'w') as out:
      out.write('\n'.join(lines) + '\n')
    written['model summary'] = model_summary_output
  return written
