"""NTK eigenfunction tasks: which labelings does a network's kernel find easy?

Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021), "What can linearized
neural networks actually say about generalization?" (NeurIPS), build
binary tasks from the network's own empirical NTK at initialization:

  1. K = Phi Phi^T, the Gram of the gradient features phi(x) = d f(theta_0,
     x) / d theta on n training inputs (`kernel_fit.EmpiricalNTK`), with
     eigenpairs K u_j = lambda_j u_j, lambda_1 >= lambda_2 >= ... (j is
     1-based: j = 1 is the top one);
  2. the j-th eigenfunction, extended to any input by the Nystroem formula
       phi_j(x) = sum_i K(x, x_i) u_ij / lambda_j,
     which equals u_ij at the training inputs x_i (K u_j = lambda_j u_j) and,
     in feature space, is phi(x) . v_j / s_j for the SVD Phi = U S V^T;
  3. the j-th task labels every input with sign(phi_j(x));
  4. the network and its linearization f_lin (`linearize`) are trained on
     each task with the same optimizer and batch order; their test accuracy
     vs j shows how fast learnability decays down the NTK spectrum (the
     linearization is kernel regression with K itself, so it degrades with
     j; the network may do better or worse, depending on how its kernel
     moves);
  5. the target alignment of the task with the kernel,
       alpha(f) = || E_x[ f(x) grad_theta f_theta(x) ] ||^2
                = (1/n^2) sum_{i,k} y_i K_theta(x_i, x_k) y_k,
     at theta_0 and after training (Ortiz-Jimenez et al. use it to show
     that training rotates the NTK towards the task).

Choice of f in alpha: we use f = the task's target y(x) in {-1, +1}, the
paper's "target alignment" (the labels are the function being learned; the
gradient is that of the network output at theta_0 or theta_T), estimated on
the n training inputs the eigenvectors live on. Because ||K|| itself grows in
training, we also record the scale-free kernel-target alignment
A(K, y y^T) = y^T K y / (||K||_F ||y||^2) (Cristianini et al. 2002). For the
linearized model the kernel never changes (its gradient features are J(theta_0,
x) at every step), so its alpha after training equals alpha at init and is
not measured again.

Sign convention: eigenvectors are defined up to sign; we flip each u_j so
that sum_i u_ij >= 0 (ties: the first non-zero entry is positive; the 'sum'
convention of `kernels.metrics.fix_signs`), so the tasks are reproducible.
Flipping all labels gives an equally hard task.

Inputs and class balance: by default the inputs are standardized
(`data.standardize`: training mean per feature removed, divided by one
global training std; test inputs use the training statistics). Raw pixels
are nonnegative, so their mean direction dominates the spectrum (MNIST
3-vs-8, FC 2 x 256, n = 300: lambda_1 holds 34% of trace(K) raw, 13%
standardized) and the first tasks mostly measure overall brightness.
Standardizing does not balance the j = 1 task of a wide network, though:
its ReLU NTK Gram stays almost entrywise positive (there, 0.06% negative
entries; the infinite-width ReLU NTK is negative only for nearly opposite
inputs), so by Perron-Frobenius u_1 has (nearly) one sign and sign(phi_1)
puts (nearly) every input in one class (narrow nets, like the 'tiny'
preset's, are further from this). Each record therefore carries the class
balance (`plus_fraction_*`; `majority_rate_test`, the accuracy of always
predicting the test majority) and the balanced test accuracies
(`balanced_accuracy`, None when the test labels hold one class);
`single_class` = 1 marks a task whose train or test labels hold one
class, and the log and `format_table` flag it, since its accuracy says
nothing about learnability.

The study (`run_study`) runs on `studies.runner`: a frozen
`EigentaskConfig` with `PRESETS`, one record per (eigen index j, run) in the
store (existing keys are skipped, so a killed study resumes), a summary and
a figure (PNG + PDF).
"""

