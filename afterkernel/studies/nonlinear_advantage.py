"""The non-linear advantage against the training-set size.

Ortiz-Jimenez, Moosavi-Dezfooli and Frossard (2021, "What can linearized
neural networks actually say about generalization?", Fig. 5) train a
network and its linearization at initialization (`linearize`) on the real
labels of a binary CIFAR-10 task ("CIFAR2") with training sets of growing
size n, and plot the non-linear advantage

    test accuracy of the network - test accuracy of its linearization

against n, beside how far each model's weights moved from initialization
(L2 and cosine distance, `eigentasks_training.weight_distances`). Their
finding: the advantage depends on n (the linearization can even win on
small training sets), and the network moves further from its
initialization than its linearization does.

One record per (n, run): both models start from the same seeded
initialization and train with the same SGD, schedule and batch order
(`eigentasks_training.measure_training`) on the first n inputs of one
seeded permutation (nested training sets), and are scored on the same test
inputs. `run_study` follows the study pattern (frozen config, PRESETS,
resumable store, summary, figure).
"""

import dataclasses
from typing import Any, Callable, Dict, List, Mapping, Sequence

from afterkernel import data
from afterkernel import errors
from afterkernel import linearize
from afterkernel.studies import eigentasks
from afterkernel.studies import eigentasks_report
from afterkernel.studies import eigentasks_training
from afterkernel.studies import fields
from afterkernel.studies import runner
from afterkernel.studies import tables
from afterkernel.studies import task_training

FAMILY = 'nonlinear_advantage'
FIGURE_NAME = 'nonlinear_advantage'


@dataclasses.dataclass(frozen=True)
class AdvantageConfig(runner.StudyConfig, fields.TaskFields,
                      eigentasks_training.TrainingFields,
                      fields.NetworkFields, fields.SgdFields):
  """Everything that defines a non-linear-advantage study.

  Attributes:
    train_set_sizes: the training-set sizes n (nested: the first n inputs of
      one permutation fixed by `seed`); num_train is their maximum.
    standardize_inputs: standardize the inputs with the statistics of the
      largest training set (`data.standardize`).
  """
  # Adding runs or sizes extends a study; data_dir is where data lives.
  FINGERPRINT_IGNORES = ('num_runs', 'data_dir', 'train_set_sizes')
  train_set_sizes: tuple = (20, 60)
  num_train: int = 60
  num_test: int = 40
  standardize_inputs: bool = True

  def validate(self) -> None:
    """Raises AfterKernelError (one line) naming the first bad field."""
    runner.positive_ints(self.train_set_sizes, 'train_set_sizes')
    runner.require_positive_int_fields(
        self, ('num_test', 'width', 'num_layers', 'epochs', 'batch_size',
               'num_runs'))
    errors.require(max(self.train_set_sizes) <= self.num_train,
                   f'train size {max(self.train_set_sizes)} exceeds num_train='
                   f'{self.num_train}')
    self.validate_training_fields()


PRESETS = {
    # Seconds, offline (embedded 8x8 digits): for tests and smoke runs.
    'tiny': AdvantageConfig(),
    # CIFAR-10 cat (3) vs dog (5) (pass data_dir), LeNet-5, step decay,
    # n = 50 .. 1000, tested on the exact 189 cat/dog test images, 30
    # epochs, 2 runs: about 20 CPU minutes.
    'cifar2_small': AdvantageConfig(
        dataset='cifar10', plus_class=5, minus_class=3,
        train_set_sizes=(50, 100, 250, 500, 1000), num_train=1000, num_test=189,
        architecture='lenet5', width=1, epochs=30, batch_size=64,
        learning_rate=0.01, momentum=0.9, lr_schedule='step', num_runs=2),
}


def record_key(train_size: int, run: int) -> str:
  return f'{FAMILY}_n{train_size:06d}_run{run}'


