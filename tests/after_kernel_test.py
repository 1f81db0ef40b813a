"""Tests for afterkernel.studies.after_kernel on tiny slices of the embedded
digits (its configuration: after_kernel_config_test)."""

import dataclasses
import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.studies import store
from afterkernel.studies import summary as summary_lib

# Tiny but complete: every stage runs, in a few seconds.
_TINY = after_kernel.ExperimentConfig(
    dataset='digits', plus_class=8, minus_class=3, train_subset=48,
    test_subset=24, nn_architecture='fully_connected', num_layers=1,
    num_parameters=3000, max_num_epochs=2, num_runs=2, num_translations=8,
    num_zooms=8, num_swaps=8, num_rotations=8, ker_alignment_sample_size=10,
    effective_rank_sample_size=12, svm_max_iterations=3000)

_ORIGINAL_METRICS = (
    'nn_error', 'linear_error', 'margin', 'ntk_trans_inv', 'ak_trans_inv',
    'ntk_zoom_inv', 'ak_zoom_inv', 'ntk_swap_inv', 'ak_swap_inv',
    'ntk_rotation_inv', 'ak_rotation_inv', 'ntk_kalignment', 'ak_kalignment',
    'ntk_eff_rank', 'ak_eff_rank')


def _quiet(message):
  del message


def _folder_contents(directory):
  """{relative path: text} of every file under `directory` (records/ too)."""
  contents = {}
  for root, _, names in os.walk(directory):
    for name in names:
      path = os.path.join(root, name)
      with open(path) as f:
        contents[os.path.relpath(path, directory)] = f.read()
  return contents


class RunExperimentTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.directory = os.path.join(tempfile.mkdtemp(), 'out')

  def test_writes_records_and_summary_with_original_names(self):
    summary = after_kernel.run_experiment(_TINY, self.directory, log=_quiet)
    records = store.ResultStore(self.directory).records()
    self.assertEqual([r['run'] for r in records], [0, 1])
    self.assertEqual([r['seed'] for r in records], [0, 1])
    for name in _ORIGINAL_METRICS + ('ntk_linear_error', 'ntk_margin'):
      self.assertIn(name, summary)
      self.assertEqual(summary[name]['n'], 2)
    for record in records:
      metrics = record['metrics']
      for name in ('nn_error', 'linear_error', 'ntk_linear_error'):
        self.assertBetween(metrics[name], 0.0, 1.0)
      for name in ('ak_trans_inv', 'ntk_swap_inv', 'ak_kalignment'):
        self.assertBetween(metrics[name], -1.0, 1.0)
      self.assertGreater(metrics['margin'], 0.0)
      self.assertEqual(record['data']['n_train'], 48)
      self.assertEqual(record['data']['permutation_seed'], record['seed'])
    with open(os.path.join(self.directory, summary_lib.SUMMARY_FILE)) as f:
      (entry,) = json.load(f)  # One point: this experiment.
      self.assertEqual(entry['metrics'], json.loads(store.to_json(summary)))
    with open(os.path.join(self.directory, store.CONFIG_FILE)) as f:
      self.assertEqual(json.load(f)['config'], _TINY.to_dict())
    # Different seeds give different runs.
    self.assertNotEqual(records[0]['metrics']['ntk_trans_inv'],
                        records[1]['metrics']['ntk_trans_inv'])

  def test_resume_skips_finished_runs(self):
    one_run = dataclasses.replace(_TINY, num_runs=1)
    after_kernel.run_experiment(one_run, self.directory, log=_quiet)
    first = store.ResultStore(self.directory).records()
    with mock.patch.object(after_kernel, 'run_once',
                           wraps=after_kernel.run_once) as spy:
      summary = after_kernel.run_experiment(_TINY, self.directory, log=_quiet)
    self.assertEqual([c.args[2] for c in spy.call_args_list], [1])
    records = store.ResultStore(self.directory).records()
    self.assertEqual([r['run'] for r in records], [0, 1])
    self.assertEqual(records[0], first[0])
    self.assertEqual(summary['nn_error']['n'], 2)

  def test_resumes_a_0_1_0_folder_with_runs_jsonl(self):
    one_run = dataclasses.replace(_TINY, num_runs=1)
    after_kernel.run_experiment(one_run, self.directory, log=_quiet)
    (record,) = store.ResultStore(self.directory).records()
    # Rewrite the folder as 0.1.0 left it: runs.jsonl, no records/.
    shutil.rmtree(os.path.join(self.directory, store.RECORDS_DIR))
    store.append_run(self.directory, {k: v for k, v in record.items()
                                      if k not in ('key', 'family',
                                                   'point_id', 'point')})
    with mock.patch.object(after_kernel, 'run_once',
                           wraps=after_kernel.run_once) as spy:
      summary = after_kernel.run_experiment(_TINY, self.directory, log=_quiet)
    self.assertEqual([c.args[2] for c in spy.call_args_list], [1])
    records = store.ResultStore(self.directory).records()
    self.assertEqual(records[0], record)
    self.assertEqual(summary['nn_error']['n'], 2)

  def test_same_seed_reproduces_the_run(self):
    one_run = dataclasses.replace(_TINY, num_runs=1)
    a = after_kernel.run_experiment(one_run, self.directory, log=_quiet)
    b = after_kernel.run_experiment(one_run, self.directory + '2', log=_quiet)
    for name in ('ntk_linear_error', 'ntk_margin', 'ntk_trans_inv'):
      self.assertAlmostEqual(a[name]['mean'], b[name]['mean'], places=5)

  def test_other_config_in_same_directory_is_refused_untouched(self):
    one_run = dataclasses.replace(_TINY, num_runs=1)
    after_kernel.run_experiment(one_run, self.directory, log=_quiet)
    before = _folder_contents(self.directory)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'different configuration'):
      after_kernel.run_experiment(dataclasses.replace(one_run, seed=5),
                                self.directory, log=_quiet)
    after = _folder_contents(self.directory)
    self.assertEqual(before, after)

  def test_zero_epochs_after_kernel_is_the_fntk(self):
    config = dataclasses.replace(_TINY, num_runs=1, max_num_epochs=0)
    summary = after_kernel.run_experiment(config, self.directory, log=_quiet)
    self.assertEqual(summary['linear_error'], summary['ntk_linear_error'])
    self.assertEqual(summary['ak_trans_inv'], summary['ntk_trans_inv'])

  def test_skipping_the_fntk_gives_the_same_after_kernel(self):
    config = dataclasses.replace(_TINY, num_runs=1)
    both = after_kernel.run_experiment(config, self.directory, log=_quiet)
    after_only = after_kernel.run_experiment(
        dataclasses.replace(config, measure_ntk=False), self.directory + 'a',
        log=_quiet)
    self.assertFalse([name for name in after_only if name.startswith('ntk_')])
    self.assertEqual(both['linear_error'], after_only['linear_error'])
    self.assertAlmostEqual(both['ak_trans_inv']['mean'],
                           after_only['ak_trans_inv']['mean'], delta=1e-5)
    # The default keeps fingerprints of configs made before the field.
    self.assertNotEqual(config.fingerprint(),
                        dataclasses.replace(config,
                                            measure_ntk=False).fingerprint())

  def test_primal_and_dual_solvers_agree_through_the_pipeline(self):
    config = dataclasses.replace(_TINY, num_runs=1, max_num_epochs=0,
                                 num_translations=0, num_zooms=0,
                                 num_swaps=0, num_rotations=0,
                                 svm_tolerance=1e-6, svm_max_iterations=20000)
    dual = after_kernel.run_experiment(config, self.directory, log=_quiet)
    primal = after_kernel.run_experiment(
        dataclasses.replace(config, svm_solver='primal'),
        self.directory + 'p', log=_quiet)
    self.assertAlmostEqual(dual['ntk_margin']['mean'],
                           primal['ntk_margin']['mean'], delta=1e-4)
    self.assertEqual(dual['ntk_linear_error'], primal['ntk_linear_error'])

  def test_memory_budget_streams_to_the_same_svm(self):
    config = dataclasses.replace(_TINY, num_runs=1, max_num_epochs=0,
                                 num_translations=0, num_zooms=0,
                                 num_swaps=0, num_rotations=0)
    dense = after_kernel.run_experiment(config, self.directory, log=_quiet)
    # ~3000 parameters x 4 bytes x 3 rows: neither the 48 + 24 examples'
    # rows nor their Dense factors (157 numbers each) fit, so the Grams are
    # streamed in several chunks.
    streamed = after_kernel.run_experiment(
        dataclasses.replace(config, memory_budget_gb=3 * 3000 * 4 / 1024**3),
        self.directory + 's', log=_quiet)
    self.assertEqual(dense['ntk_linear_error'], streamed['ntk_linear_error'])
    self.assertAlmostEqual(dense['ntk_margin']['mean'],
                           streamed['ntk_margin']['mean'], delta=1e-5)

  def test_conjugate_kernel_option(self):
    config = dataclasses.replace(_TINY, num_runs=1, use_conjugate_kernel=True)
    summary = after_kernel.run_experiment(config, self.directory, log=_quiet)
    self.assertIn('linear_error', summary)
    self.assertIn('ak_trans_inv', summary)


