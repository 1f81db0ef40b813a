"""A Keras callback that tracks a network's kernel during `model.fit`.

`KernelMetricsCallback` snapshots the network's kernel
K_t(u, v) = grad_theta f_t(u) . grad_theta f_t(v) (the FNTK at the start of
training, the after kernel at its end) on a fixed probe set, at chosen epochs
and optionally every k optimizer steps, and writes kernel metrics into the
Keras logs, so they appear in `History.history`, the progress bar and, when
the callback comes BEFORE `keras.callbacks.TensorBoard` in the callbacks
list, in TensorBoard (Keras passes one logs dict through the callbacks in
list order). It can also write them itself with `tf.summary` (`summary_dir`).

Metrics (default `METRICS`; names of the one vocabulary of `kernels.probe`,
which computes them), logged as '<prefix><name>' (default prefix 'kernel_'):
  * 'svm_error': test error on the probe test set of the hard-margin SVM
    (no bias) of the current kernel, trained on the probe training set
    (`margin.max_margin_from_gram` on `kernels.gram` of the features);
  * 'svm_margin': its margin, features rescaled to mean norm 1;
  * 'trans_inv', 'rotation_inv', 'zoom_inv', 'swap_inv': the four
    invariances of `invariance.invariances` on the probe test images;
  * 'kalignment' ('conjugate_alignment' in 0.1.0, still accepted as a
    request): alignment <K, K_c>_F / (|K|_F |K_c|_F) of the kernel with its
    conjugate projection K_c(u, v) = h(u).h(v), h the penultimate layer
    (`kernels.metrics.kernel_alignment`), on the probe test images;
  * 'label_alignment': y^T K y / (|K|_F |y|^2) with y in {-1, +1}^n on the
    probe training set (Cristianini et al. 2002: the alignment of K with the
    ideal kernel y y^T);
  * 'distance_from_init': 1 - alignment(K, K_0) on the probe training set,
    K_0 the kernel when training began (the first `fit` call the callback
    saw): 0 while the network is in the lazy (kernel) regime.

Every epoch end gets the same columns, so `History.history`, CSVLogger and
TensorBoard line up with the loss: '<prefix><name>' holds the snapshot of
that epoch, or NaN at an epoch that is not in `epochs`; and
'<prefix>init_<name>' holds the epoch-0 snapshot (the FNTK, taken before the
first step, which Keras' History cannot hold as a row of its own) at every
epoch. All snapshots are also in `callback.records` (with their epoch and
step) and, with `summary_dir`, in the `tf.summary` output. Epochs count on
across several `fit` calls: a second `fit` (with or without
`initial_epoch`) continues from the epochs already completed.

Requirements: the model has one scalar output per example (e.g. a final
Dense(1) logit) and binary probe labels. The penultimate representation is
the input of the last layer for Sequential and functional models; for any
other model (or to use another layer) pass `penultimate`: a layer name, a
layer of the model, or a callable mapping an input batch to (batch, ...)
activations.
"""

import dataclasses
import math
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Union

from absl import logging
import keras
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import summary_pb2

from afterkernel import errors
from afterkernel.kernels import features
from afterkernel.kernels import invariance
from afterkernel.kernels import jacobians
from afterkernel import kernels
from afterkernel.kernels import metrics as metric_lib
from afterkernel.kernels import probe as probe_lib

# The callback's default metrics (names of the one vocabulary,
# `kernels.probe.METRICS`, which also has the effective ranks).
METRICS = ('svm_error', 'svm_margin', 'trans_inv', 'rotation_inv', 'zoom_inv',
           'swap_inv', 'kalignment', 'label_alignment', 'distance_from_init')
DEFAULT_PREFIX = 'kernel_'
# Probe test images per invariance: enough for a stable mean cosine, and the
# perturbed features cost 7 extra feature passes per snapshot.
DEFAULT_INVARIANCE_COUNT = 100
# The SVM is a diagnostic here: a 1e-3 relative duality gap fixes the test
# error of a few hundred probe points and costs ~1/3 of the 1e-4 iterations.
DEFAULT_SVM_TOLERANCE = 1e-3
DEFAULT_SVM_MAX_ITERATIONS = 5000
# TensorBoard shows summaries tagged with this plugin as scalar charts.
_SCALARS_PLUGIN = 'scalars'

Penultimate = Union[None, str, keras.layers.Layer, Callable[[np.ndarray], Any]]


