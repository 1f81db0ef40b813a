"""One kernel probe: a network's kernel measured under one metric vocabulary.

`KernelProbe.measure(model)` takes the network's kernel K(u, v) =
phi(u).phi(v) (gradient features phi = df/dtheta by default; the conjugate
projection, penultimate activations, with `ProbeSpec.use_conjugate_kernel`)
on a fixed probe set (training inputs for the SVM, the effective ranks and
the label alignment; test inputs for the SVM error, the invariances and the
conjugate alignment) and returns {'metrics': ..., 'timings': ...}. What is
measured, on how many inputs and with which solver settings is a small
`ProbeSpec`; run_after_kernel (`studies.after_kernel.probe_spec`), the
sweeps, and the Keras callback (`callbacks.kernel_metrics`) build one and
call the same probe. The spectral metrics of kernel rotation are
`spectral_metrics`.

The vocabulary (`METRICS`, and `VOCABULARY` for descriptions) is the one
the sweeps' records and plots used since 0.1.0, the names that break the
fewest users: they are stored in record files, summaries and plots, and the
callback's History keys differ from them in one name only. Changes:
  * the callback's 'conjugate_alignment' is 'kalignment' (as in every
    record); the old name is still accepted as a metric to request
    (`RENAMED`), and its History/TensorBoard key is now
    '<prefix>kalignment';
  * run_after_kernel's records keep the original after-kernel script's
    names (`studies.after_kernel.record_metrics`): 'ntk_' / 'ak_' + the
    probe name, except the SVM's 'linear_error' / 'margin' (after kernel)
    and 'ntk_linear_error' / 'ntk_margin' (FNTK), so that results compare
    with the script's and 0.1.0 result folders;
  * the sweeps no longer rename (their table is gone): a record holds the
    probe's names.
Kernel rotation's records keep 0.1.0 names for three numbers the vocabulary
also has: 'target_alignment' (= label_alignment), 'trace_effective_rank'
(= eff_rank), 'kernel_alignment_init' (= 1 - distance_from_init).
"""

import dataclasses
import time
from typing import Any, Callable, Dict, Optional, Sequence, Tuple

import keras
import numpy as np

from afterkernel import distribute
from afterkernel import errors
from afterkernel.kernels import empirical
from afterkernel.kernels import features
from afterkernel.kernels import invariance
from afterkernel import kernels
from afterkernel.kernels import metrics as metric_lib
from afterkernel import margin
from afterkernel.margin import device as margin_device
from afterkernel.margin import stability
from afterkernel import training

# Metric name -> meaning (plots and tables label with these).
VOCABULARY = {
    'svm_error': 'hard-margin SVM test error of the network\'s kernel',
    'svm_margin': 'normalized margin of that SVM (features of mean norm 1)',
    'trans_inv': 'translation invariance (mean cosine, 1-pixel shifts)',
    'rotation_inv': 'rotation invariance (mean cosine, +-0.25 rad)',
    'zoom_inv': 'zoom invariance (mean cosine, outer ring cropped)',
    'swap_inv': 'quadrant-swap invariance (mean cosine; lower = more global)',
    'kalignment': 'alignment of the kernel with its conjugate projection',
    'eff_rank': 'effective rank trace / lambda_max of a training Gram',
    'entropy_eff_rank': 'entropy effective rank (Roy & Vetterli 2007)',
    'label_alignment': 'kernel-target alignment A(K, y y^T), y in {-1, +1}',
    'distance_from_init': '1 - A(K, K_0), K_0 a reference (initial) kernel',
}
METRICS = tuple(VOCABULARY)
# Reported with the SVM metrics: the solver's iterations, convergence flag
# (1.0 / 0.0), relative duality gap (None when the bound is 0) and
# separability (0.0 when the solver certified that the data are not
# separable: the error is then that of a non-separable fit), and bounds on
# the test error of the exact max-margin classifier that the certificate
# guarantees (svm_error_lower <= it <= svm_error_upper; None when it bounds
# nothing: margin/stability.py).
SVM_METRICS = ('svm_error', 'svm_margin')
SVM_DIAGNOSTICS = ('svm_iterations', 'svm_converged', 'svm_relative_gap',
                   'svm_separable', 'svm_interior_point', 'svm_error_lower',
                   'svm_error_upper')
