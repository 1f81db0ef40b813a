"""The scaling studies' networks: which net, zero output at init, training.

Vyas et al. (2022) train a fully connected net (whose infinite-width NTK
`infinite_ntk` has in closed form) and, in their main setting, a Myrtle CNN on
a binary CIFAR task; `build_network` builds either from the registry
(`models`), seeded. The infinite-width kernel stays fully connected only: no
convolutional infinite NTK is implemented here, so a study on a Myrtle net
reports the network and its empirical kernels, never an infinite one.

Table 1 of the paper trains networks whose output at initialization is 0.
`zero_output_at_init` does it by subtracting the initial function,

  f_theta(x) = g_theta(x) - g_theta0(x),

with g_theta0 a frozen (non-trainable) copy of the network at initialization:
f is exactly 0 at init (the two branches compute the same numbers), and its
gradient -- so its empirical NTK at every step -- is g's, because the frozen
branch has no trainable weight. (The symmetrized alternative (g_theta -
g_theta') / sqrt(2) with two trainable copies also starts at 0 but halves the
per-copy kernel and doubles the parameters; it is not implemented.)

`train_network` is the studies' recipe (SGD with momentum on 0.5 (f - y)^2,
optionally full-batch GD), and `EarlyStoppingCheckpoint` keeps the weights at
the step of least validation error (the after kernel at the optimal
early-stopping point, App. A.4 of the paper).
"""

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np

from afterkernel import models
from afterkernel import training
from afterkernel.models import cnns

# The fully connected NTK-parameterized family (the infinite kernel's).
FULLY_CONNECTED = 'ntk_fully_connected'
# Networks a scaling study can train: the FC family and the Myrtle CNNs.
ARCHITECTURES = (FULLY_CONNECTED, 'myrtle5', 'myrtle7', 'myrtle10')


def has_infinite_kernel(config: Any) -> bool:
  """Whether `config`'s net has a closed-form infinite NTK here (FC only)."""
  return config.architecture == FULLY_CONNECTED


def _build_plain(config: Any, input_shape: Sequence[int], seed: int,
                 width: int, **name) -> keras.Model:
  if config.architecture == FULLY_CONNECTED:
    return models.build(FULLY_CONNECTED, tuple(input_shape), width=width,
                        depth=config.depth, weight_std=config.weight_std,
                        bias_std=config.bias_std, seed=seed, **name)
  # A Myrtle net of `width` channels per convolution, one NTK-param. output.
  keras.utils.set_random_seed(seed)
  return models.build(config.architecture, tuple(input_shape), num_outputs=1,
                      width_multiplier=width / cnns.MYRTLE_WIDTH,
                      parameterization='ntk', weight_std=config.weight_std,
                      **name)


def build_network(config: Any, input_shape: Sequence[int], seed: int,
                  width: Optional[int] = None) -> keras.Model:
  """The seeded network of `config` (width `width` or `config.width`).

  `config.architecture` 'ntk_fully_connected' is the FC ReLU net in the NTK
  parameterization (depth hidden layers of `width` units); a Myrtle name is
  that CNN with `width` channels per convolution (64 = the paper's k = 1)
  and one output. With `config.zero_output_at_init` the net is wrapped by
  `zero_output_at_init`.
  """
  width = int(config.width if width is None else width)
  model = _build_plain(config, input_shape, seed, width)
  if getattr(config, 'zero_output_at_init', False):
    frozen = _build_plain(config, input_shape, seed, width,
                          name='initial_function')
    model = zero_output_at_init(model, frozen)
  return model


def zero_output_at_init(model: keras.Model,
                        frozen: keras.Model) -> keras.Model:
  """f(x) = model(x) - frozen(x), frozen = a non-trainable copy of model now.

  Args:
    model: the trainable network g_theta.
    frozen: a network of the same architecture; its weights are set to
      `model`'s and it is made non-trainable (g_theta0).

  Returns:
    A model with model's trainable weights only whose output is exactly 0
    until they move.
  """
  frozen.set_weights(model.get_weights())
  frozen.trainable = False
  inputs = keras.Input(shape=model.input_shape[1:], name='images')
  outputs = keras.layers.Subtract(name='minus_initial_function')(
      [model(inputs), frozen(inputs)])
  return keras.Model(inputs, outputs, name=f'{model.name}_minus_init')


