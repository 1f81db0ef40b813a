"""Training and scoring shared by the task studies (eigentasks, nads).

Both studies train a network and its linearization on a binary task with
the same SGD-with-momentum settings and batch order (`fit_task`) and score
them by the sign of the output (`sign_accuracy_of`); eigentasks also reports
class-balance-aware numbers (`balanced_accuracy`, `majority_rate`). One copy
of each, instead of one per study.
"""

import operator
from typing import Any, Callable, Mapping, Optional, Sequence

import keras
import numpy as np

from afterkernel import errors
from afterkernel.studies import runner
from afterkernel.studies import tables
from afterkernel import training


def fit_task(model: keras.Model, inputs: np.ndarray, labels01: np.ndarray,
             config, seed: int,
             callbacks: Sequence[keras.callbacks.Callback] = (),
             snapshots: Sequence[int] = (),
             on_snapshot: Optional[Callable[[int, keras.Model], None]] = None
             ) -> float:
  """Trains in place; returns the last epoch's mean training loss.

  The callbacks and snapshots (`training.fit`'s) only observe or stop the
  training (a learning-rate schedule, a loss target, kernel checkpoints);
  without them the batch order and the numbers are those of plain training.

  Args:
    model: the network or its linearization (compiled here).
    inputs: training inputs.
    labels01: {0, 1} labels (turned into the loss's targets).
    config: a study config with learning_rate, momentum, loss ('bce' or
      'mse'), batch_size and epochs.
    seed: the batch-order seed.
    callbacks: further Keras callbacks.
    snapshots: epochs at which `on_snapshot(epoch, model)` is called (0:
      before training).
    on_snapshot: the snapshot callback; it must not modify the model.
  """
  training.compile_model(model, config.learning_rate, config.momentum,
                         loss=config.loss)
  # The 'keras' order under one seed: the same batch order for both models.
  return training.fit(model, inputs,
                      training.targets_for(labels01, config.loss),
                      batch_size=config.batch_size, seed=seed,
                      epochs=config.epochs, batch_order='keras',
                      callbacks=callbacks, snapshots=snapshots,
                      on_snapshot=on_snapshot)[-1]


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


def index_study(family: str, index_field: str, indices_field: str,
                record_key: Callable[[int, int], str],
                run_once: Callable, load: Callable,
                figures: Callable) -> runner.Study:
  """The `runner.Study` of a task study: one point per task index j.

  Args:
    family: the record family.
    index_field: the point's index name in records ('eigen_index').
    indices_field: the config field listing the indices ('eigen_indices').
    record_key, run_once, load, figures: as in `runner.Study`.
  """
  return runner.Study(family=family,
                      points=operator.attrgetter(indices_field),
                      record_key=record_key, run_once=run_once, load=load,
                      sort_key=runner.PointField(index_field),
                      figures=figures, noun='tasks')


def index_table(entries: Sequence[Mapping[str, Any]], index_field: str,
                columns: Sequence[tables.Column], widths: Sequence[int],
                **options) -> str:
  """`tables.format_table` of a task study: one line per task index j.

  Args:
    entries: summary entries.
    index_field: the point's index name ('eigen_index', 'nad_index').
    columns, widths, **options: as in `tables.format_table`.
  """
  return tables.format_table(
      entries, 'j', lambda entry: entry['point'][index_field], columns,
      widths, **options)


def task_record(config, family: str, key: str, index_field: str, index: int,
                run: int, seed: int, task_info: Mapping[str, Any],
                metrics: Mapping[str, Any], timings: Mapping[str, Any]
                ) -> dict:
  """The store record of one point of a study on a binary task.

  Args:
    config: the study config (dataset, classes, architecture, fingerprint).
    family: the record family.
    key: the record key.
    index_field: the point's index name ('eigen_index', 'epoch').
    index: its value; the point id is '<short name>=<index>' ('j' for an
      eigen index, else the field name).
    run, seed: the run and its seed.
    task_info: the task's `info` (the record's 'data').
    metrics, timings: the measured numbers.
  """
  point = {'family': family, 'task': f'{config.dataset}_'
           f'{config.minus_class}v{config.plus_class}',
           'dataset': config.dataset,
           'nn_architecture': config.architecture, index_field: int(index)}
  short = 'j' if index_field == 'eigen_index' else index_field
  return {'key': key, 'family': family, 'point_id': f'{short}={index}',
          'point': point, 'run': run, 'seed': seed,
          'config_fingerprint': config.fingerprint(), 'data': task_info,
          'metrics': metrics, 'timings': timings}