def _real_data_dir():
  path = os.environ.get('AFTERKERNEL_DATA_DIR') or os.path.join(
      os.path.dirname(os.path.abspath(__file__)), '..', '..', 'shared', 'data')
  return path if os.path.isdir(os.path.join(path, 'mnist')) else None


@absltest.skipUnless(os.environ.get('AFTERKERNEL_SLOW_TESTS'),
                     'slow; set AFTERKERNEL_SLOW_TESTS=1')
class RealMnistTest(absltest.TestCase):
  """The paper's protocol on a 2,000-image slice of real MNIST 3-vs-8."""

  def test_after_kernel_is_accurate_and_more_invariant(self):
    data_dir = _real_data_dir()
    if data_dir is None:
      self.skipTest('real MNIST not found: set AFTERKERNEL_DATA_DIR or put '
                    'mnist/ under ../shared/data')
    config = after_kernel.ExperimentConfig(
        dataset='mnist', plus_class=8, minus_class=3, data_dir=data_dir,
        train_subset=2000, test_subset=500, nn_architecture='vgg',
        max_num_epochs=5, num_runs=1, num_translations=200, num_zooms=200,
        num_swaps=200, num_rotations=200, ker_alignment_sample_size=200,
        effective_rank_sample_size=200)
    summary = after_kernel.run_experiment(
        config, os.path.join(tempfile.mkdtemp(), 'mnist'), log=_quiet)
    mean = {name: entry['mean'] for name, entry in summary.items()}
    # Loose bounds that a broken pipeline (wrong labels, wrong features,
    # unconverged solver) would miss: MNIST 3-vs-8 is easy.
    self.assertLess(mean['nn_error'], 0.05)
    self.assertLess(mean['linear_error'], 0.05)
    self.assertLess(mean['ntk_linear_error'], 0.08)
    self.assertEqual(mean['ak_svm_converged'], 1.0)
    self.assertGreater(mean['ak_rotation_inv'], mean['ntk_rotation_inv'])


class ValidationTest(absltest.TestCase):

  def assert_refused(self, pattern, **changes):
    directory = os.path.join(tempfile.mkdtemp(), 'never')
    with self.assertRaisesRegex(errors.AfterKernelError, pattern):
      after_kernel.run_experiment(dataclasses.replace(_TINY, **changes),
                                directory, log=_quiet)
    self.assertFalse(os.path.exists(directory))

  def test_bad_inputs_fail_before_writing(self):
    self.assert_refused('unknown dataset', dataset='imagenet')
    self.assert_refused('unknown nn_architecture', nn_architecture='resnet')
    self.assert_refused('both 3', plus_class=3)
    self.assert_refused(r'class id in \[0, 10\)', plus_class=12)
    self.assert_refused('num_runs must be positive', num_runs=0)
    self.assert_refused('num_translations', num_translations=-1)
    self.assert_refused('exceeds the 24 test images', num_zooms=25)
    self.assert_refused('train_subset', train_subset=100000)
    self.assert_refused('unknown svm_solver', svm_solver='smo')
    self.assert_refused('learning_rate', learning_rate=-0.1)
    self.assert_refused('data_dir', dataset='mnist', data_dir='/nonexistent')


if __name__ == '__main__':
  absltest.main()
