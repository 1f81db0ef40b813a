"""Original run_ak_experiment.py command lines on run_after_kernel.

A table of the original script's command lines -> the network they build
(width, convolutions per block, exact parameter count, counted by Keras and
by hand) and the experiment they mean; two tiny in-process runs on the embedded digits that
check the accuracy line against the run records and the model summary file.
Tests of afterkernel/studies/original.py (the original's width search:
paper_test).
"""

import glob
import json
import math
import os
import shutil
import tempfile

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import margin
from afterkernel import models
from afterkernel.studies import after_kernel
from afterkernel.studies import original
from binaries import run_after_kernel
import binary_flags

FLAGS = flags.FLAGS
MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
DIGITS = (8, 8, 1)


def _config(argv, input_shape=MNIST):
  """(config, accuracy file, summary file, output dir) of a command line,
  parsed as the binary parses it, without loading data."""
  with flagsaver.flagsaver():
    FLAGS.unparse_flags()
    run_after_kernel.parse_flags(['run_after_kernel'] + list(argv))
    return run_after_kernel.experiment(lambda _: None,
                                       lambda _: input_shape)


def _tempdir(test):
  """A fresh folder removed after `test` (works before absl parses flags)."""
  folder = tempfile.mkdtemp()
  test.addCleanup(shutil.rmtree, folder, ignore_errors=True)
  return folder


