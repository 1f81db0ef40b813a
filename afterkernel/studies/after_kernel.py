"""The after-kernel experiment: FNTK vs after kernel of one network, repeated.

One run (`run_once`) of the paper's protocol:
  1. permute the task's data with the run's seed, build the network with
     Keras default initialization under the same seed;
  2. at initialization (the FNTK): hard-margin SVM test error and margin of the
     kernel (if `train_linear_model`), the four invariances, alignment of the
     kernel with its conjugate projection, effective rank;
  3. train the network (fixed epochs, or until the training loss target);
  4. the same numbers for the after kernel, plus the network's test error.
`run_experiment` repeats this `num_runs` times (seed, seed+1, ...) on
`studies.runner`: one record per run in records/ (key
after_kernel_<fingerprint>_run<r>), summary.json / summary.csv in the one
summary schema (`studies.summary`), and resumes an interrupted experiment
(a 0.1.0 folder's runs.jsonl is converted to records/ first).

Kernel metrics come from the one probe (`kernels.probe.KernelProbe`, spec
`probe_spec`). Record names follow the original after-kernel script
(nn_error, linear_error, margin, {ntk,ak}_{trans,zoom,swap,rotation}_inv,
{ntk,ak}_kalignment, {ntk,ak}_eff_rank) so its users can compare: the
probe's names prefixed 'ntk_' / 'ak_', except the SVM's (`record_metrics`);
added metrics: ntk_linear_error and ntk_margin (the FNTK's SVM),
{ntk,ak}_entropy_eff_rank, nn_train_loss, epochs_trained, and the solvers'
iteration counts.

Which kernel: by default the gradient-feature kernel; with
`use_conjugate_kernel` the SVM, invariances and effective rank use the
conjugate projection K_c instead (as the original's flag did), and the
alignment metric is unchanged (kernel vs its conjugate projection).
"""

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Dict, List

from absl import logging
import keras

from afterkernel import data
from afterkernel import distribute
from afterkernel import errors
from afterkernel.kernels import probe as probe_lib
from afterkernel import models
from afterkernel.studies import after_kernel_config
from afterkernel.studies import runner
from afterkernel.studies import store
from afterkernel.studies import summary as summary_lib
from afterkernel import training

VERSION = '0.1.0'

# Rows shown side by side in the printed table: (label, FNTK, after kernel).
TABLE_ROWS = (
    ('SVM test error', 'ntk_linear_error', 'linear_error'),
    ('margin (features norm 1)', 'ntk_margin', 'margin'),
    ('translation invariance', 'ntk_trans_inv', 'ak_trans_inv'),
    ('rotation invariance', 'ntk_rotation_inv', 'ak_rotation_inv'),
    ('zoom invariance', 'ntk_zoom_inv', 'ak_zoom_inv'),
    ('swap (locality) invariance', 'ntk_swap_inv', 'ak_swap_inv'),
    ('alignment with conjugate', 'ntk_kalignment', 'ak_kalignment'),
    ('eff. rank trace/max', 'ntk_eff_rank', 'ak_eff_rank'),
    ('eff. rank (Roy-Vetterli)', 'ntk_entropy_eff_rank',
     'ak_entropy_eff_rank'),
    # Whether the SVM behind each error reached its certified gap (share of
    # runs; below 1 the error is that of an unconverged classifier).
    ('SVM converged (share)', 'ntk_svm_converged', 'ak_svm_converged'),
    ('SVM relative gap', 'ntk_svm_relative_gap', 'ak_svm_relative_gap'),
    ('SVM data separable (share)', 'ntk_svm_separable', 'ak_svm_separable'),
)


# The configuration, network and task (shared with the sweeps).
ExperimentConfig = after_kernel_config.ExperimentConfig
build_network = after_kernel_config.build_network
load_task = after_kernel_config.load_task


# The probe of kernels.probe (0.1.0 defined it here; the name is kept).
KernelProbe = probe_lib.KernelProbe
# run_after_kernel's records keep the original script's SVM names:
# linear_error / margin (after kernel), ntk_linear_error / ntk_margin (FNTK).
_SCRIPT_NAMES = {'svm_error': 'linear_error', 'svm_margin': 'margin'}


