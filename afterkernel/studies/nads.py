"""Neural anisotropy directions (NADs): which linear directions a net favours.

Ortiz-Jimenez, Modas, Moosavi-Dezfooli and Frossard (2020), "Neural
anisotropy directions" (NeurIPS), show that an architecture can learn a
linearly separable task x -> sign(v . x) easily for some directions v and
hardly at all for others, and that the favoured directions are a property of
the architecture at initialization. The NADs (the right singular vectors of
the mixed derivative M = E_x[d^2 f / (d theta d x)] at theta_0), how M is
computed and how their signs are fixed are in `kernels.anisotropy`.

The study (`run_study`), following the library's study pattern: for each NAD
index j, inputs x ~ N(0, I) of the network's input shape, labels
y = 1[v_j . x > 0] (optionally pushed apart by a margin: x += margin (2y - 1)
v_j, the gap epsilon of the paper's linearly separable datasets); the
network and its linearization (`linearize`) are trained from the same
theta_0 (the one the NADs were computed at) with the same SGD and batch
order; test accuracy vs j. The study runs on `studies.runner`: one
record per (j, run) (existing keys are skipped = resume), summary tables,
a figure (accuracy and s_j / s_1 vs j) and the NADs as images.
"""

import dataclasses
import math
import os
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel.kernels import anisotropy
from afterkernel import linearize
from afterkernel import models
from afterkernel import plots
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import tables
from afterkernel.studies import task_training

# The NAD math lives in kernels.anisotropy; its 0.1.0 names here stay.
DEFAULT_MAX_ELEMENTS = anisotropy.DEFAULT_MAX_ELEMENTS
DEFAULT_DIM_CHUNK = anisotropy.DEFAULT_DIM_CHUNK
DEFAULT_BATCH_SIZE = anisotropy.DEFAULT_BATCH_SIZE
mixed_derivative = anisotropy.mixed_derivative
mixed_derivative_gram = anisotropy.mixed_derivative_gram
mixed_derivative_times = anisotropy.mixed_derivative_times
NeuralAnisotropyDirections = anisotropy.NeuralAnisotropyDirections
directions_from_matrix = anisotropy.directions_from_matrix
directions_from_gram = anisotropy.directions_from_gram
gaussian_inputs = anisotropy.gaussian_inputs
neural_anisotropy_directions = anisotropy.neural_anisotropy_directions


def direction_task(direction: np.ndarray, num: int, seed,
                   margin: float = 0.0) -> tuple:
  """Gaussian inputs labelled by the side of the hyperplane v . x = 0.

  x ~ N(0, I) (the shape of `direction`), y = 1[v . x > 0] as float32 {0, 1};
  with margin > 0, x += margin (2y - 1) v / ||v||, which keeps the labels and
  opens a gap of 2 margin between the classes along v.

  Returns:
    (x float32 (num, *shape), y float32 (num,)).
  """
  v = np.asarray(direction, np.float64)
  norm = float(np.linalg.norm(v))
  errors.require(norm > 0, 'the direction is zero')
  errors.require(margin >= 0, f'margin must be >= 0, got {margin}')
  v = v / norm
  x = np.random.default_rng(seed).standard_normal((num,) + v.shape)
  projection = np.tensordot(x, v, axes=v.ndim)
  labels = (projection > 0).astype(np.float32)
  if margin:
    signs = np.reshape(data.signed_labels(labels), (-1,) + (1,) * v.ndim)
    x = x + margin * signs * v
  return x.astype(np.float32), labels


# ----------------------------------------------------------------------------
# The study.

FAMILY = 'nads'
FIGURE_NAME = 'nad_accuracy'
DIRECTIONS_FIGURE_NAME = 'nad_directions'
ARCHITECTURES = ('fully_connected', 'cnn', 'vgg')
LOSSES = ('bce', 'mse')
# NADs drawn as images in the directions figure.
NUM_DIRECTIONS_SHOWN = 8


