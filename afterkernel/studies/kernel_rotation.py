"""Kernel rotation: how training turns the NTK's top eigenvectors to the labels.

Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021, "What can linearized
neural networks actually say about generalization?", NeurIPS; Fig. 6 and
Table 1) follow the empirical NTK K_t = Phi_t Phi_t^T of a network on n
training inputs through training (`kernel_fit.EmpiricalNTK` snapshots at each
checkpoint); Baratin et al. (2021, "Implicit regularization via neural
feature alignment") measure the same kind of kernel-label alignment. Write K_t u_j^t = lambda_j^t
u_j^t (lambda_1^t >= lambda_2^t >= ..., j 1-based) and y in {-1, +1}^n for
the training labels. At each checkpoint t this module measures

  * the label energy on the top-K eigenvectors, for a list of K,
        E_K(t) = ||U_K^t^T y|| / ||y||,   U_K^t = [u_1^t ... u_K^t],
    the fraction (in norm) of the labels that the K largest kernel
    directions explain. E_n = 1 and E_K grows with K; a kernel that rotates
    towards the task gets E_K(t) close to 1 at small K (for kernel
    regression, large-eigenvalue directions are learned first, so the
    labels' energy there sets how fast and how well the task is learned);
  * the alignment of each of the first eigenfunctions with its value at
    initialization,
        a_j(t) = |<u_j^0, u_j^t>|   (unit vectors, so a cosine in [0, 1]).
    It equals sqrt of the kernel alignment (Cristianini et al. 2002) of the
    rank-one projections u_j^0 u_j^0^T and u_j^t u_j^t^T, since
    <u u^T, v v^T>_F = (u.v)^2; the absolute value removes the arbitrary
    sign of eigenvectors. Near-degenerate eigenvalues can swap order and
    drive a_j down without the subspace moving, so we also record the
    top-J subspace overlap ||U_J^0^T U_J^t||_F^2 / J (1: same subspace, J/n
    in expectation for random subspaces);
  * the energy of the current kernel along each of the first initial
    eigenfunctions, the Rayleigh quotient and its share of the trace,
        r_j(t) = u_j^0^T K_t u_j^0,    s_j(t) = r_j(t) / trace(K_t),
    for j = 1..J, and the top-J share S_J(t) = sum_{j <= J} s_j(t)
    = tr(U_J^0^T K_t U_J^0) / tr(K_t). At t = 0 they are lambda_j^0,
    lambda_j^0 / trace(K_0) and the top-J share of the spectrum. This is the
    alignment of each of the first eigenfunctions before vs after training
    that the study plots: it asks how much of the trained kernel still acts
    along the directions the network started with, and unlike a_j it does not
    care how the current eigenvectors are ordered or rotated within a
    near-degenerate group. The shares of all n initial eigenvectors add up to
    1, so s_j falling means the kernel's energy moved to other directions
    (for instance towards the labels, see E_K), r_j rising that the kernel
    grew along u_j^0;
  * the kernel alignment A(K_t, K_0), the scale-free kernel-target alignment
    A(K_t, y y^T), lambda_1^t, trace(K_t) / lambda_1^t, and the network's
    training loss and train / test error.

The network is trained with `training.train` (Keras SGD, BCE on the logit,
the library's training protocol), with checkpoints at listed epochs (epoch 0
is initialization). The Gram is measured on the first `num_kernel_examples`
training inputs (all of them by default in the presets that fit).

`run_study` follows the study pattern: frozen `RotationConfig` and
`PRESETS`, one record per (checkpoint epoch, run) in a `store.ResultStore`
(a run whose records all exist with this version's metrics,
`REQUIRED_METRICS`, is skipped; a run killed midway is redone
from its initialization, replacing its records), a summary and a figure.
"""

import dataclasses
import math
import operator
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import keras
from matplotlib import cm
from matplotlib import figure as mpl_figure
import numpy as np