def batch_size_for(config: Any, num_examples: int) -> int:
  """Minibatch size on `num_examples`: all of them with `config.full_batch`."""
  if getattr(config, 'full_batch', False):
    return int(num_examples)
  return min(config.batch_size, int(num_examples))


def epoch_steps(config: Any, num_examples: int, epochs: float) -> int:
  """SGD steps of `epochs` epochs over `num_examples` (0 when none)."""
  if num_examples <= 0:
    return 0
  return int(math.ceil(epochs * num_examples /
                       batch_size_for(config, num_examples)))


def train_network(config: Any, model: keras.Model, images: np.ndarray,
                  targets: np.ndarray, steps: int, seed: int,
                  snapshots: Sequence[int] = (),
                  on_snapshot: Optional[Callable[[int, keras.Model], None]]
                  = None) -> None:
  """The studies' recipe: `steps` SGD-with-momentum steps on 0.5 (f - y)^2.

  `training.fit` with the 'dataset' batch order (a fresh seeded permutation
  each epoch); `on_snapshot(step, model)` runs after the listed steps (0 =
  before training, also when steps == 0). With `config.full_batch` every
  step is a full-batch gradient step (GD, with `config.momentum`).

  Args:
    config: learning rate, momentum, batch size and full_batch.
    model: a Keras model with one output per example.
    images: (n, ...) float32 inputs.
    targets: (n,) float32 targets in {-1, +1}.
    steps: optimizer steps (>= 0).
    seed: shuffling seed.
    snapshots: steps after which `on_snapshot` is called.
    on_snapshot: the snapshot callback.
  """
  batch_size = (len(targets) if getattr(config, 'full_batch', False)
                else config.batch_size)
  training.compile_model(model, config.learning_rate, config.momentum,
                         loss='half_mse')
  training.fit(model, images, np.asarray(targets, np.float32)[:, None],
               batch_size=batch_size, seed=seed, steps=steps,
               snapshots=snapshots, on_snapshot=on_snapshot)


class EarlyStoppingCheckpoint:
  """A snapshot target keeping the weights of least validation error.

  Each call evaluates the model on the validation set (and, when given, the
  test set); the weights of the first step with the smallest validation
  error are kept (np.argmin's tie rule: the earliest).

  Attributes:
    validation: `training.NetworkEvaluator` on the validation set.
    test: `training.NetworkEvaluator` on the test set, or None.
    best_step: the step of least validation error so far.
    best_weights: the model's weights at that step.
  """

  def __init__(self, x_validation: np.ndarray, y_validation: np.ndarray,
               x_test: Optional[np.ndarray] = None,
               y_test: Optional[np.ndarray] = None):
    self.validation = training.NetworkEvaluator(x_validation, y_validation)
    self.test = (None if x_test is None else
                 training.NetworkEvaluator(x_test, y_test))
    self.best_step: Optional[int] = None
    self.best_weights: Optional[List[np.ndarray]] = None
    self._best_error = math.inf

  def __call__(self, step: int, model: keras.Model) -> None:
    self.validation(step, model)
    if self.test is not None:
      self.test(step, model)
    error = self.validation.curve[-1][1]
    if error < self._best_error:
      self._best_error = error
      self.best_step = int(step)
      self.best_weights = [np.array(w) for w in model.get_weights()]

  def curve(self) -> Tuple[List[int], List[float]]:
    """(steps, validation errors) of every evaluation, in order."""
    return ([c[0] for c in self.validation.curve],
            [c[1] for c in self.validation.curve])

  def test_at_best(self) -> Tuple[float, float]:
    """(test error, test MSE) at `best_step` (needs a test set)."""
    for step, error, mse in self.test.curve:
      if step == self.best_step:
        return error, mse
    raise ValueError(f'no test evaluation at step {self.best_step}')