@dataclasses.dataclass(frozen=True)
class NADConfig(runner.StudyConfig, fields.NetworkFields, fields.SgdFields):
  """Everything that defines a NAD study.

  Attributes:
    architecture, width, num_layers: the network (`models.build`).
    image_side, channels: inputs are (image_side, image_side, channels)
      standard Gaussian arrays, D = image_side^2 channels.
    num_nad_samples: Gaussian inputs of E_x in M.
    nad_indices: 1-based NAD indices j of the tasks (1 = top).
    num_train, num_test: examples per task (fresh Gaussian draws per j).
    margin: class gap along v_j (0: plain sign(v_j . x)).
    epochs, batch_size, learning_rate, momentum, loss: the optimizer (SGD
      with momentum), identical for the network and its linearization.
    num_runs: independent initializations (seed + run).
    seed: first seed.
    max_elements: largest P x D matrix M formed (else per-variable Gram).
  """
  # Adding runs or indices extends a study.
  FINGERPRINT_IGNORES = ('num_runs', 'nad_indices')
  architecture: str = 'cnn'
  width: int = 8
  num_layers: int = 2
  image_side: int = 6
  channels: int = 1
  num_nad_samples: int = 128
  nad_indices: tuple = (1, 2, 36)
  num_train: int = 200
  num_test: int = 200
  margin: float = 0.0
  epochs: int = 5
  max_elements: int = DEFAULT_MAX_ELEMENTS

  @property
  def input_shape(self) -> tuple:
    return (self.image_side, self.image_side, self.channels)

  @property
  def input_dim(self) -> int:
    return self.image_side**2 * self.channels

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    errors.require_choice(self.architecture, ARCHITECTURES, 'architecture')
    errors.require_choice(self.loss, LOSSES, 'loss')
    runner.require_positive_int_fields(self, ('width', 'num_layers',
        'image_side', 'channels', 'num_nad_samples', 'num_train', 'num_test',
        'epochs', 'batch_size', 'num_runs', 'max_elements'))
    errors.require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f'learning_rate must be positive, got {self.learning_rate}')
    errors.require(0 <= self.momentum < 1,
                   f'momentum must be in [0, 1), got {self.momentum}')
    errors.require(self.margin >= 0 and math.isfinite(self.margin),
                   f'margin must be >= 0, got {self.margin}')
    errors.require(isinstance(self.seed, int) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed}')
    errors.require(bool(self.nad_indices), 'nad_indices is empty; give at '
                   'least one index')
    for j in self.nad_indices:
      errors.require(isinstance(j, (int, np.integer)) and
                     1 <= j <= self.input_dim,
                     f'NAD index {j!r} is out of range 1..{self.input_dim} '
                     f'(D = {self.image_side}^2 x {self.channels})')
    if self.architecture == 'vgg':
      errors.require(self.image_side >= 4, 'vgg pools twice: image_side must '
                     'be >= 4')


PRESETS = {
    # Seconds: 6x6 Gaussian images, global-pooling CNN 2 x 8 channels, three
    # tasks (j = 1, 2, 36 = D), 200 / 200 examples, 5 epochs.
    'tiny': NADConfig(),
    # 16x16 Gaussian images (D = 256), global-pooling CNN 3 x 16 channels,
    # 9 tasks from j = 1 to 256, 2000 / 1000 examples, 10 epochs, 2 runs.
    'cpu': NADConfig(
        architecture='cnn', width=16, num_layers=3, image_side=16,
        num_nad_samples=512,
        nad_indices=(1, 2, 4, 8, 16, 32, 64, 128, 256), num_train=2000,
        num_test=1000, epochs=10, batch_size=64, learning_rate=0.02,
        num_runs=2),
}
# The same tasks for a VGG-like net (2 blocks of one 3x3 convolution, 16 then
# 32 channels, max-pooling, Flatten: no global pooling) ...
PRESETS['cpu_vgg'] = dataclasses.replace(PRESETS['cpu'], architecture='vgg',
                                         width=16, num_layers=1)
# ... and for a fully connected net (1 x 512), the isotropic baseline.
PRESETS['cpu_fc'] = dataclasses.replace(PRESETS['cpu'],
                                        architecture='fully_connected',
                                        width=512, num_layers=1)


def record_key(nad_index: int, run: int) -> str:
  return f'{FAMILY}_j{nad_index:05d}_run{run}'