from afterkernel import data
from afterkernel.studies import eigentasks
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import kernel_fit
from afterkernel.kernels import metrics as kernel_metrics
from afterkernel.kernels import probe as probe_lib
from afterkernel import models
from afterkernel import plots
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import tables
from afterkernel.studies import task_training
from afterkernel import training

FAMILY = 'kernel_rotation'
FIGURE_NAME = 'kernel_rotation'


# Spectral measurements: in `kernels.metrics` (names kept for 0.1.0 callers).
label_energy = kernel_metrics.label_energy
eigenvector_alignment = kernel_metrics.eigenvector_alignment
initial_eigenvector_energy = kernel_metrics.initial_eigenvector_energy
subspace_overlap = kernel_metrics.subspace_overlap


# ----------------------------------------------------------------------------
# The study.


@dataclasses.dataclass(frozen=True)
class RotationConfig(runner.StudyConfig, fields.TaskFields,
                     fields.NetworkFields):
  """Everything that defines a kernel-rotation study.

  Attributes:
    dataset, plus_class, minus_class, data_dir: the binary task
      (`data.load_binary_task`), seeded subset of num_train / num_test.
    num_kernel_examples: the Gram is measured on the first this-many
      training inputs (None: all num_train).
    architecture, width, num_layers: the network (`models.build`).
    checkpoint_epochs: epochs at which the kernel is measured (0 = init.);
      training runs to the largest.
    learning_rate, batch_size: Keras SGD (`training.train`).
    energy_ks: the K of the label energies E_K.
    num_eigenfunctions: J, eigenvectors whose alignment a_j and energies
      r_j, s_j are tracked (and the size of the subspace overlap and of the
      top-J share S_J).
    num_runs, seed: run r uses seed + r for the initialization and batch
      order; the data subset is fixed by `seed`.
    feature_batch_size: examples per gradient-feature block.
  """
  FINGERPRINT_IGNORES = ('num_runs', 'data_dir')
  num_train: int = 80
  num_test: int = 40
  num_kernel_examples: Optional[int] = 60
  checkpoint_epochs: tuple = (0, 1, 3)
  learning_rate: float = 0.05
  batch_size: int = 20
  energy_ks: tuple = (1, 2, 5, 10, 60)
  num_eigenfunctions: int = 5
  feature_batch_size: int = features.DEFAULT_BATCH_SIZE

  @property
  def kernel_size(self) -> int:
    return (self.num_train if self.num_kernel_examples is None
            else self.num_kernel_examples)

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    errors.require_choice(self.dataset, data.DATASETS, 'dataset')
    errors.require_choice(self.architecture, eigentasks.ARCHITECTURES,
                          'architecture')
    runner.require_positive_int_fields(self, ('num_train', 'num_test', 'width',
        'num_layers', 'batch_size', 'num_eigenfunctions', 'num_runs',
        'feature_batch_size', 'kernel_size'))
    errors.require(self.kernel_size <= self.num_train,
                   f'num_kernel_examples={self.kernel_size} exceeds '
                   f'num_train={self.num_train}')
    errors.require(self.learning_rate > 0 and math.isfinite(self.learning_rate),
                   f'learning_rate must be positive, got {self.learning_rate}')
    errors.require(isinstance(self.seed, int) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed}')
    errors.require(bool(self.checkpoint_epochs),
                   'checkpoint_epochs is empty; give at least one epoch')
    for epoch in self.checkpoint_epochs:
      errors.require(isinstance(epoch, (int, np.integer)) and epoch >= 0,
                     f'checkpoint epochs must be integers >= 0, got {epoch!r}')
    errors.require(0 in self.checkpoint_epochs,
                   'checkpoint_epochs must include 0 (the kernel at init. is '
                   'the reference of the eigenvector alignment)')
    errors.require(bool(self.energy_ks), 'energy_ks is empty')
    for k in self.energy_ks:
      errors.require(
          isinstance(k, (int, np.integer)) and 1 <= k <= self.kernel_size,
          f'energy K = {k!r} must be an integer in [1, {self.kernel_size}] '
          '(the Gram has num_kernel_examples eigenvectors)')
    errors.require(self.num_eigenfunctions <= self.kernel_size,
                   f'num_eigenfunctions={self.num_eigenfunctions} exceeds '
                   f'the {self.kernel_size} kernel examples')


