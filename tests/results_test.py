"""Tests for the two `results` modules: kernel_fit/results.py and
studies/results.py (one file, as both share the basename).

kernel_fit.results: errors and MSEs against direct numpy counts, label
mapping {0, 1} -> +-1, the float64 conversion of the Grams, and the flat
record of a FitResult. studies.results (the 0.1.0 path of the result
files): every 0.1.0 name is the object of `studies.store` / `summary` (so
the old path cannot drift from the one store), and a 0.1.0-style round trip
through runs.jsonl and summary.json gives back what was written, with the
summary checked against numpy / scipy by hand.
"""

import json
import math
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
import scipy.stats

from afterkernel import errors
from afterkernel.kernel_fit import results as fit_results
from afterkernel.studies import results as study_results
from afterkernel.studies import store
from afterkernel.studies import summary


class MeasuresTest(absltest.TestCase):

  def test_error_rate_and_mse_against_numpy(self):
    rng = np.random.default_rng(0)
    predictions = rng.normal(size=50)
    predictions[:3] = 0.0  # f = 0 counts as the minus class
    labels = np.where(rng.random(50) > 0.5, 1.0, -1.0)
    predicted = np.array([1.0 if f > 0 else -1.0 for f in predictions])
    self.assertEqual(fit_results.error_rate(predictions, labels),
                     np.count_nonzero(predicted != labels) / 50)
    self.assertAlmostEqual(fit_results.mse(predictions, labels),
                           sum((f - y)**2 for f, y in zip(predictions, labels))
                           / 50, places=12)


class CheckedProblemTest(absltest.TestCase):

  def test_labels_become_signed_and_grams_float64(self):
    train = np.eye(4, dtype=np.float32)
    cross = np.ones((2, 4), dtype=np.float32)
    train64, cross64, y_train, y_test = fit_results.checked_problem(
        train, np.array([0, 1, 1, 0]), cross, np.array([[1], [-1]]))
    self.assertEqual(train64.dtype, np.float64)
    self.assertEqual(cross64.dtype, np.float64)
    np.testing.assert_array_equal(train64, train)
    np.testing.assert_array_equal(y_train, [-1.0, 1.0, 1.0, -1.0])
    np.testing.assert_array_equal(y_test, [1.0, -1.0])

  def test_bad_labels_name_the_argument(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'y_test is empty'):
      fit_results.checked_problem(np.eye(2), [0, 1], np.ones((0, 2)), [])
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'y_train must be 1-D'):
      fit_results.checked_problem(np.eye(2), np.ones((2, 2)), np.ones((1, 2)),
                              [1])
    with self.assertRaisesRegex(errors.AfterKernelError, 'numeric'):
      fit_results.checked_problem(np.eye(2), ['a', 'b'], np.ones((1, 2)), [1])


class RecordTest(absltest.TestCase):

  def test_record_holds_scalars_only(self):
    result = fit_results.FitResult(
        method='ridge', test_error=0.25, test_mse=0.5, train_error=0.0,
        train_mse=0.125, dual_coef=np.ones(3), test_predictions=np.ones(2),
        ridge=0.1, details={'loo_mse': np.float64(0.75), 'converged': True,
                            'grid_loo_mse': (0.75, 0.8)})
    record = result.to_record()
    self.assertEqual(record, {
        'method': 'ridge', 'test_error': 0.25, 'test_mse': 0.5,
        'train_error': 0.0, 'train_mse': 0.125, 'ridge': 0.1,
        'loo_mse': 0.75, 'converged': True})
    self.assertIs(type(record['loo_mse']), float)


class NamesTest(absltest.TestCase):

  def test_every_name_is_the_store_or_summary_object(self):
    for name in ('append_run', 'atomic_write_text', 'claim_output_dir',
                 'config_fingerprint', 'CONFIG_FILE', 'read_runs',
                 'RUNS_FILE', 'to_json'):
      self.assertIs(getattr(study_results, name), getattr(store, name), name)
    for name in ('CONFIDENCE', 'format_table', 'metric_summary',
                 'SUMMARY_FILE'):
      self.assertIs(getattr(study_results, name), getattr(summary, name), name)
    self.assertIs(study_results.summarize, summary.summarize_metrics)
    self.assertIs(study_results.write_summary, summary.write_metrics_summary)


class RoundTripTest(absltest.TestCase):

  def test_runs_and_summary(self):
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
    values = [0.25, 0.5, 0.125]
    for run, value in enumerate(values):
      study_results.append_run(folder, {'run': run, 'metrics': {'error': value}})
    runs = study_results.read_runs(folder)
    self.assertEqual([r['run'] for r in runs], [0, 1, 2])
    path = study_results.write_summary(folder, study_results.summarize(runs))
    self.assertEqual(os.path.basename(path), study_results.SUMMARY_FILE)
    with open(path, encoding='utf-8') as f:
      written = json.load(f)['error']
    std = float(np.std(values, ddof=1))
    self.assertEqual(written['n'], 3)
    self.assertAlmostEqual(written['mean'], sum(values) / 3, places=12)
    self.assertAlmostEqual(written['std'], std, places=12)
    self.assertAlmostEqual(
        written['ci95'],
        scipy.stats.t.ppf(0.975, 2) * std / math.sqrt(3), places=12)


if __name__ == '__main__':
  absltest.main()