INVARIANCE_METRICS = {'translation': 'trans_inv', 'rotation': 'rotation_inv',
                      'zoom': 'zoom_inv', 'swap': 'swap_inv'}
# Names of 0.1.0 that mean a metric of the vocabulary (accepted in requests).
RENAMED = {'conjugate_alignment': 'kalignment'}
# Metrics measured on the training Gram (besides the SVM).
_TRAIN_GRAM_METRICS = ('label_alignment', 'distance_from_init')

FeatureFn = Callable[[keras.Model, np.ndarray], np.ndarray]


def canonical_metrics(names: Sequence[str]) -> Tuple[str, ...]:
  """`names` in the vocabulary (0.1.0 names renamed), checked.

  Raises:
    AfterKernelError: a name that is not a metric.
  """
  names = tuple(RENAMED.get(name, name) for name in names)
  unknown = sorted(set(names) - set(METRICS))
  errors.require(not unknown, f'unknown kernel metrics {unknown}; choose from '
                 f'{", ".join(METRICS)}')
  return names


@dataclasses.dataclass(frozen=True)
class ProbeSpec:
  """What a `KernelProbe` measures, on how many inputs, and how.

  Attributes:
    metrics: names from `METRICS` (or `RENAMED`) to measure.
    num_translations, num_rotations, num_zooms, num_swaps: leading test
      images per invariance (a requested invariance with count 0 is
      skipped).
    rotation_angle: radians, for 'rotation_inv'.
    alignment_sample_size: leading test inputs of 'kalignment' (None: all).
    effective_rank_sample_size: leading training inputs of the effective
      ranks (None: all).
    svm_solver, svm_tolerance, svm_max_iterations, svm_max_seconds: the
      hard-margin SVM (`margin.max_margin_from_gram`; 'primal' solves on
      the features).
    svm_min_tolerance: the solvers of `margin.WARM_START_SOLVERS` ('exact',
      'interior_point') re-solve, warm started, at svm_tolerance / 100,
      / 10^4, ... down to this until the certified range of the test error
      is a single value (`margin.stability.tighten`), so the reported
      error is the exact max-margin classifier's wherever the certificate
      can show it; None solves once, at svm_tolerance. svm_max_seconds
      bounds all rounds together; a round that does not converge is
      dropped (the last converged one is reported).
    svm_device: where the solver's full Gram products run
      (`margin.device.DEVICES`: auto = the GPU when TensorFlow sees one,
      cpu, gpu, or a TensorFlow device name); same results to float64
      rounding. Unused by 'primal' and 'sklearn'.
    use_conjugate_kernel: the SVM, invariances, effective ranks and train
      Gram metrics use the conjugate projection instead of the gradient
      kernel ('kalignment' compares the two either way).
    feature_batch_size, feature_method: the gradient-feature engine.
    memory_budget_gb: GiB the held features may take (None: no limit);
      above it the Grams are streamed.
    distribution_strategy: replicas that share the gradient features.
  """
  metrics: Tuple[str, ...] = METRICS
  num_translations: int = 100
  num_rotations: int = 100
  num_zooms: int = 100
  num_swaps: int = 100
  rotation_angle: float = invariance.DEFAULT_ROTATION_ANGLE
  alignment_sample_size: Optional[int] = None
  effective_rank_sample_size: Optional[int] = None
  svm_solver: str = margin.DEFAULT_SOLVER
  svm_tolerance: float = margin.DEFAULT_TOLERANCE
  svm_max_iterations: Optional[int] = None
  svm_max_seconds: Optional[float] = None
  svm_min_tolerance: Optional[float] = stability.DEFAULT_MIN_TOLERANCE
  svm_device: str = margin_device.DEFAULT_DEVICE
  use_conjugate_kernel: bool = False
  feature_batch_size: int = features.DEFAULT_BATCH_SIZE
  feature_method: str = features.DEFAULT_FEATURE_METHOD
  memory_budget_gb: Optional[float] = None
  distribution_strategy: str = distribute.DEFAULT_STRATEGY

  def wants(self, name: str) -> bool:
    return name in canonical_metrics(self.metrics)

  def invariance_counts(self) -> Dict[str, int]:
    """kind -> count, 0 for invariances not requested."""
    counts = {'translation': self.num_translations,
              'rotation': self.num_rotations, 'zoom': self.num_zooms,
              'swap': self.num_swaps}
    return {kind: (count if self.wants(INVARIANCE_METRICS[kind]) else 0)
            for kind, count in counts.items()}