import dataclasses
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import kernel_fit
from afterkernel.kernels import metrics as kernel_metrics
from afterkernel.studies import eigentasks_report
from afterkernel.studies import eigentasks_training
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import store
from afterkernel.studies import task_training
from afterkernel import training

FAMILY = 'eigentasks'
CONFIG_FILE = store.CONFIG_FILE
# The networks and losses the config accepts (`eigentasks_training`).
ARCHITECTURES = eigentasks_training.ARCHITECTURES
LOSSES = eigentasks_training.LOSSES
# The table and figure: in `eigentasks_report` (names kept).
FIGURE_NAME = eigentasks_report.FIGURE_NAME
TABLE_COLUMNS = eigentasks_report.TABLE_COLUMNS


# ----------------------------------------------------------------------------
# Kernel spectra: in `kernels.metrics` (names kept here for 0.1.0 callers).

Eigensystem = kernel_metrics.Eigensystem
eigensystem = kernel_metrics.eigensystem
nystroem_extension = kernel_metrics.nystroem_extension
target_alignment = kernel_metrics.target_alignment
normalized_target_alignment = kernel_metrics.kernel_target_alignment
EIGENVALUE_RTOL = kernel_metrics.EIGENVALUE_RTOL


def eigenfunction_labels(values: np.ndarray) -> np.ndarray:
  """{0, 1} float32 labels: 1 where phi_j(x) > 0 (the plus class), else 0."""
  return (np.asarray(values) > 0).astype(np.float32)


# ----------------------------------------------------------------------------
# Shared pieces of the spectral studies (also used by `kernel_rotation`).


def load_inputs(dataset: str, plus_class: int, minus_class: int,
                data_dir: Optional[str], num_train: int, num_test: int,
                seed: int, standardize: bool = False,
                cifar_test_source: str = data.DEFAULT_CIFAR_TEST_SOURCE
                ) -> data.BinaryTask:
  """The binary task, permuted with `seed`, cut to the first num_train/test.

  With `standardize`, then `data.standardize`d with the statistics of those
  num_train training inputs.
  """
  task = data.load_binary_task(dataset, plus_class, minus_class,
                               data_dir=data_dir,
                               cifar_test_source=cifar_test_source)
  task = data.subsample(data.permute(task, seed), num_train, num_test)
  return data.standardize(task) if standardize else task


def load_study_inputs(config, output_dir: Optional[str] = None
                      ) -> data.BinaryTask:
  """`load_inputs` of a spectral study's config (the runner's `load`).

  Reads the task fields and seed; `standardize_inputs` and
  `cifar_test_source` where the config has them (else raw inputs and the
  default CIFAR test source). Nothing is written to `output_dir`.
  """
  del output_dir
  return load_inputs(
      config.dataset, config.plus_class, config.minus_class, config.data_dir,
      config.num_train, config.num_test, config.seed,
      standardize=getattr(config, 'standardize_inputs', False),
      cifar_test_source=getattr(config, 'cifar_test_source',
                                data.DEFAULT_CIFAR_TEST_SOURCE))


# ----------------------------------------------------------------------------
# The study.