@dataclasses.dataclass(frozen=True)
class ProbeSet:
  """The fixed examples on which kernels are compared across training.

  Attributes:
    x_train: (n, ...) inputs the SVM is trained on (and the label alignment
      and distance from init are measured on).
    y_train: (n,) binary labels, {0, 1} or {-1, +1}.
    x_test: (m, ...) inputs for the SVM test error, invariances and
      conjugate alignment.
    y_test: (m,) binary labels.
  """
  x_train: np.ndarray
  y_train: np.ndarray
  x_test: np.ndarray
  y_test: np.ndarray

  @classmethod
  def create(cls, x_train, y_train, x_test, y_test) -> 'ProbeSet':
    """Converts to float32 and checks sizes and binary labels."""
    arrays = [np.asarray(a, np.float32) for a in (x_train, y_train, x_test,
                                                  y_test)]
    x_train, y_train, x_test, y_test = arrays
    for name, x, y in (('train', x_train, y_train), ('test', x_test, y_test)):
      errors.require(len(x) == len(y) and len(x) > 0,
                     f'probe {name} set has {len(x)} inputs but {len(y)} '
                     'labels (need equal, > 0)')
      errors.require(set(np.unique(y).tolist()) <= {0.0, 1.0, -1.0},
                     f'probe {name} labels must be binary (0/1 or -1/+1), got '
                     f'{np.unique(y)[:5]}')
    errors.require(len(np.unique(y_train > 0)) == 2,
                   'probe training labels must contain both classes')
    return cls(x_train, y_train, x_test, y_test)


# The label helpers of 0.1.0, now in kernels.metrics.
signed_labels = metric_lib.signed_labels
label_alignment = metric_lib.label_alignment


def penultimate_fn(model: keras.Model,
                   penultimate: Penultimate = None) -> Callable:
  """Maps an input batch to flattened penultimate activations (batch, d).

  Args:
    model: the network.
    penultimate: None (the input of the model's last layer; Sequential and
      functional models only), a layer name or layer of `model`, or a
      callable taking an input batch.

  Returns:
    A function numpy batch -> (batch, d) float32 numpy array.

  Raises:
    AfterKernelError: when the representation cannot be found.
  """
  if callable(penultimate) and not isinstance(penultimate, keras.layers.Layer):
    function = penultimate
  else:
    errors.require(
        bool(getattr(model, 'inputs', None)),
        f'cannot find the penultimate layer of {type(model).__name__} '
        f'{model.name!r} (not a Sequential/functional model); pass '
        'penultimate=<callable returning h(x)>')
    if penultimate is None:
      tensor = model.layers[-1].input
    else:
      layer = (model.get_layer(penultimate) if isinstance(penultimate, str)
               else penultimate)
      tensor = layer.output
    inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
    function = keras.Model(inputs, tensor)

  def apply(images):
    outputs = keras.ops.convert_to_numpy(function(images, training=False)
                                         if isinstance(function, keras.Model)
                                         else function(images))
    return np.asarray(outputs, np.float32).reshape(len(images), -1)

  return apply


def gradient_features(model: keras.Model, inputs: np.ndarray,
                      batch_size: int = features.DEFAULT_BATCH_SIZE
                      ) -> np.ndarray:
  """(n, P) gradients of the model's single output, for any Keras model
  (the one engine, `features.gradient_features`: per_layer where it applies,
  vectorized otherwise)."""
  return features.gradient_features(model, inputs, batch_size)


def kernel_metrics(model: keras.Model,
                   probe: ProbeSet,
                   metrics: Sequence[str] = METRICS,
                   reference_gram: Optional[np.ndarray] = None,
                   penultimate: Penultimate = None,
                   invariance_count: int = DEFAULT_INVARIANCE_COUNT,
                   rotation_angle: float = invariance.DEFAULT_ROTATION_ANGLE,
                   svm_tolerance: float = DEFAULT_SVM_TOLERANCE,
                   svm_max_iterations: int = DEFAULT_SVM_MAX_ITERATIONS,
                   batch_size: int = jacobians.DEFAULT_BATCH_SIZE
                   ) -> Dict[str, float]:
  """The kernel metrics of `model`'s current weights on a probe set.

  A call of the one probe (`kernels.probe.KernelProbe`): the SVM, label
  alignment and distance from init on the probe training set, the
  invariances and the conjugate alignment on the probe test set (all of it),
  with this module's gradient features and penultimate layer.

  Args:
    model: a Keras model with one scalar output per example.
    probe: the probe examples.
    metrics: names from `kernels.probe.METRICS` to compute (the 0.1.0 name
      'conjugate_alignment' means 'kalignment').
    reference_gram: K_0 on probe.x_train, for 'distance_from_init'.
    penultimate: see `penultimate_fn`.
    invariance_count: probe test images per invariance (capped at m).
    rotation_angle: radians, for 'rotation_inv'.
    svm_tolerance: relative duality gap at which the SVM stops.
    svm_max_iterations: SVM iteration cap.
    batch_size: examples per vectorized gradient block.

  Returns:
    name -> value for the requested metrics (vocabulary names).

  Raises:
    AfterKernelError: unknown metric, a model with several outputs, or a
      missing reference Gram.
  """
  names = probe_lib.canonical_metrics(metrics)
  errors.require(
      jacobians.num_outputs(model, probe.x_train) == 1,
      'kernel metrics need a model with one scalar output (a final Dense(1)); '
      'for several outputs use afterkernel.kernels.jacobians.jacobian_gram')
  count = min(int(invariance_count), len(probe.x_test))
  spec = probe_lib.ProbeSpec(
      metrics=names, num_translations=count, num_rotations=count,
      num_zooms=count, num_swaps=count, rotation_angle=rotation_angle,
      svm_tolerance=svm_tolerance, svm_max_iterations=svm_max_iterations,
      feature_batch_size=batch_size)
  kernel_probe = probe_lib.KernelProbe(
      spec, probe,
      gradient_fn=lambda m, x: gradient_features(m, x, batch_size),
      conjugate_fn=lambda m, x: penultimate_fn(m, penultimate)(x))
  values = kernel_probe.measure(model, reference_gram)['metrics']
  return {name: float(values[name]) for name in probe_lib.METRICS
          if name in names}


