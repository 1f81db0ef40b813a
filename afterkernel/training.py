"""The one training loop of the library: every study trains through `fit`.

`fit` runs a model compiled by `compile_model` (Keras SGD with or without
momentum and weight decay; a loss of `LOSSES`) for epochs or optimizer
steps, calling back at chosen epochs or steps, in one of two batch orders:
'dataset' (a tf.data pipeline shuffled with the seed, reshuffled every
epoch, optionally augmented: `train`, the scaling studies) or 'keras'
(Keras' in-memory shuffling under `keras.utils.set_random_seed(seed)`: the
eigentask, NAD, second-order and linearized studies, every model of a run
seeing the same batch order).

The paper's recipe on top (`train`, `train_to_loss_target`): Keras SGD with
its defaults (learning rate 0.01, no momentum) unless a learning rate is
given, BCE on the logit, minibatches of `DEFAULT_BATCH_SIZE`; a fixed number
of epochs with optional snapshots, or train-to-loss-target: 10 epochs, then
doubling the total (10, 20, 40, ...) until the clean training loss is <= the
target or a cap is reached. Augmentation uses Keras 3 preprocessing layers:
random rotations of up to +-15 degrees and shifts of up to +-1 pixel, zero
fill.
"""

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import keras
import numpy as np
import tensorflow as tf

from afterkernel import data as data_lib
from afterkernel import errors

# Keras' own defaults, which the paper used.
DEFAULT_LEARNING_RATE = 0.01
DEFAULT_BATCH_SIZE = 32
_Schedule = keras.optimizers.schedules.LearningRateSchedule
# Augmentation of the paper: rotations up to 15 degrees, 1-pixel shifts.
AUGMENT_ROTATION_DEGREES = 15.0
AUGMENT_SHIFT_PIXELS = 1
# Loss-target mode: first round length, as in the paper's code.
LOSS_TARGET_FIRST_EPOCHS = 10
# Losses by name: 'bce' on the logit with {0, 1} targets; 'mse' (f - y)^2 and
# 'half_mse' 0.5 (f - y)^2 with {-1, +1} targets; 'l2' 0.5 |f - y|^2 summed
# over L outputs (one-hot targets).
LOSSES = ('bce', 'mse', 'half_mse', 'l2')
# Batch orders of `fit` (see the module docstring).
BATCH_ORDERS = ('dataset', 'keras')


@dataclasses.dataclass
class TrainingResult:
  """What training did.

  Attributes:
    epochs: epochs trained in total.
    final_train_loss: mean BCE on the clean training set after training.
    reached_loss_target: for loss-target training, whether the target was met
      (None for fixed-epoch training).
    epoch_losses: the running training loss Keras reported for each epoch.
  """
  epochs: int
  final_train_loss: float
  reached_loss_target: Optional[bool]
  epoch_losses: list


def augmentation_layers(image_shape: Sequence[int]) -> keras.Sequential:
  """Random +-15 degree rotations and +-1 pixel shifts, zero fill."""
  height, width = int(image_shape[0]), int(image_shape[1])
  return keras.Sequential([
      keras.layers.RandomRotation(
          AUGMENT_ROTATION_DEGREES / 360.0, fill_mode='constant',
          fill_value=0.0),
      keras.layers.RandomTranslation(
          AUGMENT_SHIFT_PIXELS / height, AUGMENT_SHIFT_PIXELS / width,
          fill_mode='constant', fill_value=0.0),
  ], name='augmentation')


# Registered: `kernel_fit.EmpiricalNTK` clones the compiled network, and
# Keras' clone_model looks up the loss of the compile configuration by name.
@keras.saving.register_keras_serializable(package='afterkernel')
def half_mse(targets, outputs):
  """Per-example 0.5 (f(x) - y)^2: the MSE loss on +-1 labels of Vyas et al."""
  return 0.5 * keras.ops.mean(keras.ops.square(outputs - targets), axis=-1)


def l2_loss(targets, outputs):
  """Per-example L2 loss 0.5 |f(x) - y|^2, summed over the outputs."""
  return 0.5 * keras.ops.sum(keras.ops.square(outputs - targets), axis=-1)


