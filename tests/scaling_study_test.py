"""Tests of afterkernel/scaling_study.py (experiments 1-3 of Vyas et al.)."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import infinite_ntk
from afterkernel import kernel_fit
from afterkernel.studies import scaling_study as ss
from afterkernel.studies import store as store_lib

# Small enough that a whole study runs in a few seconds on 2 loaded cores.
_SMALL = dict(width=16, num_test=60, num_runs=1, batch_size=16,
              feature_batch_size=64)


def _data_scaling_config(**overrides):
  return dataclasses.replace(ss.DATA_SCALING_PRESETS['tiny'], **dict(
      dict(_SMALL, sample_sizes=(20, 40, 80), max_steps=20,
           num_bootstrap=20), **overrides))


class ConfigTest(absltest.TestCase):

  def test_presets_validate(self):
    for presets in ss.PRESETS.values():
      for config in presets.values():
        config.validate()

  def test_bad_fields_raise_one_line(self):
    cases = [
        (ss.DataScalingConfig, dict(sample_sizes=(10, 20))),  # < 3 sizes.
        (ss.DataScalingConfig, dict(sample_sizes=(10, 10, 20))),
        (ss.DataScalingConfig, dict(kernel_method='lasso')),
        (ss.DataScalingConfig, dict(momentum=1.0)),
        (ss.DataScalingConfig, dict(dataset='imagenet')),
        (ss.AfterKernelVsMConfig, dict(reference_fit_size=7)),
        (ss.AfterKernelVsMConfig, dict(curve_train_sizes=(3,))),
        (ss.AfterKernelVsMConfig, dict(fit_examples='old')),
        (ss.AfterKernelVsMConfig, dict(epochs=-1)),
        (ss.KernelDynamicsConfig, dict(num_snapshots=0)),
    ]
    for cls, fields in cases:
      with self.assertRaises(errors.AfterKernelError) as raised:
        cls(**fields).validate()
      self.assertNotIn('\n', str(raised.exception))

  def test_preset_overrides_and_unknown_field(self):
    config = ss.preset(ss.DATA_SCALING, 'cpu', max_steps=7)
    self.assertEqual(config.max_steps, 7)
    self.assertEqual(config.dataset, 'mnist')
    with self.assertRaises(errors.AfterKernelError):
      ss.preset(ss.DATA_SCALING, 'cpu', epochs=3)
    with self.assertRaises(errors.AfterKernelError):
      ss.preset(ss.DATA_SCALING, 'gpu')

  def test_fingerprint_ignores_growable_fields_only(self):
    base = _data_scaling_config()
    self.assertEqual(base.fingerprint(), dataclasses.replace(
        base, num_runs=5, sample_sizes=(1, 2, 3)).fingerprint())
    self.assertNotEqual(base.fingerprint(), dataclasses.replace(
        base, learning_rate=0.5).fingerprint())

  def test_log_spaced_steps(self):
    steps = ss.log_spaced_steps(1000, 10)
    self.assertEqual(steps[0], 1)
    self.assertEqual(steps[-1], 1000)
    self.assertEqual(steps, sorted(set(steps)))
    ratios = np.diff(np.log(steps))
    self.assertLess(np.ptp(ratios[3:]), 0.06)  # Equal ratios, up to rounding.
    self.assertEqual(ss.log_spaced_steps(3, 10), [1, 2, 3])
    config = ss.KernelDynamicsConfig(train_steps=50, num_snapshots=4)
    self.assertEqual(config.snapshot_steps()[0], 0)


class PowerLawSummaryTest(absltest.TestCase):

  def test_fitted_beta_of_a_synthetic_store_recovers_the_truth(self):
    truth = {'network': (2.0, 2e-4, 0.9), 'init_ntk': (1.5, 1e-4, 0.5),
             'infinite_ntk': (1.2, 5e-5, 0.35)}
    sizes = (100, 200, 400, 800, 1600, 3200, 6400)
    config = _data_scaling_config(sample_sizes=sizes, num_runs=4,
                                  num_test=100000, num_bootstrap=200)
    rng = np.random.default_rng(3)
    store = store_lib.ResultStore(tempfile.mkdtemp())
    for run in range(config.num_runs):
      for n in sizes:
        metrics = {}
        for predictor, (a, alpha, beta) in truth.items():
          metrics[f'{predictor}_test_error'] = float(
              a * (1 / n + alpha)**beta * np.exp(rng.normal(0, 0.03)))
        store.put(ss._record(ss.DATA_SCALING, config, {'train_subset': n},
                             run, run, metrics, {}, {}))
    summary = ss.summarize_data_scaling(config, store.records())
    self.assertEqual(summary['sizes'], list(sizes))
    for predictor, (_, _, beta) in truth.items():
      fit = summary['fits'][predictor]
      self.assertAlmostEqual(fit['beta'], beta, delta=0.1 * beta)
      self.assertBetween(beta, fit['beta_low'] - 0.02, fit['beta_high'] + 0.02)
      self.assertLessEqual(fit['beta_low'], fit['beta'])
      self.assertGreaterEqual(fit['beta_high'], fit['beta'])
      self.assertEqual(fit['num_runs'], 4)
      self.assertTrue(fit['identified'])
      self.assertEqual(fit['interval'], 'per_run_t')
      self.assertLen(fit['run_betas'], 4)
      # The t interval is centred on beta and its width follows the spread
      # of the per-run exponents: t_{3, 0.975} = 3.182.
      half = 3.182 * np.std(fit['run_betas'], ddof=1) / 2
      self.assertAlmostEqual(fit['beta_high'] - fit['beta'], half, places=3)
      self.assertAlmostEqual(fit['beta'] - fit['beta_low'], half, places=3)
    self.assertGreater(summary['fits']['network']['beta_low'],
                       summary['fits']['init_ntk']['beta_high'])
    # Paired by run: beta_network - beta_kernel, true 0.4 and 0.55.
    for kernel, gap in (('init_ntk', 0.4), ('infinite_ntk', 0.55)):
      diff = summary['beta_differences'][kernel]
      self.assertEqual(diff['num_runs'], 4)
      self.assertBetween(gap, diff['low'], diff['high'])
      self.assertGreater(diff['low'], 0)
      expected = (np.array(summary['fits']['network']['run_betas']) -
                  np.array(summary['fits'][kernel]['run_betas']))
      np.testing.assert_allclose(diff['per_run'], expected, rtol=1e-9)
    table = ss.format_data_scaling(summary)
    self.assertIn('network steeper', table)
    self.assertIn('beta', table)
    self.assertIn('infinite-width NTK', table)
    paths = []
    for fmt in ('png', 'pdf'):
      ss._write_outputs(store.directory, summary, ss.DATA_SCALING,
                        ss.plot_data_scaling(summary))
      paths.append(os.path.join(store.directory, f'data_scaling.{fmt}'))
    for path in paths:
      self.assertGreater(os.path.getsize(path), 1000)

  def test_saturated_curve_is_flagged_unidentified_in_the_table(self):
    # Saturated from the second size on (the review's example): any beta
    # from 2 to 20 fits about as well, so the table must say so.
    sizes = (500, 1000, 2000, 4000, 8000, 16000, 32000)
    flat = np.array([.2, .12, .08, .061, .060, .0605, .0598])
    fit = ss.fit_curve(sizes, np.stack([flat, flat * 1.01]),
                       num_bootstrap=10, seed=0)
    self.assertFalse(fit['identified'])
    self.assertLess(fit['num_points_in_power_regime'], 3)
    summary = {'entries': [], 'sizes': list(sizes),
               'fits': {'network': fit, 'init_ntk': None,
                        'infinite_ntk': None},
               'zero_errors': {'rule': 'exclude', 'excluded_sizes': []}}
    table = ss.format_data_scaling(summary)
    self.assertIn('NO: saturated', table)
    self.assertIn('zero errors: none', table)

  def test_exclude_rule_drops_a_size_with_a_zero_error_from_every_curve(self):
    sizes = [10, 20, 40, 80, 160]
    network = np.array([[0.2, 0.1, 0.05, 0.025, 0.0],
                        [0.2, 0.1, 0.05, 0.025, 0.01]])
    kernel = network + 0.01
    counts = np.full(network.shape, 1000.0)
    kept, curves, excluded = ss.zero_error_rule(
        sizes, {'network': network, 'kernel': kernel}, counts, 'exclude')
    self.assertEqual(kept, [10, 20, 40, 80])
    self.assertEqual(excluded, [160])
    # The kernel had no zero at n = 160 but is fit on the same sizes.
    np.testing.assert_array_equal(curves['kernel'], kernel[:, :4])
    fit = ss.fit_curve(kept, curves['network'], num_bootstrap=10, seed=0)
    self.assertAlmostEqual(fit['beta'], 1.0, places=6)  # Exact 1/n law.
    self.assertEqual(fit['sizes'], kept)
    with self.assertRaisesRegex(errors.AfterKernelError, 'zero_error_rule'):
      ss.fit_curve(sizes, network, num_bootstrap=10, seed=0)

  def test_continuity_rule_is_k_plus_half_over_m_plus_one(self):
    errors_by_run = np.array([[0.5, 0.0, np.nan]])
    counts = np.array([[10.0, 10.0, np.nan]])
    kept, curves, excluded = ss.zero_error_rule(
        [1, 2, 3], {'a': errors_by_run}, counts, 'continuity')
    self.assertEqual((kept, excluded), ([1, 2, 3], []))
    np.testing.assert_allclose(curves['a'], [[5.5 / 11, 0.5 / 11, np.nan]])
    with self.assertRaises(errors.AfterKernelError):
      ss.zero_error_rule([1], {'a': errors_by_run[:, :1]}, counts[:, :1],
                         'floor')

  def test_summary_reports_excluded_sizes_and_rule_leaves_fingerprint(self):
    sizes = (20, 40, 80, 160)
    config = _data_scaling_config(sample_sizes=sizes, num_runs=2,
                                  num_test=500)
    store = store_lib.ResultStore(tempfile.mkdtemp())
    for run in range(2):
      for n in sizes:
        error = 4.0 / n if (n, run) != (160, 1) else 0.0
        metrics = {f'{p}_test_error': error
                   for p in ss.DATA_SCALING_PREDICTORS}
        store.put(ss._record(ss.DATA_SCALING, config, {'train_subset': n},
                             run, run, metrics, {}, {'n_test': 500}))
    summary = ss.summarize_data_scaling(config, store.records())
    self.assertEqual(summary['zero_errors'],
                     {'rule': 'exclude', 'excluded_sizes': [160]})
    for fit in summary['fits'].values():
      self.assertEqual(fit['sizes'], [20, 40, 80])
      self.assertAlmostEqual(fit['beta'], 1.0, places=6)
    self.assertIn('n = 160 left out', ss.format_data_scaling(summary))
    continuity = dataclasses.replace(config, zero_errors='continuity')
    self.assertEqual(continuity.fingerprint(), config.fingerprint())
    corrected = ss.summarize_data_scaling(continuity, store.records())
    fit = corrected['fits']['network']
    self.assertEqual(fit['sizes'], list(sizes))
    # Every n is fit, with k errors of the records' 500 test examples
    # (k = 500 * 4 / n) as (k + 1/2) / 501; the zero becomes 0.5 / 501.
    k = np.round(500 * 4.0 / np.array(sizes))
    expected = np.stack([(k + 0.5) / 501, (k + 0.5) / 501])
    expected[1, -1] = 0.5 / 501
    self.assertAlmostEqual(fit['beta'], ss.fit_curve(
        sizes, expected, num_bootstrap=10, seed=0)['beta'], places=9)
    self.assertGreater(fit['beta'], 1.0)  # The zero pulls the mean down.
    self.assertIn('continuity', ss.format_data_scaling(corrected))


class BuildingBlocksTest(absltest.TestCase):

  def test_empirical_ntk_of_the_network_is_structured_and_exact(self):
    # The study's kernels use the factored path on NTKBiasDense layers; it
    # must equal the Gram of slow per-example 'loop' gradient features.
    x = np.random.default_rng(0).random((12, 5, 3)).astype(np.float32)
    model = infinite_ntk.build_ntk_fully_connected((5, 3), 24, 2,
                                                   bias_std=0.6, seed=4)
    kernel = kernel_fit.EmpiricalNTK(model, 8)
    self.assertTrue(kernel.structured)
    phi = features.gradient_features(model, x, method='loop').astype(
        np.float64)
    slow = phi @ phi.T
    np.testing.assert_allclose(kernel.gram(x), slow, rtol=1e-4,
                               atol=1e-6 * np.abs(slow).max())
    np.testing.assert_allclose(kernel.gram(x[:5], x[5:]), slow[:5, 5:],
                               rtol=1e-4, atol=1e-6 * np.abs(slow).max())

  def test_step_callback_snapshot_at_step_0_is_the_init_ntk(self):
    rng = np.random.default_rng(1)
    x = rng.random((40, 6)).astype(np.float32)
    y = np.where(x[:, 0] > 0.5, 1.0, -1.0).astype(np.float32)
    model = infinite_ntk.build_ntk_fully_connected((6,), 32, 1, seed=2)
    init = kernel_fit.EmpiricalNTK(model, 64).gram(x)
    init_weights = [w.copy() for w in model.get_weights()]
    seen = []
    snapshots = ss.KernelSnapshots(64, x, y)

    def record(step, m):
      seen.append(step)
      snapshots(step, m)

    ss.train_network(model, x, y, learning_rate=0.5, momentum=0.9,
                     batch_size=8, steps=7, seed=0,
                     callbacks=[ss.StepCallback([0, 1, 3, 7], record)])
    self.assertEqual(seen, [0, 1, 3, 7])
    np.testing.assert_allclose(snapshots.kernels[0].gram(x), init, rtol=1e-6)
    # Later snapshots saw training; the last one is the final model's kernel.
    self.assertGreater(np.abs(snapshots.kernels[7].gram(x) - init).max(),
                       1e-4 * np.abs(init).max())
    np.testing.assert_allclose(snapshots.kernels[7].gram(x),
                               kernel_fit.EmpiricalNTK(model, 64).gram(x),
                               rtol=1e-5)
    self.assertFalse(all(np.array_equal(a, b) for a, b in
                         zip(init_weights, model.get_weights())))
    self.assertEqual([c[0] for c in snapshots.evaluator.curve], [0, 1, 3, 7])

  def test_zero_steps_leave_the_model_unchanged(self):
    x = np.random.default_rng(2).random((10, 4)).astype(np.float32)
    model = infinite_ntk.build_ntk_fully_connected((4,), 8, 1, seed=0)
    before = [w.copy() for w in model.get_weights()]
    seen = []
    ss.train_network(model, x, np.ones(10, np.float32), learning_rate=1.0,
                     momentum=0.0, batch_size=4, steps=0, seed=0,
                     callbacks=[ss.StepCallback([0, 1], lambda s, m:
                                                seen.append(s))])
    self.assertEqual(seen, [0])
    for a, b in zip(before, model.get_weights()):
      np.testing.assert_array_equal(a, b)

  def test_network_sgd_matches_kernel_sgd_for_a_linear_model(self):
    # f(x) = x.w with w_0 = 0 is its own linearization with kernel x.x', so
    # full-batch Keras training (loss, momentum, learning rate as here) must
    # trace exactly the path of kernel_fit.fit_sgd on K = X X^T.
    rng = np.random.default_rng(5)
    x, x_test = rng.normal(size=(24, 5)), rng.normal(size=(30, 5))
    y = np.sign(x[:, 0] + 0.3 * rng.normal(size=24))
    y_test = np.sign(x_test[:, 0])
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(1, use_bias=False,
                                 kernel_initializer='zeros')(inputs)
    model = keras.Model(inputs, outputs)
    evaluator = ss.NetworkEvaluator(x_test.astype(np.float32), y_test)
    ss.train_network(model, x.astype(np.float32), y.astype(np.float32),
                     learning_rate=0.05, momentum=0.8, batch_size=24,
                     steps=12, seed=0,
                     callbacks=[ss.StepCallback([12], evaluator)])
    result = kernel_fit.fit_sgd(x @ x.T, y, x_test @ x.T, y_test,
                                learning_rate=0.05, batch_size=24,
                                momentum=0.8, max_steps=12)
    self.assertEqual(int(result.curve.steps[-1]), 12)
    self.assertAlmostEqual(evaluator.curve[-1][2], result.curve.test_mse[-1],
                           places=4)
    self.assertAlmostEqual(evaluator.curve[-1][1],
                           result.curve.test_error[-1])


class StudiesTest(absltest.TestCase):

  def test_data_scaling_runs_resumes_and_refuses_other_configs(self):
    directory = tempfile.mkdtemp()
    config = _data_scaling_config()
    logs = []
    summary = ss.run_data_scaling(config, directory, log=logs.append)
    store = store_lib.ResultStore(directory)
    self.assertLen(store.keys(), 3)
    for predictor in ss.DATA_SCALING_PREDICTORS:
      self.assertIsNotNone(summary['fits'][predictor])
    record = store.records()[0]
    for metric in ('network_test_error', 'init_ntk_test_error',
                   'infinite_ntk_test_error', 'init_ntk_best_step'):
      self.assertBetween(record['metrics'][metric], 0, 1e9)
    for name in ('data_scaling.png', 'data_scaling.pdf', 'fits.json',
                 'summary.csv', 'summary.json'):
      self.assertTrue(os.path.exists(os.path.join(directory, name)), name)
    mtimes = {k: os.path.getmtime(store.path(k)) for k in store.keys()}
    logs.clear()
    again = ss.run_data_scaling(config, directory, log=logs.append)
    self.assertTrue(any('skipped' in line for line in logs))
    self.assertEqual(mtimes, {k: os.path.getmtime(store.path(k))
                              for k in store.keys()})
    self.assertEqual(again['fits'], summary['fits'])
    with self.assertRaisesRegex(errors.AfterKernelError, 'different'):
      ss.run_data_scaling(dataclasses.replace(config, learning_rate=0.3),
                          directory)

  def test_after_kernel_with_zero_epochs_is_the_init_kernel(self):
    # With no training, K_m for m > 0 is the NTK at init: the same seed,
    # fit examples ('subset') and SGD order give identical fits to m = 0.
    config = dataclasses.replace(
        ss.AFTER_KERNEL_VS_M_PRESETS['tiny'], **dict(
            _SMALL, train_sizes=(0, 30), fit_sizes=(10, 20, 30),
            reference_fit_size=20, epochs=0, fit_steps=15))
    summary = ss.run_after_kernel_vs_m(config, tempfile.mkdtemp(),
                                       log=lambda m: None)
    by_point = {(e['point']['train_subset'], e['point']['fit_size']):
                e['metrics']['after_kernel_test_mse']['mean']
                for e in summary['entries']}
    for n in (10, 20, 30):
      self.assertEqual(by_point[(0, n)], by_point[(30, n)])
    # Trained for one epoch, K_30 differs from K_0.
    trained = ss.run_after_kernel_vs_m(
        dataclasses.replace(config, epochs=2), tempfile.mkdtemp(),
        log=lambda m: None)
    moved = {(e['point']['train_subset'], e['point']['fit_size']):
             e['metrics']['after_kernel_test_mse']['mean']
             for e in trained['entries']}
    self.assertEqual(moved[(0, 20)], by_point[(0, 20)])
    self.assertNotEqual(moved[(30, 20)], by_point[(30, 20)])
    self.assertIn('K_30', ss.format_after_kernel_vs_m(trained))

  def test_fresh_examples_need_m_plus_n(self):
    config = dataclasses.replace(ss.AFTER_KERNEL_VS_M_PRESETS['tiny'],
                                 fit_examples='fresh')
    self.assertEqual(ss._needed_examples(config, 200, 50), 250)
    self.assertEqual(ss._fit_indices(config, 200, 50), slice(200, 250))
    subset = dataclasses.replace(config, fit_examples='subset')
    self.assertEqual(ss._needed_examples(subset, 200, 50), 200)
    self.assertEqual(ss._fit_indices(subset, 200, 50), slice(0, 50))

  def test_kernel_dynamics_records_every_snapshot(self):
    config = dataclasses.replace(ss.DYNAMICS_PRESETS['tiny'], **dict(
        _SMALL, num_train=40, train_steps=12, num_snapshots=3, fit_steps=10))
    directory = tempfile.mkdtemp()
    summary = ss.run_kernel_dynamics(config, directory, log=lambda m: None)
    self.assertEqual(summary['steps'], config.snapshot_steps())
    self.assertEqual(summary['steps'], [0, 1, 3, 12])
    self.assertTrue(os.path.exists(os.path.join(directory,
                                                'kernel_dynamics.png')))
    self.assertIn('K^t', ss.format_kernel_dynamics(summary))


if __name__ == '__main__':
  absltest.main()
