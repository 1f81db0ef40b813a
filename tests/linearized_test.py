"""Tests for afterkernel.studies.linearized on tiny offline tasks."""

import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel.models import architectures
from afterkernel.studies import linearized
from afterkernel.studies import store
from afterkernel.studies import summary as summary_lib

_TINY = dict(dataset='digits', num_train=60, num_test=40,
             architecture='myrtle5', width_multipliers=(0.0625, 0.125),
             epochs=1, batch_size=20, rank_sample_size=20)


def _log(message):
  del message


class StudyTest(absltest.TestCase):

  def test_run_writes_records_summary_and_figure_and_resumes(self):
    directory = tempfile.mkdtemp()
    config = linearized.StudyConfig(**_TINY)
    summary = linearized.run_study(config, directory, log=_log)
    records = store.ResultStore(directory).records()
    self.assertEqual(sorted(r['width'] for r in records), [0.0625, 0.125])
    self.assertEqual(set(summary), {'0.0625', '0.125'})
    for record in records:
      metrics = record['metrics']
      self.assertAlmostEqual(
          metrics['test_accuracy_gap'],
          metrics['nn_test_accuracy'] - metrics['lin_test_accuracy'])
      self.assertBetween(metrics['ntk_entropy_eff_rank'], 1.0, 20.0)
      self.assertBetween(metrics['ak_entropy_eff_rank'], 1.0, 20.0)
      self.assertEqual(record['data']['num_train'], 60)
    with open(os.path.join(directory, linearized.FIGURE_FILE),
              'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')
    with open(os.path.join(directory, summary_lib.SUMMARY_FILE)) as f:
      by_width = {str(e['point']['width']): e['metrics'] for e in json.load(f)}
      self.assertEqual(by_width['0.125']['nn_test_accuracy']['n'], 1)
    # Resume: nothing new is run.
    linearized.run_study(config, directory, log=_log)
    self.assertLen(store.ResultStore(directory).records(), 2)
    # A different configuration is refused.
    with self.assertRaisesRegex(errors.AfterKernelError, 'different config'):
      linearized.run_study(
          linearized.StudyConfig(**dict(_TINY, epochs=2)), directory,
          log=_log)
    table = linearized.format_summary(summary)
    self.assertIn('0.0625', table)

  def test_resumes_a_0_1_0_folder_with_runs_jsonl(self):
    directory = tempfile.mkdtemp()
    config = linearized.StudyConfig(**_TINY)
    summary = linearized.run_study(config, directory, log=_log)
    records = store.ResultStore(directory).records()
    shutil.rmtree(os.path.join(directory, store.RECORDS_DIR))
    for record in records:
      store.append_run(directory, {k: v for k, v in record.items()
                                   if k not in ('key', 'family', 'point_id',
                                                'point')})
    with mock.patch.object(linearized, 'run_once') as spy:
      again = linearized.run_study(config, directory, log=_log)
    spy.assert_not_called()
    self.assertEqual(again, summary)

  def test_tiny_learning_rate_gives_no_gap(self):
    # With theta ~ theta_0 the network and its linearization agree.
    config = linearized.StudyConfig(
        **dict(_TINY, learning_rate=1e-7, momentum=0.0))
    task = linearized.load_task(config)
    record = linearized.run_once(config, task, 0.125, 0, _log)
    self.assertEqual(record['metrics']['test_accuracy_gap'], 0.0)
    self.assertEqual(record['metrics']['train_accuracy_gap'], 0.0)

  def test_binary_task_uses_one_output(self):
    config = linearized.StudyConfig(
        **dict(_TINY, task='binary', width_multipliers=(0.125,)))
    task = linearized.load_task(config)
    self.assertEqual(task.num_outputs, 1)
    self.assertEqual(set(np.unique(task.y_train)), {0, 1})
    record = linearized.run_once(config, task, 0.125, 0, _log)
    self.assertBetween(record['metrics']['lin_test_accuracy'], 0.0, 1.0)

  def test_accuracy_and_l2_loss(self):
    model = keras.Sequential([keras.Input((2,)),
                              keras.layers.Dense(3, use_bias=False)])
    model.layers[0].kernel.assign(np.eye(2, 3, dtype=np.float32))
    images = np.array([[1, 0], [0, 1], [0, 2]], np.float32)
    self.assertAlmostEqual(
        linearized.accuracy(model, images, np.array([0, 1, 0])),
        2 / 3)
    loss = keras.ops.convert_to_numpy(linearized.l2_loss(
        np.array([[1.0, 0.0]]), np.array([[0.0, 2.0]])))
    np.testing.assert_allclose(loss, [2.5])

  def test_the_default_config_is_a_runnable_experiment(self):
    # `linearized_vs_network --output_dir=DIR` alone must run: the default
    # net must fit the default dataset at every default width.
    config = linearized.StudyConfig()
    config.validate()
    task = linearized.load_task(config)
    for width in config.width_multipliers:
      network = architectures.build_architecture(
          config.architecture, task.x_train.shape[1:], task.num_outputs,
          width, config.parameterization)
      self.assertEqual(network.output_shape, (None, task.num_outputs))
    self.assertLessEqual(config.rank_sample_size, len(task.y_train))

  def test_bad_config(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'momentum'):
      linearized.StudyConfig(momentum=1.5).validate()
    with self.assertRaisesRegex(errors.AfterKernelError, 'not available'):
      linearized.StudyConfig(dataset='cifar10').validate()
    with self.assertRaisesRegex(errors.AfterKernelError, 'rank_sample_size'):
      linearized.run_study(
          linearized.StudyConfig(**dict(_TINY, rank_sample_size=100)),
          tempfile.mkdtemp(), log=_log)


if __name__ == '__main__':
  absltest.main()