def probe_spec(config: ExperimentConfig) -> probe_lib.ProbeSpec:
  """The probe of the experiment's protocol (what `run_once` measures).

  The SVM if `train_linear_model`; the invariances with positive counts;
  'kalignment' on the first ker_alignment_sample_size test images and the
  effective ranks on the first effective_rank_sample_size training images,
  unless 0. Fields the spec shares with the config are copied.
  """
  wanted = list(probe_lib.SVM_METRICS) if config.train_linear_model else []
  wanted += list(probe_lib.INVARIANCE_METRICS.values())
  if config.ker_alignment_sample_size:
    wanted.append('kalignment')
  if config.effective_rank_sample_size:
    wanted += ['eff_rank', 'entropy_eff_rank']
  shared = ({f.name for f in dataclasses.fields(probe_lib.ProbeSpec)} &
            {f.name for f in dataclasses.fields(config)})
  return probe_lib.ProbeSpec(
      metrics=tuple(wanted),
      alignment_sample_size=config.ker_alignment_sample_size,
      **{name: getattr(config, name) for name in sorted(shared)})


def record_metrics(measured: Dict[str, Dict[str, Any]],
                   kernel: str) -> Dict[str, Dict[str, Any]]:
  """A probe measurement in run_after_kernel's record names.

  Args:
    measured: `KernelProbe.measure`'s {'metrics', 'timings'}.
    kernel: 'ntk' (the FNTK) or 'ak' (the after kernel).

  Returns:
    {'metrics', 'timings'}: '<kernel>_<name>', except the SVM's
    `_SCRIPT_NAMES` ('ntk_' prefixed for the FNTK only).
  """
  prefix = kernel + '_'
  metrics = {}
  for name, value in measured['metrics'].items():
    if name in _SCRIPT_NAMES:
      metrics[('ntk_' if kernel == 'ntk' else '') +
              _SCRIPT_NAMES[name]] = value
    else:
      metrics[prefix + name] = value
  return {'metrics': metrics,
          'timings': {prefix + name: value
                      for name, value in measured['timings'].items()}}


def run_once(config: ExperimentConfig, task: data.BinaryTask, run_index: int,
             log: Callable[[str], None] = logging.info) -> Dict[str, Any]:
  """One run of the protocol; returns its record (see module docstring).

  Args:
    config: a validated configuration.
    task: the loaded task (unpermuted; permuted here with the run's seed).
    run_index: 0-based run number; the run's seed is `config.seed + run_index`.
    log: progress printer.

  Returns:
    The run record: {'config_fingerprint', 'run', 'seed', 'version',
    'data', 'distribution' (strategy name and replicas), 'metrics', 'timings'}.
  """
  seed = config.seed + run_index
  start = time.time()
  task = data.permute(task, seed)
  if config.train_subset or config.test_subset:
    task = data.subsample(task, config.train_subset, config.test_subset)
  keras.utils.set_random_seed(seed)
  model = build_network(config, task.x_train.shape[1:])
  probe = KernelProbe(probe_spec(config), task, seed, log)
  log(f'run {run_index + 1}/{config.num_runs} (seed {seed}): '
      f'{config.nn_architecture} with {models.count_parameters(model)} '
      f'parameters, {len(task.y_train)} train / {len(task.y_test)} test')
  if config.measure_ntk:
    ntk = probe.measure(model, log_prefix='ntk_')
  else:
    log('  skipping the FNTK (measure_ntk=False)')
    ntk = {'metrics': {}, 'timings': {}}
  recorded = record_metrics(ntk, 'ntk')
  metrics, timings = recorded['metrics'], recorded['timings']
  metrics['parameter_count'] = models.count_parameters(model)  # As built.

  log(f'  training ({config.max_num_epochs} epochs max)')
  train_start = time.time()
  train_kwargs = dict(learning_rate=config.learning_rate,
                      batch_size=config.batch_size,
                      augment=config.use_augmentation, seed=seed)
  if config.training_loss_target is not None:
    trained = training.train_to_loss_target(
        model, task.x_train, task.y_train, config.training_loss_target,
        config.max_num_epochs, **train_kwargs)
  else:
    trained = training.train(model, task.x_train, task.y_train,
                             config.max_num_epochs, **train_kwargs)
  timings['training_seconds'] = time.time() - train_start
  metrics['epochs_trained'] = trained.epochs
  metrics['nn_train_loss'] = trained.final_train_loss
  metrics['nn_error'] = training.classification_error(model, task.x_test,
                                                      task.y_test)
  if trained.reached_loss_target is not None:
    metrics['reached_loss_target'] = float(trained.reached_loss_target)

  if trained.epochs == 0 and config.measure_ntk:
    # Untrained: the after kernel is the FNTK; copy rather than recompute.
    metrics.update(record_metrics(ntk, 'ak')['metrics'])
  else:
    after = record_metrics(probe.measure(model, log_prefix='ak_'), 'ak')
    metrics.update(after['metrics'])
    timings.update(after['timings'])
  timings['run_seconds'] = time.time() - start
  return {'config_fingerprint': config.fingerprint(), 'run': run_index,
          'seed': seed, 'version': VERSION, 'data': task.info,
          'widths': models.layer_widths(model),
          'distribution': {
              'strategy': config.distribution_strategy,
              'replicas': probe.strategy.num_replicas_in_sync},
          'metrics': metrics, 'timings': timings}


