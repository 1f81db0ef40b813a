"""Separable problems and independent float64 references for the margin tests.

Shared by the tests of afterkernel.margin and its modules (api, jst, exact,
certificate, libsvm): random problems that are separable without a bias, and
the hard-margin optimum computed independently of the library (scipy SLSQP on
the simplex QP with a KKT polish; L-BFGS-B on the bias-free dual), plus the
margin bounds written out from `dual_coef` alone.
"""

import math

from absl.testing import absltest
import numpy as np
import scipy.optimize


def separable_problem(n, dims, seed, gap, n_test=0):
  """Gaussian features labelled by a random hyperplane through 0, with a gap.

  Points whose normalized distance to the plane is below `gap` are dropped, so
  the data are separable without a bias, whatever n and dims are. Norms vary
  by a random factor in [0.5, 1.5] so that the feature rescale matters.

  Returns:
    (features (n, dims), labels (n,) in {0, 1}, test features, test labels).
  """
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=dims)
  direction /= np.linalg.norm(direction)
  features, labels = [], []
  while len(features) < n + n_test:
    x = rng.normal(size=dims) * rng.uniform(0.5, 1.5)
    cosine = x @ direction / np.linalg.norm(x)
    if abs(cosine) > gap:
      features.append(x)
      labels.append(float(cosine > 0))
  features = np.array(features)
  labels = np.array(labels, dtype=np.float32)
  return features[:n], labels[:n], features[n:], labels[n:]


def certified_optimum(gram, labels):
  """The optimal margin gamma* = sqrt(min_{p in simplex} p^T G_y p), certified.

  Solves the simplex QP with SLSQP, then re-solves the equality-constrained QP
  on the support found (G_SS p_S = lambda 1, sum p_S = 1) to machine
  precision, and checks the KKT conditions p >= 0, (G_y p)_i >= p^T G_y p: at
  such a p, w = Z^T p / ||Z^T p|| has margin exactly ||Z^T p||, so lower and
  upper bounds coincide.

  Returns:
    (gamma*, relative KKT gap (upper - lower) / upper of the reference).
  """
  signs = np.where(labels > 0, 1.0, -1.0)
  scale = np.mean(np.sqrt(np.diag(gram)))
  gram_y = np.outer(signs, signs) * gram / scale**2
  n = len(signs)
  solution = scipy.optimize.minimize(
      lambda p: p @ gram_y @ p, np.full(n, 1.0 / n),
      jac=lambda p: 2 * gram_y @ p, bounds=[(0, None)] * n,
      constraints=[{'type': 'eq', 'fun': lambda p: p.sum() - 1,
                    'jac': lambda p: np.ones(n)}],
      method='SLSQP', options={'ftol': 1e-16, 'maxiter': 2000})
  p = np.maximum(solution.x, 0)
  support = np.flatnonzero(p > 1e-7 * p.max())
  k = len(support)
  kkt = np.zeros((k + 1, k + 1))
  kkt[:k, :k] = gram_y[np.ix_(support, support)]
  kkt[:k, k] = -1
  kkt[k, :k] = 1
  rhs = np.zeros(k + 1)
  rhs[k] = 1
  polished = np.linalg.lstsq(kkt, rhs, rcond=None)[0][:k]
  if polished.min() >= 0:
    p = np.zeros(n)
    p[support] = polished
  p /= p.sum()
  gram_p = gram_y @ p
  upper = math.sqrt(p @ gram_p)
  lower = gram_p.min() / upper
  return upper, (upper - lower) / upper


def margin_from_coefficients(result, gram, labels):
  """Normalized margin of f = gram @ dual_coef, in rescaled feature units.

  With w = sum_i c_i phi_i: y_i f(x_i) / ||w|| in original units, and the
  rescaled features phi / s divide it by s.
  """
  signs = np.where(labels > 0, 1.0, -1.0)
  decision = gram @ result.dual_coef
  norm = math.sqrt(result.dual_coef @ gram @ result.dual_coef)
  return (signs * decision).min() / norm / result.feature_scale


def separable(n, dims, seed, gap=0.05, n_test=0):
  """Gaussian points labelled by a hyperplane through 0, with a margin gap.

  Returns:
    (features, labels in {0, 1}, test features, test labels).
  """
  rng = np.random.default_rng(seed)
  direction = rng.normal(size=dims)
  direction /= np.linalg.norm(direction)
  points = rng.normal(size=(20 * (n + n_test), dims))
  points *= rng.uniform(0.5, 1.5, size=(len(points), 1))
  cosine = points @ direction / np.linalg.norm(points, axis=1)
  points = points[np.abs(cosine) > gap][:n + n_test]
  labels = (points @ direction > 0).astype(np.float64)
  return points[:n], labels[:n], points[n:], labels[n:]


def reference_dual(gram, labels):
  """The hard-margin dual solved by L-BFGS-B in float64, independently.

  Returns:
    (gamma* in rescaled units, a* >= 0): at the optimum a*^T Q a* =
    sum(a*) = 1 / gamma*^2.
  """
  signs = np.where(labels > 0, 1.0, -1.0)
  scale_sq = np.mean(np.sqrt(np.diag(gram)))**2
  q = np.outer(signs, signs) * gram / scale_sq
  n = len(signs)
  solution = scipy.optimize.minimize(
      lambda a: 0.5 * a @ q @ a - a.sum(), np.zeros(n),
      jac=lambda a: q @ a - 1.0, method='L-BFGS-B', bounds=[(0, None)] * n,
      options={'ftol': 1e-15, 'gtol': 1e-12, 'maxiter': 100_000,
               'maxfun': 100_000})
  a = np.maximum(solution.x, 0)
  return 1.0 / math.sqrt(a @ q @ a), a


def recomputed_bounds(gram, labels, dual_coef):
  """lower, upper from dual_coef alone (rescaled units), written out."""
  signs = np.where(labels > 0, 1.0, -1.0)
  a = signs * dual_coef
  scale = np.mean(np.sqrt(np.diag(gram)))
  q = np.outer(signs, signs) * gram / scale**2
  q_a = q @ a
  return q_a.min() / math.sqrt(a @ q_a), math.sqrt(a @ q_a) / a.sum(), a


class SeparableProblemTest(absltest.TestCase):
  """A test case whose setUp makes one separable problem and its Gram.

  70 training points in 30 dimensions (seed 9, `separable`), 40 test
  points: self.features, self.labels, self.test, self.gram.
  """

  def setUp(self):
    super().setUp()
    self.features, self.labels, self.test, _ = separable(70, 30, seed=9,
                                                          n_test=40)
    self.gram = self.features @ self.features.T
