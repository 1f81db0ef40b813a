"""Datasets and tasks for the studies: the public data API in one place.

  * `tasks`: `BinaryTask`, `load_binary_task` (plus class vs minus class of
    a dataset) and the transforms `permute`, `subsample`, `standardize`,
    `signed_labels`.
  * `sources`: the dataset catalogue (`DATASETS`, `NUM_CLASSES`,
    `CLASS_GROUPS`, `VECTOR_DATASETS`, CIFAR test sources, defaults) and the
    sources that are not files: tensorflow-datasets, scikit-learn's embedded
    digits, the generated synthetic task.
  * `local_files`: readers of the local files (MNIST IDX, CIFAR-10 binary
    batches and test sources, SVHN .mat, CIFAR-5m parts), in the layout of
    /work/shared/data.
  * `multiclass`: ten-class digit tasks for multi-output nets.

Typical use: `task = data.load_binary_task('mnist', 3, 8, data_dir=DIR)`,
then `data.subsample(data.permute(task, seed), n_train, n_test)`. Data knows
no nets: nothing here imports models, kernels or studies.
"""

from afterkernel.data import local_files
from afterkernel.data import sources
from afterkernel.data import tasks

# Tasks and their transforms.
BinaryTask = tasks.BinaryTask
load_binary_task = tasks.load_binary_task
permute = tasks.permute
subsample = tasks.subsample
standardize = tasks.standardize
signed_labels = tasks.signed_labels

# The dataset catalogue and its defaults.
DATASETS = sources.DATASETS
NUM_CLASSES = sources.NUM_CLASSES
CLASS_GROUPS = sources.CLASS_GROUPS
VECTOR_DATASETS = sources.VECTOR_DATASETS
CIFAR_TEST_SOURCES = sources.CIFAR_TEST_SOURCES
DEFAULT_CIFAR_TEST_SOURCE = sources.DEFAULT_CIFAR_TEST_SOURCE
DEFAULT_HOLDOUT_SIZE = sources.DEFAULT_HOLDOUT_SIZE
DEFAULT_CIFAR5M_TRAIN_PARTS = sources.DEFAULT_CIFAR5M_TRAIN_PARTS
DEFAULT_CIFAR5M_TEST_PART = sources.DEFAULT_CIFAR5M_TEST_PART
SYNTHETIC_DIM = sources.SYNTHETIC_DIM
SYNTHETIC_NOISE_STD = sources.SYNTHETIC_NOISE_STD
DEFAULT_SYNTHETIC_SEED = sources.DEFAULT_SYNTHETIC_SEED
DEFAULT_SIZES = sources.DEFAULT_SIZES
DIGITS_NUM_TRAIN = sources.DIGITS_NUM_TRAIN

# Local file layout (relative to data_dir) and where to get the files.
MNIST_FILES = local_files.MNIST_FILES
CIFAR_TRAIN_FILES = local_files.CIFAR_TRAIN_FILES
CIFAR_TEST_FILES = local_files.CIFAR_TEST_FILES
SVHN_FILES = local_files.SVHN_FILES
SVHN_URL = local_files.SVHN_URL
CIFAR5M_FILE = local_files.CIFAR5M_FILE
CIFAR5M_NUM_PARTS = local_files.CIFAR5M_NUM_PARTS
CIFAR5M_URL = local_files.CIFAR5M_URL
