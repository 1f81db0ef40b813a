"""Tests of afterkernel.kernels.probe: the one kernel probe and vocabulary.

Each metric is recomputed independently (loop gradient features, float64
Grams and numpy formulas) on a tiny fully connected net and digits.
"""

import dataclasses
from unittest import mock

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import metrics
from afterkernel.kernels import probe
from afterkernel import margin
from afterkernel import models
from afterkernel import training
from afterkernel.studies import after_kernel
from afterkernel.margin import device as margin_device

_TASK = None


def _task():
  global _TASK
  if _TASK is None:
    task = data.permute(data.load_binary_task('digits', 8, 3), 0)
    _TASK = data.subsample(task, 40, 20)
  return _TASK


def _model(seed=0):
  keras.utils.set_random_seed(seed)
  return models.build_fully_connected((8, 8, 1), width=6, num_layers=1)


class VocabularyTest(absltest.TestCase):

  def test_canonical_names(self):
    self.assertEqual(probe.canonical_metrics(('conjugate_alignment',
                                              'svm_error')),
                     ('kalignment', 'svm_error'))
    self.assertEqual(set(probe.METRICS), set(probe.VOCABULARY))
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown kernel'):
      probe.canonical_metrics(('accuracy',))
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown kernel'):
      probe.KernelProbe(probe.ProbeSpec(metrics=('nope',)), _task())

  def test_invariance_counts_only_for_requested_metrics(self):
    spec = probe.ProbeSpec(metrics=('trans_inv', 'swap_inv'),
                           num_translations=3, num_swaps=4, num_zooms=5)
    self.assertEqual(spec.invariance_counts(),
                     {'translation': 3, 'rotation': 0, 'zoom': 0, 'swap': 4})