PRESETS = {
    # Seconds, offline (embedded 8x8 digits): for tests and smoke runs.
    'tiny': RotationConfig(),
    # MNIST 3-vs-8 (pass data_dir): the after-kernel paper's 4 x 94 FC net,
    # 2000 training inputs (all in the Gram), 1000 test, 30 epochs of SGD
    # (lr 0.05, batch 32), kernels at 7 checkpoints, 3 initializations.
    'cpu': RotationConfig(
        dataset='mnist', num_train=2000, num_test=1000,
        num_kernel_examples=None, width=94, num_layers=4,
        checkpoint_epochs=(0, 1, 2, 4, 8, 16, 30), learning_rate=0.05,
        batch_size=32, energy_ks=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000,
                                  2000),
        num_eigenfunctions=10, num_runs=3),
}


# Metrics that only records of this version hold. A record of the same
# configuration written by older code (before the energies along u_j(0)) has
# the same key and fingerprint but not these: its run is measured again
# instead of mixing records with and without them in one summary.
REQUIRED_METRICS = ('init_eigvec_energy_frac_1',)


def record_key(epoch: int, run: int) -> str:
  return f'{FAMILY}_epoch{epoch:05d}_run{run}'


def measure(model: keras.Model, kernel_inputs: np.ndarray,
            kernel_labels: np.ndarray, initial: Optional[
                kernel_metrics.Eigensystem], config: RotationConfig
            ) -> tuple:
  """The kernel metrics of `model` now; returns (metrics, eigensystem).

  Args:
    model: the network at this checkpoint (snapshotted by
      `kernel_fit.EmpiricalNTK`; not changed).
    kernel_inputs: (n, ...) inputs of the Gram.
    kernel_labels: (n,) their {0, 1} labels.
    initial: the eigensystem at initialization; None at initialization
      (the current one is then the reference).
    config: the study (energy_ks, num_eigenfunctions, feature_batch_size).

  Returns:
    (metrics, eigensystem): metrics maps names to floats: energy_top{K},
    eigvec_alignment_{j}, subspace_overlap_top{J}, init_eigvec_energy_{j}
    (r_j), init_eigvec_energy_frac_{j} (s_j), init_eigvec_energy_frac_top{J}
    (S_J), kernel_alignment_init, target_alignment, top_eigenvalue,
    trace_effective_rank (`kernels.probe.spectral_metrics`; see the module
    docstring).
  """
  system = kernel_metrics.eigensystem(kernel_fit.EmpiricalNTK(
      model, config.feature_batch_size).gram(kernel_inputs))
  reference = system if initial is None else initial
  metrics = probe_lib.spectral_metrics(
      system, reference, data.signed_labels(kernel_labels), config.energy_ks,
      config.num_eigenfunctions)
  return metrics, system


