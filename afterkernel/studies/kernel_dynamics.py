"""Experiment 3 of Vyas et al. (2022): kernel dynamics over training steps.

The empirical NTK K^t is snapshotted at log-spaced training *steps* t
(`training.fit` with step snapshots; the recipe and output folder of
`scaling_common`), each snapshot fit on the training set; the test error of
K^t (and of the network at step t) is reported against t.
"""

import dataclasses
import functools
import time
from typing import Any, Callable, Dict, List, Mapping, Sequence

import keras
import numpy as np

from afterkernel import data
from afterkernel import errors
from afterkernel import kernel_fit
from afterkernel import plots
from afterkernel import training
from afterkernel.studies import runner
from afterkernel.studies import scaling_common as common
from afterkernel.studies import store as store_lib

STUDY = common.KERNEL_DYNAMICS
@dataclasses.dataclass(frozen=True)
class KernelDynamicsConfig(common.CommonConfig):
  """Experiment 3: kernels K^t snapshotted at training steps t.

  Attributes (besides `common.CommonConfig`'s):
    num_train: training examples (network and kernels).
    train_steps: SGD steps of the network.
    num_snapshots: log-spaced snapshot steps in [1, train_steps], plus t = 0.
    fit_steps: SGD steps of kernel SGD.
  """
  num_train: int = 1000
  train_steps: int = 2000
  num_snapshots: int = 10
  fit_steps: int = 2000

  def validate(self) -> None:
    """Raises AfterKernelError naming the first bad field."""
    self._validate_common()
    for name in ('num_train', 'train_steps', 'num_snapshots', 'fit_steps'):
      value = getattr(self, name)
      errors.require(common.is_int(value) and value > 0,
                     f'{name} must be a positive integer, got {value!r}')

  def snapshot_steps(self) -> List[int]:
    """0 and `num_snapshots` log-spaced steps in [1, train_steps]."""
    return [0] + common.log_spaced_steps(self.train_steps, self.num_snapshots)


PRESETS = {
    'tiny': KernelDynamicsConfig(num_train=100, train_steps=100,
                                 num_snapshots=4, fit_steps=150, **common.TINY),
    'cpu': KernelDynamicsConfig(num_train=2000, train_steps=3000,
                                num_snapshots=10, fit_steps=3000,
                                **dict(common.CPU, num_runs=2)),
}


class KernelSnapshots:
  """A snapshot target: the empirical NTK (and test error) at each step.

  Attributes:
    kernels: {step: kernel_fit.EmpiricalNTK taken after that step}.
    evaluator: the network's test error at the same steps.
  """

  def __init__(self, feature_batch_size: int, x_test: np.ndarray,
               y_test: np.ndarray):
    self.feature_batch_size = feature_batch_size
    self.kernels = {}
    self.evaluator = training.NetworkEvaluator(x_test, y_test)

  def __call__(self, step: int, model: keras.Model) -> None:
    self.kernels[int(step)] = kernel_fit.EmpiricalNTK(
        model, self.feature_batch_size)
    self.evaluator(step, model)


def _dynamics_run(config: KernelDynamicsConfig, task: data.BinaryTask,
                  steps: Sequence[int], run: int, seed: int,
                  log: Callable[[str], None]) -> List[Dict[str, Any]]:
  x_train, y_train = task.x_train, common.plus_minus(task.y_train)
  x_test, y_test = task.x_test, common.plus_minus(task.y_test)
  model = common.build_network(config, x_train.shape[1:], seed)
  snapshots = KernelSnapshots(config.feature_batch_size, x_test, y_test)
  start = time.time()
  common.train_network(config, model, x_train, y_train, config.train_steps,
                       seed, steps, snapshots)
  train_seconds = time.time() - start
  network = {step: (error, mse) for step, error, mse in
             snapshots.evaluator.curve}
  info = dict(task.info)
  info.pop('transforms', None)
  records = []
  for step in steps:
    metrics, timings = common.kernel_metrics(
        config, snapshots.kernels[step], x_train, y_train, x_test, y_test,
        'kernel', config.fit_steps, seed)
    metrics['network_test_error'], metrics['network_test_mse'] = network[step]
    timings['network_train_seconds'] = train_seconds
    log(f't={step} run {run}: K^t test error {metrics["kernel_test_error"]:.4f}'
        f', network {metrics["network_test_error"]:.4f}')
    records.append(common.record(STUDY, config, {'step': int(step)}, run,
                                 seed, metrics, timings, info))
  return records