def run_once(config: AdvantageConfig, task: data.BinaryTask, run: int,
             train_set_sizes: Sequence[int], log: Callable[[str], None] = print
             ) -> List[Dict[str, Any]]:
  """One initialization trained at each n of `train_set_sizes`; their records."""
  records = []
  for n in train_set_sizes:
    seed, network = config.seeded_network(run, task.x_train.shape[1:])
    inputs, labels = task.x_train[:n], task.y_train[:n]
    linear = linearize.linearize(network)
    initial = eigentasks_training.flat_parameters(network)
    metrics, timings = {}, {}
    for name, model in (('nn', network), ('lin', linear)):
      measured, timings[f'{name}_train_seconds'] = (
          eigentasks_training.measure_training(model, name, inputs, labels,
                                               config, seed, initial))
      metrics.update(measured)
      metrics[f'{name}_train_accuracy'] = task_training.sign_accuracy_of(
          model, inputs, labels, 512)
      metrics[f'{name}_test_accuracy'] = task_training.sign_accuracy_of(
          model, task.x_test, task.y_test, 512)
    metrics['nonlinear_advantage'] = (metrics['nn_test_accuracy'] -
                                      metrics['lin_test_accuracy'])
    log(_line(run, n, metrics))
    records.append(task_training.task_record(
        config, FAMILY, record_key(n, run), 'train_size', n, run, seed,
        task.info, metrics, timings))
  return records


def _line(run: int, n: int, metrics: Mapping[str, Any]) -> str:
  """The log line of one (n, run)."""
  return (f'run {run} n = {n:6d}: test accuracy network '
          f'{metrics["nn_test_accuracy"]:.3f}, linearized '
          f'{metrics["lin_test_accuracy"]:.3f} (advantage '
          f'{metrics["nonlinear_advantage"]:+.3f}); ||theta - theta_0|| '
          f'{metrics["nn_weight_l2"]:.3g} / {metrics["lin_weight_l2"]:.3g}')


def _run_unit(config: AdvantageConfig, task: data.BinaryTask,
              unit: runner.WorkUnit, log: Callable[[str], None]
              ) -> List[Dict[str, Any]]:
  return run_once(config, task, unit.run, list(unit.points), log)


def plot(entries: Sequence[Mapping[str, Any]], output_dir: str,
         title: str = '') -> List[str]:
  """Advantage, both accuracies and both weight distances vs n (PNG+PDF)."""
  accuracy = eigentasks_report.nn_lin_series('test_accuracy') + (
      ('nonlinear_advantage', 'advantage (nn - lin)', 'k', '--'),)
  return eigentasks_report.series_figure(
      entries, 'train_size', 'training-set size n',
      [(accuracy, 'test accuracy / advantage'),
       (eigentasks_report.nn_lin_series('weight_l2'),
        eigentasks_report.WEIGHT_L2_LABEL),
       (eigentasks_report.nn_lin_series('weight_cosine'),
        eigentasks_report.WEIGHT_COSINE_LABEL)],
      output_dir, FIGURE_NAME, title)


def _figures(entries: Sequence[Mapping[str, Any]], config: AdvantageConfig,
             output_dir: str) -> List[str]:
  return plot(entries, output_dir,
              title=f'Non-linear advantage: {config.architecture} on '
              f'{config.dataset} {config.minus_class}-vs-{config.plus_class}')


STUDY = task_training.index_study(FAMILY, 'train_size', 'train_set_sizes',
                                  record_key, _run_unit,
                                  eigentasks.load_study_inputs, _figures)


# Runs every (n, run) not yet in an output folder; summarizes.
run_study = STUDY.run


TABLE_COLUMNS = (('nn test', 'nn_test_accuracy'),
                 ('lin test', 'lin_test_accuracy'),
                 ('advantage', 'nonlinear_advantage'),
                 ('nn train', 'nn_train_accuracy'),
                 ('lin train', 'lin_train_accuracy'),
                 ('nn L2', 'nn_weight_l2'),
                 ('lin L2', 'lin_weight_l2'),
                 ('nn cos', 'nn_weight_cosine'),
                 ('lin cos', 'lin_weight_cosine'))
PRESETS_HELP = ('tiny: offline digits, seconds; cifar2_small: CIFAR-10 '
                'cat/dog, LeNet-5, needs --data_dir')
TABLE_FOOTER = ('(means over runs; advantage = network - linearization test '
                'accuracy; L2 / cos: distance of the weights from '
                'initialization)')


def format_table(entries: Sequence[Mapping[str, Any]]) -> str:
  """One line per training-set size n: means over runs."""
  return tables.format_table(
      entries, 'n', lambda entry: entry['point']['train_size'],
      TABLE_COLUMNS, [7, 5] + [10] * len(TABLE_COLUMNS),
      number_formats={'nonlinear_advantage': '.4f'})
