"""Config fields that several studies share, declared once.

The eigenfunction-task, NAD, kernel-rotation and second-order studies all
read a binary task, build a network from the registry and train it with one
SGD optimizer. Their config dataclasses inherit these field groups instead of
each listing the same fields (and the same seeding preamble in `run_once`);
a study changes a default by redeclaring only that field.

Each group is a frozen dataclass, so a study's config is
`@dataclasses.dataclass(frozen=True) class XConfig(runner.StudyConfig,
fields.TaskFields, fields.NetworkFields, fields.SgdFields)`. The flags
module reads the `Attributes:` sections below for every subclass's help.
"""

import dataclasses
from typing import Optional, Sequence, Tuple

import keras

from afterkernel import models


@dataclasses.dataclass(frozen=True)
class TaskSourceFields:
  """Where a study's binary task comes from (`data.load_binary_task`).

  Attributes:
    dataset: one of `data.DATASETS`.
    plus_class: class labelled +1.
    minus_class: class labelled -1.
    data_dir: local data folder (layout of ../shared/data); None = tfds.
  """
  dataset: str = 'digits'
  plus_class: int = 8
  minus_class: int = 3
  data_dir: Optional[str] = None


@dataclasses.dataclass(frozen=True)
class TaskFields(TaskSourceFields):
  """A binary task and the sizes of its seeded subsets.

  Attributes:
    num_train: training examples (a subset fixed by `seed`).
    num_test: test examples (a subset fixed by `seed`).
  """
  num_train: int = 200
  num_test: int = 100


@dataclasses.dataclass(frozen=True)
class NetworkFields:
  """The network a study builds from the registry (`models.build`).

  Attributes:
    architecture: a name in `models.ARCHITECTURES`.
    width: hidden units (fully connected) or first-block channels.
    num_layers: hidden layers, or convolutions per block.
    num_runs: independent initializations (seed + run).
    seed: first seed.
  """
  architecture: str = 'fully_connected'
  width: int = 16
  num_layers: int = 1
  num_runs: int = 1
  seed: int = 0

  def seeded_network(self, run: int, input_shape: Sequence[int]
                     ) -> Tuple[int, keras.Model]:
    """Seeds Keras with seed + run and builds run `run`'s network.

    Returns:
      (seed, network): the seed used for everything random in the run and
      the freshly initialized network.
    """
    seed = self.seed + run
    keras.utils.set_random_seed(seed)
    network = models.build(self.architecture, tuple(input_shape),
                           width=self.width, num_layers=self.num_layers)
    return seed, network


@dataclasses.dataclass(frozen=True)
class SgdFields:
  """One optimizer (SGD with momentum) for every model a study trains.

  Attributes:
    epochs: training epochs.
    batch_size: minibatch size.
    learning_rate: SGD learning rate.
    momentum: SGD momentum.
    loss: 'bce' (logistic) or 'mse'.
  """
  epochs: int = 3
  batch_size: int = 32
  learning_rate: float = 0.05
  momentum: float = 0.9
  loss: str = 'bce'