def summarize(config: KernelDynamicsConfig,
                              records: Sequence[Mapping[str, Any]]
                              ) -> Dict[str, Any]:
  """Per-step summary: {'entries', 'steps'}."""
  steps = config.snapshot_steps()
  records = [r for r in records if r.get('family') == STUDY and
             r['point'].get('step') in steps and
             r.get('run', 0) < config.num_runs]
  entries = sorted(store_lib.summarize(records),
                   key=lambda e: e['point']['step'])
  return {'entries': entries,
          'steps': sorted({r['point']['step'] for r in records})}


def plot(summary: Mapping[str, Any], title: str = ''):
  """Log-log test error of K^t (fit on the training set) and network vs t."""
  fig, (ax,) = plots.new_figure(1)
  entries = summary['entries']
  later = [e for e in entries if e['point']['step'] > 0]
  for metric, color, label in (
      ('kernel_test_error', 'C0', 'kernel K^t fit on the training set'),
      ('network_test_error', 'C3', 'network at step t')):
    points = [e for e in later if e['metrics'].get(metric, {}).get('mean')]
    if points:
      plots.errorbar(ax, [e['point']['step'] for e in points],
                     [e['metrics'][metric] for e in points], color=color,
                     label=label)
      ax.plot([e['point']['step'] for e in points],
              [e['metrics'][metric]['mean'] for e in points], color=color,
              linewidth=1)
  for e in entries:
    if e['point']['step'] == 0 and e['metrics'].get(
        'kernel_test_error', {}).get('mean'):
      ax.axhline(e['metrics']['kernel_test_error']['mean'], color='C7',
                 linestyle='--', label='K^0 = NTK at init')
  plots.finish_log_axes(ax, 'training step t', 'test error', log_x=True)
  ax.set_title(title or 'kernel dynamics', fontsize=9)
  fig.tight_layout()
  return fig


def _point_dict(step: int) -> Dict[str, Any]:
  return {'step': int(step)}


def _run_unit(config: KernelDynamicsConfig, context: None,
              unit: runner.WorkUnit, log: Callable[[str], None], *,
              base: data.BinaryTask) -> List[Dict[str, Any]]:
  """One run: one training trajectory, a record per snapshot step."""
  del context
  seed, task = common.seeded_run_task(config, unit, base, config.num_train)
  return _dynamics_run(config, task, list(unit.points), unit.run, seed, log)


def run(config: KernelDynamicsConfig, output_dir: str,
        log: Callable[[str], None] = print,
        executor: runner.Executor = runner.local_executor) -> Dict[str, Any]:
  """Experiment 3: every run not yet in `output_dir`; returns the summary.

  Run r (seed config.seed + r) trains the network on its first num_train
  examples for train_steps steps, snapshotting the empirical NTK at
  `config.snapshot_steps()`; each snapshot K^t is then fit on the same
  training set and tested. A run with a missing record is measured whole.

  Returns:
    `summarize` (written with the figure by `common.write_outputs`).

  Raises:
    AfterKernelError: bad configuration, data or output folder.
  """
  config.validate()
  base = common.load_base_task(config, config.num_train)
  errors.require(config.num_train <= len(base.y_train),
                 f'num_train={config.num_train} exceeds the '
                 f'{len(base.y_train)} training examples of {config.dataset}')
  records = common.run_study(
      STUDY, config, output_dir, config.snapshot_steps(), _point_dict,
      functools.partial(_run_unit, base=base), log, executor,
      whole_runs=True)
  summary = summarize(config, records)
  common.write_outputs(output_dir, summary, STUDY, plot(
      summary, common.title(config, 'kernel dynamics')))
  return summary


def format_summary(summary: Mapping[str, Any]) -> str:
  """Test error of K^t and of the network per snapshot step t."""
  rows = [[str(e['point']['step']), str(len(e['runs'])),
           common.stat_text(e['metrics'].get('kernel_test_error')),
           common.stat_text(e['metrics'].get('network_test_error'))]
          for e in summary['entries']]
  lines = common.table(['step t', 'runs', 'K^t test error',
                        'network test error'], rows)
  lines.append('(mean ± 95% CI half-width over runs; K^t is fit on the '
               'training set)')
  return '\n'.join(lines)


def preset(name: str, **overrides) -> KernelDynamicsConfig:
  """The preset `name` with fields replaced by `overrides`."""
  return common.preset(STUDY, PRESETS, name, **overrides)