@dataclasses.dataclass(frozen=True)
class EigentaskConfig(runner.StudyConfig, fields.TaskFields,
                      eigentasks_training.TrainingFields,
                      fields.NetworkFields, fields.SgdFields):
  """Everything that defines an eigenfunction-task study.

  Attributes:
    dataset, plus_class, minus_class, data_dir: where the inputs come from
      (`data.load_binary_task`); the class labels themselves are discarded.
    num_train: n, training inputs (the Gram and its eigenvectors live on
      them).
    num_test: test inputs, labelled by the Nystroem extension.
    standardize_inputs: standardize the inputs with the training
      statistics (`data.standardize`, see the module docstring). True in
      every preset: otherwise the top of the spectrum is the mean-pixel
      direction, not structure of the inputs.
    architecture, width, num_layers: the network (`models.build`; for
      'lenet5' see `eigentasks_training.TrainingFields`).
    eigen_indices: 1-based j of the tasks (j = 1: top eigenvector).
    epochs, batch_size, learning_rate, momentum, loss: the optimizer,
      identical for the network and its linearization (SGD with momentum).
    num_runs: independent initializations (seed + run); the data subset is
      fixed by `seed`.
    seed: first seed.
    feature_batch_size: examples per gradient-feature block.
    cifar_test_source, lr_schedule, loss_target: see
      `eigentasks_training.TrainingFields` (Fig. 3: loss_target=0.01).
    alpha_spectrum_size: J > 0 records, while the network trains on each
      task, the alpha spectrum alpha_e<epoch>_j<i> of the first J
      eigenfunction tasks i under its current kernel (Fig. 7); 0: off.
    alpha_epochs: the checkpoint epochs of the alpha spectrum (0 = init.).
    linearize_at_epoch: k > 0 linearizes the network at its weights after
      k epochs of training on the task (the kernel after k epochs of
      pretraining, Figs. 8-9; k = epochs: at the trained theta*) instead of
      at initialization, and trains that linearization for `epochs`.
  """
  # Adding runs or indices extends a study; data_dir is where data lives.
  FINGERPRINT_IGNORES = ('num_runs', 'data_dir', 'eigen_indices')
  num_train: int = 60
  num_test: int = 40
  standardize_inputs: bool = True
  eigen_indices: tuple = (1, 2, 8)
  epochs: int = 2
  batch_size: int = 20
  feature_batch_size: int = features.DEFAULT_BATCH_SIZE
  alpha_spectrum_size: int = 0
  alpha_epochs: tuple = (0,)
  linearize_at_epoch: int = 0

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    self.validate_training_fields()
    errors.require(isinstance(self.standardize_inputs, bool),
                   'standardize_inputs must be True or False, got '
                   f'{self.standardize_inputs!r}')
    for name in ('num_train', 'num_test', 'width', 'num_layers', 'epochs',
                 'batch_size', 'num_runs', 'feature_batch_size'):
      runner.positive_ints([getattr(self, name)], name)
    errors.require(isinstance(self.seed, int) and self.seed >= 0,
                   f'seed must be a non-negative integer, got {self.seed}')
    runner.positive_ints(self.eigen_indices, 'eigen_indices')
    errors.require(max(self.eigen_indices) <= self.num_train,
                   f'eigen index {max(self.eigen_indices)} exceeds num_train='
                   f'{self.num_train} (the Gram has that many eigenvectors)')
    self._validate_training_options()

  def _validate_training_options(self) -> None:
    """The options of Figs. 7-9."""
    errors.require(0 <= self.alpha_spectrum_size <= self.num_train,
                   f'alpha_spectrum_size must be in [0, num_train='
                   f'{self.num_train}], got {self.alpha_spectrum_size}')
    errors.require(all(isinstance(e, int) and 0 <= e <= self.epochs
                       for e in self.alpha_epochs),
                   f'alpha_epochs must lie in [0, epochs={self.epochs}], '
                   f'got {self.alpha_epochs}')
    errors.require(isinstance(self.linearize_at_epoch, int) and
                   0 <= self.linearize_at_epoch <= self.epochs,
                   f'linearize_at_epoch must be in [0, epochs={self.epochs}]'
                   f', got {self.linearize_at_epoch}')
    errors.require(not (self.linearize_at_epoch and self.loss_target),
                   'linearize_at_epoch needs a fixed number of epochs: set '
                   'loss_target=0')