def accuracy(model: keras.Model, inputs: np.ndarray,
             labels01: np.ndarray, batch_size: int = 500) -> float:
  """Fraction with (output > 0) == label: the decision rule of both losses."""
  return task_training.sign_accuracy_of(model, inputs, labels01, batch_size)


def run_once(config: NADConfig, run: int, indices: Sequence[int],
             output_dir: Optional[str] = None,
             log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
  """One initialization: its NADs, then one task per index in `indices`.

  Also writes the NADs to output_dir/nads_run<run>.npz when output_dir is
  given.

  Returns:
    One record per NAD index (not yet stored).
  """
  seed, network = config.seeded_network(run, config.input_shape)
  initial_weights = network.get_weights()
  num_parameters = models.count_parameters(network)
  start = time.time()
  nads = neural_anisotropy_directions(
      network, config.num_nad_samples, seed=[config.seed, run, 0],
      max_elements=config.max_elements)
  nad_seconds = time.time() - start
  s = nads.singular_values
  log(f'run {run}: {config.architecture} with {num_parameters} parameters; '
      f'NADs ({nads.method}) in {nad_seconds:.1f} s; s_D / s_1 = '
      f'{s[-1] / s[0]:.3g}')
  if output_dir:
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, f'nads_run{run}.npz')
    temporary = os.path.join(output_dir, f'.nads_run{run}.tmp.npz')
    np.savez(temporary, singular_values=nads.singular_values,
             directions=nads.directions, input_shape=np.array(nads.input_shape))
    os.replace(temporary, path)
  records = []
  for j in indices:
    v = nads.direction(j)
    x_train, y_train = direction_task(v, config.num_train,
                                      [config.seed, run, j, 1], config.margin)
    x_test, y_test = direction_task(v, config.num_test,
                                    [config.seed, run, j, 2], config.margin)
    metrics = {'singular_value': float(s[j - 1]),
               'relative_singular_value': float(s[j - 1] / s[0]),
               'plus_fraction_train': float(y_train.mean())}
    timings = {'nad_seconds': nad_seconds}
    network.set_weights(initial_weights)
    linear = linearize.linearize(network)
    for name, model in (('lin', linear), ('nn', network)):
      start = time.time()
      metrics[f'{name}_final_loss'] = task_training.fit_task(
          model, x_train, y_train, config, seed)
      timings[f'{name}_train_seconds'] = time.time() - start
      metrics[f'{name}_train_accuracy'] = accuracy(model, x_train, y_train)
      metrics[f'{name}_test_accuracy'] = accuracy(model, x_test, y_test)
    metrics['test_accuracy_gap'] = (metrics['nn_test_accuracy'] -
                                    metrics['lin_test_accuracy'])
    log(f'  j = {j:4d} (s_j/s_1 = {metrics["relative_singular_value"]:.3g}):'
        f' test accuracy network {metrics["nn_test_accuracy"]:.3f}, '
        f'linearized {metrics["lin_test_accuracy"]:.3f}')
    point = {'family': FAMILY, 'nn_architecture': config.architecture,
             'num_parameters': num_parameters, 'nad_index': int(j)}
    records.append({
        'key': record_key(j, run), 'family': FAMILY, 'point_id': f'j={j}',
        'point': point, 'run': run, 'seed': seed,
        'config_fingerprint': config.fingerprint(),
        'nad_method': nads.method, 'metrics': metrics, 'timings': timings})
  return records


def summarize(output_dir: str, config: NADConfig) -> List[Dict[str, Any]]:
  """The summary of this config's records, sorted by NAD index."""
  return runner.summarize(STUDY, config, output_dir)


