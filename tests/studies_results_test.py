"""Tests for afterkernel.studies.results, the 0.1.0 path of the result files.

(Named after the package path: kernel_fit/results.py has the same
basename.) Every 0.1.0 name is the object of `studies.store` / `summary`
(so the old path cannot drift from the one store), and a 0.1.0-style round
trip through runs.jsonl and summary.json gives back what was written, with
the summary checked against numpy / scipy by hand.
"""

import json
import math
import os
import shutil
import tempfile

from absl.testing import absltest
import numpy as np
import scipy.stats

from afterkernel.studies import results
from afterkernel.studies import store
from afterkernel.studies import summary


class NamesTest(absltest.TestCase):

  def test_every_name_is_the_store_or_summary_object(self):
    for name in ('append_run', 'atomic_write_text', 'claim_output_dir',
                 'config_fingerprint', 'CONFIG_FILE', 'read_runs',
                 'RUNS_FILE', 'to_json'):
      self.assertIs(getattr(results, name), getattr(store, name), name)
    for name in ('CONFIDENCE', 'format_table', 'metric_summary',
                 'SUMMARY_FILE'):
      self.assertIs(getattr(results, name), getattr(summary, name), name)
    self.assertIs(results.summarize, summary.summarize_metrics)
    self.assertIs(results.write_summary, summary.write_metrics_summary)


class RoundTripTest(absltest.TestCase):

  def test_runs_and_summary(self):
    folder = tempfile.mkdtemp()
    self.addCleanup(shutil.rmtree, folder, ignore_errors=True)
    values = [0.25, 0.5, 0.125]
    for run, value in enumerate(values):
      results.append_run(folder, {'run': run, 'metrics': {'error': value}})
    runs = results.read_runs(folder)
    self.assertEqual([r['run'] for r in runs], [0, 1, 2])
    path = results.write_summary(folder, results.summarize(runs))
    self.assertEqual(os.path.basename(path), results.SUMMARY_FILE)
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
