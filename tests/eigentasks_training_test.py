"""Tests of afterkernel.studies.eigentasks_training: weight distances, the
loss target, the learning-rate decay, the alpha spectrum and linearizing at
trained weights (Ortiz-Jimenez et al. 2021, Figs. 3 and 7-9)."""

import dataclasses
import math

from absl.testing import absltest
import keras
import numpy as np
from scipy.spatial import distance

from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel.kernels import metrics as kernel_metrics
from afterkernel import linearize
from afterkernel import models
from afterkernel.studies import eigentasks
from afterkernel.studies import eigentasks_training

_TINY = dataclasses.replace(eigentasks.PRESETS['tiny'], num_train=30,
                            num_test=10, width=8, eigen_indices=(1, 2),
                            epochs=2, batch_size=8)


def _quiet(message):
  del message


def _task():
  return eigentasks.load_study_inputs(_TINY)


def _network(seed=0):
  keras.utils.set_random_seed(seed)
  return models.build('fully_connected', (8, 8, 1), width=8, num_layers=1)


class DistanceTest(absltest.TestCase):

  def test_against_numpy_and_scipy(self):
    rng = np.random.default_rng(0)
    initial, current = rng.normal(size=50), rng.normal(size=50)
    l2, cosine = eigentasks_training.weight_distances(initial, current)
    self.assertAlmostEqual(l2, math.sqrt(np.sum((current - initial)**2)))
    self.assertAlmostEqual(cosine, distance.cosine(initial, current))
    # Scaling theta does not move its direction.
    self.assertAlmostEqual(
        eigentasks_training.weight_distances(initial, 3 * initial)[1], 0.0)
    with self.assertRaises(errors.AfterKernelError):
      eigentasks_training.weight_distances(initial, current[:10])

  def test_zero_at_initialization_for_both_models(self):
    network = _network()
    initial = eigentasks_training.flat_parameters(network)
    self.assertLen(initial, network.count_params())
    linear = linearize.linearize(network)
    for model in (network, linear):
      l2, cosine = eigentasks_training.weight_distances(
          initial, eigentasks_training.flat_parameters(model))
      self.assertEqual(l2, 0.0)
      self.assertAlmostEqual(cosine, 0.0, places=12)


class LearningRateTest(absltest.TestCase):

  def test_schedules(self):
    rate = eigentasks_training.learning_rate_at
    self.assertEqual([rate('step', 1.0, e, 8) for e in (0, 3, 4, 5, 6, 7)],
                     [1.0, 1.0, 0.1, 0.1, 0.1**2, 0.1**2])
    self.assertEqual(rate('constant', 0.5, 7, 8), 0.5)
    self.assertAlmostEqual(rate('cosine', 1.0, 4, 8), 0.5)
    self.assertEqual(eigentasks_training.schedule_callbacks('constant', 1, 5),
                     [])
    with self.assertRaises(errors.AfterKernelError):
      rate('linear', 1.0, 0, 8)

  def test_step_decay_reaches_the_optimizer(self):
    task = _task()
    network = _network()
    config = dataclasses.replace(_TINY, epochs=4, lr_schedule='step')
    eigentasks_training.measure_training(network, 'nn', task.x_train,
                                         task.y_train, config, 0)
    # The last epoch (index 3) ran at 0.05 * 0.1**2.
    self.assertAlmostEqual(
        float(keras.ops.convert_to_numpy(network.optimizer.learning_rate)),
        0.05 * 0.01, places=7)


class LossTargetTest(absltest.TestCase):

  def test_steps_to_target(self):
    task = _task()
    steps_per_epoch = math.ceil(30 / 8)
    # A target met after the first epoch stops there.
    config = dataclasses.replace(_TINY, epochs=5, loss_target=10.0)
    metrics, _ = eigentasks_training.measure_training(
        _network(), 'nn', task.x_train, task.y_train, config, 0)
    self.assertEqual(metrics['nn_steps_to_target'], steps_per_epoch)
    self.assertEqual(metrics['nn_reached_target'], 1.0)
    # An unreachable one: the cap, and no step count.
    config = dataclasses.replace(config, epochs=2, loss_target=1e-12)
    metrics, _ = eigentasks_training.measure_training(
        _network(), 'nn', task.x_train, task.y_train, config, 0)
    self.assertIsNone(metrics['nn_steps_to_target'])
    self.assertEqual(metrics['nn_reached_target'], 0.0)
    self.assertGreater(metrics['nn_weight_l2'], 0.0)

  def test_stopping_epoch_matches_the_loss_of_plain_training(self):
    # Train plainly, note the first epoch whose full loss is <= a target in
    # between, and check the callback stops exactly there.
    task = _task()
    config = dataclasses.replace(_TINY, epochs=6, learning_rate=0.2)
    network = _network()
    losses = []
    loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)

    def on_snapshot(epoch, model):
      outputs = model.predict(task.x_train, verbose=0)
      losses.append(float(loss_fn(task.y_train[:, None], outputs)))

    eigentasks_training.measure_training(
        network, 'nn', task.x_train, task.y_train, config, 0,
        snapshots=range(1, 7), on_snapshot=on_snapshot)
    target = (losses[1] + losses[2]) / 2 if losses[2] < losses[1] else None
    self.assertIsNotNone(target, f'loss did not fall: {losses}')
    first = next(e for e, v in enumerate(losses, start=1) if v <= target)
    metrics, _ = eigentasks_training.measure_training(
        _network(), 'nn', task.x_train, task.y_train,
        dataclasses.replace(config, loss_target=target), 0)
    self.assertEqual(metrics['nn_steps_to_target'], first * math.ceil(30 / 8))


