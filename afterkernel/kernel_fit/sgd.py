"""Kernel SGD with momentum in the dual, optimally early-stopped.

Part of `afterkernel.kernel_fit` (fit method 'sgd').
"""

import math

import numpy as np

from afterkernel import errors
from afterkernel.kernel_fit import results

# The study's evaluation schedule: steps 1, 2, ..., growing by 10% each time.
DEFAULT_EVAL_GROWTH = 1.1
# A batch residual |f - y| above this (labels are +-1) means SGD diverged:
# every later evaluation is meaningless, so the run stops.
DIVERGENCE_THRESHOLD = 1e15


# ----------------------------------------------------------------------------
# SGD with momentum, in the dual.


def eval_steps(max_steps: int, growth: float = DEFAULT_EVAL_GROWTH
               ) -> np.ndarray:
  """Steps round(growth^k) for k = 0, 1, ..., deduplicated, plus max_steps.

  Args:
    max_steps: the last step (always included).
    growth: factor > 1 between consecutive evaluation points.

  Returns:
    Increasing int64 steps starting at 1 and ending at max_steps.
  """
  errors.require_positive(max_steps, 'max_steps')
  errors.require(growth is not None and growth > 1,
                 f'eval_growth must be > 1, got {growth!r}')
  count = int(math.ceil(math.log(max_steps) / math.log(growth))) + 2
  steps = np.round(growth**np.arange(count)).astype(np.int64)
  steps = steps[steps <= max_steps]
  return np.unique(np.append(steps, max_steps))


def _batches(n: int, batch_size: int, rng: np.random.Generator):
  """Keras-fit-style minibatches: a fresh permutation per epoch, consecutive
  chunks of batch_size, the last chunk of an epoch possibly smaller."""
  while True:
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
      yield order[start:start + batch_size]


def fit_sgd(train_gram: np.ndarray,
            y_train: np.ndarray,
            cross_gram: np.ndarray,
            y_test: np.ndarray,
            *,
            learning_rate: float,
            batch_size: int,
            momentum: float,
            max_steps: int,
            eval_growth: float = DEFAULT_EVAL_GROWTH,
            seed: int = 0) -> results.FitResult:
  """SGD with momentum on the kernel's linear model, optimally early-stopped.

  The primal problem is f(x) = phi(x).w, w_0 = 0, minibatch loss
  L_B(w) = 1/(2|B|) sum_{i in B} (phi_i.w - y_i)^2 and Keras SGD momentum
  (nesterov=False):  v <- momentum v - lr grad L_B(w),  w <- w + v.
  Since grad L_B = Phi^T r with r_i = (f_i - y_i) / |B| on B and 0 elsewhere,
  w and v stay in the row space of Phi: w = Phi^T a, v = Phi^T u with

    u <- momentum u - lr r,   a <- a + u,

  exactly (tested against an explicit primal run). Each step needs only the
  batch predictions f_B = K[B, :] a: O(|B| n) work, no features. Batches are
  Keras-style epochs of a fresh random permutation (last batch of an epoch
  possibly smaller; batch_size > n means full batch).

  Test and training error and MSE are evaluated after the steps of
  `eval_steps(max_steps, eval_growth)`; the reported point is the one with
  the lowest test error (optimal early stopping with test labels, as in
  Vyas et al. 2022). A run whose coefficients blow up (learning rate too
  large for the kernel's top eigenvalue, lr lambda_max / n > 2 (1 + momentum)
  for full batch) stops with details['diverged'] = True; the best point
  before is reported.

  Args:
    train_gram: (n, n) K(x_train, x_train).
    y_train: (n,) labels in {0, 1} or {-1, +1}.
    cross_gram: (m, n) K(x_test, x_train).
    y_test: (m,) labels in {0, 1} or {-1, +1}.
    learning_rate: the network's SGD learning rate (> 0). For a network
      trained on mean (f - y)^2 without the 1/2, pass twice its rate.
    batch_size: the network's batch size (> 0).
    momentum: the network's momentum, in [0, 1).
    max_steps: number of SGD steps (> 0).
    eval_growth: factor > 1 between evaluation steps.
    seed: seed of the minibatch order.

  Returns:
    A `FitResult` with best_step and curve set.

  Raises:
    AfterKernelError: bad shapes, labels, non-finite Grams or bad
      hyper-parameters.
  """
  train_gram, cross_gram, y_train, y_test = results.checked_problem(
      train_gram, y_train, cross_gram, y_test)
  errors.require_positive(learning_rate, 'learning_rate')
  errors.require_positive(batch_size, 'batch_size')
  errors.require(momentum is not None and 0 <= momentum < 1,
                 f'momentum must be in [0, 1), got {momentum!r}')
  steps_to_eval = eval_steps(max_steps, eval_growth)
  n = train_gram.shape[0]
  batch_size = min(int(batch_size), n)
  rng = np.random.default_rng(seed)
  batches = _batches(n, batch_size, rng)
  a = np.zeros(n)
  u = np.zeros(n)
  curve = {key: [] for key in ('steps', 'test_error', 'test_mse',
                               'train_error', 'train_mse')}
  best = None  # (test_error, step, a copy)
  diverged = False
  step = 0
  for target in steps_to_eval:
    while step < target:
      batch = next(batches)
      # einsum, not `@`: a (|B|, n) mat-vec is too small for threaded BLAS,
      # which was 5-10x slower on a busy 2-core machine.
      residual = np.einsum('ij,j->i', train_gram[batch], a) - y_train[batch]
      if not np.max(np.abs(residual)) < DIVERGENCE_THRESHOLD:  # NaN too.
        diverged = True
        break
      u *= momentum
      u[batch] -= (learning_rate / len(batch)) * residual
      a += u
      step += 1
    if diverged:
      break
    train_predictions = train_gram @ a
    test_predictions = cross_gram @ a
    test_error = results.error_rate(test_predictions, y_test)
    curve['steps'].append(step)
    curve['test_error'].append(test_error)
    curve['test_mse'].append(results.mse(test_predictions, y_test))
    curve['train_error'].append(results.error_rate(train_predictions, y_train))
    curve['train_mse'].append(results.mse(train_predictions, y_train))
    if best is None or test_error < best[0]:
      best = (test_error, step, a.copy(), test_predictions,
              len(curve['steps']) - 1)
  curve = results.EvaluationCurve(
      steps=np.asarray(curve['steps'], dtype=np.int64),
      **{k: np.asarray(v, dtype=np.float64) for k, v in curve.items()
         if k != 'steps'})
  details = {'diverged': diverged, 'steps_run': step,
             'learning_rate': float(learning_rate), 'momentum': float(momentum),
             'batch_size': batch_size}
  if best is None:  # Diverged before the first evaluation.
    nan = float('nan')
    return results.FitResult(method='sgd', test_error=nan, test_mse=nan,
                     train_error=nan, train_mse=nan, dual_coef=a,
                     test_predictions=np.full(len(y_test), nan), best_step=None,
                     curve=curve, details=details)
  _, best_step, best_coef, best_predictions, index = best
  details.update(final_test_error=float(curve.test_error[-1]),
                 final_test_mse=float(curve.test_mse[-1]),
                 final_train_mse=float(curve.train_mse[-1]),
                 min_test_mse=float(curve.test_mse.min()))
  return results.FitResult(method='sgd', test_error=float(curve.test_error[index]),
                   test_mse=float(curve.test_mse[index]),
                   train_error=float(curve.train_error[index]),
                   train_mse=float(curve.train_mse[index]),
                   dual_coef=best_coef, test_predictions=best_predictions,
                   best_step=int(best_step), curve=curve, details=details)