class KernelProbeTest(absltest.TestCase):

  def test_metrics_against_independent_computation(self):
    task, model = _task(), _model()
    spec = probe.ProbeSpec(
        metrics=probe.METRICS, num_translations=5, num_rotations=5,
        num_zooms=5, num_swaps=5, alignment_sample_size=12,
        effective_rank_sample_size=15, svm_max_iterations=3000)
    phi_train = features.gradient_features(model, task.x_train,
                                           method='loop').astype(np.float64)
    phi_test = features.gradient_features(model, task.x_test,
                                          method='loop').astype(np.float64)
    gram = phi_train @ phi_train.T
    measured = probe.KernelProbe(spec, task, seed=0).measure(
        model, reference_gram=gram)
    got = measured['metrics']
    self.assertContainsSubset(set(probe.METRICS) | set(probe.SVM_DIAGNOSTICS),
                              set(got))
    self.assertContainsSubset({'features_and_gram_seconds', 'svm_seconds',
                               'invariance_seconds'},
                              set(measured['timings']))
    # SVM: the same solver on the independent float64 Gram.
    solution = margin.max_margin_from_gram(gram, task.y_train,
                                           max_iterations=3000)
    decisions = (phi_test @ phi_train.T) @ solution.dual_coef
    expected_error = np.mean((decisions > 0) != (task.y_test > 0.5))
    self.assertAlmostEqual(got['svm_error'], expected_error, delta=1 / 20)
    self.assertAlmostEqual(got['svm_margin'], solution.margin, delta=1e-3)
    # Certified bounds on the exact classifier's error, written out from the
    # independent solve: uncertain = |f(x)| <= radius ||w|| ||phi(x)||.
    radius = np.sqrt(1 - (solution.margin / solution.margin_upper_bound)**2)
    weight = phi_train.T @ solution.dual_coef
    uncertain = (np.abs(decisions) <= radius * np.linalg.norm(weight) *
                 np.linalg.norm(phi_test, axis=1))
    wrong = (decisions > 0) != (task.y_test > 0.5)
    self.assertAlmostEqual(got['svm_error_lower'],
                           np.mean(wrong & ~uncertain), delta=1 / 20)
    self.assertAlmostEqual(got['svm_error_upper'],
                           np.mean(wrong | uncertain), delta=1 / 20)
    self.assertBetween(got['svm_error'], got['svm_error_lower'],
                       got['svm_error_upper'])
    # Alignments and ranks from numpy formulas.
    y = 2.0 * task.y_train - 1.0
    self.assertAlmostEqual(
        got['label_alignment'],
        y @ gram @ y / (np.sqrt(np.sum(gram**2)) * len(y)), places=5)
    self.assertAlmostEqual(got['distance_from_init'], 0.0, places=5)
    sample = phi_test[:12]
    conjugate = features.conjugate_features(model, task.x_test[:12]).astype(
        np.float64)
    g, c = sample @ sample.T, conjugate @ conjugate.T
    self.assertAlmostEqual(got['kalignment'],
                           np.sum(g * c) / np.sqrt(np.sum(g**2) *
                                                   np.sum(c**2)), places=5)
    eigenvalues = np.linalg.eigvalsh(phi_train[:15] @ phi_train[:15].T)
    self.assertAlmostEqual(got['eff_rank'],
                           eigenvalues.sum() / eigenvalues.max(), places=4)
    p = np.maximum(eigenvalues, 0) / np.maximum(eigenvalues, 0).sum()
    p = p[p > 0]
    self.assertAlmostEqual(got['entropy_eff_rank'],
                           np.exp(-np.sum(p * np.log(p))), places=3)
    for name in ('trans_inv', 'rotation_inv', 'zoom_inv', 'swap_inv'):
      self.assertBetween(got[name], -1.0, 1.0)

  def test_requested_metrics_only_and_reference_needed(self):
    task, model = _task(), _model(1)
    only = probe.KernelProbe(probe.ProbeSpec(metrics=('label_alignment',)),
                             task).measure(model)
    self.assertEqual(set(only['metrics']), {'label_alignment'})
    with self.assertRaisesRegex(errors.AfterKernelError, 'reference Gram'):
      probe.KernelProbe(probe.ProbeSpec(metrics=('distance_from_init',)),
                        task).measure(model)

  def test_gradient_fn_override_is_used(self):
    task, model = _task(), _model(2)
    calls = []

    def gradient_fn(m, x):
      calls.append(len(x))
      return features.gradient_features(m, x, method='loop')

    spec = probe.ProbeSpec(metrics=('eff_rank',),
                           effective_rank_sample_size=10)
    got = probe.KernelProbe(spec, task, gradient_fn=gradient_fn).measure(
        model)['metrics']
    self.assertEqual(calls, [10])
    phi = features.gradient_features(model, task.x_train[:10], method='loop')
    self.assertAlmostEqual(got['eff_rank'],
                           metrics.trace_effective_rank(phi @ phi.T), places=6)


  def test_svm_device_reaches_the_solver_same_numbers(self):
    # The TensorFlow product path ('/CPU:0', as a GPU would run it) against
    # numpy's: the same certified solve to float64 rounding.
    task, model = _task(), _model(3)
    got = {}
    for device in ('cpu', '/CPU:0'):
      spec = probe.ProbeSpec(metrics=('svm_error', 'svm_margin'),
                             svm_device=device)
      with mock.patch.object(margin_device, 'gram_matvec',
                             wraps=margin_device.gram_matvec) as matvec:
        got[device] = probe.KernelProbe(spec, task).measure(model)['metrics']
      self.assertEqual({c.args[1] for c in matvec.call_args_list},
                       {'cpu' if device == 'cpu' else device})
    self.assertEqual(got['cpu']['svm_error'], got['/CPU:0']['svm_error'])
    self.assertAlmostEqual(got['cpu']['svm_margin'],
                           got['/CPU:0']['svm_margin'], places=8)

  def test_narrow_conjugate_features_go_to_the_interior_point(self):
    # Width 30 < 40 training examples: the default solver gets the features
    # (interior point, P x P systems); same certified margin as the exact
    # solver on the conjugate Gram (separable here), and the same test error.
    task = _task()
    keras.utils.set_random_seed(4)
    model = models.build_fully_connected((8, 8, 1), width=30, num_layers=1)
    spec = probe.ProbeSpec(metrics=('svm_error', 'svm_margin'),
                           use_conjugate_kernel=True)
    with mock.patch.object(margin, 'max_margin_from_features',
                           wraps=margin.max_margin_from_features) as routed:
      got = probe.KernelProbe(spec, task).measure(model)['metrics']
    self.assertEqual(routed.call_args.kwargs['solver'], 'interior_point')
    self.assertEqual(got['svm_interior_point'], 1.0)
    conjugate = features.conjugate_features(model, task.x_train)
    by_gram = margin.max_margin_from_gram(
        conjugate.astype(np.float64) @ conjugate.T.astype(np.float64),
        task.y_train, solver='exact')
    self.assertEqual(got['svm_converged'], 1.0)
    self.assertTrue(by_gram.converged)
    self.assertAlmostEqual(got['svm_margin'], by_gram.margin,
                           delta=2e-4 * by_gram.margin_upper_bound)
    cross = (features.conjugate_features(model, task.x_test).astype(
        np.float64) @ conjugate.T.astype(np.float64))
    self.assertEqual(got['svm_error'], training.sign_error(
        margin.decision_function(by_gram, cross), task.y_test))
    # The features route bounds the exact classifier's error too (from the
    # weights and the test rows); the Gram route (below) the same way.
    self.assertBetween(got['svm_error'], got['svm_error_lower'],
                       got['svm_error_upper'])
    # Another solver, or the gradient kernel, keeps the Gram route.
    for changes in (dict(svm_solver='working_set'),
                    dict(use_conjugate_kernel=False)):
      with mock.patch.object(margin, 'max_margin_from_features') as routed:
        other = probe.KernelProbe(dataclasses.replace(spec, **changes),
                                  task).measure(model)['metrics']
      routed.assert_not_called()
      self.assertEqual(other['svm_interior_point'], 0.0)
      self.assertBetween(other['svm_error'], other['svm_error_lower'],
                         other['svm_error_upper'])

  def test_svm_is_tightened_until_its_error_is_pinned_down(self):
    task, model = _task(), _model(5)
    loose = dict(metrics=('svm_error',), svm_tolerance=0.3)
    with mock.patch.object(margin, 'max_margin_from_gram',
                           wraps=margin.max_margin_from_gram) as solves:
      once = probe.KernelProbe(
          probe.ProbeSpec(svm_min_tolerance=None, **loose),
          task).measure(model)['metrics']
    self.assertEqual(solves.call_count, 1)
    # At a relative gap of 0.3 the interval is open (the test bites).
    self.assertLess(once['svm_error_lower'], once['svm_error_upper'])
    with mock.patch.object(margin, 'max_margin_from_gram',
                           wraps=margin.max_margin_from_gram) as solves:
      tight = probe.KernelProbe(probe.ProbeSpec(**loose),
                                task).measure(model)['metrics']
    tolerances = [call.kwargs['tolerance'] for call in solves.call_args_list]
    self.assertEqual(tolerances[0], 0.3)
    self.assertGreater(len(tolerances), 1)
    # Each later round starts from the one before.
    self.assertIsNone(solves.call_args_list[0].kwargs['warm_start'])
    for call in solves.call_args_list[1:]:
      self.assertIsNotNone(call.kwargs['warm_start'])
    self.assertEqual(tight['svm_error_lower'], tight['svm_error_upper'])
    self.assertEqual(tight['svm_error'], tight['svm_error_lower'])
    self.assertEqual(tight['svm_converged'], 1.0)
    self.assertLessEqual(tight['svm_relative_gap'], tolerances[-1])
    # The closed interval is the error of an independent tight solve on the
    # float64 Gram of loop-computed features.
    phi_train = features.gradient_features(model, task.x_train,
                                           method='loop').astype(np.float64)
    phi_test = features.gradient_features(model, task.x_test,
                                          method='loop').astype(np.float64)
    reference = margin.max_margin_from_gram(
        phi_train @ phi_train.T, task.y_train, solver='interior_point',
        tolerance=1e-12)
    self.assertEqual(tight['svm_error'], training.sign_error(
        (phi_test @ phi_train.T) @ reference.dual_coef, task.y_test))
    # svm_max_seconds is one budget for all rounds: each gets what is left.
    with mock.patch.object(margin, 'max_margin_from_gram',
                           wraps=margin.max_margin_from_gram) as solves:
      probe.KernelProbe(probe.ProbeSpec(svm_max_seconds=1000.0, **loose),
                        task).measure(model)
    budgets = [call.kwargs['max_seconds'] for call in solves.call_args_list]
    self.assertGreater(len(budgets), 1)
    self.assertLessEqual(budgets[0], 1000.0)
    self.assertEqual(budgets, sorted(budgets, reverse=True))
    self.assertLess(budgets[-1], budgets[0])

  def test_non_separable_kernel_is_recorded_as_such(self):
    task, model = _task(), _model(3)
    # Identical features for every example: 0 is in the hull of y_i phi_i.
    same = lambda m, x: np.ones((len(x), 4), np.float32)
    spec = probe.ProbeSpec(metrics=('svm_error',))
    got = probe.KernelProbe(spec, task, gradient_fn=same).measure(
        model)['metrics']
    self.assertEqual(got['svm_separable'], 0.0)
    self.assertEqual(got['svm_converged'], 0.0)
    # No positive margin: the certificate bounds nothing.
    self.assertIsNone(got['svm_error_lower'])
    self.assertIsNone(got['svm_error_upper'])
    self.assertBetween(got['svm_error'], 0.0, 1.0)
    separable = probe.KernelProbe(spec, task).measure(model)['metrics']
    self.assertEqual(separable['svm_separable'], 1.0)
    # Stopped before proving either (1 iteration): unknown, not "separable".
    capped = probe.ProbeSpec(metrics=('svm_error',), svm_max_iterations=1)
    unknown = probe.KernelProbe(capped, task).measure(model)['metrics']
    self.assertEqual(unknown['svm_converged'], 0.0)
    self.assertIsNone(unknown['svm_separable'])