class StudyOptionsTest(absltest.TestCase):

  def test_alpha_spectrum_at_init_equals_alpha_init(self):
    task = _task()
    config = dataclasses.replace(_TINY, alpha_spectrum_size=3,
                                 alpha_epochs=(0, 2))
    config.validate()
    records = eigentasks.run_once(config, task, 0, [1, 2], log=_quiet)
    by_index = {r['point']['eigen_index']: r['metrics'] for r in records}
    for metrics in by_index.values():
      for j in (1, 2):
        self.assertAlmostEqual(metrics[eigentasks_training.alpha_key(0, j)],
                               by_index[j]['alpha_init'], places=9)
      for j in (1, 2, 3):
        self.assertGreater(metrics[eigentasks_training.alpha_key(2, j)], 0)
    # After training on j = 1, its own alpha is that of the trained kernel.
    self.assertAlmostEqual(by_index[1]['alpha_e2_j1'],
                           by_index[1]['alpha_after'], places=6)

  def test_alpha_spectrum_against_the_gram(self):
    task = _task()
    network = _network()
    labels = np.sign(np.random.default_rng(0).normal(size=(30, 2)))
    gram = kernel_fit.EmpiricalNTK(network).gram(task.x_train)
    np.testing.assert_allclose(
        eigentasks_training.alpha_spectrum(network, task.x_train, labels, 64),
        [labels[:, i] @ gram @ labels[:, i] / 30**2 for i in range(2)],
        rtol=1e-6)
    self.assertAlmostEqual(
        kernel_metrics.target_alignment(gram, labels[:, 0]),
        labels[:, 0] @ gram @ labels[:, 0] / 900, places=9)

  def test_linearizing_at_trained_weights_gives_the_network_outputs(self):
    task = _task()
    network = _network()
    config = dataclasses.replace(_TINY, epochs=2)
    eigentasks_training.measure_training(network, 'nn', task.x_train,
                                         task.y_train, config, 0)
    linear = linearize.linearize(network, base_weights=network.get_weights())
    np.testing.assert_allclose(linear.predict(task.x_test, verbose=0),
                               network.predict(task.x_test, verbose=0),
                               rtol=1e-5, atol=1e-6)

  def test_linearize_at_epoch_takes_the_snapshot(self):
    task = _task()
    config = dataclasses.replace(_TINY, linearize_at_epoch=2)
    config.validate()
    network = _network()
    metrics, timings = {}, {}
    trained = eigentasks_training.train_both(
        config, task.x_train, network, task.y_train, 0,
        np.ones((30, 0)), metrics, timings)
    name, _ = next(trained)
    self.assertEqual(name, 'nn')
    theta_star = eigentasks_training.flat_parameters(network)
    outputs = network.predict(task.x_train, verbose=0)
    name, linear = next(trained)
    self.assertEqual(name, 'lin')
    # The base is the network's theta* (epoch 2 = the end of its training).
    np.testing.assert_allclose(
        np.concatenate([np.ravel(p) for p in linear.base_parameters()]),
        theta_star, rtol=0, atol=0)
    linear.reset()
    np.testing.assert_allclose(linear.predict(task.x_train, verbose=0),
                               outputs, rtol=1e-5, atol=1e-6)
    self.assertGreater(metrics['alpha_linearization_base'], 0.0)
    self.assertGreater(metrics['lin_weight_l2'], 0.0)

  def test_validate_new_options(self):
    for bad in (dict(lr_schedule='exp'), dict(loss_target=-1.0),
                dict(alpha_spectrum_size=31), dict(alpha_epochs=(3,)),
                dict(linearize_at_epoch=3),
                dict(linearize_at_epoch=1, loss_target=0.01),
                dict(cifar_test_source='nope')):
      with self.assertRaises(errors.AfterKernelError):
        dataclasses.replace(_TINY, **bad).validate()
    lenet = dataclasses.replace(_TINY, architecture='lenet5', width=1)
    _, network = lenet.seeded_network(0, (32, 32, 3))
    self.assertEqual(network.output_shape, (None, 1))


if __name__ == '__main__':
  absltest.main()
