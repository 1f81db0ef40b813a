"""Tests for afterkernel.callbacks: kernel metrics logged during fit."""

import csv
import glob
import importlib.util
import math
import os
import tempfile

from absl.testing import absltest
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.util import event_pb2

from afterkernel import callbacks
from afterkernel import data
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import invariance
from afterkernel import kernels
from afterkernel import margin
from afterkernel import models

_TASK = None


def _task():
  global _TASK
  if _TASK is None:
    _TASK = data.permute(data.load_binary_task('digits', 8, 3), 0)
  return _TASK


def _probe():
  task = _task()
  return (task.x_train[:40], task.y_train[:40], task.x_test[:24],
          task.y_test[:24])


def _compiled(model):
  model.compile(optimizer=keras.optimizers.SGD(0.1),
                loss=keras.losses.BinaryCrossentropy(from_logits=True))
  return model


def _fc_model(seed=0):
  keras.utils.set_random_seed(seed)
  return _compiled(models.build_fully_connected((8, 8, 1), width=12,
                                                num_layers=2))


class _Subclassed(keras.Model):
  """A subclassed binary classifier exposing its hidden representation."""

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    self.hidden = keras.layers.Dense(10, activation='relu')
    self.logit = keras.layers.Dense(1)

  def representation(self, inputs):
    flat = keras.ops.reshape(inputs, (keras.ops.shape(inputs)[0], -1))
    return self.hidden(flat)

  def call(self, inputs):
    return self.logit(self.representation(inputs))


def _independent_metrics(model, probe, reference_gram, count):
  """The metrics recomputed with features.gradient_features (lead's path)."""
  x_train, y_train, x_test, y_test = probe
  phi_train = features.gradient_features(model, x_train)
  phi_test = features.gradient_features(model, x_test)
  gram = phi_train.astype(np.float64) @ phi_train.T.astype(np.float64)
  solution = margin.max_margin_from_gram(
      gram, y_train, tolerance=callbacks.DEFAULT_SVM_TOLERANCE,
      max_iterations=callbacks.DEFAULT_SVM_MAX_ITERATIONS)
  y = np.where(y_train > 0, 1.0, -1.0)
  conjugate = features.conjugate_features(model, x_test)
  inv = invariance.invariances(
      lambda x: features.gradient_features(model, x), x_test,
      {k: count for k in invariance.PERTURBATIONS})
  return {
      'kernel_svm_error': margin.test_error(solution, phi_test @ phi_train.T,
                                            y_test),
      'kernel_label_alignment': y @ gram @ y / (np.linalg.norm(gram) * len(y)),
      'kernel_distance_from_init': 1 - kernels.kernel_alignment(
          gram, reference_gram),
      'kernel_kalignment': kernels.kernel_alignment(
          phi_test @ phi_test.T, conjugate @ conjugate.T),
      'kernel_trans_inv': inv['translation'],
      'kernel_rotation_inv': inv['rotation'],
      'kernel_zoom_inv': inv['zoom'],
      'kernel_swap_inv': inv['swap'],
  }


