"""Tests of afterkernel.studies.second_order: the second-order Taylor study.

(Moved from tests/taylor_test.py with the study; assertions unchanged.)
"""

import dataclasses
import json
import os
import tempfile

from absl.testing import absltest

from afterkernel import errors
from afterkernel.studies import second_order
from afterkernel.studies import store

_TINY = dataclasses.replace(second_order.PRESETS['tiny'], num_train=60,
                            num_test=40, width=8, epochs=2)


def _quiet(message):
  del message


class StudyTest(absltest.TestCase):

  def test_validate(self):
    for bad in (dict(model_kinds=('network', 'cubic')), dict(epochs=0),
                dict(loss='hinge'), dict(momentum=1.0),
                dict(dataset='synthetic', architecture='vgg'),
                dict(h_only_delta_init_scale=-0.1), dict(model_kinds=()),
                dict(expansion_point='final'), dict(expansion_epochs=0),
                dict(expansion_num_train=-1), dict(num_train_grid=(10, 0)),
                dict(num_train_grid=(10, 10)), dict(zero_errors='floor')):
      with self.assertRaises(errors.AfterKernelError):
        dataclasses.replace(_TINY, **bad).validate()
    for preset in second_order.PRESETS.values():
      preset.validate()

  def test_tiny_study_runs_resumes_and_extends(self):
    with tempfile.TemporaryDirectory() as directory:
      config = dataclasses.replace(_TINY, model_kinds=('network', 'h_only'))
      entries = second_order.run_study(config, directory, log=_quiet)
      self.assertEqual([e['point']['model'] for e in entries],
                       ['network', 'h_only'])
      for entry in entries:
        error = entry['metrics']['test_error']['mean']
        self.assertTrue(0.0 <= error <= 1.0)
      record = store.ResultStore(directory).get(
          second_order.record_key('h_only', 0))
      curve = record['curves']['test_error_by_epoch']
      self.assertLen(curve, 2)
      self.assertEqual(record['metrics']['best_test_error'], min(curve))
      self.assertEqual(record['metrics']['test_error'], curve[-1])
      self.assertGreater(record['metrics']['second_order_rms'], 0.0)
      for name in ('summary.json', 'summary.csv',
                   f'{second_order.FIGURE_NAME}.png',
                   f'{second_order.FIGURE_NAME}.pdf'):
        self.assertTrue(os.path.exists(os.path.join(directory, name)), name)
      mtime = os.path.getmtime(store.ResultStore(directory).path(
          second_order.record_key('network', 0)))
      messages = []
      extended = dataclasses.replace(config,
                                     model_kinds=('network', 'h_only',
                                                  'linear'))
      entries = second_order.run_study(extended, directory, log=messages.append)
      self.assertEqual([e['point']['model'] for e in entries],
                       ['network', 'linear', 'h_only'])
      self.assertTrue(any('linearization' in m for m in messages))
      self.assertFalse(any('H_only' in m for m in messages))  # Not re-run.
      self.assertEqual(mtime, os.path.getmtime(store.ResultStore(
          directory).path(second_order.record_key('network', 0))))
      self.assertIn('H_only', second_order.format_table(entries))
      with self.assertRaisesRegex(errors.AfterKernelError, 'different'):
        second_order.run_study(dataclasses.replace(config, epochs=3), directory,
                         log=_quiet)


  def test_default_points_and_keys_are_the_model_kinds(self):
    self.assertEqual(second_order.points(_TINY), second_order.MODEL_KINDS)
    self.assertEqual(second_order.record_key('h_full', 2),
                     'second_order_h_full_run2')
    self.assertEqual(_TINY.expansion_point, 'init')
    self.assertFalse(_TINY.h_only_unbiased)

  def test_paper_grid_expands_at_the_trained_base_network(self):
    config = dataclasses.replace(
        second_order.PRESETS['tiny_paper'], num_train_grid=(30, 60, 90),
        num_test=30, width=8, epochs=1, expansion_epochs=1,
        model_kinds=('network', 'h_full'))
    self.assertEqual(config.pool_size(), 90)
    with tempfile.TemporaryDirectory() as directory:
      entries = second_order.run_study(config, directory, log=_quiet)
      self.assertEqual([(e['point']['model'], e['point']['train_subset'])
                        for e in entries],
                       [(k, m) for k in ('network', 'h_full')
                        for m in (30, 60, 90)])
      result_store = store.ResultStore(directory)
      for size in (30, 60, 90):
        records = {kind: result_store.get(second_order.record_key(
            (kind, size), 0)) for kind in ('network', 'h_full')}
        for record in records.values():
          self.assertEqual(record['data']['n_train'], size)
          self.assertEqual(record['metrics']['expansion_num_train'], size)
        network, full = (records[k]['metrics'] for k in ('network', 'h_full'))
        # Every model starts at w0, the trained base network: the network
        # and g2^full (= f(w0, x) at delta = 0) have its test error.
        self.assertEqual(network['initial_test_error'],
                         network['expansion_test_error'])
        self.assertEqual(full['initial_test_error'],
                         network['expansion_test_error'])
        self.assertGreater(full['second_order_rms'], 0.0)
      with open(os.path.join(directory,
                             second_order.report.FITS_FILE)) as f:
        fits = json.load(f)
      self.assertEqual(sorted(fits), ['h_full', 'network'])
      for fit in fits.values():
        if fit is not None:
          self.assertGreater(fit['A'], 0.0)
      for name in (second_order.report.SCALING_FIGURE_NAME,
                   second_order.FIGURE_NAME):
        self.assertTrue(os.path.exists(os.path.join(directory,
                                                    f'{name}.png')), name)
      table = second_order.format_table(entries)
      self.assertIn('H_full m=90', table)
      self.assertIn('L(m) = A (1/m + alpha)^beta', table)

  @absltest.skipUnless(os.environ.get('AFTERKERNEL_SLOW_TESTS'),
                       'slow; set AFTERKERNEL_SLOW_TESTS=1')
  def test_fixed_expansion_size_trains_the_base_on_k_examples(self):
    config = dataclasses.replace(
        second_order.PRESETS['tiny_paper'], num_train_grid=(20, 40),
        expansion_num_train=50, num_test=30, width=8, epochs=1,
        expansion_epochs=1, model_kinds=('h_full',))
    self.assertEqual(config.pool_size(), 50)
    with tempfile.TemporaryDirectory() as directory:
      second_order.run_study(config, directory, log=_quiet)
      for size in (20, 40):
        record = store.ResultStore(directory).get(
            second_order.record_key(('h_full', size), 0))
        self.assertEqual(record['metrics']['expansion_num_train'], 50)
        self.assertEqual(record['data']['n_train'], size)

if __name__ == '__main__':
  absltest.main()
