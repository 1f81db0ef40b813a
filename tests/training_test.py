"""Tests for afterkernel.training on small synthetic problems."""

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel import infinite_ntk
from afterkernel import kernel_fit
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
    training.compile_model(model)
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


class FitTest(absltest.TestCase):
  """The one loop (`fit`) in its modes, against Keras and kernel SGD."""

  def test_zero_steps_leave_the_model_unchanged(self):
    x = np.random.default_rng(2).random((10, 4)).astype(np.float32)
    model = infinite_ntk.build_ntk_fully_connected((4,), 8, 1, seed=0)
    before = [w.copy() for w in model.get_weights()]
    seen = []
    training.compile_model(model, 1.0, 0.0, loss='half_mse')
    losses = training.fit(
        model, x, np.ones((10, 1), np.float32), batch_size=4, seed=0,
        steps=0, callbacks=[training.StepCallback([0, 1], lambda s, m:
                                                  seen.append(s))])
    self.assertEqual(losses, [])
    self.assertEqual(seen, [0])
    for a, b in zip(before, model.get_weights()):
      np.testing.assert_array_equal(a, b)

  def test_network_sgd_matches_kernel_sgd_for_a_linear_model(self):
    # f(x) = x.w with w_0 = 0 is its own linearization with kernel x.x', so
    # full-batch Keras training (loss, momentum, learning rate as here) must
    # trace exactly the path of kernel_fit.fit_sgd on K = X X^T.
    rng = np.random.default_rng(5)
    x, x_test = rng.normal(size=(24, 5)), rng.normal(size=(30, 5))
    y = np.sign(x[:, 0] + 0.3 * rng.normal(size=24))
    y_test = np.sign(x_test[:, 0])
    inputs = keras.Input((5,))
    outputs = keras.layers.Dense(1, use_bias=False,
                                 kernel_initializer='zeros')(inputs)
    model = keras.Model(inputs, outputs)
    evaluator = training.NetworkEvaluator(x_test.astype(np.float32), y_test)
    training.compile_model(model, 0.05, 0.8, loss='half_mse')
    training.fit(model, x.astype(np.float32),
                 y.astype(np.float32)[:, None], batch_size=24, steps=12,
                 seed=0, callbacks=[training.StepCallback([12], evaluator)])
    result = kernel_fit.fit_sgd(x @ x.T, y, x_test @ x.T, y_test,
                                learning_rate=0.05, batch_size=24,
                                momentum=0.8, max_steps=12)
    self.assertEqual(int(result.curve.steps[-1]), 12)
    self.assertAlmostEqual(evaluator.curve[-1][2], result.curve.test_mse[-1],
                           places=4)
    self.assertAlmostEqual(evaluator.curve[-1][1],
                           result.curve.test_error[-1])

  def test_keras_order_is_keras_fit_under_the_seed(self):
    # The 'keras' batch order must be exactly Keras' own shuffled fit after
    # set_random_seed(seed), the recipe the eigentask/NAD/Taylor studies had.
    images, labels = _toy_task(40)
    targets = training.targets_for(labels, 'mse')
    weights = []
    for use_fit in (True, False):
      keras.utils.set_random_seed(3)
      model = models.build_model('fully_connected', (6, 6, 1))
      training.compile_model(model, 0.05, 0.9, loss='mse')
      if use_fit:
        losses = training.fit(model, images, targets, batch_size=8, seed=7,
                              epochs=3, batch_order='keras')
      else:
        keras.utils.set_random_seed(7)
        history = model.fit(images, targets, batch_size=8, epochs=3,
                            shuffle=True, verbose=0)
        expected = [float(v) for v in history.history['loss']]
      weights.append([w.copy() for w in model.get_weights()])
    self.assertEqual(losses, expected)
    for a, b in zip(*weights):
      np.testing.assert_array_equal(a, b)

  def test_epoch_snapshots_in_both_orders(self):
    images, labels = _toy_task(16)
    for order in training.BATCH_ORDERS:
      seen = []
      model = models.build_model('sum', (6, 6, 1))
      training.compile_model(model, loss='bce')
      losses = training.fit(model, images, training.targets_for(labels, 'bce'),
                            batch_size=4, seed=0, epochs=3,
                            batch_order=order, snapshots=[0, 2, 3],
                            on_snapshot=lambda e, m: seen.append(e))
      self.assertEqual(seen, [0, 2, 3], order)
      self.assertLen(losses, 3)

  def test_losses_targets_and_sign_rules(self):
    labels = np.array([0., 1., 1., 0.])
    np.testing.assert_array_equal(training.targets_for(labels, 'bce'),
                                  labels[:, None])
    np.testing.assert_array_equal(training.targets_for(labels, 'mse'),
                                  [[-1.], [1.], [1.], [-1.]])
    outputs = np.array([-0.5, 2.0, -1.0, 0.0])  # 0 predicts the minus class.
    self.assertEqual(training.sign_error(outputs, labels), 0.25)
    self.assertEqual(training.sign_accuracy(outputs, labels), 0.75)
    self.assertEqual(training.sign_error(outputs, 2 * labels - 1), 0.25)
    y, f = np.array([[1.0], [-1.0]]), np.array([[0.5], [1.0]])
    half = keras.ops.convert_to_numpy(training.half_mse(y, f))
    np.testing.assert_allclose(half, [0.125, 2.0])
    model = models.build_model('sum', (6, 6, 1))
    training.compile_model(model, 0.2, momentum=0.5, loss='half_mse',
                           weight_decay=1e-3)
    self.assertAlmostEqual(float(model.optimizer.momentum), 0.5)
    self.assertAlmostEqual(float(model.optimizer.weight_decay), 1e-3)
    self.assertIs(model.loss, training.half_mse)

  def test_bad_fit_arguments(self):
    model = models.build_model('sum', (6, 6, 1))
    training.compile_model(model)
    images, labels = _toy_task(8)
    targets = training.targets_for(labels, 'bce')
    cases = [(dict(epochs=1, steps=1), 'exactly one'),
             (dict(), 'exactly one'),
             (dict(steps=-1), 'steps'),
             (dict(epochs=1, batch_order='random'), 'batch_order'),
             (dict(steps=2, batch_order='keras'), 'whole epochs'),
             (dict(steps=2, snapshots=[3]), 'snapshot steps')]
    for kwargs, message in cases:
      with self.assertRaisesRegex(errors.AfterKernelError, message):
        training.fit(model, images, targets, batch_size=4, seed=0, **kwargs)
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown loss'):
      training.compile_model(model, loss='hinge')


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
