"""Second-order Taylor models of a network, and a study that trains them.

For a network f(theta, x), base weights theta_0 and delta = theta - theta_0,
the second-order Taylor expansion is

    f(theta, x) ~ f(theta_0, x) + J delta + 1/2 delta^T H delta,

with J = d f(theta_0, x) / d theta and H = d^2 f(theta_0, x) / d theta^2.
`QuadraticModel` is the trainable Keras analogue of
`linearize.LinearizedModel`: the network frozen at theta_0, one trainable
delta per network variable, and a forward pass that never forms J or H. Two
nested `tf.autodiff.ForwardAccumulator`s, both with primals theta_0 and
tangents delta, give

    inner.jvp(f)             = J delta                 (first order),
    outer.jvp(inner.jvp(f))  = delta^T H delta          (second order),

i.e. d^2/dt^2 f(theta_0 + t delta) at t = 0, for about four forward passes.
Gradients with respect to delta (J + H delta for the full model) flow back
through the JVP ops, so `compile`/`fit` work as for any Keras model and the
optimizer acts on delta exactly as for the linearized model.

Variants (`VARIANTS`), after Vyas, Bansal and Nakkiran (2022), "Limitations
of the NTK for understanding generalization in deep learning", whose
second-order experiment compares the network and its linearization with two
quadratic models:
  * 'full'  ("H_full"): f(theta_0, x) + J delta + 1/2 delta^T H delta, the
    complete second-order Taylor model;
  * 'hessian_only' ("H_only"): f(theta_0, x) + 1/2 delta^T H delta, the
    first-order term dropped, so that only the Hessian term can learn: the
    quadratic model of Bai and Lee (2020), "Beyond linearization: on
    quadratic and higher-order approximation of wide neural networks", who
    remove the linear term (by randomization) to study what the quadratic
    term alone learns.
This is our reading from memory, stated because we could not check the
paper offline: the names H_full / H_only and "H_only = the second-order term
without the first-order one" are as we recall them; whether Vyas et al. keep
f(theta_0, x) in H_only, and how they start it, we do not know. Both readings
are available: `unbiased=True` drops f(theta_0, x)
from either variant (as `linearize(unbiased=True)` does), so
variant='hessian_only', unbiased=True is Bai and Lee's pure quadratic model
1/2 delta^T H delta.

Starting point of H_only: its gradient with respect to delta is H delta,
which is exactly 0 at delta = 0, so gradient descent from delta = 0 never
moves (a saddle). H_only therefore starts from a small random delta_0:
`delta_init_scale` = s draws every entry of the delta of a variable v from
N(0, (s * rms(theta_0[v]))^2), i.e. a perturbation of relative size s
(variables that are 0 at theta_0, such as Keras' zero biases, start at 0 and
move through the other variables' H delta). The output layer's bias b never
moves in H_only: f is linear in b, so b has no second derivative and the
gradient of 1/2 delta^T H delta with respect to it is 0. The full model starts at
delta = 0 (its gradient J is not 0), like the linearization.

The study (`run_study`) follows the library's study pattern: a frozen
`SecondOrderConfig` with `PRESETS`, one record per (model, run) in a
`store.ResultStore` (existing keys are skipped, so a killed study resumes),
`store.write_summary` tables and a figure (test error per epoch and at the
end, PNG + PDF). All four models (network, linearization, H_full, H_only)
start from the same theta_0 and are trained with the same optimizer (SGD with
momentum), loss, batch order and number of epochs.
"""

import dataclasses
import math
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np
import tensorflow as tf

from afterkernel import data
from afterkernel import errors
from afterkernel import linearize
from afterkernel import models
from afterkernel import plots
from afterkernel.studies import results
from afterkernel.studies import store

VARIANTS = ('full', 'hessian_only')
# Names of the two variants in Vyas et al. (2022).
VARIANT_LABELS = {'full': 'H_full', 'hessian_only': 'H_only'}


