"""Tests for afterkernel.margin.certificate: the bounds a result carries.

Every solver's bounds are recomputed from `dual_coef` alone with the formula
written out in float64 numpy (margin_fixture.recomputed_bounds), and
`margin.certificate` is checked on a problem whose optimum is known in closed
form.
"""

import importlib
import math

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import margin

from margin_fixture import recomputed_bounds as _recomputed_bounds
from margin_fixture import separable as _separable

# The module (the package exports its function `certificate` by that name).
certificate_lib = importlib.import_module('afterkernel.margin.certificate')


class CertificateTest(parameterized.TestCase):

  @parameterized.parameters('exact', 'working_set', 'dual')
  def test_bounds_recomputed_from_dual_coef_alone(self, solver):
    features, labels, _, _ = _separable(90, 30, seed=6)
    gram = 9.0 * features @ features.T  # far from unit scale
    result = margin.max_margin_from_gram(gram, labels, solver=solver)
    lower, upper, a = _recomputed_bounds(gram, labels, result.dual_coef)
    self.assertGreaterEqual(a.min(), 0.0)  # y_i dual_coef_i >= 0
    np.testing.assert_allclose(lower, result.margin, rtol=1e-9)
    if solver == 'exact':
      # Both bounds are those of the returned coefficients.
      np.testing.assert_allclose(upper, result.margin_upper_bound, rtol=1e-9)
      self.assertLessEqual((upper - lower) / upper, margin.DEFAULT_TOLERANCE)
    # The library's own recheck agrees with the written-out one.
    np.testing.assert_allclose(
        margin.certificate(gram, labels, result.dual_coef)[:2],
        (lower, upper), rtol=1e-12)
    # In original units (unscaled Q) the margin is s times larger.
    signs = np.where(labels > 0, 1.0, -1.0)
    q_a = signs * (gram @ result.dual_coef)
    np.testing.assert_allclose(
        q_a.min() / math.sqrt(a @ q_a),
        result.margin * result.feature_scale, rtol=1e-9)

  def test_certificate_refuses_wrong_signs(self):
    features, labels, _, _ = _separable(20, 5, seed=7)
    gram = features @ features.T
    result = margin.max_margin_from_gram(gram, labels)
    with self.assertRaisesRegex(errors.AfterKernelError, 'negative entries'):
      margin.certificate(gram, labels, -result.dual_coef)



class RelativeGapTest(absltest.TestCase):

  def test_gap_and_the_uncertified_cases(self):
    self.assertAlmostEqual(certificate_lib.relative_gap(0.9, 1.2), 0.25)
    self.assertEqual(certificate_lib.relative_gap(-0.5, 2.0), 1.25)
    for lower, upper in ((0.1, 0.0), (-math.inf, 1.0), (0.1, math.inf),
                         (0.1, -1.0)):
      self.assertEqual(certificate_lib.relative_gap(lower, upper), math.inf)


class ClosedFormTest(absltest.TestCase):
  """Orthonormal features: gamma* and the certificate by hand."""

  def test_orthonormal_points_have_margin_one_over_sqrt_n(self):
    # phi_i = c e_i: z_i = y_i e_i after rescaling by s = c, the optimum is
    # p = 1/n (all points support vectors) and gamma* = ||Z^T p|| = 1/sqrt(n).
    for n, c in ((2, 1.0), (5, 3.0), (8, 0.25)):
      with self.subTest(n=n):
        gram = c**2 * np.eye(n)
        labels = np.arange(n) % 2
        signs = np.where(labels > 0, 1.0, -1.0)
        lower, upper, gap = margin.certificate(gram, labels, signs / c**2)
        self.assertAlmostEqual(lower, 1 / math.sqrt(n), places=12)
        self.assertAlmostEqual(upper, 1 / math.sqrt(n), places=12)
        self.assertAlmostEqual(gap, 0.0, places=12)
        # A worse point of the simplex: the bounds bracket gamma* strictly.
        weights = signs * np.linspace(1.0, 2.0, n)
        lower, upper, gap = margin.certificate(gram, labels, weights)
        self.assertLess(lower, 1 / math.sqrt(n))
        self.assertGreater(upper, 1 / math.sqrt(n))
        self.assertGreater(gap, 0.0)
        a = np.linspace(1.0, 2.0, n)
        self.assertAlmostEqual(lower, a.min() / np.linalg.norm(a), places=12)
        self.assertAlmostEqual(upper, np.linalg.norm(a) / a.sum(), places=12)

  def test_shape_mismatch_is_refused(self):
    with self.assertRaisesRegex(errors.AfterKernelError, r'\(3, 3\)'):
      margin.certificate(np.eye(4), np.array([0, 1, 1]), np.ones(3))

if __name__ == '__main__':
  absltest.main()