PRESETS = {
    # Seconds, offline (embedded 8x8 digits): for tests and smoke runs.
    'tiny': EigentaskConfig(),
    # MNIST 3-vs-8 (pass data_dir), 1000 train / 1000 test inputs, FC 2x256,
    # 9 tasks from j = 1 to 200, 20 epochs each for both models, 2 inits.
    'cpu': EigentaskConfig(
        dataset='mnist', num_train=1000, num_test=1000, width=256,
        num_layers=2, eigen_indices=(1, 2, 3, 5, 10, 20, 50, 100, 200),
        epochs=20, batch_size=64, learning_rate=0.01, momentum=0.9,
        num_runs=2),
    # The paper's setting (Ortiz-Jimenez et al. 2021, Figs. 2-3): CIFAR-10
    # inputs (cat 3 vs dog 5, pass data_dir; test inputs from the lossy full
    # test copy, their labels come from the Nystroem extension), LeNet-5,
    # SGD with momentum and step learning-rate decay, 100 epochs, each model
    # trained until its training loss is 0.01 (steps and weight distances
    # recorded). n = 2000 is ours (hours on 2 CPU cores).
    'paper': EigentaskConfig(
        dataset='cifar10', plus_class=5, minus_class=3, num_train=2000,
        num_test=1000, cifar_test_source='lossy_full', architecture='lenet5',
        width=1, eigen_indices=(1, 2, 3, 5, 10, 20, 50, 100, 200, 500),
        epochs=100, batch_size=128, learning_rate=0.01, momentum=0.9,
        lr_schedule='step', loss_target=0.01, num_runs=2),
    # The paper preset cut to ~20 CPU minutes: 500 CIFAR inputs, the exact
    # 189 cat/dog test images, 30 epochs, one run, and the alpha spectrum of
    # the first 20 tasks at epochs 0, 5 and 30 (Fig. 7).
    'paper_small': EigentaskConfig(
        dataset='cifar10', plus_class=5, minus_class=3, num_train=500,
        num_test=189, architecture='lenet5', width=1,
        eigen_indices=(1, 2, 3, 5, 10, 20, 50, 100), epochs=30,
        batch_size=64, learning_rate=0.01, momentum=0.9, lr_schedule='step',
        loss_target=0.01, alpha_spectrum_size=20, alpha_epochs=(0, 5, 30),
        num_runs=1),
}


def record_key(eigen_index: int, run: int) -> str:
  return f'{FAMILY}_j{eigen_index:05d}_run{run}'


