"""Tests for afterkernel.studies.linearized on tiny offline tasks."""

import json
import os
import shutil
import tempfile
from unittest import mock

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel.models import architectures
from afterkernel.studies import linearized
from afterkernel.studies import linearized_figures
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

  def test_effective_ranks_match_a_direct_svd_of_the_stacked_jacobian(self):
    # Independent computation: tape.jacobian of all outputs, stacked into
    # the (n L, P) Jacobian embedding, float64 SVD.
    keras.utils.set_random_seed(0)
    model = architectures.build_architecture('lenet5', (16, 16, 1), 3, 0.25)
    images = np.random.default_rng(0).random((6, 16, 16, 1), np.float32)
    with tf.GradientTape() as tape:
      outputs = model(images)
    jacobian = tape.jacobian(outputs, model.trainable_variables)
    stacked = np.concatenate(
        [np.asarray(j, np.float64).reshape(6 * 3, -1) for j in jacobian],
        axis=1)  # Row i L + l = d f_l(x_i) / d theta.
    sigma = np.linalg.svd(stacked, compute_uv=False)

    def entropy_rank(values):
      p = values / values.sum()
      p = p[p > 0]
      return float(np.exp(-np.sum(p * np.log(p))))

    self.assertLess(stacked.shape[1], 10**5)
    self.assertAlmostEqual(linearized.effective_rank(model, images,
                                                     'jacobian'),
                           entropy_rank(sigma), places=3)
    self.assertAlmostEqual(linearized.effective_rank(model, images, 'full'),
                           entropy_rank(sigma**2), places=3)
    traced = sum(stacked[l::3] @ stacked[l::3].T for l in range(3))
    self.assertAlmostEqual(linearized.effective_rank(model, images, 'traced'),
                           entropy_rank(np.linalg.eigvalsh(traced)), places=3)
    # The three are different numbers, so the choice matters.
    self.assertGreater(abs(entropy_rank(sigma) - entropy_rank(sigma**2)), 0.1)

  def test_rank_deficient_jacobian_rank_ignores_round_off(self):
    # f_l(x) = w_l x + b_l (Dense(2) on scalars): row (i, l) of J is
    # d f_l(x_i) / d(w, b) = (x_i e_l, e_l), so the 16 x 4 J has rank 4; the
    # float32 Gram's round-off must not add singular values.
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(2)])
    images = np.linspace(-1, 3, 8, dtype=np.float32)[:, None]
    stacked = np.zeros((16, 4))
    for i, x in enumerate(images[:, 0].astype(np.float64)):
      for l in range(2):
        stacked[2 * i + l, l] = x
        stacked[2 * i + l, 2 + l] = 1.0
    sigma = np.linalg.svd(stacked, compute_uv=False)
    p = sigma / sigma.sum()
    expected = float(np.exp(-np.sum(p[p > 0] * np.log(p[p > 0]))))
    self.assertAlmostEqual(
        linearized.effective_rank(model, images, 'jacobian'), expected,
        places=4)

  def test_trajectory_starts_at_both_models_initial_outputs(self):
    config = linearized.StudyConfig(
        **dict(_TINY, epochs=3, trajectory_every=2, trajectory_probe_size=4,
               lr_decay='step'))
    task = linearized.load_task(config)
    keras.utils.set_random_seed(config.seed)
    network = architectures.build_architecture(
        config.architecture, task.x_train.shape[1:], task.num_outputs, 0.125,
        config.parameterization)
    initial = np.asarray(network(task.x_test[:4]))
    record = linearized.run_once(config, task, 0.125, 0, _log)
    trajectory = record['trajectory']
    self.assertEqual(trajectory['epochs'], [0, 2, 3])
    self.assertEqual(trajectory['probe_labels'], task.y_test[:4].tolist())
    for name in ('nn', 'lin'):
      outputs = np.asarray(trajectory[name])
      self.assertEqual(outputs.shape, (3, 4, 10))
      np.testing.assert_allclose(outputs[0], initial, rtol=1e-4, atol=1e-5)
    # Training moves the outputs, and the network's end is its final output.
    self.assertGreater(np.abs(np.asarray(trajectory['nn'])[-1] -
                              initial).max(), 1e-3)
    path = linearized_figures.plot_output_trajectories(
        [dict(record, width=0.125, run=0)],
        os.path.join(tempfile.mkdtemp(), 'traj.png'))
    with open(path, 'rb') as f:
      self.assertEqual(f.read(8), b'\x89PNG\r\n\x1a\n')

  def test_learning_rate_schedules(self):
    config = linearized.StudyConfig(epochs=4, learning_rate=1.0)
    self.assertEqual(linearized.learning_rate_schedule(config, 10), 1.0)
    step = linearized.learning_rate_schedule(
        linearized.StudyConfig(epochs=4, learning_rate=1.0, lr_decay='step'),
        10)
    # 40 steps: x0.1 from step 20 on, x0.01 from step 30 on.
    self.assertAlmostEqual(float(step(19)), 1.0)
    self.assertAlmostEqual(float(step(21)), 0.1, places=6)
    self.assertAlmostEqual(float(step(39)), 0.01, places=6)
    cosine = linearized.learning_rate_schedule(
        linearized.StudyConfig(epochs=4, learning_rate=1.0,
                               lr_decay='cosine'), 10)
    self.assertAlmostEqual(float(cosine(20)), 0.5, places=5)
    self.assertAlmostEqual(float(cosine(40)), 0.0, places=6)

  def test_bad_config(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'momentum'):
      linearized.StudyConfig(momentum=1.5).validate()
    with self.assertRaisesRegex(errors.AfterKernelError, 'not available'):
      linearized.StudyConfig(dataset='svhn_parity').validate()
    for field in ('lr_decay', 'effective_rank_kernel', 'cifar_test_source'):
      with self.assertRaisesRegex(errors.AfterKernelError, field):
        linearized.StudyConfig(**{field: 'nope'}).validate()
    with self.assertRaisesRegex(errors.AfterKernelError, 'trajectory_every'):
      linearized.StudyConfig(trajectory_every=-1).validate()
    with self.assertRaisesRegex(errors.AfterKernelError, 'rank_sample_size'):
      linearized.run_study(
          linearized.StudyConfig(**dict(_TINY, rank_sample_size=100)),
          tempfile.mkdtemp(), log=_log)


if __name__ == '__main__':
  absltest.main()
