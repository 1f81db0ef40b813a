"""Tests of afterkernel.studies.nads: NAD tasks and the NAD study (the NAD
math is tested in anisotropy_test)."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.studies import nads
from afterkernel.studies import store


def _quiet(message):
  del message


class DirectionTaskTest(absltest.TestCase):

  def test_labels_are_the_side_of_the_hyperplane_and_margin_opens_a_gap(self):
    v = np.random.default_rng(0).standard_normal((4, 4, 1))
    x, y = nads.direction_task(v, 500, 1)
    unit = v / np.linalg.norm(v)
    projection = np.tensordot(x, unit, axes=3)
    np.testing.assert_array_equal(y, (projection > 0).astype(np.float32))
    self.assertAlmostEqual(float(y.mean()), 0.5, delta=0.08)
    x, y = nads.direction_task(v, 500, 1, margin=0.5)
    projection = np.tensordot(x, unit, axes=3)
    np.testing.assert_array_equal(y, (projection > 0).astype(np.float32))
    self.assertGreaterEqual(np.abs(projection).min(), 0.5 - 1e-5)
    with self.assertRaises(errors.AfterKernelError):
      nads.direction_task(np.zeros(3), 5, 0)


class StudyTest(absltest.TestCase):

  def test_validate(self):
    tiny = nads.PRESETS['tiny']
    for bad in (dict(nad_indices=(0,)), dict(nad_indices=(37,)),
                dict(architecture='resnet'), dict(epochs=0),
                dict(margin=-1.0), dict(loss='hinge'), dict(nad_indices=())):
      with self.assertRaises(errors.AfterKernelError):
        dataclasses.replace(tiny, **bad).validate()
    for preset in nads.PRESETS.values():
      preset.validate()

  def test_tiny_study_cnn_tasks_differ_runs_and_resumes(self):
    config = nads.PRESETS['tiny']
    with tempfile.TemporaryDirectory() as directory:
      entries = nads.run_study(config, directory, log=_quiet)
      by_index = {e['point']['nad_index']: e['metrics'] for e in entries}
      self.assertEqual(sorted(by_index), [1, 2, 36])
      # The top NAD's task is learned, the last one's is not (CNN).
      for model in ('nn', 'lin'):
        top = by_index[1][f'{model}_test_accuracy']['mean']
        last = by_index[36][f'{model}_test_accuracy']['mean']
        self.assertGreater(top - last, 0.2, model)
      for name in ('summary.json', 'summary.csv', 'nads_run0.npz',
                   f'{nads.FIGURE_NAME}.png', f'{nads.FIGURE_NAME}.pdf',
                   f'{nads.DIRECTIONS_FIGURE_NAME}.png'):
        self.assertTrue(os.path.exists(os.path.join(directory, name)), name)
      messages = []
      again = nads.run_study(config, directory, log=messages.append)
      self.assertTrue(any('skipped' in m for m in messages))
      self.assertEqual(again, entries)
      self.assertIn('s_j/s_1', nads.format_table(entries))
      self.assertLen(store.ResultStore(directory).keys(), 3)
      with self.assertRaisesRegex(errors.AfterKernelError, 'different'):
        nads.run_study(dataclasses.replace(config, width=4), directory,
                       log=_quiet)


if __name__ == '__main__':
  absltest.main()