def loss_function(loss: Union[str, Callable]) -> Callable:
  """The Keras loss named `loss` (one of `LOSSES`), or `loss` if callable."""
  if callable(loss):
    return loss
  errors.require_choice(loss, LOSSES, 'loss')
  if loss == 'bce':
    return keras.losses.BinaryCrossentropy(from_logits=True)
  if loss == 'mse':
    return keras.losses.MeanSquaredError()
  return half_mse if loss == 'half_mse' else l2_loss


def compile_model(model: keras.Model,
                  learning_rate: Optional[Union[float, _Schedule]] = None,
                  momentum: float = 0.0,
                  loss: Union[str, Callable] = 'bce',
                  weight_decay: Optional[float] = None) -> None:
  """Compiles `model` with a fresh Keras SGD and the loss `loss`.

  Compiles in the scope of the tf.distribute strategy the model was built
  under (a no-op for the default strategy), as Keras requires for
  distributed training (see `distribute`).

  Args:
    model: the network.
    learning_rate: SGD learning rate (> 0) or a Keras learning-rate
      schedule; None = Keras' default 0.01.
    momentum: SGD momentum (0 = plain SGD).
    loss: one of `LOSSES` or a Keras loss callable.
    weight_decay: decoupled weight decay of Keras' SGD; None = none.
  """
  rate = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
  schedule = isinstance(rate, _Schedule)
  errors.require(schedule or (rate > 0 and math.isfinite(rate)),
                 f'learning_rate must be positive, got {rate!r}')
  with model.distribute_strategy.scope():
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=rate, momentum=momentum,
                                       weight_decay=weight_decay),
        loss=loss_function(loss))


def targets_for(labels01: np.ndarray, loss: str) -> np.ndarray:
  """(n, 1) float32 targets of {0, 1} labels: as is for 'bce', else +-1."""
  targets = labels01 if loss == 'bce' else data_lib.signed_labels(labels01)
  return np.asarray(targets, np.float32)[:, None]


def _check_data(images: np.ndarray, labels: np.ndarray) -> None:
  errors.require(len(images) == len(labels) and len(images) > 0,
                 f'{len(images)} training images but {len(labels)} labels')
  classes = np.unique(labels)
  errors.require(
      set(classes.tolist()) == {0.0, 1.0},
      f'training labels must contain both classes 0 and 1, got {classes}')


