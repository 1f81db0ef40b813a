"""Tests for afterkernel.margin.checks: Grams that are not kernels are refused.

Each refusal goes through `max_margin_from_gram` (one AfterKernelError, one
line); the eigenvalue probe is checked against LAPACK's eigenvalues.
"""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import margin
from afterkernel.margin import checks


def _problem(n, dims=20, seed=0):
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(n, dims))
  labels = (features[:, 0] > 0).astype(np.float64)
  features[:, 0] += np.where(labels > 0, 1.0, -1.0)  # separable without bias
  return features @ features.T, labels


class SymmetryTest(parameterized.TestCase):

  @parameterized.parameters(30, 300)
  def test_asymmetric_gram_is_refused(self, n):
    gram, labels = _problem(n)
    noise = np.random.default_rng(1).normal(size=gram.shape)
    asymmetric = gram + 1e-4 * np.mean(np.diag(gram)) * (noise - noise.T)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'not symmetric') as caught:
      margin.max_margin_from_gram(asymmetric, labels)
    self.assertNotIn('\n', str(caught.exception))

  def test_rounding_level_asymmetry_is_accepted(self):
    gram, labels = _problem(200)
    noise = np.random.default_rng(2).normal(size=gram.shape)
    nearly = gram + 1e-9 * np.mean(np.diag(gram)) * (noise - noise.T)
    self.assertTrue(margin.max_margin_from_gram(nearly, labels).converged)
    # float32 Grams of float32 features are accepted as they are.
    features = np.random.default_rng(3).normal(size=(300, 500))
    features = features.astype(np.float32)
    checks.require_symmetric(features @ features.T,
                             float(np.mean(np.sum(features**2, axis=1))))


class DefinitenessTest(parameterized.TestCase):

  @parameterized.parameters(30, 300)
  def test_indefinite_gram_is_refused(self, n):
    gram, labels = _problem(n, dims=10)
    # Minus a Gram of small 1-D features: the diagonal stays positive, one
    # eigenvalue is about -0.09 n (the mean diagonal is about 11).
    other = 0.3 * np.random.default_rng(4).normal(size=(n, 1))
    indefinite = gram - other @ other.T
    self.assertGreater(np.diag(indefinite).min(), 0)
    self.assertLess(np.linalg.eigvalsh(indefinite)[0], -1.0)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'not positive semidefinite') as caught:
      margin.max_margin_from_gram(indefinite, labels)
    self.assertNotIn('\n', str(caught.exception))

  @parameterized.parameters(50, 150, 400)
  def test_estimate_is_never_below_the_smallest_eigenvalue(self, n):
    rng = np.random.default_rng(n)
    for shift in (-3.0, 0.0, 3.0):
      matrix = rng.normal(size=(n, n))
      matrix = (matrix + matrix.T) / 2 + shift * np.eye(n)
      smallest = np.linalg.eigvalsh(matrix)[0]
      estimate = checks.smallest_eigenvalue_estimate(matrix)
      self.assertGreaterEqual(estimate, smallest - 1e-9 * abs(smallest))
      if n <= checks.DENSE_EIGENVALUE_MAX_N:
        self.assertAlmostEqual(estimate, smallest, places=9)

  def test_low_rank_psd_gram_is_accepted(self):
    # Rank 5 of 300: eigenvalues at rounding level must not count as < 0.
    gram, labels = _problem(300, dims=5)
    self.assertTrue(margin.max_margin_from_gram(gram, labels).converged)
    self.assertTrue(margin.max_margin_from_gram(
        gram.astype(np.float32), labels).converged)

  def test_allowance_grows_with_float32_rounding_only(self):
    # The floor for float64 and small n; ROUNDING_FACTOR eps sqrt(n) above.
    self.assertEqual(checks.negative_eigenvalue_allowance(np.eye(300)),
                     checks.NEGATIVE_EIGENVALUE_TOLERANCE)
    big = checks.negative_eigenvalue_allowance(np.eye(10_000, dtype=np.float32))
    self.assertAlmostEqual(big, 4 * np.finfo(np.float32).eps * 100)
    self.assertLess(big, 1e-4)
    # The float32 cast of a low-rank Gram: its rounding eigenvalue is within
    # the allowance (measured, not assumed), at several sizes.
    for n in (300, 1200):
      gram, _ = _problem(n, dims=5)
      cast = gram.astype(np.float32)
      mean_diagonal = float(np.mean(np.diag(gram)))
      smallest = np.linalg.eigvalsh(cast.astype(np.float64))[0]
      self.assertGreaterEqual(
          smallest, -checks.negative_eigenvalue_allowance(cast) *
          mean_diagonal, n)


if __name__ == '__main__':
  absltest.main()