def write_scalar_summary(tag: str, value: float, step: int) -> None:
  """Writes one scalar to the default tf.summary writer, TensorBoard-style.

  `tf.summary.scalar` needs the tensorboard package; this writes the same
  event (a float32 tensor with the 'scalars' plugin metadata, which
  TensorBoard displays as a scalar) with core TensorFlow only.

  Args:
    tag: summary name.
    value: the scalar.
    step: the x-axis value.
  """
  metadata = summary_pb2.SummaryMetadata(
      plugin_data=summary_pb2.SummaryMetadata.PluginData(
          plugin_name=_SCALARS_PLUGIN))
  tf.summary.write(tag, tf.constant(value, tf.float32), step=step,
                   metadata=metadata.SerializeToString())


class KernelMetricsCallback(keras.callbacks.Callback):
  """Logs kernel metrics of the network being fitted (see module docstring).

  Example:
    callback = KernelMetricsCallback(x_probe, y_probe, x_test, y_test,
                                     epochs=[0, 1, 5])
    history = model.fit(x, y, epochs=5,
                        callbacks=[callback, keras.callbacks.TensorBoard(d)])
    history.history['kernel_svm_error']       # after 1, NaN x 3, after 5
    history.history['kernel_init_svm_error']  # the FNTK (epoch 0), each row
    callback.records[0]['kernel_svm_error']   # the FNTK too

  Attributes:
    records: one dict per snapshot: {'epoch', 'step', 'seconds',
      '<prefix><metric>': value, ...}; 'epoch' counts completed epochs (0 =
      before training) and 'step' optimizer steps since the first fit.
    reference_gram: K_0 on the probe training set.
  """

  def __init__(self,
               x_train: np.ndarray,
               y_train: np.ndarray,
               x_test: np.ndarray,
               y_test: np.ndarray,
               epochs: Optional[Sequence[int]] = None,
               every_n_steps: Optional[int] = None,
               metrics: Sequence[str] = METRICS,
               penultimate: Penultimate = None,
               invariance_count: int = DEFAULT_INVARIANCE_COUNT,
               rotation_angle: float = invariance.DEFAULT_ROTATION_ANGLE,
               svm_tolerance: float = DEFAULT_SVM_TOLERANCE,
               svm_max_iterations: int = DEFAULT_SVM_MAX_ITERATIONS,
               prefix: str = DEFAULT_PREFIX,
               summary_dir: Optional[str] = None,
               batch_size: int = jacobians.DEFAULT_BATCH_SIZE,
               verbose: bool = False):
    """Configures the snapshots.

    Args:
      x_train: probe training inputs (the SVM's training set).
      y_train: their binary labels.
      x_test: probe test inputs.
      y_test: their binary labels.
      epochs: completed-epoch counts at which to snapshot (0 = before the
        first step); None means 0 and every epoch.
      every_n_steps: also snapshot every this many optimizer steps (logged
        in the batch logs, `records` and tf.summary, not in History).
      metrics: names from `METRICS`.
      penultimate: see `penultimate_fn` (for 'conjugate_alignment').
      invariance_count: probe test images per invariance.
      rotation_angle: radians, for 'rotation_inv'.
      svm_tolerance: relative duality gap of the SVM.
      svm_max_iterations: SVM iteration cap.
      prefix: prepended to metric names in logs.
      summary_dir: if set, also write each snapshot with tf.summary there
        (tags '<prefix><metric>', step = epoch for epoch snapshots; tags
        '<prefix>steps/<metric>', step = optimizer step for step snapshots).
      batch_size: examples per vectorized gradient block.
      verbose: log one line per snapshot with absl logging.

    Raises:
      AfterKernelError: bad probe data, epochs or step interval.
    """
    super().__init__()
    self.probe = ProbeSet.create(x_train, y_train, x_test, y_test)
    self.metrics = probe_lib.canonical_metrics(metrics)
    errors.require(
        epochs is None or all(isinstance(e, (int, np.integer)) and e >= 0
                              for e in epochs),
        f'epochs must be non-negative integers, got {epochs!r}')
    self.epochs = None if epochs is None else frozenset(int(e) for e in epochs)
    if every_n_steps is not None:
      errors.require_positive(every_n_steps, 'every_n_steps')
    self.every_n_steps = every_n_steps
    self.penultimate = penultimate
    self.invariance_count = invariance_count
    self.rotation_angle = rotation_angle
    self.svm_tolerance = svm_tolerance
    self.svm_max_iterations = svm_max_iterations
    self.prefix = prefix
    self.summary_dir = summary_dir
    self.batch_size = batch_size
    self.verbose = verbose
    self.records: List[Dict[str, Any]] = []
    self.reference_gram: Optional[np.ndarray] = None
    self._step = 0
    self._epoch = 0
    self._offset = 0  # Completed epochs before this fit's epoch 0.
    self._fit_started = False
    self._writer = None

  def _wants_epoch(self, completed_epochs: int) -> bool:
    return self.epochs is None or completed_epochs in self.epochs

  def measure(self) -> Dict[str, float]:
    """The metrics of the model's current weights, names prefixed."""
    values = kernel_metrics(
        self.model, self.probe, self.metrics, self.reference_gram,
        self.penultimate, self.invariance_count, self.rotation_angle,
        self.svm_tolerance, self.svm_max_iterations, self.batch_size)
    return {self.prefix + name: value for name, value in values.items()}

  def _snapshot(self, epoch: int, kind: str) -> Dict[str, float]:
    start = time.time()
    values = self.measure()
    seconds = time.time() - start
    self.records.append(dict(epoch=epoch, step=self._step, kind=kind,
                             seconds=seconds, **values))
    if self.verbose:
      logging.info('kernel snapshot at epoch %d step %d (%.1f s): %s', epoch,
                   self._step, seconds,
                   ', '.join(f'{k}={v:.4f}' for k, v in values.items()))
    if self.summary_dir:
      if self._writer is None:
        self._writer = tf.summary.create_file_writer(self.summary_dir)
      step = epoch if kind == 'epoch' else self._step
      with self._writer.as_default():
        for name, value in values.items():
          tag = (name if kind == 'epoch' else
                 f'{self.prefix}steps/{name[len(self.prefix):]}')
          write_scalar_summary(tag, value, step)
      self._writer.flush()
    return values

  def on_train_begin(self, logs=None):
    self._fit_started = True
    if self.reference_gram is None:
      # K_0 of the first fit: the FNTK when training starts from init.
      self.reference_gram = kernels.gram(gradient_features(
          self.model, self.probe.x_train, self.batch_size))
    if self._wants_epoch(self._epoch) and not any(
        r['epoch'] == self._epoch and r['kind'] == 'epoch'
        for r in self.records):
      self._snapshot(self._epoch, 'epoch')

  def on_train_batch_end(self, batch, logs=None):
    self._step += 1
    if self.every_n_steps and self._step % self.every_n_steps == 0:
      values = self._snapshot(self._epoch, 'step')
      if logs is not None:
        logs.update(values)

  def on_epoch_begin(self, epoch, logs=None):
    if self._fit_started:
      # A new fit: Keras counts from initial_epoch (0 unless given); the
      # callback counts completed epochs across fits.
      self._offset = max(0, self._epoch - epoch)
      self._fit_started = False

  def on_epoch_end(self, epoch, logs=None):
    self._epoch = epoch + 1 + self._offset
    if self._wants_epoch(self._epoch):
      values = self._snapshot(self._epoch, 'epoch')
    else:
      values = {self.prefix + name: math.nan for name in self.metrics}
    if logs is not None:
      logs.update(values)
      logs.update(self._initial_values())

  def _initial_values(self) -> Dict[str, float]:
    """'<prefix>init_<metric>' -> the epoch-0 snapshot (NaN if none)."""
    first = next((r for r in self.records
                  if r['epoch'] == 0 and r['kind'] == 'epoch'), {})
    return {f'{self.prefix}init_{name}': first.get(self.prefix + name,
                                                  math.nan)
            for name in self.metrics}

  def on_train_end(self, logs=None):
    if self._writer is not None:
      self._writer.flush()

  def history(self) -> Mapping[str, List[float]]:
    """Epoch snapshots as {'epoch': [...], '<prefix><metric>': [...]}."""
    rows = [r for r in self.records if r['kind'] == 'epoch']
    out = {'epoch': [r['epoch'] for r in rows]}
    for name in self.metrics:
      key = self.prefix + name
      out[key] = [r.get(key, math.nan) for r in rows]
    return out
