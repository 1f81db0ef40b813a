"""Kernel predictors: one API for every kernel source and every way to fit it.

The studies of Vyas et al. ("Limitations of the NTK for understanding
generalization in deep learning", 2022) compare a network with kernel
predictors built from it: the empirical NTK at initialization, the after
kernel, a kernel snapshotted at training step t and the infinite-width NTK.
This package separates the two halves of that comparison:

Kernel sources (anything with `gram(x_a, x_b=None) -> (n_a, n_b) Gram`;
defined in `afterkernel.kernels.empirical`, re-exported here):
  * `EmpiricalNTK(model)`: K(u, v) = phi(u).phi(v) with phi the gradient of
    the scalar output with respect to every trainable parameter, for the
    weights the model had WHEN THE KERNEL WAS BUILT (it keeps its own copy,
    so later training does not change it). At initialization this is the
    empirical NTK; after training it is the after kernel; at step t a
    snapshot K^t.
  * `FunctionKernel(fn)`: any fn(x_a, x_b) -> Gram, e.g. the infinite NTK
    `functools.partial(infinite_ntk.ntk_gram, depth=4, weight_std=...,
    bias_std=...)`.
`kernel_grams(kernel, x_train, x_test)` returns the (train, cross) Gram pair
every fit below takes.

Fits (`FIT_METHODS`), all on +-1 labels ({0, 1} are mapped 0 -> -1), all
returning a `FitResult`; f(x) = sum_i a_i K(x, x_i):
  * 'sgd': minibatch SGD with momentum on the kernel's linear model
    f(x) = phi(x).w, w_0 = 0, loss 1/2 mean_B (f - y)^2, i.e. the linearized
    network trained with the network's own batch size, learning rate and
    momentum (the study's "kernel trained like the network"), with optimal
    early stopping: the test error is evaluated at steps growing by a factor
    `eval_growth` (1.1 in the study) and the minimum is reported. Early
    stopping uses the TEST labels, as the study does; the curve is returned.
  * 'ridge': kernel ridge regression (K + lambda I) a = y, lambda chosen
    WITHOUT test labels by closed-form leave-one-out error, among ridges
    above the Gram's rounding-noise floor.
  * 'svm': the hard-margin SVM of `afterkernel.margin` (no bias).

Gram matrices are used in float64 (converted once if given float32).
Modules: `results` (FitResult, input checks), `sgd`, `ridge`; the SVM fit and
the dispatcher `fit` are here.
"""

from typing import Optional, Sequence

import numpy as np

from afterkernel import errors
from afterkernel import margin
from afterkernel.kernel_fit import results
from afterkernel.kernel_fit import sgd
# The public names of the package (0.1.0's kernel_fit module).
from afterkernel.kernel_fit.results import EvaluationCurve
from afterkernel.kernel_fit.results import FitResult
from afterkernel.kernel_fit.ridge import DEFAULT_RELATIVE_RIDGES
from afterkernel.kernel_fit.ridge import fit_ridge
from afterkernel.kernel_fit.ridge import GRAM_NOISE_FACTOR
from afterkernel.kernel_fit.ridge import LOO_TIE_RTOL
from afterkernel.kernel_fit.ridge import ridge_noise_floor
from afterkernel.kernel_fit.ridge import RIDGE_NOISE_MARGIN
from afterkernel.kernel_fit.sgd import DEFAULT_EVAL_GROWTH
from afterkernel.kernel_fit.sgd import DIVERGENCE_THRESHOLD
from afterkernel.kernel_fit.sgd import eval_steps
from afterkernel.kernel_fit.sgd import fit_sgd
from afterkernel.kernels.empirical import EmpiricalNTK
from afterkernel.kernels.empirical import FunctionKernel
from afterkernel.kernels.empirical import Kernel
from afterkernel.kernels.empirical import kernel_grams

FIT_METHODS = ('sgd', 'ridge', 'svm')


# ----------------------------------------------------------------------------
# Hard-margin SVM.