def _row_norms(rows: np.ndarray) -> np.ndarray:
  """Euclidean norm of each row, accumulated in float64."""
  rows = np.asarray(rows, dtype=np.float64)
  return np.sqrt(np.einsum('ij,ij->i', rows, rows))


def _slice(inputs: np.ndarray, size: Optional[int]) -> np.ndarray:
  return inputs if size is None else inputs[:size]


class KernelProbe:
  """Measures one network's kernel on a fixed probe set (module docstring).

  Build it once per probe set (e.g. per run, with the run's permuted task),
  then call `measure(model)` at every point of training to be compared.
  """

  def __init__(self, spec: ProbeSpec, task: Any, seed: int = 0,
               log: Optional[Callable[[str], None]] = None,
               gradient_fn: Optional[FeatureFn] = None,
               conjugate_fn: Optional[FeatureFn] = None):
    """Sets up the probe.

    Args:
      spec: what to measure.
      task: the probe set: any object with x_train, y_train (binary labels,
        {0, 1} or {-1, +1}), x_test, y_test (e.g. `data.BinaryTask`).
      seed: the SVM solver's seed.
      log: progress printer (None: silent).
      gradient_fn: (model, inputs) -> gradient features, replacing the
        library's engine (sharded over `spec.distribution_strategy`); with
        it, Grams are formed from the features (no structured path).
      conjugate_fn: (model, inputs) -> penultimate features; None means
        `features.conjugate_features`.
    """
    canonical_metrics(spec.metrics)
    self.spec = spec
    self.task = task
    self.seed = seed
    self.log = log or (lambda message: None)
    self.strategy = distribute.make_strategy(spec.distribution_strategy)
    self._gradient_fn = gradient_fn
    self._conjugate_fn = conjugate_fn

  def _gradient_features(self, model, images, method=None):
    """Gradient features, sharded across the strategy's replicas."""
    if self._gradient_fn is not None:
      return self._gradient_fn(model, images)
    return features.gradient_features(
        model, images, self.spec.feature_batch_size,
        features.rows_method(method or self.spec.feature_method),
        strategy=self.strategy,
        log=self.log)

  def _conjugate_features(self, model, images):
    if self._conjugate_fn is not None:
      return self._conjugate_fn(model, images)
    return features.conjugate_features(model, images,
                                       self.spec.feature_batch_size)

  def _feature_fn(self, model):
    if self.spec.use_conjugate_kernel:
      return lambda x: self._conjugate_features(model, x)
    return lambda x: self._gradient_features(model, x)

  def _train_and_cross_gram(self, model, feature_fn, timings):
    """The SVM's training Gram and (test x train) cross-Gram.

    The gradient kernel goes through the engine's one model -> Gram function
    (`empirical.model_train_and_cross_gram`: factored Dense features where
    they apply, streamed under the memory budget otherwise); the conjugate
    kernel and caller-given gradient features through `grams`.
    """
    spec, task = self.spec, self.task
    start = time.time()
    if spec.use_conjugate_kernel or self._gradient_fn is not None:
      width = feature_fn(task.x_train[:1]).shape[1]
      train_gram, cross_gram = kernels.train_and_cross_gram(
          feature_fn, width, task.x_train, task.x_test,
          memory_budget_gb=spec.memory_budget_gb, log=self.log)
    else:
      train_gram, cross_gram = empirical.model_train_and_cross_gram(
          model, task.x_train, task.x_test, spec.feature_batch_size,
          spec.feature_method, self.strategy, spec.memory_budget_gb,
          self.log)
    timings['features_and_gram_seconds'] = time.time() - start
    return train_gram, cross_gram

  def _narrow_conjugate(self, feature_fn) -> bool:
    """Whether the default solver gets the conjugate projection's features
    instead of its Gram: fewer features than training examples."""
    if not (self.spec.use_conjugate_kernel and
            self.spec.svm_solver == margin.DEFAULT_SOLVER):
      return False
    width = feature_fn(self.task.x_train[:1]).shape[1]
    return width < len(self.task.y_train)

  def _svm(self, model, feature_fn, prefix, metrics, timings):
    """The SVM metrics; returns the training Gram (None for 'primal')."""
    spec, task = self.spec, self.task
    self.log(f'  {prefix}features of {len(task.y_train)} train + '
             f'{len(task.y_test)} test examples')
    solver_kwargs = dict(max_iterations=spec.svm_max_iterations,
                         log=self.log)
    train_gram = None
    if spec.svm_solver == 'primal' or self._narrow_conjugate(feature_fn):
      start = time.time()
      train_features = feature_fn(task.x_train)
      test_features = feature_fn(task.x_test)
      timings['features_seconds'] = time.time() - start
      start = time.time()
      if spec.svm_solver == 'primal':
        solver = None
        if solver_kwargs['max_iterations'] is None:
          solver_kwargs['max_iterations'] = margin.DEFAULT_MAX_ITERATIONS
      else:
        # The conjugate projection has far fewer features than examples
        # (94 or 3,328 against ~10^4): the interior point solves the same
        # problem on P x P systems, to the same certificate, ~10-30x faster
        # than the default on the n x n Gram (BENCHMARKS.md, section 9).
        solver = margin.INTERIOR_POINT
      self.log(f'  {prefix}max-margin SVM ({solver or "primal"}) on '
               f'{train_features.shape} features')
      test_norms = _row_norms(test_features)

      def solve(tolerance, previous, max_seconds):
        return margin.max_margin_from_features(
            train_features, task.y_train, solver=solver, tolerance=tolerance,
            warm_start=previous, max_seconds=max_seconds, **solver_kwargs)

      def decide(solution):
        return (test_features.astype(np.float64) @ solution.weights,
                lambda: float(np.linalg.norm(solution.weights)),
                lambda: test_norms)
    else:
      train_gram, cross_gram = self._train_and_cross_gram(model, feature_fn,
                                                          timings)
      start = time.time()
      self.log(f'  {prefix}max-margin SVM ({spec.svm_solver}) on a '
               f'{len(train_gram)}x{len(train_gram)} Gram')
      solver = spec.svm_solver
      test_norms = []  # computed once, on first need

      def solve(tolerance, previous, max_seconds):
        return margin.max_margin_from_gram(
            train_gram, task.y_train, solver=solver, seed=self.seed,
            device=spec.svm_device, tolerance=tolerance, warm_start=previous,
            max_seconds=max_seconds, **solver_kwargs)

      def norms():
        if not test_norms:
          started = time.time()
          test_norms.append(self._test_norms(feature_fn))
          timings['test_norms_seconds'] = time.time() - started
        return test_norms[0]

      def decide(solution):
        return (margin.decision_function(solution, cross_gram),
                lambda: stability.gram_weight_norm(solution, train_gram),
                norms)

    decided = {}

    def error_bounds(solution):
      # What the certificate pins down of the max-margin classifier's error
      # (margin/stability.py): None when it bounds nothing.
      decisions, weight_norm, norms = decide(solution)
      decided[id(solution)] = decisions
      if stability.prediction_radius(solution) is None:
        return None, None
      return stability.certified_error_bounds(
          solution, decisions, weight_norm(), norms(), task.y_test)

    # Solvers that continue from a result are tightened until the error
    # interval closes (down to svm_min_tolerance); the others solve once.
    tighten_to = (spec.svm_min_tolerance
                  if solver in margin.WARM_START_SOLVERS else None)
    solution, bounds, iterations = stability.tighten(
        solve, error_bounds, spec.svm_tolerance, tighten_to, self.log,
        spec.svm_max_seconds)
    # The test norms (feature rows) are timed on their own.
    timings['svm_seconds'] = (time.time() - start -
                              timings.get('test_norms_seconds', 0.0))
    metrics['svm_error'] = training.sign_error(decided[id(solution)],
                                               task.y_test)
    metrics['svm_error_lower'], metrics['svm_error_upper'] = bounds
    metrics['svm_margin'] = solution.margin
    # Over every tightening round.
    metrics['svm_iterations'] = iterations
    metrics['svm_converged'] = float(solution.converged)
    # 1 when the interior point gave the answer ('interior_point', or
    # 'exact' switched to it after coordinate descent's budget).
    metrics['svm_interior_point'] = float(
        solution.solver in margin.INTERIOR_SOLVERS)
    # 1: a classifier with a positive margin was found (separable); 0: the
    # solver certified 0 in the hull of the y_i phi_i; None: an unconverged
    # solve that proved neither.
    if getattr(solution, 'stop_reason', None) == margin.STOP_NOT_SEPARABLE:
      metrics['svm_separable'] = 0.0
    else:
      metrics['svm_separable'] = 1.0 if solution.margin > 0 else None
    metrics['svm_relative_gap'] = (
        (solution.margin_upper_bound - solution.margin) /
        solution.margin_upper_bound
        if solution.margin_upper_bound > 0 else None)
    return train_gram

  def _test_norms(self, feature_fn) -> np.ndarray:
    """||phi(x)|| of the test inputs, a block of feature rows at a time."""
    block = self.spec.feature_batch_size
    x_test = self.task.x_test
    return np.concatenate([
        _row_norms(feature_fn(x_test[start:start + block]))
        for start in range(0, len(x_test), block)])

  def measure(self, model: keras.Model,
              reference_gram: Optional[np.ndarray] = None,
              log_prefix: str = '') -> Dict[str, Dict[str, Any]]:
    """The requested metrics of `model`'s current kernel.

    Args:
      model: the network (one scalar output per example).
      reference_gram: K_0 on the probe training inputs, for
        'distance_from_init'.
      log_prefix: prepended to progress lines (e.g. 'ntk_').

    Returns:
      {'metrics': name -> value (vocabulary names; the SVM adds
      `SVM_DIAGNOSTICS`), 'timings': name -> seconds}.

    Raises:
      AfterKernelError: a missing reference Gram, or bad inputs.
    """
    spec, task = self.spec, self.task
    wanted = set(canonical_metrics(spec.metrics))
    feature_fn = self._feature_fn(model)
    metrics, timings = {}, {}
    train_gram = None
    if wanted & set(SVM_METRICS):
      train_gram = self._svm(model, feature_fn, log_prefix, metrics, timings)
    if wanted & set(_TRAIN_GRAM_METRICS):
      if train_gram is None:
        train_gram = kernels.gram(feature_fn(task.x_train))
      if 'label_alignment' in wanted:
        metrics['label_alignment'] = metric_lib.label_alignment(train_gram,
                                                                task.y_train)
      if 'distance_from_init' in wanted:
        errors.require(reference_gram is not None,
                       'distance_from_init needs the reference Gram K_0')
        metrics['distance_from_init'] = 1.0 - metric_lib.kernel_alignment(
            train_gram, reference_gram)
    del train_gram
    counts = spec.invariance_counts()
    if any(counts.values()):
      start = time.time()
      self.log(f'  {log_prefix}invariances on {max(counts.values())} test '
               'images')
      for kind, value in invariance.invariances(
          feature_fn, task.x_test, counts=counts,
          rotation_angle=spec.rotation_angle).items():
        metrics[INVARIANCE_METRICS[kind]] = value
      timings['invariance_seconds'] = time.time() - start
    if 'kalignment' in wanted:
      sample = _slice(task.x_test, spec.alignment_sample_size)
      gradient_gram = kernels.gram(self._gradient_features(
          model, sample, features.DEFAULT_FEATURE_METHOD))
      conjugate_gram = kernels.gram(self._conjugate_features(model, sample))
      metrics['kalignment'] = metric_lib.kernel_alignment(gradient_gram,
                                                          conjugate_gram)
    if wanted & {'eff_rank', 'entropy_eff_rank'}:
      sample_gram = kernels.gram(
          feature_fn(_slice(task.x_train, spec.effective_rank_sample_size)))
      if 'eff_rank' in wanted:
        metrics['eff_rank'] = metric_lib.trace_effective_rank(sample_gram)
      if 'entropy_eff_rank' in wanted:
        metrics['entropy_eff_rank'] = metric_lib.entropy_effective_rank(
            sample_gram)
    return {'metrics': metrics, 'timings': timings}


