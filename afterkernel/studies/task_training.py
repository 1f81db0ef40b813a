"""Training and scoring shared by the task studies (eigentasks, nads).

Both studies train a network and its linearization on a binary task with
the same SGD-with-momentum settings and batch order (`fit_task`) and score
them by the sign of the output (`sign_accuracy_of`); eigentasks also reports
class-balance-aware numbers (`balanced_accuracy`, `majority_rate`). One copy
of each, instead of one per study.
"""

from typing import Optional

import keras
import numpy as np

from afterkernel import errors
from afterkernel import training


def fit_task(model: keras.Model, inputs: np.ndarray, labels01: np.ndarray,
             config, seed: int) -> float:
  """Trains in place; returns the last epoch's mean training loss.

  Args:
    model: the network or its linearization (compiled here).
    inputs: training inputs.
    labels01: {0, 1} labels (turned into the loss's targets).
    config: a study config with learning_rate, momentum, loss ('bce' or
      'mse'), batch_size and epochs.
    seed: the batch-order seed.
  """
  training.compile_model(model, config.learning_rate, config.momentum,
                         loss=config.loss)
  # The 'keras' order under one seed: the same batch order for both models.
  return training.fit(model, inputs,
                      training.targets_for(labels01, config.loss),
                      batch_size=config.batch_size, seed=seed,
                      epochs=config.epochs, batch_order='keras')[-1]


def sign_accuracy_of(model: keras.Model, inputs: np.ndarray,
                     labels01: np.ndarray, batch_size: int) -> float:
  """Fraction with (output > 0) == label: the decision rule of both losses."""
  return training.sign_accuracy(
      training.predict_logits(model, inputs, batch_size), labels01)


def balanced_accuracy(predictions01: np.ndarray,
                      labels01: np.ndarray) -> Optional[float]:
  """Mean of the two per-class recalls, (TPR + TNR) / 2.

  A constant predictor scores 0.5 however unbalanced the labels are, so a
  task that is (nearly) one class cannot look learned.

  Args:
    predictions01: predicted labels in {0, 1} (or booleans).
    labels01: true labels in {0, 1}, same length.

  Returns:
    The balanced accuracy in [0, 1], or None if the labels hold one class
    (the other class's recall is undefined).
  """
  predicted = np.asarray(predictions01).reshape(-1) > 0.5
  truth = np.asarray(labels01).reshape(-1) > 0.5
  errors.require(predicted.shape == truth.shape,
                 f'{len(predicted)} predictions for {len(truth)} labels')
  if truth.all() or not truth.any():
    return None
  return float((np.mean(predicted[truth]) + np.mean(~predicted[~truth])) / 2)


def majority_rate(labels01: np.ndarray) -> float:
  """The accuracy of always predicting the more frequent class."""
  plus = float(np.mean(np.asarray(labels01) > 0.5))
  return max(plus, 1.0 - plus)