class AfterKernelNamesTest(absltest.TestCase):

  def test_record_metrics_keep_the_scripts_names(self):
    measured = {'metrics': {'svm_error': 0.1, 'svm_margin': 0.2,
                            'svm_iterations': 7, 'trans_inv': 0.9},
                'timings': {'svm_seconds': 1.0}}
    self.assertEqual(after_kernel.record_metrics(measured, 'ntk'),
                     {'metrics': {'ntk_linear_error': 0.1, 'ntk_margin': 0.2,
                                  'ntk_svm_iterations': 7,
                                  'ntk_trans_inv': 0.9},
                      'timings': {'ntk_svm_seconds': 1.0}})
    self.assertEqual(after_kernel.record_metrics(measured, 'ak')['metrics'],
                     {'linear_error': 0.1, 'margin': 0.2,
                      'ak_svm_iterations': 7, 'ak_trans_inv': 0.9})

  def test_probe_spec_of_the_experiment(self):
    config = after_kernel.ExperimentConfig(
        num_translations=3, num_zooms=0, ker_alignment_sample_size=0,
        effective_rank_sample_size=5, train_linear_model=False)
    spec = after_kernel.probe_spec(config)
    self.assertNotIn('svm_error', spec.metrics)
    self.assertNotIn('kalignment', spec.metrics)
    self.assertIn('eff_rank', spec.metrics)
    self.assertEqual(spec.invariance_counts()['translation'], 3)
    self.assertEqual(spec.invariance_counts()['zoom'], 0)
    self.assertEqual(spec.effective_rank_sample_size, 5)
    with_svm = after_kernel.probe_spec(
        dataclasses.replace(config, train_linear_model=True))
    self.assertIn('svm_error', with_svm.metrics)
    self.assertEqual(with_svm.svm_device, 'auto')
    on_tf = after_kernel.probe_spec(
        dataclasses.replace(config, svm_device='/CPU:0'))
    self.assertEqual(on_tf.svm_device, '/CPU:0')


