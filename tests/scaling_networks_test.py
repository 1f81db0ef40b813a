"""Tests of afterkernel/studies/scaling_networks.py: nets, f(theta0)=0, ES."""

import dataclasses

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import scaling_common as common
from afterkernel.studies import scaling_networks

_RNG = np.random.default_rng(0)
# Tiny images: Myrtle nets need >= 4x4; 8x8x3 keeps every test fast.
_IMAGES = _RNG.normal(size=(24, 8, 8, 3)).astype(np.float32)
_TARGETS = np.where(_IMAGES[:, 0, 0, 0] > 0, 1.0, -1.0).astype(np.float32)


def _config(**overrides):
  return dataclasses.replace(after_kernel_vs_m.PRESETS['tiny'], **dict(
      dict(width=8, batch_size=8, learning_rate=0.5,
           feature_batch_size=32), **overrides))


def _gram(model, images):
  return kernel_fit.EmpiricalNTK(model, 32).gram(images, images)


class ZeroOutputTest(absltest.TestCase):

  def test_output_is_exactly_zero_at_init_and_kernel_is_the_nets(self):
    for architecture in ('ntk_fully_connected', 'myrtle5'):
      plain = scaling_networks.build_network(
          _config(architecture=architecture), _IMAGES.shape[1:], seed=3)
      zero = scaling_networks.build_network(
          _config(architecture=architecture, zero_output_at_init=True),
          _IMAGES.shape[1:], seed=3)
      outputs = np.asarray(zero(_IMAGES))
      self.assertTrue(np.all(outputs == 0.0), architecture)
      self.assertGreater(np.abs(np.asarray(plain(_IMAGES))).max(), 0)
      # Only g_theta is trainable, so the empirical NTK is g's.
      self.assertEqual(len(zero.trainable_variables),
                       len(plain.trainable_variables))
      np.testing.assert_allclose(_gram(zero, _IMAGES), _gram(plain, _IMAGES),
                                 rtol=1e-5, atol=1e-6)

  def test_a_zero_output_network_still_trains(self):
    config = _config(zero_output_at_init=True)
    model = scaling_networks.build_network(config, _IMAGES.shape[1:], seed=1)
    scaling_networks.train_network(config, model, _IMAGES, _TARGETS, 60,
                                   seed=1)
    outputs = np.asarray(model(_IMAGES))[:, 0]
    # 0.5 mean (f - y)^2 starts at exactly 0.5 (f = 0, y = +-1).
    self.assertLess(0.5 * np.mean((outputs - _TARGETS)**2), 0.25)


class BatchTest(absltest.TestCase):

  def test_full_batch_steps_are_epochs(self):
    config = _config(batch_size=8)
    self.assertEqual(scaling_networks.epoch_steps(config, 20, 3), 8)
    self.assertEqual(scaling_networks.epoch_steps(config, 0, 3), 0)
    full = _config(full_batch=True)
    self.assertEqual(scaling_networks.batch_size_for(full, 20), 20)
    self.assertEqual(scaling_networks.epoch_steps(full, 20, 3), 3)

  def test_unknown_architecture_is_refused(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'architecture'):
      _config(architecture='resnet').validate()


class EarlyStoppingTest(absltest.TestCase):

  def test_kernel_is_taken_at_the_argmin_of_the_validation_curve(self):
    config = _config(architecture='ntk_fully_connected', epochs=12,
                     eval_growth=1.5, learning_rate=2.0)
    x_train, y_train = _IMAGES[:16], _TARGETS[:16]
    validation = (_IMAGES[16:], _TARGETS[16:])
    model = common.build_network(config, x_train.shape[1:], seed=5)
    metrics, curve = after_kernel_vs_m.train_for_after_kernel(
        config, model, x_train, y_train, _IMAGES[16:], _TARGETS[16:], 5,
        validation)
    steps, val_errors = curve['steps'], curve['validation_errors']
    self.assertEqual(steps[0], 0)
    self.assertEqual(steps[-1], metrics['train_steps'])
    self.assertEqual(metrics['stop_step'], steps[int(np.argmin(val_errors))])
    self.assertEqual(metrics['validation_error'], min(val_errors))
    self.assertEqual(metrics['stop_epoch'],
                     metrics['stop_step'] * config.batch_size / 16)
    # Independently: a fresh network of the same seed trained for exactly
    # stop_step steps has the same weights, so the same kernel.
    again = common.build_network(config, x_train.shape[1:], seed=5)
    common.train_network(config, again, x_train, y_train,
                         metrics['stop_step'], 5)
    for left, right in zip(model.get_weights(), again.get_weights()):
      np.testing.assert_allclose(left, right, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(_gram(model, _IMAGES), _gram(again, _IMAGES),
                               rtol=1e-5, atol=1e-6)

  def test_checkpoint_keeps_the_first_minimum(self):
    checkpoint = scaling_networks.EarlyStoppingCheckpoint(_IMAGES[:4],
                                                          _TARGETS[:4])
    model = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Flatten(),
                              keras.layers.Dense(1)])
    for step in (0, 1, 2):
      checkpoint(step, model)
    self.assertEqual(checkpoint.best_step, 0)
    self.assertEqual(checkpoint.curve()[0], [0, 1, 2])


if __name__ == '__main__':
  absltest.main()
