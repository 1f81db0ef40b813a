"""Tests for afterkernel.kernels against direct numpy formulas."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import kernels


class AlignmentTest(absltest.TestCase):

  def test_matches_formula_and_scale_invariance(self):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 8, 5))
    g, h = a @ a.T, b @ b.T
    expected = np.sum(g * h) / np.sqrt(np.sum(g * g) * np.sum(h * h))
    self.assertAlmostEqual(kernels.kernel_alignment(g, h), expected)
    self.assertAlmostEqual(kernels.kernel_alignment(g, 3.5 * g), 1.0)
    self.assertAlmostEqual(kernels.kernel_alignment(g, 2 * h), expected)

  def test_shape_mismatch(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'shapes differ'):
      kernels.kernel_alignment(np.eye(3), np.eye(4))


class EffectiveRankTest(absltest.TestCase):

  def test_known_spectra(self):
    # Eigenvalues 4, 2, 2, 0 in a random orthonormal basis.
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((4, 4)))
    g = q @ np.diag([4.0, 2.0, 2.0, 0.0]) @ q.T
    self.assertAlmostEqual(kernels.trace_effective_rank(g), 8.0 / 4.0)
    p = np.array([0.5, 0.25, 0.25])
    self.assertAlmostEqual(kernels.entropy_effective_rank(g),
                           np.exp(-np.sum(p * np.log(p))))

  def test_extremes(self):
    self.assertAlmostEqual(kernels.entropy_effective_rank(np.eye(6)), 6.0)
    v = np.arange(1.0, 6.0)
    self.assertAlmostEqual(kernels.entropy_effective_rank(np.outer(v, v)),
                           1.0, places=6)
    self.assertAlmostEqual(kernels.trace_effective_rank(np.outer(v, v)), 1.0)

  def test_zero_and_nonsquare(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'zero Gram'):
      kernels.trace_effective_rank(np.zeros((3, 3)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'square'):
      kernels.entropy_effective_rank(np.zeros((3, 2)))


if __name__ == '__main__':
  absltest.main()
