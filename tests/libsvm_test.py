"""Tests for afterkernel.margin.libsvm: the original script's sklearn baseline.

libsvm's SVC with a bias and a large C: its margin may only exceed the
bias-free optimum, and its decision function is the cross-Gram times
`dual_coef` plus the intercept (recomputed in numpy).
"""

import math

from absl.testing import absltest
import numpy as np

from afterkernel import margin

import margin_fixture


class LibsvmTest(margin_fixture.SeparableProblemTest):

  def test_sklearn_baseline_fits_a_bias(self):
    result = margin.max_margin_from_gram(self.gram, self.labels,
                                         solver='sklearn')
    exact = margin.max_margin_from_gram(self.gram, self.labels)
    self.assertEqual(result.solver, 'sklearn')
    self.assertEqual(result.stop_reason, 'libsvm')
    self.assertTrue(result.converged)
    self.assertTrue(math.isnan(result.margin_upper_bound))
    # A bias can only widen the margin (libsvm stops at its own tolerance).
    self.assertGreater(result.margin, exact.margin * (1 - 1e-2))
    cross = self.test @ self.features.T
    np.testing.assert_allclose(
        margin.decision_function(result, cross),
        cross @ result.dual_coef + result.intercept, rtol=1e-12)
    signs = np.where(self.labels > 0, 1.0, -1.0)
    self.assertTrue(np.all(
        signs * margin.decision_function(result, self.gram) > 0))

if __name__ == '__main__':
  absltest.main()