def _prepare_output_dir(config: ExperimentConfig, output_dir: str) -> None:
  """Writes config.json, or checks an existing one describes this config."""
  store.claim_output_dir(output_dir, config.to_dict(), config.fingerprint(),
                         extra={'version': VERSION}, rewrite=False)


def _fingerprints(config: ExperimentConfig) -> tuple:
  # One point per experiment: the folder's records are its runs.
  return (config.fingerprint(),)


def _run_key(fingerprint: str, run: int) -> str:
  return f'{store.RUNS_FAMILY}_{fingerprint}_run{run:04d}'


def _given_task(task: data.BinaryTask, config: ExperimentConfig,
                output_dir: str) -> data.BinaryTask:
  del config, output_dir  # Loaded (and checked) before the folder is claimed.
  return task


def _run_unit(config: ExperimentConfig, task: data.BinaryTask,
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> List[Dict[str, Any]]:
  record = store.run_to_record(run_once(config, task, unit.run, log))
  errors.require(record['key'] == _run_key(unit.points[0], unit.run),
                 'run record key mismatch (a bug)')
  return [record]


def run_experiment(config: ExperimentConfig, output_dir: str,
                   log: Callable[[str], None] = logging.info
                   ) -> Dict[str, Dict[str, Any]]:
  """Runs (or resumes) `config.num_runs` runs and writes the result files.

  Args:
    config: the experiment.
    output_dir: where config.json, records/ and summary.json / summary.csv
      go. If it holds a finished part of the same experiment (also as a
      0.1.0 runs.jsonl), those runs are kept and skipped; if it holds a
      different experiment, nothing is run.
    log: progress printer.

  Returns:
    The summary: metric -> {mean, std, ci95, n}.

  Raises:
    AfterKernelError: bad configuration, data or output directory; raised
      before anything is written.
  """
  config.validate()
  # First, before other TensorFlow work: a TPU system or multi-worker
  # collectives are set up once, at program start.
  strategy = distribute.make_strategy(config.distribution_strategy)
  if config.distribution_strategy != distribute.DEFAULT_STRATEGY:
    log(f'distribution strategy {config.distribution_strategy}: '
        f'{strategy.num_replicas_in_sync} replica(s)')
  task = load_task(config)
  _prepare_output_dir(config, output_dir)
  result_store = store.ResultStore(output_dir)
  if (os.path.exists(os.path.join(output_dir, store.RUNS_FILE)) and
      not result_store.keys()):
    store.convert_runs_to_records(output_dir)
  study = runner.Study(
      family=store.RUNS_FAMILY, points=_fingerprints, record_key=_run_key,
      run_once=_run_unit, load=functools.partial(_given_task, task),
      noun='runs')
  runner.execute(study, config, result_store, log)
  entries = runner.summarize(study, config, output_dir)
  summary_lib.write_summary(output_dir, entries)
  return dict(entries[0]['metrics']) if entries else {}
