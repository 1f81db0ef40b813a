"""Training the networks whose kernels we study, as the paper did.

Keras SGD (default hyper-parameters: learning rate 0.01, no momentum, unless a
learning rate is given), binary cross-entropy on the logit, minibatches of
`DEFAULT_BATCH_SIZE` reshuffled every epoch. Two stopping rules:

  * a fixed number of epochs, optionally calling back at listed epochs so one
    training trajectory yields kernels at several epochs (`snapshot_epochs`);
  * train-to-loss-target: train 10 epochs, then keep training, doubling the
    total number of epochs each round (10, 20, 40, ...) until the training
    loss (on the clean training set) is <= the target or a cap is reached.

Optional augmentation uses Keras 3 preprocessing layers (ImageDataGenerator is
gone from Keras 3): random rotation of up to +-15 degrees and random shifts of
up to +-1 pixel, both with zero fill.
"""

import dataclasses
import math
from typing import Callable, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from afterkernel import errors

# Keras' own defaults, which the paper used.
DEFAULT_LEARNING_RATE = 0.01
DEFAULT_BATCH_SIZE = 32
# Augmentation of the paper: rotations up to 15 degrees, 1-pixel shifts.
AUGMENT_ROTATION_DEGREES = 15.0
AUGMENT_SHIFT_PIXELS = 1
# Loss-target mode: first round length, as in the paper's code.
LOSS_TARGET_FIRST_EPOCHS = 10


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


def compile_for_binary(model: keras.Model,
                       learning_rate: Optional[float] = None) -> None:
  """Compiles `model` with SGD and binary cross-entropy on logits.

  Compiles in the scope of the tf.distribute strategy the model was built
  under (a no-op for the default strategy), as Keras requires for
  distributed training (see `distribute`).
  """
  rate = DEFAULT_LEARNING_RATE if learning_rate is None else learning_rate
  errors.require(rate > 0 and math.isfinite(rate),
                 f'learning_rate must be positive, got {rate!r}')
  with model.distribute_strategy.scope():
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate=rate),
        loss=keras.losses.BinaryCrossentropy(from_logits=True))


def _check_data(images: np.ndarray, labels: np.ndarray) -> None:
  errors.require(len(images) == len(labels) and len(images) > 0,
                 f'{len(images)} training images but {len(labels)} labels')
  classes = np.unique(labels)
  errors.require(
      set(classes.tolist()) == {0.0, 1.0},
      f'training labels must contain both classes 0 and 1, got {classes}')


def _dataset(images, labels, batch_size, seed, augment):
  data = tf.data.Dataset.from_tensor_slices(
      (images.astype(np.float32), labels.astype(np.float32)[:, None]))
  data = data.shuffle(len(images), seed=seed, reshuffle_each_iteration=True)
  data = data.batch(batch_size)
  if augment:
    layers = augmentation_layers(images.shape[1:])
    data = data.map(lambda x, y: (layers(x, training=True), y),
                    num_parallel_calls=tf.data.AUTOTUNE)
  return data.prefetch(tf.data.AUTOTUNE)


def binary_loss(model: keras.Model, images: np.ndarray, labels: np.ndarray,
                batch_size: int = 1024) -> float:
  """Mean binary cross-entropy of the logits on (images, labels)."""
  logits = predict_logits(model, images, batch_size)
  # log(1 + exp(-s)) with s = logit for y=1, -logit for y=0; stable form.
  signed = np.where(labels > 0.5, logits, -logits).astype(np.float64)
  return float(np.mean(np.logaddexp(0.0, -signed)))


def predict_logits(model: keras.Model, images: np.ndarray,
                   batch_size: int = 1024) -> np.ndarray:
  """The network's logits, (n,) float32, in inference mode."""
  return np.concatenate([
      keras.ops.convert_to_numpy(model(images[s:s + batch_size],
                                       training=False))[:, 0]
      for s in range(0, len(images), batch_size)
  ])


def classification_error(model: keras.Model, images: np.ndarray,
                         labels: np.ndarray) -> float:
  """Fraction of examples whose sign of logit disagrees with the 0/1 label."""
  predictions = (predict_logits(model, images) > 0).astype(np.float32)
  return float(np.mean(predictions != labels))


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
  compile_for_binary(model, learning_rate)
  data = _dataset(images, labels, batch_size, seed, augment)
  epoch_losses = []
  done = 0
  if 0 in snapshots and on_snapshot:
    on_snapshot(0, model)
  for target in [e for e in snapshots if e > 0] + [epochs]:
    if target > done:
      history = model.fit(data, epochs=target, initial_epoch=done, shuffle=False,
                          verbose=verbose)
      epoch_losses.extend(float(v) for v in history.history['loss'])
      done = target
      if target in snapshots and on_snapshot:
        on_snapshot(target, model)
  return TrainingResult(epochs=done,
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
  compile_for_binary(model, learning_rate)
  data = _dataset(images, labels, batch_size, seed, augment)
  done, epoch_losses = 0, []
  target = min(LOSS_TARGET_FIRST_EPOCHS, max_epochs)
  while True:
    history = model.fit(data, epochs=target, initial_epoch=done, shuffle=False,
                        verbose=verbose)
    epoch_losses.extend(float(v) for v in history.history['loss'])
    done = target
    loss = binary_loss(model, images, labels)
    if loss <= loss_target or done >= max_epochs:
      return TrainingResult(epochs=done, final_train_loss=loss,
                            reached_loss_target=loss <= loss_target,
                            epoch_losses=epoch_losses)
    target = min(2 * done, max_epochs)