@keras.saving.register_keras_serializable(package='afterkernel')
class QuadraticModel(keras.Model):
  """f(theta_0, x) + [J delta] + 1/2 delta^T H delta, delta = theta - theta_0.

  Build it with `taylor_expand`, which copies the network first; constructing
  a `QuadraticModel` directly freezes the given network in place.

  Attributes:
    network: the network, frozen at theta_0 (its variables are theta_0).
    variant: 'full' (with J delta) or 'hessian_only' (without).
    unbiased: whether f(theta_0, x) is dropped from the output.
    delta_init_scale: relative size of the random delta_0 (0: delta_0 = 0).
    deltas: the trainable theta - theta_0, one per network variable, in
      `network`'s trainable-variable order.
  """

  def __init__(self, network: keras.Model, variant: str = 'full',
               unbiased: bool = False, delta_init_scale: float = 0.0,
               seed: Optional[int] = None, **kwargs):
    # Compute in the network's dtype (Keras casts inputs to it; a float64
    # network must not see float32 inputs).
    kwargs.setdefault('dtype', network.dtype_policy)
    super().__init__(**kwargs)
    errors.require(variant in VARIANTS,
                   f'unknown Taylor variant {variant!r}; choose one of '
                   f'{", ".join(VARIANTS)}')
    errors.require(delta_init_scale >= 0 and math.isfinite(delta_init_scale),
                   f'delta_init_scale must be >= 0, got {delta_init_scale}')
    errors.require(bool(network.trainable_variables),
                   f'network {network.name!r} has no trainable variables; '
                   'build it (call it on a batch) before expanding it')
    # Remember theta_0's variables before freezing (freezing hides them from
    # `trainable_variables`; only the deltas must be trained).
    self._base_variables = list(network.trainable_variables)
    network.trainable = False
    self.network = network
    self.variant = variant
    self.unbiased = bool(unbiased)
    self.delta_init_scale = float(delta_init_scale)
    self.seed = seed
    rng = np.random.default_rng(seed)
    self._initial_deltas = []
    for v in self._base_variables:
      value = keras.ops.convert_to_numpy(v)
      rms = float(np.sqrt(np.mean(np.square(value)))) if value.size else 0.0
      self._initial_deltas.append(
          (self.delta_init_scale * rms *
           rng.standard_normal(value.shape)).astype(value.dtype))
    self.deltas = [
        self.add_weight(shape=tuple(v.shape), initializer='zeros',
                        dtype=v.dtype, trainable=True,
                        name=f'delta_{i}_{v.name.replace("/", "_")}')
        for i, v in enumerate(self._base_variables)
    ]
    self.reset()
    # Backpropagating through nested forward accumulators fails in eager
    # mode in TF 2.21 ("returned too few gradients"); inside a graph it
    # works, so eager calls go through this tf.function.
    self._graph_terms = tf.function(self._terms, reduce_retracing=True)

  def _terms(self, inputs):
    """(f(theta_0, x), J delta, delta^T H delta) as tensors."""
    primals = [tf.convert_to_tensor(v.value) for v in self._base_variables]
    tangents = [tf.convert_to_tensor(d.value) for d in self.deltas]
    # The network reads theta_0 as *tensors* (a StatelessScope maps each
    # variable to its value): forward accumulators nested on the same
    # tf.Variables fail ("variable without handle data"), on tensors they
    # nest as documented.
    with tf.autodiff.ForwardAccumulator(primals, tangents) as outer:
      with tf.autodiff.ForwardAccumulator(primals, tangents) as inner:
        with keras.StatelessScope(
            state_mapping=list(zip(self._base_variables, primals))):
          outputs = self.network(inputs, training=False)
      first = inner.jvp(outputs,
                        unconnected_gradients=tf.UnconnectedGradients.ZERO)
    second = outer.jvp(first,
                       unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return tf.stop_gradient(outputs), first, second

  def terms(self, inputs):
    """(f(theta_0, x), J delta, delta^T H delta) as tensors (eager or graph)."""
    inputs = tf.cast(inputs, self._base_variables[0].dtype)
    if tf.executing_eagerly():
      return self._graph_terms(inputs)
    return self._terms(inputs)

  def call(self, inputs, training=None):
    del training  # The network runs in inference mode at theta_0.
    outputs, first, second = self.terms(inputs)
    result = 0.5 * second
    if self.variant == 'full':
      result = result + first
    if not self.unbiased:
      result = result + outputs
    return result

  def compute_output_shape(self, input_shape):
    return self.network.compute_output_shape(input_shape)

  def base_parameters(self) -> List[np.ndarray]:
    """theta_0, one array per network variable."""
    return [keras.ops.convert_to_numpy(v) for v in self._base_variables]

  def parameters(self) -> List[np.ndarray]:
    """theta = theta_0 + delta, one array per network variable."""
    return [keras.ops.convert_to_numpy(v) + keras.ops.convert_to_numpy(d)
            for v, d in zip(self._base_variables, self.deltas)]

  def reset(self) -> None:
    """Sets delta to its starting value delta_0 (0 unless delta_init_scale)."""
    for delta, initial in zip(self.deltas, self._initial_deltas):
      delta.assign(initial)

  def get_config(self):
    config = super().get_config()
    config.update(network=keras.saving.serialize_keras_object(self.network),
                  variant=self.variant, unbiased=self.unbiased,
                  delta_init_scale=self.delta_init_scale, seed=self.seed)
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    network = keras.saving.deserialize_keras_object(config.pop('network'))
    return cls(network, **config)


def taylor_expand(network: keras.Model,
                  variant: str = 'full',
                  base_weights: Optional[List[np.ndarray]] = None,
                  unbiased: bool = False,
                  delta_init_scale: float = 0.0,
                  seed: Optional[int] = None,
                  copy: bool = True,
                  name: Optional[str] = None) -> QuadraticModel:
  """The second-order Taylor model of `network` around theta_0, trainable.

  Args:
    network: a built Keras model.
    variant: 'full' (H_full: f0 + J delta + 1/2 delta^T H delta) or
      'hessian_only' (H_only: f0 + 1/2 delta^T H delta); see the module
      docstring for our reading of Vyas et al. (2022).
    base_weights: theta_0 as `network.get_weights()`-style arrays; None means
      the network's current weights.
    unbiased: drop f(theta_0, x) from the output.
    delta_init_scale: s > 0 starts delta at N(0, (s rms(theta_0[v]))^2) per
      variable v (needed by 'hessian_only', whose gradient is 0 at delta = 0);
      0 starts at delta = 0.
    seed: seed of the random delta_0.
    copy: work on a copy of `network` (as `linearize.linearize` does).
    name: Keras name of the result; default '<network>_<variant>'.

  Returns:
    A `QuadraticModel` at delta_0.

  Raises:
    AfterKernelError: unknown variant, unbuilt network, bad base_weights or
      delta_init_scale, or a network that cannot be copied.
  """
  errors.require(variant in VARIANTS, f'unknown Taylor variant {variant!r}; '
                 f'choose one of {", ".join(VARIANTS)}')
  errors.require(network.built and bool(network.weights),
                 f'network {network.name!r} is not built; call it on a batch '
                 'first')
  weights = network.get_weights() if base_weights is None else list(
      base_weights)
  if copy:
    try:
      base = keras.models.clone_model(network)
    except Exception as e:  # pylint: disable=broad-except
      # Keras raises several types for models it cannot rebuild.
      raise errors.AfterKernelError(
          f'cannot copy {type(network).__name__} {network.name!r} ({e}); '
          'pass copy=False to expand it in place') from None
    errors.require(base.built and len(base.weights) == len(network.weights),
                   f'the copy of {network.name!r} is not built like the '
                   'original; pass copy=False to expand it in place')
  else:
    base = network
  errors.require(len(weights) == len(base.weights),
                 f'base_weights has {len(weights)} arrays but the network has '
                 f'{len(base.weights)} weights')
  base.set_weights(weights)
  return QuadraticModel(base, variant=variant, unbiased=unbiased,
                        delta_init_scale=delta_init_scale, seed=seed,
                        name=name or f'{network.name}_{variant}')


# ----------------------------------------------------------------------------
# The study: network vs linearization vs H_full vs H_only.

FAMILY = 'second_order'
FIGURE_NAME = 'second_order_test_error'
# The models compared, in table and figure order.
MODEL_KINDS = ('network', 'linear', 'h_full', 'h_only')
MODEL_LABELS = {'network': 'network', 'linear': 'linearization',
                'h_full': 'H_full', 'h_only': 'H_only'}
ARCHITECTURES = ('fully_connected', 'vgg')
# 'mse': 0.5 (f(x) - y)^2 on +-1 targets, the loss of Vyas et al.;
# 'bce': logistic loss on the logit with {0, 1} targets (the library's).
LOSSES = ('mse', 'bce')
# H_only's delta_0 relative size: large enough for SGD to leave the saddle
# at delta = 0 within a few epochs, small against theta_0.
DEFAULT_H_ONLY_DELTA_INIT_SCALE = 0.1


@dataclasses.dataclass(frozen=True)
class SecondOrderConfig:
  """Everything that defines a second-order Taylor study.

  Attributes:
    dataset, plus_class, minus_class, data_dir: the binary task
      (`data.load_binary_task`; 'synthetic' is Vyas et al.'s vector task).
    num_train, num_test: examples (a seeded subset; generated for
      'synthetic').
    architecture, width, num_layers: the network (`models`: fully connected
      num_layers x width, or VGG-like with num_layers convolutions per block
      and `width` first-block channels).
    model_kinds: which of `MODEL_KINDS` to train.
    epochs, batch_size, learning_rate, momentum, loss: the one optimizer
      (SGD with momentum) and loss used for every model.
    h_only_unbiased, h_full_unbiased: drop f(theta_0, x) from that model.
    h_only_delta_init_scale: relative size of H_only's random delta_0.
    num_runs: independent initializations (seed + run); the data subset is
      fixed by `seed`.
    seed: first seed.
  """
  dataset: str = 'digits'
  plus_class: int = 8
  minus_class: int = 3
  data_dir: Optional[str] = None
  num_train: int = 200
  num_test: int = 100
  architecture: str = 'fully_connected'
  width: int = 32
  num_layers: int = 2
  model_kinds: tuple = MODEL_KINDS
  epochs: int = 3
  batch_size: int = 32
  learning_rate: float = 0.02
  momentum: float = 0.9
  loss: str = 'mse'
  h_full_unbiased: bool = False
  h_only_unbiased: bool = False
  h_only_delta_init_scale: float = DEFAULT_H_ONLY_DELTA_INIT_SCALE
  num_runs: int = 1
  seed: int = 0

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    errors.require(self.dataset in data.DATASETS,
                   f'unknown dataset {self.dataset!r}; choose one of '
                   f'{", ".join(data.DATASETS)}')
    errors.require(self.architecture in ARCHITECTURES,
                   f'unknown architecture {self.architecture!r}; choose one '
                   f'of {", ".join(ARCHITECTURES)}')
    errors.require(not (self.architecture == 'vgg' and
                        self.dataset in data.VECTOR_DATASETS),
                   f'dataset {self.dataset} has vector inputs; use '
                   'architecture fully_connected')
    errors.require(self.loss in LOSSES, f'unknown loss {self.loss!r}; '
                   f'choose one of {", ".join(LOSSES)}')
    errors.require(bool(self.model_kinds), 'model_kinds is empty; choose '
                   f'some of {", ".join(MODEL_KINDS)}')
    for kind in self.model_kinds:
      errors.require(kind in MODEL_KINDS, f'unknown model kind {kind!r}; '
                     f'choose from {", ".join(MODEL_KINDS)}')
    errors.require(len(set(self.model_kinds)) == len(self.model_kinds),
                   'model_kinds has duplicates')
    for name in ('num_train', 'num_test', 'width', 'num_layers', 'epochs',
                 'batch_size', 'num_runs'):
      value = getattr(self, name)
      errors.require(isinstance(value, (int, np.integer)) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')
    errors.require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f'learning_rate must be positive, got {self.learning_rate}')
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require(self.h_only_delta_init_scale >= 0 and
                   math.isfinite(self.h_only_delta_init_scale),
                   'h_only_delta_init_scale must be >= 0, got '
                   f'{self.h_only_delta_init_scale}')
    errors.require(isinstance(self.seed, int) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed}')

  def to_dict(self) -> Dict[str, Any]:
    return dataclasses.asdict(self)

  def fingerprint(self) -> str:
    """Hash of the fields that change a record (adding runs or model kinds
    extends a study)."""
    return results.config_fingerprint(self.to_dict(),
                                     ('num_runs', 'data_dir', 'model_kinds'))


PRESETS = {
    # Seconds, offline (embedded 8x8 digits 8-vs-3): tests and smoke runs.
    'tiny': SecondOrderConfig(),
    # MNIST 3-vs-8 (pass data_dir): 8000 train / 1900 test images, FC 2 x 128,
    # 30 epochs of SGD (lr 0.005, momentum 0.9) on MSE with +-1 targets, 3
    # runs. (At lr 0.02 the linearization diverges at once and at 0.01 in
    # one run of three after ~20 epochs, while the network does not: the one
    # shared learning rate must be stable for every model.)
    'cpu': SecondOrderConfig(
        dataset='mnist', plus_class=8, minus_class=3, num_train=8000,
        num_test=1900, width=128, num_layers=2, epochs=30, batch_size=64,
        learning_rate=0.005, momentum=0.9, num_runs=3),
    # Vyas et al.'s synthetic task y = z_1 z_2 (30-dim vectors), 4000 / 2000
    # examples, FC 2 x 256, 60 epochs (lr 0.003: at 0.01 the linearization
    # diverges in every run), 3 runs.
    'cpu_synthetic': SecondOrderConfig(
        dataset='synthetic', plus_class=1, minus_class=0, num_train=4000,
        num_test=2000, width=256, num_layers=2, epochs=60, batch_size=64,
        learning_rate=0.003, momentum=0.9, num_runs=3),
}


def load_task(dataset: str, plus_class: int, minus_class: int,
              data_dir: Optional[str], num_train: int, num_test: int,
              seed: int) -> data.BinaryTask:
  """The binary task: a seeded subset, or generated examples for 'synthetic'.

  Args:
    dataset, plus_class, minus_class, data_dir: see `data.load_binary_task`.
    num_train, num_test: how many examples to keep (or generate).
    seed: permutation seed (for 'synthetic' also the generator's seed).

  Returns:
    The `data.BinaryTask`.
  """
  if dataset == 'synthetic':
    return data.load_binary_task(dataset, plus_class, minus_class,
                                 num_train=num_train, num_test=num_test,
                                 synthetic_seed=seed)
  task = data.load_binary_task(dataset, plus_class, minus_class,
                               data_dir=data_dir)
  return data.subsample(data.permute(task, seed), num_train, num_test)


def build_network(architecture: str, input_shape: Sequence[int], width: int,
                  num_layers: int) -> keras.Model:
  """FC (num_layers x width) or VGG-like (2 blocks of num_layers convs)."""
  errors.require(architecture in ARCHITECTURES,
                 f'unknown architecture {architecture!r}; choose one of '
                 f'{", ".join(ARCHITECTURES)}')
  return models.build(architecture, input_shape, width=width,
                      num_layers=num_layers)


def make_model(kind: str, network: keras.Model, config: SecondOrderConfig,
               seed: int) -> keras.Model:
  """The model of `kind` around the network's current weights theta_0.

  'network' is `network` itself (trained in place); the others are copies.
  """
  if kind == 'network':
    return network
  if kind == 'linear':
    return linearize.linearize(network)
  if kind == 'h_full':
    return taylor_expand(network, 'full', unbiased=config.h_full_unbiased)
  return taylor_expand(network, 'hessian_only',
                       unbiased=config.h_only_unbiased,
                       delta_init_scale=config.h_only_delta_init_scale,
                       seed=seed)


def _targets(labels01: np.ndarray, loss: str) -> np.ndarray:
  targets = labels01 if loss == 'bce' else data.signed_labels(labels01)
  return np.asarray(targets, np.float32)[:, None]


def _outputs(model: keras.Model, inputs: np.ndarray,
             batch_size: int = 500) -> np.ndarray:
  return np.concatenate([
      keras.ops.convert_to_numpy(model(inputs[s:s + batch_size],
                                       training=False))[:, 0]
      for s in range(0, len(inputs), batch_size)]).astype(np.float64)


def classification_error(outputs: np.ndarray, labels01: np.ndarray) -> float:
  """Fraction with (output > 0) != label: the decision rule of both losses."""
  return float(np.mean((np.asarray(outputs) > 0) != (labels01 > 0.5)))


class _TestErrorCallback(keras.callbacks.Callback):
  """Records the test error after every epoch."""

  def __init__(self, inputs, labels01):
    super().__init__()
    self.inputs, self.labels01, self.errors = inputs, labels01, []

  def on_epoch_end(self, epoch, logs=None):
    del epoch, logs
    self.errors.append(classification_error(
        _outputs(self.model, self.inputs), self.labels01))


def train_model(model: keras.Model, task: data.BinaryTask,
                config: SecondOrderConfig, seed: int) -> Dict[str, Any]:
  """Trains `model` in place with the study's optimizer; returns metrics.

  Every model is compiled with a fresh SGD (learning rate, momentum) and the
  study's loss, and fit with the same seed, hence the same batch order.
  """
  optimizer = keras.optimizers.SGD(learning_rate=config.learning_rate,
                                   momentum=config.momentum)
  loss = (keras.losses.BinaryCrossentropy(from_logits=True)
          if config.loss == 'bce' else keras.losses.MeanSquaredError())
  model.compile(optimizer=optimizer, loss=loss)
  callback = _TestErrorCallback(task.x_test, task.y_test)
  initial_test_error = classification_error(_outputs(model, task.x_test),
                                            task.y_test)
  keras.utils.set_random_seed(seed)  # The same batch order for every model.
  start = time.time()
  with warnings.catch_warnings():
    # H_only has no gradient for the output bias (f is linear in it, so it
    # has no second derivative): expected, not worth Keras' warning.
    warnings.filterwarnings('ignore', message='Gradients do not exist')
    history = model.fit(task.x_train, _targets(task.y_train, config.loss),
                        batch_size=config.batch_size, epochs=config.epochs,
                        shuffle=True, verbose=0, callbacks=[callback])
  seconds = time.time() - start
  train_outputs = _outputs(model, task.x_train)
  test_outputs = _outputs(model, task.x_test)
  signed_test = data.signed_labels(task.y_test)
  losses = [float(v) for v in history.history['loss']]
  best_epoch = int(np.argmin(callback.errors)) + 1
  return {
      'metrics': {
          'test_error': classification_error(test_outputs, task.y_test),
          # Optimal early stopping (on the test set, as Vyas et al. report
          # their kernel and network errors): lowest error over the epochs.
          'best_test_error': float(callback.errors[best_epoch - 1]),
          'best_epoch': best_epoch,
          'train_error': classification_error(train_outputs, task.y_train),
          'test_mse': float(np.mean((test_outputs - signed_test)**2)),
          'initial_test_error': initial_test_error,
          'final_train_loss': losses[-1],
          'diverged': float(not all(math.isfinite(v) for v in losses)),
      },
      'curves': {'test_error_by_epoch': callback.errors,
                 'train_loss_by_epoch': losses},
      'timings': {'train_seconds': seconds},
  }


def _term_sizes(model: keras.Model, inputs: np.ndarray) -> Dict[str, float]:
  """RMS over inputs of J delta and 1/2 delta^T H delta (Taylor models)."""
  if not isinstance(model, QuadraticModel):
    return {}
  _, first, second = model.terms(inputs[:500])
  return {'first_order_rms': float(np.sqrt(np.mean(np.square(first)))),
          'second_order_rms': float(np.sqrt(np.mean(np.square(0.5 *
                                                               second))))}


def record_key(kind: str, run: int) -> str:
  return f'{FAMILY}_{kind}_run{run}'


def run_once(config: SecondOrderConfig, task: data.BinaryTask, run: int,
             kinds: Sequence[str], log: Callable[[str], None] = print
             ) -> List[Dict[str, Any]]:
  """One initialization theta_0: trains the models `kinds` from it.

  Returns:
    One record per model kind (not yet stored).
  """
  seed = config.seed + run
  keras.utils.set_random_seed(seed)
  network = build_network(config.architecture, task.x_train.shape[1:],
                          config.width, config.num_layers)
  initial_weights = network.get_weights()
  num_parameters = models.count_parameters(network)
  log(f'run {run}: {config.architecture} with {num_parameters} parameters')
  records = []
  # The network is trained last, so that the copies start from theta_0.
  for kind in sorted(kinds, key=lambda k: k == 'network'):
    network.set_weights(initial_weights)
    model = make_model(kind, network, config, seed)
    outcome = train_model(model, task, config, seed)
    outcome['metrics'].update(_term_sizes(model, task.x_test))
    log(f'  {MODEL_LABELS[kind]:>13}: test error '
        f'{outcome["metrics"]["test_error"]:.4f}, train error '
        f'{outcome["metrics"]["train_error"]:.4f} '
        f'({outcome["timings"]["train_seconds"]:.1f} s)')
    point = {'family': FAMILY, 'task': f'{config.plus_class}v'
             f'{config.minus_class}', 'dataset': config.dataset,
             'nn_architecture': config.architecture,
             'num_parameters': num_parameters, 'model': kind}
    records.append({
        'key': record_key(kind, run), 'family': FAMILY, 'point_id': kind,
        'point': point, 'run': run, 'seed': seed,
        'config_fingerprint': config.fingerprint(), 'data': task.info,
        **outcome})
  return records


def summarize(output_dir: str, config: SecondOrderConfig
              ) -> List[Dict[str, Any]]:
  """`store.summarize` of this config's records, in `MODEL_KINDS` order."""
  wanted = {record_key(k, r) for k in config.model_kinds
            for r in range(config.num_runs)}
  result_store = store.ResultStore(output_dir)
  records = [result_store.get(k) for k in result_store.keys() if k in wanted]
  entries = store.summarize(records)
  entries.sort(key=lambda e: MODEL_KINDS.index(e['point']['model']))
  return entries


def plot(records: Sequence[Mapping[str, Any]],
         entries: Sequence[Mapping[str, Any]], output_dir: str,
         title: str = '') -> List[str]:
  """Test error vs epoch (mean over runs) and final test error (PNG + PDF)."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(10, 4), dpi=plots.DPI)
  curve_axes, bar_axes = fig.subplots(1, 2)
  for index, kind in enumerate(MODEL_KINDS):
    curves = [r['curves']['test_error_by_epoch'] for r in records
              if r['point']['model'] == kind]
    if not curves:
      continue
    length = min(len(c) for c in curves)
    mean = np.mean([c[:length] for c in curves], axis=0)
    curve_axes.plot(np.arange(1, length + 1), mean, marker='o',
                    color=f'C{index}', label=MODEL_LABELS[kind])
  curve_axes.set_xlabel('epoch')
  curve_axes.set_ylabel('test error')
  curve_axes.grid(alpha=0.3)
  curve_axes.legend()
  labels, means, halves, colors = [], [], [], []
  for entry in entries:
    stats = entry['metrics'].get('test_error', {})
    if stats.get('mean') is None:
      continue
    kind = entry['point']['model']
    labels.append(MODEL_LABELS[kind])
    means.append(stats['mean'])
    halves.append(stats['ci95'] or 0.0)
    colors.append(f'C{MODEL_KINDS.index(kind)}')
  bar_axes.bar(labels, means, yerr=halves, color=colors, capsize=4)
  bar_axes.set_ylabel('final test error')
  bar_axes.grid(alpha=0.3, axis='y')
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, FIGURE_NAME)


def run_study(config: SecondOrderConfig, output_dir: str,
              log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
  """Trains every (model kind, run) not yet in `output_dir`; summarizes.

  Args:
    config: the study (validated here).
    output_dir: result folder: config.json, records/ (one JSON per model and
      run), summary.json / summary.csv and the figure.
    log: progress printer.

  Returns:
    The summary entries (`store.summarize` format), in `MODEL_KINDS` order.

  Raises:
    AfterKernelError: bad configuration, data, or a foreign output_dir.
  """
  config.validate()
  results.claim_output_dir(output_dir, config.to_dict(),
                              config.fingerprint())
  result_store = store.ResultStore(output_dir)
  task = None
  for run in range(config.num_runs):
    missing = [k for k in config.model_kinds
               if not result_store.has(record_key(k, run))]
    if not missing:
      log(f'run {run}: all {len(config.model_kinds)} models already in '
          f'{output_dir}; skipped')
      continue
    if task is None:
      task = load_task(config.dataset, config.plus_class, config.minus_class,
                       config.data_dir, config.num_train, config.num_test,
                       config.seed)
    for record in run_once(config, task, run, missing, log):
      result_store.put(record)
  entries = summarize(output_dir, config)
  store.write_summary(output_dir, entries)
  wanted = {record_key(k, r) for k in config.model_kinds
            for r in range(config.num_runs)}
  records = [result_store.get(k) for k in result_store.keys() if k in wanted]
  plot(records, entries, output_dir,
       title=f'Second-order Taylor models: {config.architecture} on '
       f'{config.dataset} {config.plus_class}v{config.minus_class} '
       f'(n = {config.num_train})')
  return entries


TABLE_COLUMNS = (('test error', 'test_error'),
                 ('best test err', 'best_test_error'),
                 ('train error', 'train_error'),
                 ('test mse', 'test_mse'), ('init test err',
                                            'initial_test_error'),
                 ('rms J delta', 'first_order_rms'),
                 ('rms dHd/2', 'second_order_rms'))


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """One line per model: means over runs (± 95% CI half-width if runs > 1)."""
  header = ['model', 'runs'] + [name for name, _ in TABLE_COLUMNS]
  lines = [' '.join(f'{h:>16}' for h in header)]
  for entry in entries:
    cells = [f'{MODEL_LABELS[entry["point"]["model"]]:>16}',
             f'{len(entry["runs"]):>16d}']
    for _, metric in TABLE_COLUMNS:
      stats = entry['metrics'].get(metric, {})
      if stats.get('mean') is None:
        cells.append(f'{"-":>16}')
      elif stats.get('ci95') is None:
        cells.append(f'{stats["mean"]:>16.4g}')
      else:
        cells.append(f'{stats["mean"]:.4g}±{stats["ci95"]:.2g}'.rjust(16))
    lines.append(' '.join(cells))
  return '\n'.join(lines)