def _dataset(images, targets, batch_size, seed, augment, repeat=False,
             prefetch=tf.data.AUTOTUNE):
  """Seeded shuffle reshuffled every epoch, batches, optional augmentation."""
  data = tf.data.Dataset.from_tensor_slices(
      (np.asarray(images, np.float32), np.asarray(targets, np.float32)))
  data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
  data = data.batch(int(batch_size))
  if augment:
    layers = augmentation_layers(images.shape[1:])
    data = data.map(lambda x, y: (layers(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
  if repeat:
    data = data.repeat()
  return data.prefetch(prefetch)


def predict_outputs(model: keras.Model, images: np.ndarray,
                    batch_size: int = 1024) -> np.ndarray:
  """The network's outputs, (n, L) float32, in inference mode, by batches."""
  return np.concatenate([
      keras.ops.convert_to_numpy(model(images[s:s + batch_size],
                                       training=False))
      for s in range(0, len(images), batch_size)
  ])


def predict_logits(model: keras.Model, images: np.ndarray,
                   batch_size: int = 1024) -> np.ndarray:
  """The network's logits (its one output), (n,) float32, inference mode."""
  return predict_outputs(model, images, batch_size)[:, 0]


def binary_loss(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                batch_size: int = 1024) -> float:
  """Mean binary cross-entropy of the logits on (images, labels)."""
  logits = predict_logits(model, images, batch_size)
  # log(1 + exp(-s)) with s = logit for y=1, -logit for y=0; stable form.
  signed = np.where(labels > 0.5, logits, -logits).astype(np.float64)
  return float(np.mean(np.logaddexp(0.0, -signed)))


def sign_error(outputs: np.ndarray, labels: np.ndarray) -> float:
  """Fraction with (output > 0) != (label > 0.5); labels {0, 1} or +-1.

  The decision rule of every loss here: a positive logit (BCE) or a
  positive regression output (MSE on +-1) predicts the plus class.
  """
  return float(np.mean((np.asarray(outputs) > 0) !=
                       (np.asarray(labels) > 0.5)))


def sign_accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
  """Fraction with (output > 0) == (label > 0.5); see `sign_error`."""
  return float(np.mean((np.asarray(outputs) > 0) ==
                       (np.asarray(labels) > 0.5)))


def accuracy(outputs: np.ndarray, labels: np.ndarray) -> float:
  """Fraction correct of (n, L) outputs: argmax vs class labels for L > 1,
  output > 0 vs {0, 1} labels for L = 1 (`sign_accuracy`)."""
  if outputs.shape[1] == 1:
    return sign_accuracy(outputs[:, 0], labels)
  return float(np.mean(np.argmax(outputs, axis=1) == labels))


def classification_error(model: keras.Model, images: np.ndarray,
                         labels: np.ndarray) -> float:
  """Fraction of examples whose sign of logit disagrees with the 0/1 label."""
  return sign_error(predict_logits(model, images), labels)


class StepCallback(keras.callbacks.Callback):
  """Calls `fn(step, model)` after the listed training steps (0 = before).

  Steps count optimizer updates since `on_train_begin` (Keras calls
  `on_train_batch_end` after every update when steps_per_execution is 1,
  its default), so one `fit` over many epochs yields snapshots at exact
  steps rather than epoch ends.
  """

  def __init__(self, steps: Sequence[int],
               fn: Callable[[int, keras.Model], None]):
    super().__init__()
    self.steps = sorted(set(int(s) for s in steps))
    self.fn = fn
    self.step = 0

  def on_train_begin(self, logs=None):
    self.step = 0
    if 0 in self.steps:
      self.fn(0, self.model)

  def on_train_batch_end(self, batch, logs=None):
    self.step += 1
    if self.step in self.steps:
      self.fn(self.step, self.model)


class _EpochCallback(keras.callbacks.Callback):
  """Calls `fn(epoch, model)` after the listed (1-based) epochs."""

  def __init__(self, epochs: Sequence[int],
               fn: Callable[[int, keras.Model], None]):
    super().__init__()
    self.epochs, self.fn = set(epochs), fn

  def on_epoch_end(self, epoch, logs=None):
    if epoch + 1 in self.epochs:
      self.fn(epoch + 1, self.model)


def _is_count(value) -> bool:
  return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)
          and value >= 0)


def fit(model: keras.Model,
        inputs: np.ndarray,
        targets: np.ndarray,
        *,
        batch_size: int,
        seed: int,
        epochs: Optional[int] = None,
        steps: Optional[int] = None,
        batch_order: str = 'dataset',
        augment: bool = False,
        snapshots: Sequence[int] = (),
        on_snapshot: Optional[Callable[[int, keras.Model], None]] = None,
        callbacks: Sequence[keras.callbacks.Callback] = (),
        verbose: int = 0) -> List[float]:
  """Trains a compiled `model` for `epochs` epochs or `steps` SGD steps.

  The one training loop of the library (compile first, `compile_model`).
  With `steps`, minibatches are consecutive chunks of a fresh seeded
  permutation each epoch, the last chunk of an epoch possibly smaller (as
  `kernel_fit.fit_sgd` does); with steps == 0 the callbacks' step-0 hooks
  still run and the weights stay as they are.

  Args:
    model: a compiled Keras model.
    inputs: (n, ...) float32 inputs.
    targets: (n, L) float32 targets (see `targets_for`).
    batch_size: minibatch size (> n means full batch).
    seed: the shuffling seed (see `BATCH_ORDERS`).
    epochs: total epochs (>= 0); give this or `steps`.
    steps: optimizer steps (>= 0); 'dataset' order only.
    batch_order: one of `BATCH_ORDERS`.
    augment: random rotations and shifts ('dataset' order only).
    snapshots: epochs (or steps, with `steps`) after which `on_snapshot` is
      called with (epoch or step, model); 0 means before training.
    on_snapshot: the snapshot callback; it must not modify the model.
    callbacks: further Keras callbacks.
    verbose: Keras fit verbosity.

  Returns:
    The training loss Keras reported for each epoch trained.

  Raises:
    AfterKernelError: both or neither of epochs / steps, a negative count,
      snapshots out of range, an unknown batch order.
  """
  errors.require((epochs is None) != (steps is None),
                 'give exactly one of epochs and steps')
  total = epochs if steps is None else steps
  what = 'epochs' if steps is None else 'steps'
  errors.require(_is_count(total),
                 f'{what} must be a non-negative integer, got {total!r}')
  errors.require_positive(batch_size, 'batch_size')
  errors.require_choice(batch_order, BATCH_ORDERS, 'batch_order')
  marks = sorted(set(int(e) for e in snapshots))
  errors.require(all(0 <= e <= total for e in marks),
                 f'snapshot {what} {marks} must lie in [0, {total}]')
  # Without a callback, snapshot epochs still split `fit` into segments (the
  # batch order of `train` has always depended on them).
  snap = on_snapshot or (lambda *_: None)
  callbacks = list(callbacks)
  if batch_order == 'keras':
    errors.require(steps is None and not augment,
                   "batch_order='keras' trains whole epochs, unaugmented")
    if 0 in marks:
      snap(0, model)
    if marks:
      callbacks.append(_EpochCallback([e for e in marks if e > 0], snap))
    keras.utils.set_random_seed(seed)  # Every model: the same batch order.
    history = model.fit(inputs, targets, batch_size=batch_size,
                        epochs=epochs, shuffle=True, verbose=verbose,
                        callbacks=callbacks)
    return [float(v) for v in history.history.get('loss', [])]
  if steps is not None:
    if marks:
      callbacks.append(StepCallback(marks, snap))
    if steps == 0:
      for callback in callbacks:
        callback.set_model(model)
        callback.on_train_begin()
      return []
    dataset = _dataset(inputs, targets, batch_size, seed, augment,
                       repeat=True, prefetch=2)
    history = model.fit(dataset, epochs=1, steps_per_epoch=int(steps),
                        shuffle=False, callbacks=callbacks, verbose=verbose)
    return [float(v) for v in history.history['loss']]
  dataset = _dataset(inputs, targets, batch_size, seed, augment)
  losses, done = [], 0
  if 0 in marks:
    snap(0, model)
  for target in [e for e in marks if e > 0] + [epochs]:
    if target > done:
      losses.extend(_fit_epochs(model, dataset, done, target, callbacks,
                                verbose))
      done = target
      if target in marks:
        snap(target, model)
  return losses


def _fit_epochs(model, dataset, done, target, callbacks, verbose):
  """Epochs done+1 .. target over `dataset`; their Keras losses."""
  history = model.fit(dataset, epochs=target, initial_epoch=done,
                      shuffle=False, callbacks=callbacks, verbose=verbose)
  return [float(v) for v in history.history['loss']]


def train(model: keras.Model,
          images: np.ndarray,
          labels: np.ndarray,
          epochs: int,
          learning_rate: Optional[float] = None,
          batch_size: int = DEFAULT_BATCH_SIZE,
          augment: bool = False,
          seed: int = 0,
          snapshot_epochs: Sequence[int] = (),
          on_snapshot: Optional[Callable[[int, keras.Model], None]] = None,
          verbose: int = 0) -> TrainingResult:
  """Trains for a fixed number of epochs; 0 epochs leaves the model as is.

  Args:
    model: the network (compiled here with SGD + BCE on logits).
    images: (n, H, W, C) float32 training images.
    labels: (n,) labels in {0, 1}.
    epochs: total epochs (>= 0).
    learning_rate: SGD learning rate; None = Keras default 0.01.
    batch_size: minibatch size.
    augment: apply random rotations and shifts to each minibatch.
    seed: seed of the shuffling order.
    snapshot_epochs: epochs (0 <= e <= epochs) after which `on_snapshot` is
      called with (epoch, model); epoch 0 means before training.
    on_snapshot: the callback; it must not modify the model.
    verbose: Keras fit verbosity.

  Returns:
    A `TrainingResult`.

  Raises:
    AfterKernelError: negative epochs, snapshot epochs out of range, one-class
      or mismatched data.
  """
  errors.require(isinstance(epochs, (int, np.integer)) and epochs >= 0,
                 f'epochs must be a non-negative integer, got {epochs!r}')
  errors.require_positive(batch_size, 'batch_size')
  _check_data(images, labels)
  snapshots = sorted(set(int(e) for e in snapshot_epochs))
  errors.require(all(0 <= e <= epochs for e in snapshots),
                 f'snapshot epochs {snapshots} must lie in [0, {epochs}]')
  compile_model(model, learning_rate)
  epoch_losses = fit(model, images, targets_for(labels, 'bce'),
                     batch_size=batch_size, seed=seed, epochs=int(epochs),
                     augment=augment, snapshots=snapshots,
                     on_snapshot=on_snapshot, verbose=verbose)
  return TrainingResult(epochs=int(epochs),
                        final_train_loss=binary_loss(model, images, labels),
                        reached_loss_target=None,
                        epoch_losses=epoch_losses)


def train_to_loss_target(model: keras.Model,
                         images: np.ndarray,
                         labels: np.ndarray,
                         loss_target: float,
                         max_epochs: int,
                         learning_rate: Optional[float] = None,
                         batch_size: int = DEFAULT_BATCH_SIZE,
                         augment: bool = False,
                         seed: int = 0,
                         verbose: int = 0) -> TrainingResult:
  """Trains in rounds of doubling length until training loss <= target.

  Round k brings the total to 10 * 2**k epochs (10, 20, 40, ...), capped at
  `max_epochs`; after each round the loss is measured on the clean training
  set.

  Args:
    model: the network.
    images: (n, H, W, C) float32 training images.
    labels: (n,) labels in {0, 1}.
    loss_target: stop once the training BCE is <= this (> 0).
    max_epochs: cap on the total number of epochs (> 0).
    learning_rate: SGD learning rate; None = Keras default.
    batch_size: minibatch size.
    augment: random rotations and shifts.
    seed: shuffling seed.
    verbose: Keras fit verbosity.

  Returns:
    A `TrainingResult` with `reached_loss_target` set.
  """
  errors.require_positive(loss_target, 'training_loss_target')
  errors.require_positive(max_epochs, 'max_num_epochs')
  errors.require_positive(batch_size, 'batch_size')
  _check_data(images, labels)
  compile_model(model, learning_rate)
  dataset = _dataset(images, targets_for(labels, 'bce'), batch_size, seed,
                     augment)
  done, epoch_losses = 0, []
  target = min(LOSS_TARGET_FIRST_EPOCHS, max_epochs)
  while True:
    epoch_losses.extend(_fit_epochs(model, dataset, done, target, [],
                                    verbose))
    done = target
    loss = binary_loss(model, images, labels)
    if loss <= loss_target or done >= max_epochs:
      return TrainingResult(epochs=done, final_train_loss=loss,
                            reached_loss_target=loss <= loss_target,
                            epoch_losses=epoch_losses)
    target = min(2 * done, max_epochs)


class NetworkEvaluator:
  """A snapshot target recording test error and MSE at each call.

  Attributes:
    curve: [(step, test error, test MSE mean (f - y)^2)] (MSE without the
      1/2, as `kernel_fit.FitResult` reports it).
  """

  def __init__(self, images: np.ndarray, targets: np.ndarray):
    self.images, self.targets = images, targets
    self.curve = []

  def __call__(self, step: int, model: keras.Model) -> None:
    outputs = predict_logits(model, self.images)
    self.curve.append((int(step), sign_error(outputs, self.targets),
                       float(np.mean((outputs - self.targets)**2))))

  def metrics(self, prefix: str = 'network') -> Dict[str, Any]:
    """Best (optimal early stopping) and final test error, and best step."""
    best = min(self.curve, key=lambda c: (c[1], c[0]))
    return {f'{prefix}_test_error': best[1],
            f'{prefix}_best_step': best[0],
            f'{prefix}_final_test_error': self.curve[-1][1],
            f'{prefix}_final_test_mse': self.curve[-1][2]}
