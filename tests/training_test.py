"""Tests for afterkernel.training on small synthetic problems."""

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel import models
from afterkernel import training


def _toy_task(n=64, seed=0):
  """Images whose label is whether the left half is brighter."""
  rng = np.random.default_rng(seed)
  images = rng.random((n, 6, 6, 1)).astype(np.float32)
  labels = (images[:, :, :3].sum(axis=(1, 2, 3)) >
            images[:, :, 3:].sum(axis=(1, 2, 3))).astype(np.float32)
  return images, labels


class TrainTest(absltest.TestCase):

  def test_zero_epochs_leaves_weights(self):
    keras.utils.set_random_seed(0)
    model = models.build_model('fully_connected', (6, 6, 1))
    before = [v.numpy().copy() for v in model.trainable_variables]
    images, labels = _toy_task()
    result = training.train(model, images, labels, epochs=0)
    self.assertEqual(result.epochs, 0)
    for b, v in zip(before, model.trainable_variables):
      np.testing.assert_array_equal(b, v.numpy())

  def test_training_reduces_loss_and_uses_bce_on_logits(self):
    keras.utils.set_random_seed(0)
    model = models.build_model('fully_connected', (6, 6, 1))
    images, labels = _toy_task()
    before = training.binary_loss(model, images, labels)
    result = training.train(model, images, labels, epochs=20,
                            learning_rate=0.1)
    self.assertLess(result.final_train_loss, before)
    self.assertLen(result.epoch_losses, 20)
    # Independent BCE: -y log sigmoid(s) - (1 - y) log(1 - sigmoid(s)).
    logits = training.predict_logits(model, images).astype(np.float64)
    p = 1 / (1 + np.exp(-logits))
    expected = -np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))
    self.assertAlmostEqual(result.final_train_loss, expected, places=5)

  def test_snapshots_are_called_in_order(self):
    keras.utils.set_random_seed(0)
    model = models.build_model('sum', (6, 6, 1))
    images, labels = _toy_task()
    seen = []
    training.train(model, images, labels, epochs=3, snapshot_epochs=[3, 0, 1],
                   on_snapshot=lambda e, m: seen.append(e))
    self.assertEqual(seen, [0, 1, 3])

  def test_default_learning_rate_is_keras_default(self):
    model = models.build_model('sum', (6, 6, 1))
    training.compile_for_binary(model)
    self.assertAlmostEqual(float(model.optimizer.learning_rate.numpy()), 0.01)

  def test_loss_target_doubles_epochs(self):
    keras.utils.set_random_seed(0)
    model = models.build_model('fully_connected', (6, 6, 1))
    images, labels = _toy_task(32)
    # An unreachable target: rounds end at 10, 20, then the cap 25.
    result = training.train_to_loss_target(model, images, labels,
                                           loss_target=1e-12, max_epochs=25)
    self.assertEqual(result.epochs, 25)
    self.assertFalse(result.reached_loss_target)
    # A loose target is reached after the first round.
    result = training.train_to_loss_target(model, images, labels,
                                           loss_target=10.0, max_epochs=100)
    self.assertEqual(result.epochs, 10)
    self.assertTrue(result.reached_loss_target)

  def test_augmentation_runs_and_changes_batches(self):
    layers = training.augmentation_layers((6, 6, 1))
    images, _ = _toy_task(8)
    augmented = keras.ops.convert_to_numpy(layers(images, training=True))
    self.assertEqual(augmented.shape, images.shape)
    self.assertGreater(np.abs(augmented - images).max(), 0)
    keras.utils.set_random_seed(0)
    model = models.build_model('sum', (6, 6, 1))
    result = training.train(model, *_toy_task(), epochs=1, augment=True)
    self.assertEqual(result.epochs, 1)


class BadInputTest(absltest.TestCase):

  def test_one_class(self):
    model = models.build_model('sum', (6, 6, 1))
    images, _ = _toy_task(8)
    with self.assertRaisesRegex(errors.AfterKernelError, 'both classes'):
      training.train(model, images, np.ones(8, np.float32), epochs=1)

  def test_bad_sizes(self):
    model = models.build_model('sum', (6, 6, 1))
    images, labels = _toy_task(8)
    with self.assertRaisesRegex(errors.AfterKernelError, 'epochs'):
      training.train(model, images, labels, epochs=-1)
    with self.assertRaisesRegex(errors.AfterKernelError, 'learning_rate'):
      training.train(model, images, labels, epochs=1, learning_rate=0.0)
    with self.assertRaisesRegex(errors.AfterKernelError, 'snapshot'):
      training.train(model, images, labels, epochs=1, snapshot_epochs=[2])
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'training_loss_target'):
      training.train_to_loss_target(model, images, labels, 0.0, 10)


if __name__ == '__main__':
  absltest.main()