def fit_svm(train_gram: np.ndarray,
            y_train: np.ndarray,
            cross_gram: np.ndarray,
            y_test: np.ndarray,
            **margin_options) -> FitResult:
  """Hard-margin SVM (no bias) of `afterkernel.margin` as a kernel predictor.

  The decision function is rescaled to the canonical SVM form
  min_i y_i f(x_i) = 1 (support vectors on the margin at +-1), so MSEs are
  comparable with the least-squares fits; errors do not depend on the scale.
  On non-separable data (margin <= 0) no rescaling is applied.

  Args:
    train_gram: (n, n) K(x_train, x_train).
    y_train: (n,) labels in {0, 1} or {-1, +1}, both classes present.
    cross_gram: (m, n) K(x_test, x_train).
    y_test: (m,) labels in {0, 1} or {-1, +1}.
    **margin_options: passed to `margin.max_margin_from_gram` (solver,
      max_iterations, tolerance, ...).

  Returns:
    A `FitResult`; details hold margin, converged, iterations.

  Raises:
    AfterKernelError: bad shapes, labels (or one class), non-finite Grams.
  """
  train_gram, cross_gram, y_train, y_test = results.checked_problem(
      train_gram, y_train, cross_gram, y_test)
  result = margin.max_margin_from_gram(train_gram, y_train, **margin_options)
  train_predictions = train_gram @ result.dual_coef
  smallest = float(np.min(y_train * train_predictions))
  factor = 1.0 / smallest if smallest > 0 else 1.0
  coef = result.dual_coef * factor
  train_predictions = train_predictions * factor
  test_predictions = margin.decision_function(result, cross_gram) * factor
  return results.FitResult(
      method='svm', test_error=results.error_rate(test_predictions, y_test),
      test_mse=results.mse(test_predictions, y_test),
      train_error=results.error_rate(train_predictions, y_train),
      train_mse=results.mse(train_predictions, y_train), dual_coef=coef,
      test_predictions=test_predictions,
      details={'margin': float(result.margin),
               'converged': bool(result.converged),
               'iterations': int(result.iterations)})


# ----------------------------------------------------------------------------
# Dispatcher.


def fit(method: str,
        train_gram: np.ndarray,
        y_train: np.ndarray,
        cross_gram: np.ndarray,
        y_test: np.ndarray,
        *,
        learning_rate: Optional[float] = None,
        batch_size: Optional[int] = None,
        momentum: float = 0.0,
        max_steps: Optional[int] = None,
        eval_growth: float = sgd.DEFAULT_EVAL_GROWTH,
        seed: int = 0,
        ridges: Optional[Sequence[float]] = None,
        svm_options: Optional[dict] = None) -> FitResult:
  """Fits a kernel predictor by `method`; options of other methods are ignored.

  One call signature for all methods, so a study can loop over FIT_METHODS
  with the network's hyper-parameters: 'sgd' uses learning_rate, batch_size,
  momentum, max_steps, eval_growth, seed (the first, second and fourth are
  required); 'ridge' uses ridges; 'svm' uses svm_options (keyword arguments
  of `margin.max_margin_from_gram`).

  Args:
    method: one of `FIT_METHODS`.
    train_gram, y_train, cross_gram, y_test: as for `fit_sgd`.
    learning_rate, batch_size, momentum, max_steps, eval_growth, seed: 'sgd'.
    ridges: 'ridge' relative ridges.
    svm_options: 'svm' solver options.

  Returns:
    The method's `FitResult`.

  Raises:
    AfterKernelError: unknown method, missing SGD hyper-parameters, or
      anything the method raises.
  """
  errors.require(method in FIT_METHODS,
                 f'fit method must be one of {FIT_METHODS}, got {method!r}')
  if method == 'sgd':
    missing = [name for name, value in (('learning_rate', learning_rate),
                                        ('batch_size', batch_size),
                                        ('max_steps', max_steps))
               if value is None]
    errors.require(not missing, f"fit method 'sgd' needs {', '.join(missing)}"
                   ' (the network\'s hyper-parameters)')
    return fit_sgd(train_gram, y_train, cross_gram, y_test,
                   learning_rate=learning_rate, batch_size=batch_size,
                   momentum=momentum, max_steps=max_steps,
                   eval_growth=eval_growth, seed=seed)
  if method == 'ridge':
    return fit_ridge(train_gram, y_train, cross_gram, y_test, ridges=ridges)
  return fit_svm(train_gram, y_train, cross_gram, y_test,
                 **(svm_options or {}))