class CommandLineTest(parameterized.TestCase):
  """Original command lines -> the experiment and network they mean."""

  @parameterized.named_parameters(
      # The original README's example (its --num_epochs, original defaults).
      ('readme', ['--dataset=mnist', '--plus_class=8', '--minus_class=3',
                  '--num_translations=1000', '--num_epochs=10'], MNIST,
       dict(nn_architecture='vgg', width=38, num_layers=2, num_blocks=2,
            max_num_epochs=10, num_runs=5, num_translations=1000,
            num_zooms=0, num_swaps=0, num_rotations=0,
            ker_alignment_sample_size=0, effective_rank_sample_size=0,
            train_linear_model=False, use_augmentation=False,
            learning_rate=None, batch_size=32, svm_max_seconds=120.0,
            dataset='mnist'), 95_267, [38, 38, 76, 76, 1]),
      ('mlp_cifar', ['--dataset=cifar10', '--plus_class=5',
                     '--minus_class=3', '--nn_architecture=MLP',
                     '--max_num_epochs=30', '--learning_rate=0.1',
                     '--use_augmentation=True', '--num_runs', '10'], CIFAR,
       dict(nn_architecture='fully_connected', width=32, num_layers=4,
            max_num_epochs=30, learning_rate=0.1, use_augmentation=True,
            num_runs=10, plus_class=5, minus_class=3),
       101_537, [32, 32, 32, 32, 1]),
      ('vgg_6_layers_space_separated',
       ['--nn_architecture', 'VGG', '--num_layers', '6',
        '--use_augmentation', 'True', '--training_loss_target=0.01'], MNIST,
       dict(nn_architecture='vgg', width=29, num_layers=3,
            use_augmentation=True, training_loss_target=0.01,
            max_num_epochs=1000), 94_193, [29, 29, 29, 58, 58, 58, 1]),
      ('sum', ['--nn_architecture=Sum', '--num_parameters=16'], MNIST,
       dict(nn_architecture='sum', width=16, num_layers=None), 49, [16, 1]),
      ('time_limit_and_svm', ['--svm_time_limit=30', '--train_linear_model=1',
                              '--use_conjugate_kernel=yes',
                              '--effective_rank_sample_size=100'], MNIST,
       dict(svm_max_seconds=30.0, train_linear_model=True,
            use_conjugate_kernel=True, effective_rank_sample_size=100,
            width=38), 95_267, [38, 38, 76, 76, 1]),
      # --original reads a command line without original-only spellings.
      ('explicit', ['--original', '--max_num_epochs=3'], MNIST,
       dict(max_num_epochs=3, num_runs=5, width=38, dataset='mnist'),
       95_267, [38, 38, 76, 76, 1]),
      # --original_sizing alone: our defaults, the original's net.
      ('original_sizing', ['--original_sizing', '--num_layers=4'], DIGITS,
       dict(dataset='digits', num_runs=3, max_num_epochs=10, width=38,
            num_layers=2, train_linear_model=True), 91_847,
       [38, 38, 76, 76, 1]),
  )
  def test_network_and_experiment(self, argv, shape, fields, count, widths):
    config, _, _, _ = _config(argv, shape)
    for name, value in fields.items():
      self.assertEqual(getattr(config, name), value, name)
    self.assertIsNone(config.num_parameters)
    built = after_kernel.build_network(config, shape)
    self.assertEqual(models.count_parameters(built), count)
    self.assertEqual(models.layer_widths(built), widths)

  def test_original_reading_writes_the_original_files(self):
    config, accuracy, summary, output_dir = _config(['--num_epochs=1'])
    self.assertEqual(accuracy, '/tmp/ak.txt')
    self.assertEqual(summary, '/tmp/ak_model.txt')
    self.assertEqual(output_dir, f'/tmp/ak_runs/{config.fingerprint()}')
    _, accuracy, summary, output_dir = _config(
        ['--num_epochs=1', '--test_accuracy_output=/x/r.tsv',
         '--output_dir=/y'])
    self.assertEqual((accuracy, output_dir), ('/x/r.tsv', '/y'))

  def test_original_default_solver(self):
    config, _, _, _ = _config(['--num_epochs=1'])
    self.assertEqual(config.svm_solver,
                     'jst1' if 'jst1' in margin.SOLVERS else 'dual')

  @parameterized.parameters('jst1', 'jst2', 'sklearn')
  def test_original_solver_names(self, solver):
    argv = [f'--svm_solver={solver}', '--nn_architecture=VGG']
    if solver in margin.SOLVERS:
      self.assertEqual(_config(argv)[0].svm_solver, solver)
    else:
      with self.assertRaisesRegex(
          errors.AfterKernelError,
          f'use --svm_solver={original.SOLVER_INSTEAD[solver][0]} instead'):
        original.command_line(['p'] + argv)

  def test_our_spellings_keep_our_meanings(self):
    # No original-only spelling: --num_layers is per block, our defaults.
    config, accuracy, summary, output_dir = _config(
        ['--num_layers=4', '--nn_architecture=vgg'])
    self.assertEqual(config, after_kernel.ExperimentConfig(num_layers=4))
    self.assertEqual((accuracy, summary, output_dir), (None, None, None))
    self.assertEqual(after_kernel.build_network(config, MNIST).count_params(),
                     models.parameter_count('vgg', MNIST, num_layers=4))
    # --nooriginal: the original's architecture name as an alias only.
    config, _, _, _ = _config(['--nn_architecture=MLP', '--nooriginal'])
    self.assertEqual(config, after_kernel.ExperimentConfig(
        nn_architecture='fully_connected'))
    # An unset width leaves 0.1.0 fingerprints as they were.
    self.assertEqual(
        after_kernel.ExperimentConfig().fingerprint(),
        after_kernel.ExperimentConfig(width=None).fingerprint())
    self.assertNotEqual(
        after_kernel.ExperimentConfig().fingerprint(),
        after_kernel.ExperimentConfig(width=26).fingerprint())

  def test_booleans_read_false_by_the_original_are_refused(self):
    for argv in (['--num_epochs=1', '--use_augmentation=False'],
                 ['--nn_architecture=VGG', '--train_linear_model', 'false']):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'read every non-empty value as True'):
        original.command_line(['p'] + argv)
    # Our reading keeps absl's booleans.
    self.assertEqual(original.command_line(
        ['p', '--use_augmentation', 'False']), ['p', '--use_augmentation=False'])

  def test_bad_original_networks_are_one_line_errors(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'do not divide'):
      _config(['--nn_architecture=VGG', '--num_blocks=3'])
    with self.assertRaisesRegex(errors.AfterKernelError, 'num_layers >= '):
      _config(['--nn_architecture=VGG', '--num_layers=1'])
    with self.assertRaisesRegex(errors.AfterKernelError, 'no mega_vgg'):
      _config(['--original', '--nn_architecture=mega_vgg'])
    self.assertEqual(binary_flags.run_main(
        run_after_kernel, ['--num_epochs=1', '--use_augmentation=False']), 2)


