"""What the eigenfunction-task study measures while it trains.

Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021, "What can linearized
neural networks actually say about generalization?") follow the training of
a network and of its linearization on each eigenfunction task:

  * Fig. 3: the SGD steps each model needs to reach a training loss of 0.01
    and how far its weights moved from where they started, as the L2
    distance ||theta_T - theta_0|| and the cosine distance
    1 - <theta_T, theta_0> / (||theta_T|| ||theta_0||). For the
    linearization theta = theta_0 + delta (`linearize.TaylorModel
    .parameters`), so both models are measured in the same parameter space.
    The loss is checked on the whole training set at the end of every epoch
    (`LossTarget`), so the step count is a multiple of the steps per epoch
    ceil(n / batch_size); `epochs` caps the training.
  * Fig. 7: the alpha spectrum alpha(phi_i) = ||E_x[y_i(x) grad f(x)]||^2 =
    y_i^T K_t y_i / n^2 of the first eigenfunction tasks i = 1..J (their +-1
    labels y_i) under the network's current kernel K_t, at checkpoint epochs
    while the network trains on one task j (`alpha_spectrum`); at epoch 0 it
    is the study's `alpha_init` of each task.
  * the paper's learning-rate decay (`LR_SCHEDULES`, `learning_rate_at`).

`measure_training` trains one model with these observers and returns its
metrics; the study (`eigentasks.run_once`) calls it for both models.
"""

import dataclasses
import math
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple)

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel.kernels import metrics as kernel_metrics
from afterkernel import linearize
from afterkernel import models
from afterkernel.studies import task_training
from afterkernel import training

# Architectures the linearization studies build (small nets whose kernels
# are cheap); 'lenet5' is LeNet-5 with one logit, width multiplier k = width.
ARCHITECTURES = ('fully_connected', 'vgg', 'lenet5')
# 'bce': logistic loss on the logit with {0, 1} targets (the library's
# training loss); 'mse': Keras' mean of (f(x) - y)^2 on +-1 targets (the
# kernel-regression loss of the NTK theory, up to the factor 2 of its step).
LOSSES = ('bce', 'mse')
# 'constant': the rate of `learning_rate` throughout; 'step': divided by 10
# after half and again after three quarters of the epochs; 'cosine':
# lr * (1 + cos(pi * epoch / epochs)) / 2.
LR_SCHEDULES = ('constant', 'step', 'cosine')


@dataclasses.dataclass(frozen=True)
class TrainingFields:
  """How the linearization studies train and where CIFAR test inputs come from.

  A config field group (see `studies.fields`) of the eigenfunction-task and
  non-linear-advantage studies; list it before `fields.NetworkFields` so
  its `seeded_network` also builds LeNet-5.

  Attributes:
    cifar_test_source: CIFAR-10 test images from data_dir (one of
      `data.CIFAR_TEST_SOURCES`; the exact first 1000 by default).
    lr_schedule: the learning-rate schedule of both models
      (`LR_SCHEDULES`: 'constant', or the paper's decay 'step' / 'cosine').
    loss_target: 0 trains for `epochs`; > 0 stops each model at the first
      epoch whose full training loss is <= loss_target (`epochs` is then
      the cap) and records the SGD steps it took (the paper's 0.01).
  """
  cifar_test_source: str = data.DEFAULT_CIFAR_TEST_SOURCE
  lr_schedule: str = 'constant'
  loss_target: float = 0.0

  def seeded_network(self, run: int, input_shape: Sequence[int]
                     ) -> Tuple[int, keras.Model]:
    """`fields.NetworkFields.seeded_network`, and 'lenet5' with one logit.

    For 'lenet5' (standard parameterization) `width` is the width
    multiplier k and `num_layers` is unused.
    """
    if self.architecture != 'lenet5':
      return super().seeded_network(run, input_shape)
    seed = self.seed + run
    keras.utils.set_random_seed(seed)
    return seed, models.build('lenet5', tuple(input_shape), num_outputs=1,
                              width_multiplier=self.width,
                              parameterization='standard')

  def validate_training_fields(self) -> None:
    """Raises AfterKernelError naming the first bad field of this group.

    Also checks the dataset, architecture (`ARCHITECTURES`), loss
    (`LOSSES`), learning rate and momentum of the other field groups.
    """
    errors.require_choice(self.dataset, data.DATASETS, 'dataset')
    errors.require_choice(self.architecture, ARCHITECTURES, 'architecture')
    errors.require_choice(self.loss, LOSSES, 'loss')
    errors.require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f'learning_rate must be positive, got {self.learning_rate}')
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require_choice(self.cifar_test_source, data.CIFAR_TEST_SOURCES,
                          'cifar_test_source')
    errors.require_choice(self.lr_schedule, LR_SCHEDULES, 'lr_schedule')
    errors.require(0 <= self.loss_target < math.inf,
                   f'loss_target must be >= 0, got {self.loss_target}')