class SpectralMetricsTest(absltest.TestCase):

  def test_at_initialization_against_the_eigensystem(self):
    rng = np.random.default_rng(0)
    phi = rng.normal(size=(10, 6))
    system = metrics.eigensystem(phi @ phi.T)
    y = np.where(rng.uniform(size=10) > 0.5, 1.0, -1.0)
    got = probe.spectral_metrics(system, system, y, (1, 10), 3)
    self.assertAlmostEqual(got['energy_top10'], 1.0, places=12)
    self.assertAlmostEqual(got['energy_top1'],
                           abs(system.eigenvectors[:, 0] @ y) /
                           np.linalg.norm(y), places=12)
    for j in (1, 2, 3):
      self.assertAlmostEqual(got[f'eigvec_alignment_{j}'], 1.0, places=12)
      self.assertAlmostEqual(got[f'init_eigvec_energy_{j}'],
                             system.eigenvalues[j - 1], places=9)
    self.assertAlmostEqual(got['kernel_alignment_init'], 1.0, places=12)
    self.assertAlmostEqual(got['subspace_overlap_top3'], 1.0, places=12)
    eigenvalues = np.linalg.eigvalsh(phi @ phi.T)
    self.assertAlmostEqual(got['top_eigenvalue'], eigenvalues.max(),
                           places=9)
    self.assertAlmostEqual(got['trace_effective_rank'],
                           np.trace(phi @ phi.T) / eigenvalues.max(),
                           places=9)
    gram = phi @ phi.T
    self.assertAlmostEqual(got['target_alignment'],
                           y @ gram @ y / (np.linalg.norm(gram) * 10),
                           places=12)


if __name__ == '__main__':
  absltest.main()