class RunTest(absltest.TestCase):
  """Tiny original command lines run in-process on the embedded digits."""

  def test_original_run_writes_its_two_files(self):
    folder = _tempdir(self)
    accuracy = os.path.join(folder, 'ak.txt')
    model_summary = os.path.join(folder, 'ak_model.txt')
    argv = ['--dataset=digits', '--nn_architecture=MLP',
            '--num_parameters=3000', '--num_layers=2', '--num_epochs=1',
            '--num_runs=2', '--train_linear_model=True',
            '--num_translations=10', '--ker_alignment_sample_size=10',
            f'--test_accuracy_output={accuracy}',
            f'--model_summary_output={model_summary}']
    self.assertEqual(binary_flags.run_main(run_after_kernel, argv), 0)
    records = [json.load(open(p)) for p in sorted(glob.glob(
        os.path.join(folder, 'ak_runs', '*', 'records', '*.json')))]
    self.assertLen(records, 2)
    # 64 w + (w + 1) w + w + 1 first reaches 3000 at w = 31; built:
    # 65 * 31 + 32 * 31 + 32 = 3039.
    for record in records:
      self.assertEqual(record['widths'], [31, 31, 1])
      self.assertEqual(record['metrics']['parameter_count'], 3039)
    with open(accuracy) as f:
      lines = f.read().splitlines()
    self.assertLen(lines, 1)
    fields = lines[0].split('\t')
    self.assertLen(fields, 38)
    self.assertEqual(fields[:3], ['1', 'False', 'False'])
    self.assertEqual(fields[33:35], ['3039', 'MLP'])
    self.assertEqual(fields[36:], ['120.0', 'None'])

    def mean_and_width(metric):
      values = np.array([r['metrics'][metric] for r in records], float)
      return values.mean(), values.std(ddof=1) / math.sqrt(len(values))

    columns = {3: 'nn_error', 5: 'linear_error', 7: 'margin',
               9: 'ntk_trans_inv', 11: 'ak_trans_inv',
               21: 'ntk_kalignment', 23: 'ak_kalignment'}
    for column, metric in columns.items():
      mean, width = mean_and_width(metric)
      self.assertAlmostEqual(float(fields[column]), mean, places=12)
      self.assertAlmostEqual(float(fields[column + 1]), width, places=12)
    unmeasured = set(range(13, 21)) | set(range(25, 33))  # Zoom, rotation,
    self.assertEqual({fields[i] for i in unmeasured}, {''})  # swap, rank.
    with open(model_summary) as f:
      text = f.read()
    self.assertIn('Total params: 3,039', text)
    # Again: runs resumed, one more line, the summary file left as it was.
    os.utime(model_summary, (0, 0))
    self.assertEqual(binary_flags.run_main(run_after_kernel, argv), 0)
    with open(accuracy) as f:
      self.assertEqual(f.read().splitlines(), lines * 2)
    self.assertEqual(os.stat(model_summary).st_mtime, 0)

  def test_sum_net_of_the_original(self):
    folder = _tempdir(self)
    argv = ['--dataset=digits', '--nn_architecture=Sum',
            '--num_parameters=8', '--num_epochs=0', '--num_runs=1',
            f'--test_accuracy_output={folder}/ak.txt',
            f'--model_summary_output={folder}/m.txt',
            f'--output_dir={folder}/runs']
    self.assertEqual(binary_flags.run_main(run_after_kernel, argv), 0)
    with open(os.path.join(folder, 'ak.txt')) as f:
      fields = f.read().rstrip('\n').split('\t')
    self.assertEqual(fields[33:], ['25', 'Sum', '', '', 'None'])
    (record_path,) = glob.glob(f'{folder}/runs/records/*.json')
    with open(record_path) as f:
      self.assertEqual(json.load(f)['widths'], [8, 1])


if __name__ == '__main__':
  absltest.main()
