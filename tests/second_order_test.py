"""Tests of afterkernel.studies.second_order: the second-order Taylor study.

(Moved from tests/taylor_test.py with the study; assertions unchanged.)
"""

import dataclasses
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
                dict(h_only_delta_init_scale=-0.1), dict(model_kinds=())):
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


if __name__ == '__main__':
  absltest.main()