def plot(entries: Sequence[Mapping[str, Any]], output_dir: str,
         title: str = '') -> List[str]:
  """Test accuracy and s_j / s_1 vs NAD index j (PNG + PDF)."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  fig = mpl_figure.Figure(figsize=(10, 4), dpi=plots.DPI)
  accuracy_axes, spectrum_axes = fig.subplots(1, 2)
  tables.errorbar_series(accuracy_axes, entries, 'nad_index', (
      ('nn_test_accuracy', 'network', 'C0', '-'),
      ('lin_test_accuracy', 'linearized', 'C1', '-')))
  accuracy_axes.set_xscale('log', base=2)
  accuracy_axes.set_xlabel('NAD index j')
  accuracy_axes.set_ylabel('test accuracy on sign(v_j . x)')
  accuracy_axes.set_ylim(0.4, 1.02)
  accuracy_axes.legend()
  accuracy_axes.grid(alpha=0.3)
  x, mean, half = plots.series(entries, 'nad_index',
                               'relative_singular_value')
  spectrum_axes.errorbar(x, np.maximum(mean, 1e-12), yerr=half, color='C2',
                         marker='o', capsize=3)
  spectrum_axes.set_xscale('log', base=2)
  spectrum_axes.set_yscale('log')
  spectrum_axes.set_xlabel('NAD index j')
  spectrum_axes.set_ylabel('s_j / s_1 of E_x[d^2 f / d theta d x]')
  spectrum_axes.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, FIGURE_NAME)


def plot_directions(path_npz: str, output_dir: str) -> List[str]:
  """The first NADs of one run as images (channel 0), with s_j / s_1."""
  from matplotlib import figure as mpl_figure  # pylint: disable=g-import-not-at-top
  with np.load(path_npz) as saved:
    values, directions = saved['singular_values'], saved['directions']
    shape = tuple(saved['input_shape'])
  shown = min(NUM_DIRECTIONS_SHOWN, len(values))
  fig = mpl_figure.Figure(figsize=(1.6 * shown, 2.0), dpi=plots.DPI)
  axes = np.atleast_1d(fig.subplots(1, shown))
  for j in range(shown):
    image = directions[j].reshape(shape)[..., 0]
    limit = float(np.abs(image).max()) or 1.0
    axes[j].imshow(image, cmap='RdBu_r', vmin=-limit, vmax=limit)
    axes[j].set_title(f'v_{j + 1}: {values[j] / values[0]:.2g}', fontsize=8)
    axes[j].axis('off')
  fig.tight_layout()
  return plots.save(fig, output_dir, DIRECTIONS_FIGURE_NAME)


def _run_unit(config: NADConfig, output_dir: str, unit: runner.WorkUnit,
              log: Callable[[str], None]) -> List[Dict[str, Any]]:
  return run_once(config, unit.run, list(unit.points), output_dir, log)


def _output_dir(config: NADConfig, output_dir: str) -> str:
  del config  # The units write their NADs (nads_run<r>.npz) there.
  return output_dir


def _figures(entries: Sequence[Mapping[str, Any]], config: NADConfig,
             output_dir: str) -> None:
  plot(entries, output_dir,
       title=f'NAD tasks: {config.architecture} on '
       f'{config.image_side}x{config.image_side}x{config.channels} Gaussian '
       f'inputs (n = {config.num_train})')
  first = os.path.join(output_dir, 'nads_run0.npz')
  if os.path.exists(first):
    plot_directions(first, output_dir)


STUDY = task_training.index_study(FAMILY, 'nad_index', 'nad_indices',
                                  record_key, _run_unit, _output_dir, _figures)


# Runs every (NAD index, run) not yet in an output folder (directions in
# nads_run<r>.npz); summarizes.
run_study = STUDY.run


PRESETS_HELP = 'tiny: seconds; cpu, cpu_vgg, cpu_fc: 16x16 inputs, minutes'
TABLE_FOOTER = ('(means over runs; accuracies on sign(v_j . x) labels of '
                'Gaussian inputs; s_j = j-th singular value of E_x[d^2 f / '
                'd theta d x])')

TABLE_COLUMNS = (('s_j/s_1', 'relative_singular_value'),
                 ('nn test', 'nn_test_accuracy'),
                 ('lin test', 'lin_test_accuracy'),
                 ('nn train', 'nn_train_accuracy'),
                 ('lin train', 'lin_train_accuracy'))


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """One line per NAD index: means over runs (and the run count)."""
  return task_training.index_table(entries, 'nad_index', TABLE_COLUMNS,
                                   [11] * (len(TABLE_COLUMNS) + 2))
