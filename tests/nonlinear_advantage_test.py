"""Tests of afterkernel.studies.nonlinear_advantage and its binary."""

import contextlib
import dataclasses
import io
import os
import tempfile

from absl.testing import absltest

from afterkernel import errors
from afterkernel.studies import eigentasks_training
from afterkernel.studies import nonlinear_advantage
from afterkernel.studies import store
from binaries import nonlinear_advantage as advantage_binary
import binary_flags

_TINY = dataclasses.replace(nonlinear_advantage.PRESETS['tiny'],
                            train_set_sizes=(20, 40), num_train=40, num_test=20,
                            width=8, epochs=2)


def _quiet(message):
  del message


class StudyTest(absltest.TestCase):

  def test_records(self):
    task = nonlinear_advantage.STUDY.load(_TINY, None)
    records = nonlinear_advantage.run_once(
        dataclasses.replace(_TINY, epochs=1), task, 0, [10, 20], log=_quiet)
    self.assertEqual([r['point']['train_size'] for r in records], [10, 20])
    for record in records:
      metrics = record['metrics']
      self.assertAlmostEqual(metrics['nonlinear_advantage'],
                             metrics['nn_test_accuracy'] -
                             metrics['lin_test_accuracy'])
      for name in ('nn', 'lin'):
        self.assertBetween(metrics[f'{name}_test_accuracy'], 0.0, 1.0)
        self.assertGreater(metrics[f'{name}_weight_l2'], 0.0)
        self.assertBetween(metrics[f'{name}_weight_cosine'], 0.0, 2.0)
    # The same seeded initialization at every n: rebuilding it gives the
    # theta_0 both distances are measured from.
    _, network = _TINY.seeded_network(0, task.x_train.shape[1:])
    self.assertEqual(eigentasks_training.weight_distances(
        eigentasks_training.flat_parameters(network),
        eigentasks_training.flat_parameters(network))[0], 0.0)
    self.assertEqual(records[0]['seed'], records[1]['seed'])

  def test_validate(self):
    for bad in (dict(train_set_sizes=()), dict(train_set_sizes=(0,)),
                dict(train_set_sizes=(41,)), dict(architecture='resnet'),
                dict(lr_schedule='exp'), dict(loss='hinge')):
      with self.assertRaises(errors.AfterKernelError):
        dataclasses.replace(_TINY, **bad).validate()
    for preset in nonlinear_advantage.PRESETS.values():
      preset.validate()


class BinaryTest(absltest.TestCase):

  def test_tiny_run_prints_table_and_resumes(self):
    directory = self.enter_context(tempfile.TemporaryDirectory())
    argv = ('--preset=tiny', '--train_set_sizes=20,40', '--num_train=40',
            '--num_test=20', '--width=8', '--epochs=1',
            f'--output_dir={directory}')
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = binary_flags.run_main(advantage_binary, argv)
    self.assertEqual(code, 0, err.getvalue())
    self.assertIn('advantage', out.getvalue())
    self.assertLen(store.ResultStore(directory).keys(), 2)
    self.assertTrue(os.path.exists(os.path.join(
        directory, f'{nonlinear_advantage.FIGURE_NAME}.png')))
    # The table has one row per size.
    rows = [line.split()[0] for line in out.getvalue().splitlines()
            if line.split()[:1] in (['20'], ['40'])]
    self.assertEqual(rows, ['20', '40'])


if __name__ == '__main__':
  absltest.main()