class KernelMetricsCallbackTest(absltest.TestCase):

  def test_history_and_records_match_independent_computation(self):
    model = _fc_model()
    probe = _probe()
    callback = callbacks.KernelMetricsCallback(*probe, epochs=[0, 2],
                                               invariance_count=10)
    task = _task()
    history = model.fit(task.x_train[:96], task.y_train[:96], epochs=2,
                        batch_size=32, verbose=0, callbacks=[callback])
    # Every epoch has the columns: NaN at epoch 1 (not a snapshot epoch),
    # the snapshot at epoch 2; epoch 0 (the FNTK) is in the records and in
    # the 'kernel_init_*' columns of every row.
    for name in callbacks.METRICS:
      self.assertLen(history.history['kernel_' + name], 2)
      self.assertTrue(math.isnan(history.history['kernel_' + name][0]), name)
      self.assertEqual(history.history['kernel_init_' + name],
                       [callback.records[0]['kernel_' + name]] * 2)
    self.assertEqual([r['epoch'] for r in callback.records], [0, 2])
    self.assertAlmostEqual(
        callback.records[0]['kernel_distance_from_init'], 0.0, places=6)
    self.assertGreater(history.history['kernel_distance_from_init'][1], 0.0)
    # The epoch-2 values are those of the final weights.
    expected = _independent_metrics(model, probe, callback.reference_gram, 10)
    for name, value in expected.items():
      self.assertAlmostEqual(history.history[name][1], value, places=4,
                             msg=name)
    self.assertEqual(callback.history()['epoch'], [0, 2])

  def test_epochs_count_on_across_fit_calls(self):
    model = _fc_model(1)
    task = _task()
    callback = callbacks.KernelMetricsCallback(
        *_probe(), metrics=('label_alignment',))
    fit = lambda **kw: model.fit(task.x_train[:32], task.y_train[:32],
                                 batch_size=32, verbose=0,
                                 callbacks=[callback], **kw)
    fit(epochs=1)
    fit(epochs=1)  # No initial_epoch: Keras counts from 0 again.
    fit(epochs=4, initial_epoch=2)  # Keras' own continuation.
    self.assertEqual([r['epoch'] for r in callback.records], [0, 1, 2, 3, 4])

  def test_csv_logger_gets_the_same_columns_every_epoch(self):
    model = _fc_model(1)
    task = _task()
    path = os.path.join(tempfile.mkdtemp(), 'log.csv')
    callback = callbacks.KernelMetricsCallback(
        *_probe(), epochs=[0, 3], metrics=('label_alignment',))
    model.fit(task.x_train[:32], task.y_train[:32], epochs=3, batch_size=32,
              verbose=0, callbacks=[callback, keras.callbacks.CSVLogger(path)])
    with open(path) as f:
      rows = list(csv.DictReader(f))
    self.assertLen(rows, 3)
    values = [float(r['kernel_label_alignment']) for r in rows]
    self.assertTrue(math.isnan(values[0]) and math.isnan(values[1]))
    self.assertAlmostEqual(values[2],
                           callback.records[-1]['kernel_label_alignment'],
                           places=5)
    self.assertEqual({float(r['kernel_init_label_alignment']) for r in rows},
                     {callback.records[0]['kernel_label_alignment']})

  @absltest.skipUnless(importlib.util.find_spec('tensorboard'),
                       "tensorboard not installed: pip install -e "
                       "'.[tensorboard]'")
  def test_metrics_reach_keras_tensorboard_logs(self):
    model = _fc_model(1)
    task = _task()
    log_dir = tempfile.mkdtemp()
    callback = callbacks.KernelMetricsCallback(
        *_probe(), epochs=[0, 2], metrics=('label_alignment',))
    model.fit(task.x_train[:32], task.y_train[:32], epochs=2, batch_size=32,
              verbose=0, callbacks=[callback,
                                    keras.callbacks.TensorBoard(log_dir)])
    values = {}
    for path in glob.glob(os.path.join(log_dir, '**', 'events*'),
                          recursive=True):
      for raw in tf.data.TFRecordDataset(path):
        event = event_pb2.Event.FromString(raw.numpy())
        for value in event.summary.value:
          if not value.tag.startswith('epoch_'):
            continue  # The model graph, keras' own summaries, ...
          number = tf.make_ndarray(value.tensor) if value.HasField(
              'tensor') else value.simple_value
          values.setdefault(value.tag, {})[event.step] = float(number)
    logged = values['epoch_kernel_label_alignment']
    self.assertAlmostEqual(logged[1],
                           callback.records[-1]['kernel_label_alignment'],
                           places=5)
    self.assertTrue(math.isnan(logged[0]))  # Epoch 1: not a snapshot epoch.
    self.assertAlmostEqual(values['epoch_kernel_init_label_alignment'][0],
                           callback.records[0]['kernel_label_alignment'],
                           places=5)

  def test_step_snapshots_and_summaries(self):
    model = _fc_model(1)
    summary_dir = tempfile.mkdtemp()
    callback = callbacks.KernelMetricsCallback(
        *_probe(), epochs=[1], every_n_steps=2,
        metrics=('label_alignment', 'distance_from_init'),
        summary_dir=summary_dir)
    task = _task()
    model.fit(task.x_train[:64], task.y_train[:64], epochs=2, batch_size=16,
              verbose=0, callbacks=[callback])
    kinds = [(r['kind'], r['step']) for r in callback.records]
    self.assertEqual(kinds, [('step', 2), ('step', 4), ('epoch', 4),
                             ('step', 6), ('step', 8)])
    tags = set()
    for path in glob.glob(os.path.join(summary_dir, 'events*')):
      for raw in tf.data.TFRecordDataset(path):
        event = event_pb2.Event.FromString(raw.numpy())
        tags.update(v.tag for v in event.summary.value)
    self.assertIn('kernel_label_alignment', tags)
    self.assertIn('kernel_steps/distance_from_init', tags)

  def test_subclassed_model_with_penultimate_callable(self):
    keras.utils.set_random_seed(2)
    model = _compiled(_Subclassed(name='subclassed'))
    probe = _probe()
    model(probe[0][:1])
    callback = callbacks.KernelMetricsCallback(
        *probe, epochs=[1], metrics=('conjugate_alignment', 'svm_error'),
        penultimate=model.representation)
    history = model.fit(probe[0], probe[1], epochs=1, verbose=0,
                        callbacks=[callback])
    # The 0.1.0 name is accepted and logged under the vocabulary's name.
    self.assertEqual(callback.metrics, ('kalignment', 'svm_error'))
    value = history.history['kernel_kalignment'][0]
    self.assertBetween(value, 0.0, 1.0)
    # Without a penultimate callable the representation cannot be found.
    with self.assertRaisesRegex(errors.AfterKernelError, 'penultimate='):
      callbacks.kernel_metrics(model, callbacks.ProbeSet.create(*probe),
                               metrics=('conjugate_alignment',))

  def test_penultimate_layer_by_name(self):
    model = _fc_model(3)
    probe = callbacks.ProbeSet.create(*_probe())
    by_default = callbacks.kernel_metrics(model, probe,
                                          ('conjugate_alignment',))
    by_name = callbacks.kernel_metrics(model, probe, ('kalignment',),
                                       penultimate='dense1')
    self.assertAlmostEqual(by_default['kalignment'],
                           by_name['kalignment'], places=6)

  def test_bad_inputs(self):
    probe = _probe()
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown kernel'):
      callbacks.KernelMetricsCallback(*probe, metrics=('accuracy',))
    with self.assertRaisesRegex(errors.AfterKernelError, 'both classes'):
      callbacks.KernelMetricsCallback(probe[0], np.ones(40), *probe[2:])
    keras.utils.set_random_seed(4)
    two_outputs = keras.Sequential([keras.Input((8, 8, 1)),
                                    keras.layers.Flatten(),
                                    keras.layers.Dense(2)])
    with self.assertRaisesRegex(errors.AfterKernelError, 'one scalar output'):
      callbacks.kernel_metrics(two_outputs, callbacks.ProbeSet.create(*probe))


if __name__ == '__main__':
  absltest.main()