def spectral_metrics(system: metric_lib.Eigensystem,
                     reference: metric_lib.Eigensystem,
                     signed_labels: np.ndarray, energy_ks: Sequence[int],
                     num_eigenfunctions: int) -> Dict[str, float]:
  """Kernel rotation's spectral metrics of a Gram vs a reference (initial) one.

  Args:
    system: eigensystem of the current Gram K_t.
    reference: eigensystem of the reference Gram K_0 (`system` itself at
      initialization).
    signed_labels: (n,) labels in {-1, +1}.
    energy_ks: the K of the label energies E_K.
    num_eigenfunctions: J, eigenvectors tracked.

  Returns:
    energy_top{K} (E_K), eigvec_alignment_{j} (a_j), subspace_overlap_top{J},
    init_eigvec_energy_{j} (r_j = u_j^0^T K_t u_j^0),
    init_eigvec_energy_frac_{j} (s_j = r_j / tr K_t),
    init_eigvec_energy_frac_top{J} (S_J), kernel_alignment_init
    (A(K_0, K_t)), target_alignment (A(K_t, y y^T)), top_eigenvalue,
    trace_effective_rank (see `studies.kernel_rotation`).
  """
  metrics = {}
  for k, energy in zip(energy_ks, metric_lib.label_energy(
      system, signed_labels, energy_ks)):
    metrics[f'energy_top{k}'] = float(energy)
  num = num_eigenfunctions
  for j, value in enumerate(
      metric_lib.eigenvector_alignment(reference, system, num), 1):
    metrics[f'eigvec_alignment_{j}'] = float(value)
  metrics[f'subspace_overlap_top{num}'] = metric_lib.subspace_overlap(
      reference, system, num)
  trace = float(np.trace(system.gram))
  energies = metric_lib.initial_eigenvector_energy(reference, system.gram, num)
  for j, energy in enumerate(energies, 1):
    metrics[f'init_eigvec_energy_{j}'] = float(energy)
    metrics[f'init_eigvec_energy_frac_{j}'] = float(energy / trace)
  metrics[f'init_eigvec_energy_frac_top{num}'] = float(energies.sum() / trace)
  metrics['kernel_alignment_init'] = metric_lib.kernel_alignment(
      reference.gram, system.gram)
  metrics['target_alignment'] = metric_lib.kernel_target_alignment(
      system.gram, signed_labels)
  metrics['top_eigenvalue'] = float(system.eigenvalues[0])
  metrics['trace_effective_rank'] = system.trace_effective_rank
  return metrics