def run_once(config: RotationConfig, task: data.BinaryTask, run: int,
             log: Callable[[str], None] = print) -> List[Dict[str, Any]]:
  """Trains one initialization, measuring at every checkpoint; its records."""
  seed, network = config.seeded_network(run, task.x_train.shape[1:])
  kernel_inputs = task.x_train[:config.kernel_size]
  kernel_labels = task.y_train[:config.kernel_size]
  state = {'initial': None, 'last': time.time()}
  records = []

  def on_snapshot(epoch, model):
    start = time.time()
    metrics, system = measure(model, kernel_inputs, kernel_labels,
                              state['initial'], config)
    if state['initial'] is None:
      state['initial'] = system
    metrics['train_loss'] = training.binary_loss(model, task.x_train,
                                                 task.y_train)
    metrics['train_error'] = training.classification_error(
        model, task.x_train, task.y_train)
    metrics['test_error'] = training.classification_error(
        model, task.x_test, task.y_test)
    timings = {'kernel_seconds': time.time() - start,
               'train_seconds_since_last': start - state['last']}
    state['last'] = time.time()
    energies = ', '.join(f'E_{k} {metrics[f"energy_top{k}"]:.3f}'
                         for k in config.energy_ks[:4])
    num = config.num_eigenfunctions
    log(f'run {run} epoch {epoch:3d}: {energies}; a_1 '
        f'{metrics["eigvec_alignment_1"]:.3f}, s_1 '
        f'{metrics["init_eigvec_energy_frac_1"]:.3f}, S_{num} '
        f'{metrics[f"init_eigvec_energy_frac_top{num}"]:.3f}, A(K_t,K_0) '
        f'{metrics["kernel_alignment_init"]:.3f}, test error '
        f'{metrics["test_error"]:.4f} ({timings["kernel_seconds"]:.1f} s)')
    records.append(task_training.task_record(
        config, FAMILY, record_key(epoch, run), 'epoch', epoch, run, seed,
        task.info, metrics, timings))

  training.train(network, task.x_train, task.y_train,
                 epochs=max(config.checkpoint_epochs),
                 learning_rate=config.learning_rate,
                 batch_size=config.batch_size, seed=seed,
                 snapshot_epochs=config.checkpoint_epochs,
                 on_snapshot=on_snapshot)
  return records


def summarize(output_dir: str, config: RotationConfig
              ) -> List[Dict[str, Any]]:
  """The summary of this config's records, sorted by epoch."""
  return runner.summarize(STUDY, config, output_dir)


def _mean(entry, metric):
  stats = entry['metrics'].get(metric)
  return None if not stats else stats['mean']


def plot(entries: Sequence[Mapping[str, Any]], config: RotationConfig,
         output_dir: str, title: str = '') -> List[str]:
  """Energy vs K, eigenvector alignment a_j and share s_j of the kernel's
  energy along u_j(init.) vs j (one line per checkpoint), and energies /
  errors vs epoch; PNG + PDF."""
  fig = mpl_figure.Figure(figsize=(18, 4.2), dpi=plots.DPI)
  energy_axes, alignment_axes, share_axes, time_axes = fig.subplots(1, 4)
  colors = cm.viridis(np.linspace(0, 0.9, max(len(entries), 1)))
  ks = list(config.energy_ks)
  js = list(range(1, config.num_eigenfunctions + 1))
  for color, entry in zip(colors, entries):
    label = f'epoch {entry["point"]["epoch"]}'
    energy_axes.plot(ks, [_mean(entry, f'energy_top{k}') for k in ks],
                     marker='o', color=color, label=label)
    alignment_axes.plot(js, [_mean(entry, f'eigvec_alignment_{j}')
                             for j in js], marker='o', color=color,
                        label=label)
    share_axes.plot(js, [_mean(entry, f'init_eigvec_energy_frac_{j}')
                         for j in js], marker='o', color=color, label=label)
  energy_axes.set_xscale('log')
  energy_axes.set_xlabel('K (top eigenvectors of the NTK Gram)')
  energy_axes.set_ylabel('label energy ||U_K^T y|| / ||y||')
  energy_axes.set_ylim(0, 1.02)
  energy_axes.legend(fontsize=7)
  alignment_axes.set_xlabel('eigenvector index j')
  alignment_axes.set_ylabel('|<u_j(init.), u_j(epoch)>|')
  alignment_axes.set_ylim(0, 1.02)
  alignment_axes.legend(fontsize=7)
  share_axes.set_yscale('log')
  share_axes.set_xlabel('eigenvector index j (at init.)')
  share_axes.set_ylabel('u_j(init.)^T K_t u_j(init.) / trace K_t')
  share_axes.legend(fontsize=7)
  epochs = [e['point']['epoch'] for e in entries]
  for index, k in enumerate(ks[:4]):
    time_axes.plot(epochs, [_mean(e, f'energy_top{k}') for e in entries],
                   marker='o', color=f'C{index}', label=f'E_{k}')
  num = config.num_eigenfunctions
  time_axes.plot(epochs, [_mean(e, f'init_eigvec_energy_frac_top{num}')
                          for e in entries], marker='^', color='C5',
                 linestyle='-.', label=f'S_{num} (share along top-{num} '
                 'u_j(init.))')
  time_axes.plot(epochs, [_mean(e, 'test_error') for e in entries],
                 marker='s', color='k', linestyle='--', label='test error')
  time_axes.set_xscale('symlog', linthresh=1)
  time_axes.set_xlabel('epoch (symlog)')
  time_axes.set_ylabel('energy / error')
  time_axes.legend(fontsize=7)
  for axes in (energy_axes, alignment_axes, share_axes, time_axes):
    axes.grid(alpha=0.3)
  fig.suptitle(title)
  fig.tight_layout()
  return plots.save(fig, output_dir, FIGURE_NAME)


