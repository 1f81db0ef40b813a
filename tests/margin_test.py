"""Tests for afterkernel.margin: every solver through the package entry points.

The margins computed here are the numbers users quote, so they are checked
against a certified hard-margin optimum (scipy SLSQP on
min_{p in simplex} p^T G_y p, polished on its support by solving the KKT
system; margin_fixture) whatever the solver, and no solver may allocate
Gram-sized temporaries. The modules have their own tests: api_test,
jst_test, exact_test, certificate_test, checks_test, libsvm_test.
"""

import tracemalloc

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import margin

from margin_fixture import certified_optimum as _certified_optimum
from margin_fixture import separable_problem as _separable_problem


class CertifiedOptimumTest(parameterized.TestCase):
  """Against an independent hard-margin solution (scipy + KKT polish)."""

  @parameterized.named_parameters(
      (f'{name}_{solver}', n, dims, seed, solver)
      for name, n, dims, seed in (
          ('wide_seed0', 40, 100, 0), ('wide_seed1', 40, 100, 1),
          ('wide_seed2', 80, 200, 2), ('narrow_seed0', 80, 10, 0),
          ('narrow_seed1', 80, 10, 1), ('narrow_seed2', 60, 5, 2))
      for solver in ('dual', 'working_set', 'exact'))
  def test_converged_margin_matches_optimum(self, n, dims, seed, solver):
    features, labels, _, _ = _separable_problem(n, dims, seed, gap=0.08)
    gram = features @ features.T
    optimum, reference_gap = _certified_optimum(gram, labels)
    self.assertLess(reference_gap, 1e-10, 'reference solution not certified')
    result = margin.max_margin_from_gram(gram, labels, solver=solver)
    self.assertTrue(result.converged)
    self.assertEqual(result.stop_reason, 'tolerance')
    np.testing.assert_allclose(result.margin, optimum, rtol=1e-3)
    self.assertGreaterEqual(result.margin_upper_bound, optimum - 1e-9)
    self.assertLessEqual(result.margin, optimum + 1e-9)
    # The relative gap met the default tolerance, so the margin is that close.
    self.assertLessEqual((optimum - result.margin) / optimum,
                         margin.DEFAULT_TOLERANCE + 1e-9)
    # Every check's bounds bracket the optimum, and improve monotonically.
    history = np.array(result.history)
    self.assertTrue(np.all(history[:, 1] <= optimum + 1e-9))
    self.assertTrue(np.all(history[:, 2] >= optimum - 1e-9))
    self.assertTrue(np.all(np.diff(history[:, 1]) >= 0))
    self.assertTrue(np.all(np.diff(history[:, 2]) <= 0))

  def test_working_set_rounds_match_plain_dual(self):
    # Large enough that the coarse phase stops early and several working
    # set rounds run (the log says so).
    features, labels, test, _ = _separable_problem(300, 400, seed=11,
                                                   gap=0.02, n_test=50)
    gram = features @ features.T
    lines = []
    result = margin.max_margin_from_gram(gram, labels, solver='working_set',
                                         tolerance=1e-5, log=lines.append)
    reference = margin.max_margin_from_gram(gram, labels, solver='dual',
                                            tolerance=1e-6,
                                            max_iterations=200_000)
    self.assertTrue(result.converged)
    self.assertTrue(any('working set of' in line for line in lines))
    np.testing.assert_allclose(result.margin, reference.margin, rtol=2e-5)
    self.assertGreaterEqual(result.margin_upper_bound, reference.margin)
    self.assertLessEqual(result.margin, reference.margin_upper_bound)
    np.testing.assert_array_equal(
        margin.predict_labels(result, test @ features.T),
        margin.predict_labels(reference, test @ features.T))
    # The reported margin is that of the returned coefficients.
    decisions = margin.decision_function(result, gram) * np.where(
        labels > 0, 1, -1)
    norm = np.sqrt(result.dual_coef @ gram @ result.dual_coef)
    np.testing.assert_allclose(decisions.min() / norm / result.feature_scale,
                               result.margin, rtol=1e-9)

  def test_primal_converges_to_optimum(self):
    features, labels, _, _ = _separable_problem(60, 8, seed=4, gap=0.08)
    optimum, _ = _certified_optimum(features @ features.T, labels)
    result = margin.max_margin_from_features(features, labels)
    self.assertTrue(result.converged)
    np.testing.assert_allclose(result.margin, optimum, rtol=1e-3)
    self.assertGreaterEqual(result.margin_upper_bound, optimum - 1e-9)
    self.assertLessEqual(result.margin, optimum + 1e-9)

  def test_stochastic_reaches_optimum(self):
    features, labels, _, _ = _separable_problem(60, 100, seed=5, gap=0.08)
    gram = features @ features.T
    optimum, _ = _certified_optimum(gram, labels)
    result = margin.max_margin_from_gram(
        gram, labels, solver='stochastic', tolerance=1e-3,
        max_iterations=200_000, seed=1)
    self.assertEqual(result.solver, 'stochastic')
    self.assertLess(abs(result.margin - optimum) / optimum, 1e-2)
    self.assertGreaterEqual(result.margin_upper_bound, optimum - 1e-9)
    self.assertLessEqual(result.margin, optimum + 1e-9)
    # Seeded: the same seed gives the same run.
    again = margin.max_margin_from_gram(
        gram, labels, solver='stochastic', tolerance=1e-3,
        max_iterations=200_000, seed=1)
    self.assertEqual(result.iterations, again.iterations)
    np.testing.assert_array_equal(result.dual_coef, again.dual_coef)



class MemoryTest(parameterized.TestCase):
  """The solvers must not allocate n x n temporaries (n is ~12k in use)."""

  @parameterized.parameters('dual', 'stochastic', 'exact')
  def test_no_gram_sized_allocations(self, solver):
    features, labels, _, _ = _separable_problem(400, 50, seed=10, gap=0.02)
    gram = features @ features.T
    # Load the compiled code (numba, 'exact') before measuring: a one-off.
    margin.max_margin_from_gram(gram[:20, :20], labels[:20], solver=solver,
                                max_iterations=10)
    tracemalloc.start()
    try:
      result = margin.max_margin_from_gram(gram, labels, solver=solver,
                                           max_iterations=1000)
      margin.test_error(result, gram, labels)
      _, peak = tracemalloc.get_traced_memory()
    finally:
      tracemalloc.stop()
    self.assertLess(peak, 0.2 * gram.nbytes)


if __name__ == '__main__':
  absltest.main()