def learning_rate_at(schedule: str, base_rate: float, epoch: int,
                     epochs: int) -> float:
  """The learning rate of 0-based `epoch` out of `epochs` (`LR_SCHEDULES`)."""
  errors.require_choice(schedule, LR_SCHEDULES, 'lr_schedule')
  if schedule == 'step':
    passed = (epoch >= epochs // 2) + (epoch >= (3 * epochs) // 4)
    return base_rate * 0.1**passed
  if schedule == 'cosine':
    return base_rate * 0.5 * (1.0 + math.cos(math.pi * epoch / epochs))
  return base_rate


def schedule_callbacks(schedule: str, base_rate: float,
                       epochs: int) -> List[keras.callbacks.Callback]:
  """[] for 'constant', else a Keras scheduler setting each epoch's rate."""
  if schedule == 'constant':
    return []
  return [keras.callbacks.LearningRateScheduler(
      lambda epoch, _: learning_rate_at(schedule, base_rate, epoch, epochs))]


def flat_parameters(model: keras.Model) -> np.ndarray:
  """theta as one float64 vector (theta_0 + delta for a Taylor model)."""
  if isinstance(model, linearize.TaylorModel):
    arrays = model.parameters()
  else:
    arrays = [keras.ops.convert_to_numpy(v) for v in model.trainable_variables]
  return np.concatenate([np.ravel(a).astype(np.float64) for a in arrays])


def weight_distances(initial: np.ndarray,
                     current: np.ndarray) -> Tuple[float, float]:
  """(L2 distance, cosine distance 1 - cos(theta_0, theta)) of two vectors."""
  initial = np.asarray(initial, np.float64)
  current = np.asarray(current, np.float64)
  errors.require(initial.shape == current.shape,
                 f'parameter vectors of {initial.shape} and {current.shape}')
  norms = np.linalg.norm(initial) * np.linalg.norm(current)
  errors.require(norms > 0, 'cosine distance of a zero parameter vector')
  return (float(np.linalg.norm(current - initial)),
          float(1.0 - initial @ current / norms))


class LossTarget(keras.callbacks.Callback):
  """Stops training once the full training loss is <= `target`.

  The loss (the compiled loss of the study, `training.loss_function`) is
  computed on all training inputs at the current weights after every epoch
  (so at least one epoch is trained).

  Attributes:
    epochs_to_target: epochs trained when the target was first met, None
      while it is not.
  """

  def __init__(self, inputs: np.ndarray, targets: np.ndarray, loss: str,
               target: float):
    super().__init__()
    self.inputs, self.targets, self.target = inputs, targets, target
    self.loss_fn = training.loss_function(loss)
    self.epochs_to_target: Optional[int] = None

  def _reached(self) -> bool:
    outputs = training.predict_outputs(self.model, self.inputs, 512)
    loss = float(keras.ops.convert_to_numpy(
        self.loss_fn(self.targets, outputs.astype(np.float32))))
    return loss <= self.target

  def on_epoch_end(self, epoch, logs=None):
    if self.epochs_to_target is None and self._reached():
      self.epochs_to_target = epoch + 1
      self.model.stop_training = True


def alpha_spectrum(network: keras.Model, inputs: np.ndarray,
                   signed_labels: np.ndarray,
                   feature_batch_size: int) -> np.ndarray:
  """alpha_i = y_i^T K y_i / n^2 under the network's current NTK Gram K.

  Args:
    network: the network at its current weights.
    inputs: the n training inputs the labels live on.
    signed_labels: (n, J) +-1 labels, one column per task i.
    feature_batch_size: examples per gradient-feature block.

  Returns:
    (J,) alphas (`kernel_metrics.target_alignment` of each column).
  """
  gram = kernel_fit.EmpiricalNTK(network, feature_batch_size).gram(inputs)
  return np.array([kernel_metrics.target_alignment(gram, column)
                   for column in np.asarray(signed_labels).T])


def alpha_observer(config, inputs: np.ndarray, signed_labels: np.ndarray,
                   metrics: Dict[str, Any]
                   ) -> Callable[[int, keras.Model], None]:
  """A snapshot callback writing alpha_e<epoch>_j<i> into `metrics`."""

  def observe(epoch: int, network: keras.Model) -> None:
    values = alpha_spectrum(network, inputs, signed_labels,
                            config.feature_batch_size)
    for i, value in enumerate(values, start=1):
      metrics[alpha_key(epoch, i)] = float(value)

  return observe


def alpha_key(epoch: int, index: int) -> str:
  """The record metric of alpha of task `index` at checkpoint `epoch`."""
  return f'alpha_e{epoch}_j{index}'


def measure_training(model: keras.Model, name: str, inputs: np.ndarray,
                     labels01: np.ndarray, config, seed: int,
                     start: Optional[np.ndarray] = None,
                     snapshots: Sequence[int] = (),
                     on_snapshot: Optional[Callable] = None
                     ) -> Tuple[Dict[str, Any], float]:
  """Trains `model` on the task (`task_training.fit_task`) and measures it.

  Args:
    model: the network or its linearization.
    name: the metric prefix ('nn' or 'lin').
    inputs, labels01: the training task.
    config: the study config (its optimizer fields, `lr_schedule` and
      `loss_target`: > 0 stops at the first epoch whose full training loss
      is <= loss_target, with `epochs` as the cap).
    seed: the batch-order seed.
    start: the parameters distances are measured from; None = the model's
      parameters before training.
    snapshots, on_snapshot: as in `task_training.fit_task`.

  Returns:
    (metrics, seconds): <name>_final_loss, <name>_weight_l2,
    <name>_weight_cosine and, with a loss target, <name>_steps_to_target
    (None if the cap came first) and <name>_reached_target.
  """
  start = flat_parameters(model) if start is None else start
  callbacks = schedule_callbacks(config.lr_schedule, config.learning_rate,
                                 config.epochs)
  target = None
  if config.loss_target > 0:
    target = LossTarget(inputs, training.targets_for(labels01, config.loss),
                        config.loss, config.loss_target)
    callbacks.append(target)
  began = time.time()
  metrics = {f'{name}_final_loss': task_training.fit_task(
      model, inputs, labels01, config, seed, callbacks=callbacks,
      snapshots=snapshots, on_snapshot=on_snapshot)}
  seconds = time.time() - began
  l2, cosine = weight_distances(start, flat_parameters(model))
  metrics[f'{name}_weight_l2'] = l2
  metrics[f'{name}_weight_cosine'] = cosine
  if target is not None:
    reached = target.epochs_to_target is not None
    steps_per_epoch = math.ceil(len(inputs) / config.batch_size)
    metrics[f'{name}_reached_target'] = float(reached)
    metrics[f'{name}_steps_to_target'] = (
        target.epochs_to_target * steps_per_epoch if reached else None)
  return metrics, seconds


def train_both(config, inputs: np.ndarray, network: keras.Model,
               labels01: np.ndarray, seed: int, spectrum_labels: np.ndarray,
               metrics: Dict[str, Any], timings: Dict[str, float]
               ) -> Iterator[Tuple[str, keras.Model]]:
  """Trains the network, then its linearization, on one task; yields both.

  The linearization is taken at initialization (made before the network
  trains, as in 0.1.0) or, with `config.linearize_at_epoch` = k > 0, at the
  network's weights after k epochs (a snapshot of its training; the alpha of
  the task under that kernel is recorded as `alpha_linearization_base`).
  Weight distances are from initialization for both models. Training
  metrics go into `metrics` and `timings` (`measure_training`); the alpha
  spectrum of `spectrum_labels` ((n, J) +-1) at `config.alpha_epochs` when
  `config.alpha_spectrum_size` > 0 (checkpoints after a loss-target stop
  are absent).

  Args:
    config: the study config.
    inputs: the training inputs.
    network: the network at initialization.
    labels01: the task's {0, 1} training labels.
    seed: the batch-order seed.
    spectrum_labels: labels of the alpha spectrum.
    metrics, timings: the record's dicts, filled here.

  Yields:
    ('nn', network) once trained, then ('lin', linearization) once trained.
  """
  initial = flat_parameters(network)
  linear = (None if config.linearize_at_epoch else
            linearize.linearize(network))
  observe_alpha = alpha_observer(config, inputs, spectrum_labels, metrics)
  base = {}

  def on_snapshot(epoch: int, model: keras.Model) -> None:
    if config.alpha_spectrum_size and epoch in config.alpha_epochs:
      observe_alpha(epoch, model)
    if config.linearize_at_epoch and epoch == config.linearize_at_epoch:
      base['weights'] = model.get_weights()
      metrics['alpha_linearization_base'] = float(alpha_spectrum(
          model, inputs, data.signed_labels(labels01)[:, None],
          config.feature_batch_size)[0])

  snapshots = set(config.alpha_epochs if config.alpha_spectrum_size else ())
  snapshots |= {config.linearize_at_epoch} - {0}
  measured, timings['nn_train_seconds'] = measure_training(
      network, 'nn', inputs, labels01, config, seed, initial,
      sorted(snapshots), on_snapshot if snapshots else None)
  metrics.update(measured)
  yield 'nn', network
  if linear is None:
    linear = linearize.linearize(network, base_weights=base['weights'])
  measured, timings['lin_train_seconds'] = measure_training(
      linear, 'lin', inputs, labels01, config, seed, initial)
  metrics.update(measured)
  yield 'lin', linear
