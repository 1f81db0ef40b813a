"""afterkernel: the kernels that neural networks learn.

Public API, one module per concept:
  * `models`: the paper's Keras networks (VGG-like, mega-VGG, fully connected,
    Sum net) and their conjugate (penultimate) representation.
  * `data`: binary tasks from MNIST / CIFAR-10 (tfds or local files) and the
    embedded offline digits set.
  * `features`: per-example gradient features phi(x) = d f(x) / d theta.
  * `kernels`: Gram matrices, alignment, effective rank.
  * `margin`: hard-margin SVM by Ji-Srebro-Telgarsky dual acceleration.
  * `invariance`: invariance of a kernel to shifts, rotations, zoom, swaps.
  * `training`: Keras SGD training as in the paper.
  * `results`: atomic result files and confidence intervals.
  * `experiment`: the FNTK-vs-after-kernel protocol, repeated over runs.
"""

from afterkernel import data
from afterkernel import errors
from afterkernel import experiment
from afterkernel import features
from afterkernel import invariance
from afterkernel import kernels
from afterkernel import margin
from afterkernel import models
from afterkernel import results
from afterkernel import training
from afterkernel.errors import AfterKernelError
from afterkernel.experiment import ExperimentConfig
from afterkernel.experiment import run_experiment
from afterkernel.features import conjugate_features
from afterkernel.features import gradient_features
from afterkernel.kernels import gram
from afterkernel.kernels import kernel_alignment
from afterkernel.margin import max_margin_from_features
from afterkernel.margin import max_margin_from_gram
from afterkernel.models import build_model

__version__ = experiment.VERSION
