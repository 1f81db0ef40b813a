"""Tests of afterkernel.studies.task_training (class-balance scores moved here
from eigentasks_test, every assertion kept; the shared fit and accuracy)."""

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel import models
from afterkernel.studies import eigentasks
from afterkernel.studies import task_training


class ClassBalanceTest(absltest.TestCase):

  def test_balanced_accuracy_against_per_class_recalls(self):
    rng = np.random.default_rng(2)
    labels = (rng.uniform(size=50) < 0.2).astype(np.float32)
    predictions = rng.uniform(size=50) < 0.5
    # Independent: count the confusion matrix.
    true_positive = np.sum(predictions & (labels == 1))
    true_negative = np.sum(~predictions & (labels == 0))
    expected = (true_positive / np.sum(labels == 1) +
                true_negative / np.sum(labels == 0)) / 2
    self.assertAlmostEqual(
        task_training.balanced_accuracy(predictions, labels), expected,
        places=12)
    # Always predicting the majority scores its rate as plain accuracy but
    # exactly 0.5 balanced.
    constant = np.zeros(50, bool)
    self.assertAlmostEqual(np.mean(constant == (labels == 1)),
                           task_training.majority_rate(labels))
    self.assertEqual(task_training.balanced_accuracy(constant, labels), 0.5)
    self.assertGreater(task_training.majority_rate(labels), 0.5)

  def test_one_class_labels(self):
    self.assertIsNone(task_training.balanced_accuracy(np.ones(4), np.ones(4)))
    self.assertIsNone(task_training.balanced_accuracy(np.ones(4), np.zeros(4)))
    self.assertEqual(task_training.majority_rate(np.ones(4)), 1.0)
    self.assertEqual(task_training.majority_rate(np.array([0, 1, 1, 0])), 0.5)
    with self.assertRaises(errors.AfterKernelError):
      task_training.balanced_accuracy(np.ones(3), np.array([0, 1]))


class FitAndAccuracyTest(absltest.TestCase):

  def test_fit_lowers_the_loss_and_accuracy_is_the_sign_rule(self):
    rng = np.random.default_rng(0)
    inputs = rng.normal(size=(64, 4)).astype(np.float32)
    labels = (inputs[:, 0] > 0).astype(np.float32)
    keras.utils.set_random_seed(0)
    model = models.build('fully_connected', (4,), width=8, num_layers=1)
    config = eigentasks.EigentaskConfig(epochs=1, learning_rate=0.05,
                                        batch_size=16)
    first = task_training.fit_task(model, inputs, labels, config, seed=0)
    config = eigentasks.EigentaskConfig(epochs=20, learning_rate=0.05,
                                        batch_size=16)
    last = task_training.fit_task(model, inputs, labels, config, seed=0)
    self.assertLess(last, first)
    outputs = model.predict(inputs, verbose=0).reshape(-1)
    self.assertAlmostEqual(
        task_training.sign_accuracy_of(model, inputs, labels, 10),
        np.mean((outputs > 0) == (labels > 0.5)), places=12)
    self.assertIs(eigentasks.balanced_accuracy,
                  task_training.balanced_accuracy)


if __name__ == '__main__':
  absltest.main()