def _outputs(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
  return training.predict_logits(model, inputs, 512).astype(np.float64)


def accuracy(model: keras.Model, inputs: np.ndarray,
             labels01: np.ndarray) -> float:
  """Fraction with (output > 0) == label: the decision rule of both losses."""
  return task_training.sign_accuracy_of(model, inputs, labels01, 512)


# Moved to studies.task_training (names kept).
balanced_accuracy = task_training.balanced_accuracy
majority_rate = task_training.majority_rate


def run_once(config: EigentaskConfig, task: data.BinaryTask, run: int,
             indices: Sequence[int], log: Callable[[str], None] = print
             ) -> List[Dict[str, Any]]:
  """One initialization: the Gram, its eigenfunctions, and the tasks `indices`.

  Returns:
    One record per eigen index (not yet stored).
  """
  seed, network = config.seeded_network(run, task.x_train.shape[1:])
  initial_weights = network.get_weights()
  start = time.time()
  gram, cross = kernel_fit.EmpiricalNTK(
      network, config.feature_batch_size).train_and_cross_gram(
          task.x_train, task.x_test)
  system = kernel_metrics.eigensystem(gram)
  train_values = system.eigenvectors[:, np.array(
      kernel_metrics.check_eigen_indices(system, indices)) - 1]
  test_values = kernel_metrics.nystroem_extension(cross, system, indices)
  gram_seconds = time.time() - start
  log(f'run {run}: NTK Gram of {len(task.x_train)} inputs and its '
      f'eigenvectors in {gram_seconds:.1f} s; lambda_1 = '
      f'{system.eigenvalues[0]:.4g}')
  # The +-1 labels of the first J tasks, for the alpha spectrum (Fig. 7).
  spectrum_labels = data.signed_labels(eigenfunction_labels(
      system.eigenvectors[:, :config.alpha_spectrum_size]))
  records = []
  for column, j in enumerate(indices):
    y_train = eigenfunction_labels(train_values[:, column])
    y_test = eigenfunction_labels(test_values[:, column])
    signed = data.signed_labels(y_train)
    single_class = len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2
    metrics = {
        'eigenvalue': float(system.eigenvalues[j - 1]),
        'relative_eigenvalue': float(system.eigenvalues[j - 1] /
                                     system.eigenvalues[0]),
        'plus_fraction_train': float(y_train.mean()),
        'plus_fraction_test': float(y_test.mean()),
        'majority_rate_test': majority_rate(y_test),
        'single_class': float(single_class),
        'alpha_init': kernel_metrics.target_alignment(system.gram, signed),
        'normalized_alignment_init': kernel_metrics.kernel_target_alignment(
            system.gram, signed),
    }
    timings = {'gram_seconds': gram_seconds}
    network.set_weights(initial_weights)
    for name, model in eigentasks_training.train_both(
        config, task.x_train, network, y_train, seed, spectrum_labels,
        metrics, timings):
      metrics[f'{name}_train_accuracy'] = accuracy(model, task.x_train,
                                                   y_train)
      predicted = _outputs(model, task.x_test) > 0
      metrics[f'{name}_test_accuracy'] = float(np.mean(predicted ==
                                                       (y_test > 0.5)))
      metrics[f'{name}_balanced_accuracy'] = balanced_accuracy(predicted,
                                                               y_test)
    start = time.time()
    after = kernel_fit.EmpiricalNTK(network, config.feature_batch_size).gram(
        task.x_train)
    timings['gram_after_seconds'] = time.time() - start
    metrics['alpha_after'] = kernel_metrics.target_alignment(after, signed)
    metrics['normalized_alignment_after'] = (
        kernel_metrics.kernel_target_alignment(after, signed))
    metrics['alpha_ratio'] = metrics['alpha_after'] / metrics['alpha_init']
    metrics['test_accuracy_gap'] = (metrics['nn_test_accuracy'] -
                                    metrics['lin_test_accuracy'])
    log(eigentasks_report.task_line(j, metrics))
    records.append(task_training.task_record(
        config, FAMILY, record_key(j, run), 'eigen_index', j, run, seed,
        task.info, metrics, timings))
  return records


def summarize(output_dir: str, config: EigentaskConfig
              ) -> List[Dict[str, Any]]:
  """The summary of this config's records, sorted by eigen index."""
  return runner.summarize(STUDY, config, output_dir)


def _run_unit(config: EigentaskConfig, task: data.BinaryTask,
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> List[Dict[str, Any]]:
  return run_once(config, task, unit.run, list(unit.points), log)


def _figures(entries: Sequence[Mapping[str, Any]], config: EigentaskConfig,
             output_dir: str) -> List[str]:
  return eigentasks_report.plot_all(
      entries, output_dir, title=f'NTK eigenfunction tasks: {config.architecture} on '
              f'{config.dataset} inputs (n = {config.num_train})')


STUDY = task_training.index_study(FAMILY, 'eigen_index', 'eigen_indices',
                                  record_key, _run_unit, load_study_inputs,
                                  _figures)


# Runs every (eigen index, run) not yet in an output folder; summarizes.
run_study = STUDY.run


PRESETS_HELP = ('tiny: offline digits, seconds; cpu: MNIST 3-vs-8; paper, '
                'paper_small: CIFAR-10 cat/dog, LeNet-5 (needs --data_dir)')
TABLE_FOOTER = (
    '(means over runs; accuracies on sign(phi_j) test labels, "bal" = mean '
    'per-class recall, "maj test" = majority-class rate; alpha = '
    '||E[y grad f]||^2, A = y^T K y / (||K||_F ||y||^2); ONE-CLASS k/n: in k '
    'of n runs the task had one class, its accuracy is meaningless)')

format_table = eigentasks_report.format_tables
plot = eigentasks_report.plot
