"""The 'sklearn' solver: libsvm's SVC(kernel='precomputed'), the baseline.

The original after-kernel script offered libsvm (through scikit-learn) next
to the accelerated solvers; it is kept under its name 'sklearn' as the
reference for speed (benchmarks/solver_bench.py). Unlike every other solver
here it fits a bias b (libsvm's SVC always does), with a large C so that the
soft margin is a hard one on separable data: it solves a slightly different
problem, so its result has `intercept` = b, `margin` = min_i y_i (f(x_i) + b)
/ ||w|| (rescaled units) and no upper bound (NaN).
"""

import math
import time
from typing import Optional

import numpy as np

from afterkernel.margin import certificate

# C for features of mean norm 1. The hard-margin dual variables sum to
# 1 / gamma*^2 (~6e3 for MNIST FNTK margins ~0.013), so no constraint
# a_i <= C binds on separable data with margins >= 1e-3.
HARD_MARGIN_C = 1e6
# libsvm's stopping tolerance on its KKT violation (scikit-learn's default).
LIBSVM_TOLERANCE = 1e-3
# libsvm's kernel cache (MiB); a precomputed Gram needs none beyond it.
CACHE_MIB = 200


def solve_sklearn(gram: np.ndarray, labels: np.ndarray, scale: float,
                  max_iterations: Optional[int]) -> certificate.MarginResult:
  """SVC(kernel='precomputed', C=HARD_MARGIN_C for rescaled features).

  Args:
    gram: (n, n) Gram matrix (original units).
    labels: (n,) float64 in {-1, +1}.
    scale: s = mean_i sqrt(K_ii); C is divided by s^2 so that it means the
      same for every scale of K.
    max_iterations: libsvm's iteration cap, None for none.

  Returns:
    A `MarginResult` with solver 'sklearn', stop_reason 'libsvm' and the
    fitted `intercept`.
  """
  from sklearn import svm  # pylint: disable=g-import-not-at-top
  start = time.perf_counter()
  model = svm.SVC(kernel='precomputed', C=HARD_MARGIN_C / scale**2,
                  tol=LIBSVM_TOLERANCE, cache_size=CACHE_MIB,
                  max_iter=-1 if max_iterations is None else max_iterations)
  model.fit(gram, labels)
  dual_coef = np.zeros(len(labels))
  dual_coef[model.support_] = model.dual_coef_[0]
  intercept = float(model.intercept_[0])
  decision = np.asarray(gram @ dual_coef, dtype=np.float64) + intercept
  norm = math.sqrt(max(float(dual_coef @ (gram @ dual_coef)), 0.0))
  margin = (labels * decision).min() / norm / scale if norm > 0 else -math.inf
  return certificate.MarginResult(
      dual_coef=dual_coef, margin=float(margin), margin_upper_bound=math.nan,
      feature_scale=float(scale), iterations=int(np.sum(model.n_iter_)),
      converged=int(model.fit_status_) == 0,
      stop_reason=certificate.STOP_LIBSVM, history=[], solver='sklearn',
      seconds=time.perf_counter() - start, intercept=intercept)
