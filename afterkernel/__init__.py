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
  * `results`: 0.1.0 path of `studies.store` / `studies.summary`.
  * `after_kernel` (0.1.0: `experiment`): the FNTK-vs-after-kernel
    protocol, repeated over runs.
  * `sweeps`: the paper's experiment families (epochs, learning rate,
    width, augmentation) as resumable sweeps.
  * `store`: the one result store (one atomic JSON file per record, output
    folder claim, fingerprints); `studies.summary`: mean/std/CI tables;
    `studies.runner`: the one study runner (resumable, executor seam).
  * `plots`: the paper's figures from a store's summary.

Keras extension (for use with your own models):
  * `callbacks`: `KernelMetricsCallback`, kernel metrics logged during fit.
  * `jacobians`: per-example Jacobians (n, L, P) of any Keras model with L
    outputs; traced or full empirical NTK Grams.
  * `linearize`: the first-order Taylor model of a network as a Keras model.
  * `architectures`: LeNet-5, AlexNet, Myrtle CNNs with width multipliers and
    an NTK parameterization.
  * `multiclass`: ten-class MNIST / digits tasks.
  * `linearized` (0.1.0: `linearized_study`): network vs linearization
    over widths.

Kernel dynamics and scaling (Vyas et al. 2022; Ortiz-Jimenez et al. 2021):
  * `infinite_ntk`: fully connected ReLU nets in the NTK parameterization
    and their closed-form infinite-width NTK / NNGP.
  * `kernel_fit`: kernel sources (EmpiricalNTK snapshot, FunctionKernel) and
    kernel predictors fit by SGD with momentum + optimal early stopping,
    leave-one-out-tuned ridge regression, or the hard-margin SVM.
  * `scaling`: data-scaling laws L(n) = A (1/n + alpha)^beta and bootstrap
    intervals for beta.
  * `data_scaling`, `after_kernel_vs_m`, `kernel_dynamics` (studies/): the
    data-scaling laws of a network and its kernels, the after kernel vs
    training-set size, kernel dynamics over training steps.
  * `taylor`: second-order Taylor models of a network (nested forward-mode
    JVPs, H never formed), trainable like `linearize`; the study that
    trains them is `studies.second_order`.
  * `nads`: neural anisotropy directions (singular vectors of
    E_x[d^2 f / dx dtheta]) and the linearly separable tasks along them.
  * `eigentasks`: NTK eigenfunction tasks (Gram eigenvectors, Nystroem
    extension, target alignment; network vs linearization per eigenfunction).
  * `kernel_rotation`: label energy on the top-K NTK eigenvectors and
    eigenvector alignment through training.
"""

from afterkernel.models import architectures
from afterkernel import callbacks
from afterkernel import data
from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import data_scaling
from afterkernel.studies import eigentasks
from afterkernel.kernels import empirical
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.studies import after_kernel as experiment
from afterkernel.kernels import features
from afterkernel.kernels import grams
from afterkernel import infinite_ntk
from afterkernel.kernels import invariance
from afterkernel.kernels import jacobians
from afterkernel import kernel_fit
from afterkernel.studies import kernel_dynamics
from afterkernel.studies import kernel_rotation
from afterkernel import kernels
from afterkernel import linearize
from afterkernel.studies import linearized
from afterkernel.studies import linearized as linearized_study
from afterkernel import margin
from afterkernel import models
from afterkernel.data import multiclass
from afterkernel.studies import nads
from afterkernel import plots
from afterkernel.studies import results
from afterkernel import scaling
from afterkernel.studies import store
from afterkernel import taylor
from afterkernel.studies import second_order
from afterkernel.studies import sweeps
from afterkernel import training
from afterkernel.callbacks import KernelMetricsCallback
from afterkernel.errors import AfterKernelError
from afterkernel.studies.after_kernel import ExperimentConfig
from afterkernel.studies.after_kernel import run_experiment
from afterkernel.kernels.features import conjugate_features
from afterkernel.kernels.features import gradient_features
from afterkernel.kernels.jacobians import jacobian_gram
from afterkernel.kernels.jacobians import per_example_jacobians
from afterkernel.kernels import gram
from afterkernel.kernels import kernel_alignment
from afterkernel.linearize import LinearizedModel
from afterkernel.taylor import taylor_expand
from afterkernel.kernels.empirical import empirical_ntk_fn
from afterkernel.margin import max_margin_from_features
from afterkernel.margin import max_margin_from_gram
from afterkernel.models import build_model
from afterkernel.studies.store import ResultStore
from afterkernel.studies.sweeps import run_sweep
from afterkernel.studies.sweeps import Sweep

__version__ = after_kernel.VERSION