def _run_unit(config: RotationConfig, task: data.BinaryTask,
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> List[Dict[str, Any]]:
  return run_once(config, task, unit.run, log)


def _figures(entries: Sequence[Mapping[str, Any]], config: RotationConfig,
             output_dir: str) -> List[str]:
  return plot(entries, config, output_dir,
              title=f'Kernel rotation: {config.architecture} on '
              f'{config.dataset} {config.minus_class}-vs-{config.plus_class} '
              f'(n = {config.kernel_size})')


# A run is one training trajectory: if any checkpoint is missing (or lacks
# REQUIRED_METRICS), the whole run is measured again.
STUDY = runner.Study(family=FAMILY,
                     points=operator.attrgetter('checkpoint_epochs'),
                     record_key=record_key, run_once=_run_unit,
                     load=eigentasks.load_study_inputs,
                     sort_key=runner.PointField('epoch'), figures=_figures,
                     whole_runs=True, required_metrics=REQUIRED_METRICS,
                     noun='checkpoints')


# Runs every run whose checkpoints are not all in an output folder.
run_study = STUDY.run


def format_table(entries: Sequence[Mapping[str, Any]],
                 config: RotationConfig) -> str:
  """One line per checkpoint epoch: mean energies, alignments and errors."""
  columns = ([(f'E_{k}', f'energy_top{k}') for k in config.energy_ks] +
             [(f'a_{j}', f'eigvec_alignment_{j}')
              for j in range(1, min(config.num_eigenfunctions, 5) + 1)] +
             [(f'overlap{config.num_eigenfunctions}',
               f'subspace_overlap_top{config.num_eigenfunctions}')] +
             [(f's_{j}', f'init_eigvec_energy_frac_{j}')
              for j in range(1, min(config.num_eigenfunctions, 3) + 1)] +
             [(f'S_{config.num_eigenfunctions}',
               f'init_eigvec_energy_frac_top{config.num_eigenfunctions}'),
              ('lambda_1', 'top_eigenvalue'),
              ('A(Kt,K0)', 'kernel_alignment_init'),
              ('A(Kt,yy)', 'target_alignment'),
              ('test err', 'test_error'), ('train loss', 'train_loss')])
  width = max(9, max(len(name) for name, _ in columns) + 1)
  # lambda_1 is not in [0, 1]: significant digits, not decimals.
  lines = [tables.format_table(
      entries, 'epoch', lambda entry: entry['point']['epoch'], columns,
      [width] * (len(columns) + 2),
      number_formats=dict({metric: '.4f' for _, metric in columns},
                          top_eigenvalue='.4g'))]
  lines.append('(means over runs; E_K = ||U_K^T y||/||y||, a_j = '
               '|<u_j(0), u_j(t)>|, s_j = u_j(0)^T K_t u_j(0) / tr K_t, '
               f'S_{config.num_eigenfunctions} = s_1 + ... + '
               f's_{config.num_eigenfunctions}, lambda_1 = top eigenvalue '
               'of K_t)')
  return '\n'.join(lines)
