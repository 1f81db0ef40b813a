"""The second-order Taylor study: network vs linearization vs H_full vs H_only.

After Vyas, Bansal and Nakkiran (2022), "Limitations of the NTK for
understanding generalization in deep learning": all four models (the network,
its linearization `linearize.linearize`, and the quadratic models
`taylor.taylor_expand` 'full' = H_full and 'hessian_only' = H_only; see
`afterkernel.taylor` for the math and the start of H_only) start from the same
theta_0 and are trained with the same optimizer (SGD with momentum), loss,
batch order and number of epochs.

The study runs on `studies.runner`: a frozen `SecondOrderConfig` with
`PRESETS`, one record per (model, run) in the store (existing keys are
skipped, so a killed study resumes), summary tables and a figure (test error
per epoch and at the end, PNG + PDF).
"""

import dataclasses
import math
import operator
import time
import warnings
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import linearize
from afterkernel import models
from afterkernel import plots
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import store
from afterkernel.studies import tables
from afterkernel.taylor import QuadraticModel
from afterkernel.taylor import taylor_expand
from afterkernel import training


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
class SecondOrderConfig(runner.StudyConfig, fields.TaskFields,
                        fields.NetworkFields, fields.SgdFields):
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
  # Adding runs or model kinds extends a study.
  FINGERPRINT_IGNORES = ('num_runs', 'data_dir', 'model_kinds')
  width: int = 32
  num_layers: int = 2
  model_kinds: tuple = MODEL_KINDS
  learning_rate: float = 0.02
  loss: str = 'mse'
  h_full_unbiased: bool = False
  h_only_unbiased: bool = False
  h_only_delta_init_scale: float = DEFAULT_H_ONLY_DELTA_INIT_SCALE

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    errors.require_choice(self.dataset, data.DATASETS, 'dataset')
    errors.require_choice(self.architecture, ARCHITECTURES, 'architecture')
    errors.require(not (self.architecture == 'vgg' and
                        self.dataset in data.VECTOR_DATASETS),
                   f'dataset {self.dataset} has vector inputs; use '
                   'architecture fully_connected')
    errors.require_choice(self.loss, LOSSES, 'loss')
    errors.require(bool(self.model_kinds), 'model_kinds is empty; choose '
                   f'some of {", ".join(MODEL_KINDS)}')
    for kind in self.model_kinds:
      errors.require(kind in MODEL_KINDS, f'unknown model kind {kind!r}; '
                     f'choose from {", ".join(MODEL_KINDS)}')
    errors.require(len(set(self.model_kinds)) == len(self.model_kinds),
                   'model_kinds has duplicates')
    runner.require_positive_int_fields(self, ('num_train', 'num_test', 'width',
        'num_layers', 'epochs', 'batch_size', 'num_runs'))
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


def _outputs(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
  return training.predict_logits(model, inputs, 500).astype(np.float64)


def train_model(model: keras.Model, task: data.BinaryTask,
                config: SecondOrderConfig, seed: int) -> Dict[str, Any]:
  """Trains `model` in place with the study's optimizer; returns metrics.

  Every model is compiled with a fresh SGD (learning rate, momentum) and the
  study's loss, and fit with the same seed, hence the same batch order
  (`training.fit`, 'keras' order); the test error is taken after every epoch.
  """
  training.compile_model(model, config.learning_rate, config.momentum,
                         loss=config.loss)
  test_errors = []

  def after_epoch(epoch: int, trained: keras.Model) -> None:
    del epoch
    test_errors.append(training.sign_error(_outputs(trained, task.x_test),
                                           task.y_test))

  initial_test_error = training.sign_error(_outputs(model, task.x_test),
                                           task.y_test)
  start = time.time()
  with warnings.catch_warnings():
    # H_only has no gradient for the output bias (f is linear in it, so it
    # has no second derivative): expected, not worth Keras' warning.
    warnings.filterwarnings('ignore', message='Gradients do not exist')
    losses = training.fit(
        model, task.x_train, training.targets_for(task.y_train, config.loss),
        batch_size=config.batch_size, seed=seed, epochs=config.epochs,
        batch_order='keras', snapshots=range(1, config.epochs + 1),
        on_snapshot=after_epoch)
  seconds = time.time() - start
  train_outputs = _outputs(model, task.x_train)
  test_outputs = _outputs(model, task.x_test)
  signed_test = data.signed_labels(task.y_test)
  best_epoch = int(np.argmin(test_errors)) + 1
  return {
      'metrics': {
          'test_error': training.sign_error(test_outputs, task.y_test),
          # Optimal early stopping (on the test set, as Vyas et al. report
          # their kernel and network errors): lowest error over the epochs.
          'best_test_error': float(test_errors[best_epoch - 1]),
          'best_epoch': best_epoch,
          'train_error': training.sign_error(train_outputs,
                                             task.y_train),
          'test_mse': float(np.mean((test_outputs - signed_test)**2)),
          'initial_test_error': initial_test_error,
          'final_train_loss': losses[-1],
          'diverged': float(not all(math.isfinite(v) for v in losses)),
      },
      'curves': {'test_error_by_epoch': test_errors,
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
  seed, network = config.seeded_network(run, task.x_train.shape[1:])
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
  """The summary of this config's records, in `MODEL_KINDS` order."""
  return runner.summarize(STUDY, config, output_dir)


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


def _load(config: SecondOrderConfig, output_dir: str) -> data.BinaryTask:
  del output_dir  # Nothing is written outside the records.
  return load_task(config.dataset, config.plus_class, config.minus_class,
                   config.data_dir, config.num_train, config.num_test,
                   config.seed)


def _run_unit(config: SecondOrderConfig, task: data.BinaryTask,
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> List[Dict[str, Any]]:
  return run_once(config, task, unit.run, list(unit.points), log)


def _by_kind(entry: Mapping[str, Any]) -> int:
  return MODEL_KINDS.index(entry['point']['model'])


def _figures(entries: Sequence[Mapping[str, Any]], config: SecondOrderConfig,
             output_dir: str) -> List[str]:
  wanted = {record_key(k, r) for k in config.model_kinds
            for r in range(config.num_runs)}
  result_store = store.ResultStore(output_dir)
  records = [result_store.get(k) for k in result_store.keys() if k in wanted]
  return plot(records, entries, output_dir,
              title=f'Second-order Taylor models: {config.architecture} on '
              f'{config.dataset} {config.plus_class}v{config.minus_class} '
              f'(n = {config.num_train})')


STUDY = runner.Study(family=FAMILY, points=operator.attrgetter('model_kinds'),
                     record_key=record_key, run_once=_run_unit, load=_load,
                     sort_key=_by_kind, figures=_figures, noun='models')


# Trains every (model kind, run) not yet in an output folder; summarizes.
run_study = STUDY.run


TABLE_COLUMNS = (('test error', 'test_error'),
                 ('best test err', 'best_test_error'),
                 ('train error', 'train_error'),
                 ('test mse', 'test_mse'), ('init test err',
                                            'initial_test_error'),
                 ('rms J delta', 'first_order_rms'),
                 ('rms dHd/2', 'second_order_rms'))


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """One line per model: means over runs (± 95% CI half-width if runs > 1)."""
  return tables.format_table(
      entries, 'model', lambda entry: MODEL_LABELS[entry['point']['model']],
      TABLE_COLUMNS, [16] * (len(TABLE_COLUMNS) + 2), with_ci=True)
