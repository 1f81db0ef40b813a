r"""FNTK vs after kernel of one network on one binary task, over several runs.

Offline demo on the embedded digits data (UCI handwritten digits, shipped
with scikit-learn), 3 runs of a VGG-like net, ~1-2 minutes on 2 CPU cores:

  python -m binaries.run_after_kernel --train_linear_model \
      --output_dir=results/demo

The paper's MNIST 3-vs-8 protocol on local files (tensorflow-datasets is used
instead when --data_dir is not given and downloads work):

  python -m binaries.run_after_kernel --dataset=mnist --plus_class=8 \
      --minus_class=3 --nn_architecture=vgg --max_num_epochs=10 --num_runs=3 \
      --train_linear_model --num_translations=1000 --num_zooms=1000 \
      --num_swaps=1000 --num_rotations=1000 --ker_alignment_sample_size=1000 \
      --data_dir=../shared/data --output_dir=results/mnist_3v8

It prints a table (mean ± 95% CI half-width over runs) of the SVM test error
and margin of the FNTK (epoch 0) and of the after kernel, the network's test
error, the four invariances, the alignment with the conjugate projection and
effective ranks, and writes config.json, records/*.json (one record per run)
and summary.json/.csv ({mean, std, ci95, n} per metric) to --output_dir. Re-running the
same command resumes: finished runs are kept and skipped.

Flags: one per field of `after_kernel.ExperimentConfig` (its docstring is their
help); a flag not given keeps that class's default (`--helpfull` lists them).
Bad input prints one `error: ...` line and exits with status 2.

Command lines of the original script (google-research after_kernel/
run_ak_experiment.py) run unchanged, e.g. its README's

  python -m binaries.run_after_kernel --dataset=mnist --plus_class=8 \
      --minus_class=3 --num_translations=1000 --num_epochs=10

(original spellings, defaults and network sizing: `studies.original`; it
appends its line of results to /tmp/ak.txt, writes the model summary to
/tmp/ak_model.txt and keeps the runs in /tmp/ak_runs/<fingerprint> unless
--output_dir is given). --original / --nooriginal force either reading;
--original_sizing sizes the net as the original did (VGG 38/76 channels at
its default --num_parameters=1e5 on MNIST).
"""

import os

# Keep TensorFlow's C++ start-up chatter out of the results printout.
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

# pylint: disable=g-import-not-at-top
import functools
import sys

from absl import flags as absl_flags

from afterkernel import data
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.studies import original
from afterkernel.studies import summary as summary_lib
from binaries import flags
from binaries import mains


def _report(summary, output_dir: str) -> str:
  """The table of means ± 95% CI, then where the results are."""
  table = summary_lib.format_table(summary, after_kernel.TABLE_ROWS)
  return f'\n{table}\n\nresults: {os.path.abspath(output_dir)}'


# The configuration the flags change: ExperimentConfig's defaults.
BINARY = mains.ConfigBinary(
    after_kernel.ExperimentConfig, 'run_after_kernel',
    run=lambda config, output_dir: after_kernel.run_experiment(
        config, output_dir, log=lambda m: print(m, flush=True)),
    report=_report)
config_from_flags = BINARY.config
ORIGINAL = flags.define(absl_flags.BooleanFlag(
    'original', False,
    'Read the command line as the original run_ak_experiment.py: its '
    'defaults, its --num_layers / --num_parameters meanings, its output '
    'files (set by itself when an original-only spelling is used).'))
ORIGINAL_SIZING = flags.define(absl_flags.BooleanFlag(
    'original_sizing', False,
    'Size the net as the original did: --num_layers is the VGG total '
    '(split over blocks), --num_parameters (default 1e5) picks the smallest '
    'width whose approximate count reaches it, or is the Sum net\'s width.'))
TEST_ACCURACY_OUTPUT = flags.define_string(
    'test_accuracy_output', None,
    'Append the original\'s tab-separated line of results to this file '
    f'(original default {original.ORIGINAL_TEST_ACCURACY_OUTPUT}).')
MODEL_SUMMARY_OUTPUT = flags.define_string(
    'model_summary_output', None,
    'Write the Keras summary of the net to this file if it does not exist '
    f'(original default {original.ORIGINAL_MODEL_SUMMARY_OUTPUT}).')


def parse_flags(argv):
  """`flags.parse_flags` of the command line with the original's spellings
  rewritten (`original.command_line`)."""
  try:
    argv = original.command_line(argv)
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    sys.exit(2)
  return flags.parse_flags(argv)


@functools.lru_cache(maxsize=2)
def _task_input_shape(dataset, plus_class, minus_class, data_dir,
                      cifar_test_source):
  return data.load_binary_task(
      dataset, plus_class, minus_class, data_dir=data_dir,
      cifar_test_source=cifar_test_source).x_train.shape[1:]


def _input_shape(config):
  """The task's input shape (its data loaded once per command)."""
  return _task_input_shape(config.dataset, config.plus_class,
                           config.minus_class, config.data_dir,
                           config.cifar_test_source)


def experiment(log=print, input_shape_of=_input_shape):
  """The configuration and output files the parsed flags describe.

  Args:
    log: where the original-reading notes go.
    input_shape_of: config -> the input shape (loads the task; tests pass
      a constant).

  Returns:
    (config, test accuracy file or None, model summary file or None,
    output folder or None); the network sized the original's way under
    --original / --original_sizing.
  """
  accuracy_file, summary_file = (TEST_ACCURACY_OUTPUT.value,
                                 MODEL_SUMMARY_OUTPUT.value)
  if ORIGINAL.value:
    config = original.original_config(BINARY.fields.overrides(), log)
    accuracy_file = accuracy_file or original.ORIGINAL_TEST_ACCURACY_OUTPUT
    summary_file = summary_file or original.ORIGINAL_MODEL_SUMMARY_OUTPUT
  else:
    config = BINARY.config()
  if ORIGINAL.value or ORIGINAL_SIZING.value:
    config = original.original_network(config, input_shape_of(config))
    log(f'original sizing: {config.nn_architecture} width {config.width}' +
        (f', {config.num_layers} convolution(s) per block'
         if config.nn_architecture == 'vgg' else ''))
  output_dir = BINARY.output_dir.value
  if not output_dir and ORIGINAL.value:
    output_dir = original.default_output_dir(accuracy_file, config)
  return config, accuracy_file, summary_file, output_dir


def main(argv) -> int:
  """Runs the experiment the flags describe; 0, or 2 after one `error:`."""
  log = lambda message: print(message, flush=True)

  def body():
    mains.require_no_arguments(argv)
    config, accuracy_file, summary_file, output_dir = experiment(log)
    output_dir = output_dir or mains.require_folder(
        BINARY.output_dir, 'where results are written')
    summary = after_kernel.run_experiment(config, output_dir, log=log)
    print(_report(summary, output_dir))
    if accuracy_file or summary_file:
      for what, path in original.write_outputs(
          config, summary, _input_shape(config), accuracy_file,
          summary_file).items():
        print(f'{what}: {os.path.abspath(path)}')

  return mains.main_status(body, BINARY.output_dir)


if __name__ == '__main__':
  flags.run(main, parse_flags)
