"""Tests of afterkernel/studies/data_scaling.py (experiment 1)."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.studies import data_scaling
from afterkernel.studies import runner
from afterkernel.studies import scaling_common as common
from afterkernel.studies import scaling_fits
from afterkernel.studies import store as store_lib

# Small enough that a whole study runs in a few seconds on 2 loaded cores.
_SMALL = dict(width=16, num_test=60, num_runs=1, batch_size=16,
              feature_batch_size=64)


def _data_scaling_config(**overrides):
  return dataclasses.replace(data_scaling.PRESETS['tiny'], **dict(
      dict(_SMALL, sample_sizes=(20, 40, 80), max_steps=20,
           num_bootstrap=20), **overrides))


class SummaryTest(absltest.TestCase):

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
        store.put(common.record(data_scaling.STUDY, config, {'train_subset': n},
                             run, run, metrics, {}, {}))
    summary = data_scaling.summarize(config, store.records())
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
    table = data_scaling.format_summary(summary)
    self.assertIn('network steeper', table)
    self.assertIn('beta', table)
    self.assertIn('infinite-width NTK', table)
    paths = []
    for fmt in ('png', 'pdf'):
      common.write_outputs(store.directory, summary, data_scaling.STUDY,
                        data_scaling.plot(summary))
      paths.append(os.path.join(store.directory, f'data_scaling.{fmt}'))
    for path in paths:
      self.assertGreater(os.path.getsize(path), 1000)

  def test_summary_reports_excluded_sizes_and_rule_leaves_fingerprint(self):
    sizes = (20, 40, 80, 160)
    config = _data_scaling_config(sample_sizes=sizes, num_runs=2,
                                  num_test=500)
    store = store_lib.ResultStore(tempfile.mkdtemp())
    for run in range(2):
      for n in sizes:
        error = 4.0 / n if (n, run) != (160, 1) else 0.0
        metrics = {f'{p}_test_error': error
                   for p in data_scaling.PREDICTORS}
        store.put(common.record(data_scaling.STUDY, config, {'train_subset': n},
                             run, run, metrics, {}, {'n_test': 500}))
    summary = data_scaling.summarize(config, store.records())
    self.assertEqual(summary['zero_errors'],
                     {'rule': 'exclude', 'excluded_sizes': [160]})
    for fit in summary['fits'].values():
      self.assertEqual(fit['sizes'], [20, 40, 80])
      self.assertAlmostEqual(fit['beta'], 1.0, places=6)
    self.assertIn('n = 160 left out', data_scaling.format_summary(summary))
    continuity = dataclasses.replace(config, zero_errors='continuity')
    self.assertEqual(continuity.fingerprint(), config.fingerprint())
    corrected = data_scaling.summarize(continuity, store.records())
    fit = corrected['fits']['network']
    self.assertEqual(fit['sizes'], list(sizes))
    # Every n is fit, with k errors of the records' 500 test examples
    # (k = 500 * 4 / n) as (k + 1/2) / 501; the zero becomes 0.5 / 501.
    k = np.round(500 * 4.0 / np.array(sizes))
    expected = np.stack([(k + 0.5) / 501, (k + 0.5) / 501])
    expected[1, -1] = 0.5 / 501
    self.assertAlmostEqual(fit['beta'], scaling_fits.fit_curve(
        sizes, expected, num_bootstrap=10, seed=0)['beta'], places=9)
    self.assertGreater(fit['beta'], 1.0)  # The zero pulls the mean down.
    self.assertIn('continuity', data_scaling.format_summary(corrected))


class StudyTest(absltest.TestCase):

  def test_data_scaling_runs_resumes_and_refuses_other_configs(self):
    directory = tempfile.mkdtemp()
    config = _data_scaling_config()
    logs = []
    summary = data_scaling.run(config, directory, log=logs.append)
    store = store_lib.ResultStore(directory)
    self.assertLen(store.keys(), 3)
    for predictor in data_scaling.PREDICTORS:
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
    again = data_scaling.run(config, directory, log=logs.append)
    self.assertTrue(any('skipped' in line for line in logs))
    self.assertEqual(mtimes, {k: os.path.getmtime(store.path(k))
                              for k in store.keys()})
    self.assertEqual(again['fits'], summary['fits'])
    with self.assertRaisesRegex(errors.AfterKernelError, 'different'):
      data_scaling.run(dataclasses.replace(config, learning_rate=0.3),
                          directory)

  def test_runs_on_the_runner_with_a_given_executor(self):
    # The executor seam: one unit per run with its missing sizes, none on
    # a resume.
    units = []

    def executor(todo, work):
      units.extend(todo)
      return runner.local_executor(todo, work)

    config = _data_scaling_config(num_runs=2)
    directory = tempfile.mkdtemp()
    data_scaling.run(config, directory, log=lambda m: None,
                     executor=executor)
    self.assertEqual([(u.run, u.points) for u in units],
                     [(0, (20, 40, 80)), (1, (20, 40, 80))])
    units.clear()
    data_scaling.run(config, directory, log=lambda m: None,
                     executor=executor)
    self.assertEqual(units, [])


class WidthAndAblationTest(absltest.TestCase):

  def test_width_grid_records_one_point_per_width_at_fixed_n(self):
    directory = tempfile.mkdtemp()
    config = _data_scaling_config(sample_sizes=(40,), widths=(8, 32))
    summary = data_scaling.run(config, directory, log=lambda m: None)
    store = store_lib.ResultStore(directory)
    points = sorted((r['point']['train_subset'], r['point']['width'],
                     r['metrics']['num_parameters']) for r in store.records())
    self.assertEqual([p[:2] for p in points], [(40, 8), (40, 32)])
    # The width was applied: the wider net has more parameters (FC 64-w-w-1).
    for width, (_, _, count) in zip((8, 32), points):
      self.assertEqual(count, 64 * width + width + width * width + width +
                       width + 1)
    self.assertEqual(summary['widths'], [8, 32])
    self.assertEqual(summary['fits'], {})
    text = data_scaling.format_summary(summary)
    self.assertIn('width', text.splitlines()[0])
    self.assertTrue(os.path.exists(os.path.join(directory,
                                                'data_scaling.png')))
    with self.assertRaisesRegex(errors.AfterKernelError, 'widths'):
      _data_scaling_config(sample_sizes=(40,), widths=(8, 8)).validate()

  def test_no_early_stopping_reports_the_last_step(self):
    config = _data_scaling_config()
    directory = tempfile.mkdtemp()
    data_scaling.run(config, directory, log=lambda m: None)
    records = store_lib.ResultStore(directory).records()
    late = data_scaling.summarize(
        dataclasses.replace(config, early_stopping=False), records)
    self.assertEqual(late['error_metrics']['network'],
                     'network_final_test_error')
    curve = scaling_fits.values_by_run(records, 'network_final_test_error',
                                       [20, 40, 80], 'train_subset', 1)
    self.assertTrue(np.all(curve >= scaling_fits.values_by_run(
        records, 'network_test_error', [20, 40, 80], 'train_subset', 1)))
    # The summary only: the fingerprint (so the records) is shared.
    self.assertEqual(config.fingerprint(), dataclasses.replace(
        config, early_stopping=False).fingerprint())

  def test_a_myrtle_net_has_no_infinite_kernel(self):
    config = _data_scaling_config(architecture='myrtle5', width=4,
                                  max_steps=10)
    summary = data_scaling.run(config, tempfile.mkdtemp(),
                               log=lambda m: None)
    metrics = summary['entries'][0]['metrics']
    self.assertIn('init_ntk_test_error', metrics)
    self.assertIn('network_test_error', metrics)
    self.assertNotIn('infinite_ntk_test_error', metrics)
    self.assertIsNone(summary['fits']['infinite_ntk'])

  def test_ablation_presets_change_one_thing_each(self):
    cpu = data_scaling.PRESETS['cpu']
    for name, change in data_scaling.ABLATIONS.items():
      config = data_scaling.preset(name)
      config.validate()
      changed = {f for f in change
                 if getattr(config, f) != getattr(cpu, f)}
      self.assertEqual(changed, set(change), name)


if __name__ == '__main__':
  absltest.main()
