"""Tests of afterkernel.kernels.metrics against independent numpy computations.

Moved here (every assertion kept) from kernels_test (alignment, effective
ranks), eigentasks_test (eigensystem, Nystroem extension, target
alignments), kernel_rotation_test (label energy, eigenvector alignment and
energies, subspace overlap) and callbacks_test (label alignment); new tests
check self-alignment, the centered alignment against the explicit H G H
formula, the spectrum against float64 eigvalsh, and both sign conventions.
"""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import callbacks
from afterkernel import errors
from afterkernel import kernels
from afterkernel.kernels import metrics
from afterkernel.studies import eigentasks
from afterkernel.studies import kernel_rotation


def _random_features(seed=0, n=30, m=12, p=50):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, p)), rng.normal(size=(m, p))


def _system(seed=0, n=20, p=40):
  features = np.random.default_rng(seed).normal(size=(n, p))
  return metrics.eigensystem(features @ features.T)


class AlignmentTest(absltest.TestCase):

  def test_matches_formula_and_scale_invariance(self):
    rng = np.random.default_rng(4)
    a, b = rng.standard_normal((2, 8, 5))
    g, h = a @ a.T, b @ b.T
    expected = np.sum(g * h) / np.sqrt(np.sum(g * g) * np.sum(h * h))
    self.assertAlmostEqual(metrics.kernel_alignment(g, h), expected)
    self.assertAlmostEqual(metrics.kernel_alignment(g, 3.5 * g), 1.0)
    self.assertAlmostEqual(metrics.kernel_alignment(g, 2 * h), expected)

  def test_shape_mismatch(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'shapes differ'):
      metrics.kernel_alignment(np.eye(3), np.eye(4))


class EffectiveRankTest(absltest.TestCase):

  def test_known_spectra(self):
    # Eigenvalues 4, 2, 2, 0 in a random orthonormal basis.
    q, _ = np.linalg.qr(np.random.default_rng(5).standard_normal((4, 4)))
    g = q @ np.diag([4.0, 2.0, 2.0, 0.0]) @ q.T
    self.assertAlmostEqual(metrics.trace_effective_rank(g), 8.0 / 4.0)
    p = np.array([0.5, 0.25, 0.25])
    self.assertAlmostEqual(metrics.entropy_effective_rank(g),
                           np.exp(-np.sum(p * np.log(p))))

  def test_extremes(self):
    self.assertAlmostEqual(metrics.entropy_effective_rank(np.eye(6)), 6.0)
    v = np.arange(1.0, 6.0)
    self.assertAlmostEqual(metrics.entropy_effective_rank(np.outer(v, v)),
                           1.0, places=6)
    self.assertAlmostEqual(metrics.trace_effective_rank(np.outer(v, v)), 1.0)

  def test_jacobian_rank_is_the_rank_of_the_singular_values(self):
    # A rank-3 (12, 5) J, its float32 Gram; direct float64 SVD of J.
    rng = np.random.default_rng(1)
    jacobian = rng.standard_normal((12, 3)) @ rng.standard_normal((3, 5))
    sigma = np.linalg.svd(jacobian, compute_uv=False)[:3]
    p = sigma / sigma.sum()
    gram = (jacobian @ jacobian.T).astype(np.float32)
    self.assertAlmostEqual(metrics.jacobian_effective_rank(gram),
                           np.exp(-np.sum(p * np.log(p))), places=4)
    # Without the round-off cut the nine zero singular values come back.
    self.assertGreater(metrics.jacobian_effective_rank(gram, rtol=0.0) -
                       metrics.jacobian_effective_rank(gram), 1e-3)

  def test_zero_and_nonsquare(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'zero Gram'):
      metrics.trace_effective_rank(np.zeros((3, 3)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'zero Gram'):
      metrics.jacobian_effective_rank(np.zeros((3, 3)))
    with self.assertRaisesRegex(errors.AfterKernelError, 'square'):
      metrics.entropy_effective_rank(np.zeros((3, 2)))


class NonFiniteTest(absltest.TestCase):

  def test_nan_or_inf_is_named_not_called_a_zero_gram(self):
    bad = np.eye(4)
    bad[1, 2] = np.nan
    worse = np.eye(4)
    worse[0, 0] = np.inf
    calls = (lambda g: metrics.kernel_alignment(g, np.eye(4)),
             lambda g: metrics.kernel_alignment(np.eye(4), g),
             metrics.trace_effective_rank, metrics.entropy_effective_rank,
             metrics.spectrum,
             lambda g: metrics.kernel_target_alignment(g, np.ones(4)),
             lambda g: metrics.label_alignment(g, np.array([0, 1, 0, 1])))
    for call in calls:
      for gram in (bad, worse):
        with self.assertRaisesRegex(errors.AfterKernelError,
                                    'the Gram matrix has 1 NaN/inf entries '
                                    'of 16'):
          call(gram)


class EigensystemTest(absltest.TestCase):

  def test_sorted_orthonormal_reconstructs_and_signs_fixed(self):
    train, _ = _random_features()
    gram = train @ train.T
    system = metrics.eigensystem(gram)
    self.assertTrue(np.all(np.diff(system.eigenvalues) <= 0))
    vectors = system.eigenvectors
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(30), atol=1e-10)
    np.testing.assert_allclose(
        vectors @ np.diag(system.eigenvalues) @ vectors.T, gram, atol=1e-9)
    self.assertTrue(np.all(vectors.sum(axis=0) >= 0))
    # The same eigensystem whatever sign eigh returned: flip the input's
    # eigenvectors' basis by a permutation of examples and compare.
    order = np.random.default_rng(1).permutation(30)
    permuted = metrics.eigensystem(gram[np.ix_(order, order)])
    np.testing.assert_allclose(permuted.eigenvectors[order.argsort()][:, :5],
                               vectors[:, :5], atol=1e-8)

  def test_bad_gram_raises(self):
    with self.assertRaises(errors.AfterKernelError):
      metrics.eigensystem(np.zeros((3, 4)))
    with self.assertRaises(errors.AfterKernelError):
      metrics.eigensystem(np.full((2, 2), np.nan))


class NystroemTest(absltest.TestCase):

  def test_equals_eigenvectors_at_training_points(self):
    train, _ = _random_features()
    gram = train @ train.T
    system = metrics.eigensystem(gram)
    indices = [1, 2, 7, 30]
    values = metrics.nystroem_extension(gram, system, indices)
    np.testing.assert_allclose(values,
                               system.eigenvectors[:, np.array(indices) - 1],
                               atol=1e-8)

  def test_matches_feature_space_svd(self):
    # phi_j(x) = phi(x) . v_j / s_j for the SVD train = U S V^T: an
    # independent computation that never forms the Gram's eigenvectors.
    train, test = _random_features(seed=3)
    system = metrics.eigensystem(train @ train.T)
    _, singular, right = np.linalg.svd(train, full_matrices=False)
    indices = [1, 4, 10]
    got = metrics.nystroem_extension(test @ train.T, system, indices)
    for column, j in enumerate(indices):
      expected_train = train @ right[j - 1] / singular[j - 1]
      sign = np.sign(expected_train @ system.eigenvectors[:, j - 1])
      np.testing.assert_allclose(
          got[:, column], sign * test @ right[j - 1] / singular[j - 1],
          rtol=1e-7, atol=1e-9)

  def test_bad_indices_raise(self):
    train, _ = _random_features(n=5, p=3)  # rank 3: lambda_4 = lambda_5 = 0
    gram = train @ train.T
    system = metrics.eigensystem(gram)
    for indices in ([0], [6], [5]):
      with self.assertRaises(errors.AfterKernelError):
        metrics.nystroem_extension(gram, system, indices)
    with self.assertRaises(errors.AfterKernelError):
      metrics.nystroem_extension(gram[:, :4], system, [1])


class TargetAlignmentTest(absltest.TestCase):

  def test_target_alignment_is_squared_norm_of_mean_gradient(self):
    train, _ = _random_features(seed=5)
    y = np.where(np.random.default_rng(5).uniform(size=30) > 0.5, 1.0, -1.0)
    expected = np.sum(np.mean(y[:, None] * train, axis=0)**2)
    self.assertAlmostEqual(
        metrics.target_alignment(train @ train.T, y), expected, places=10)

  def test_normalized_alignment_matches_kernel_alignment(self):
    train, _ = _random_features(seed=6)
    y = np.sign(train[:, 0])
    gram = train @ train.T
    self.assertAlmostEqual(
        metrics.kernel_target_alignment(gram, y),
        metrics.kernel_alignment(gram, np.outer(y, y)), places=10)
    self.assertAlmostEqual(
        metrics.kernel_target_alignment(np.outer(y, y), y), 1.0,
        places=12)
    with self.assertRaises(errors.AfterKernelError):
      metrics.target_alignment(gram, y[:-1])


class LabelEnergyTest(absltest.TestCase):

  def test_all_eigenvectors_hold_all_energy_and_energy_grows(self):
    system = _system()
    y = np.where(np.random.default_rng(1).uniform(size=20) > 0.5, 1.0, -1.0)
    energies = metrics.label_energy(system, y, range(1, 21))
    self.assertAlmostEqual(energies[-1], 1.0, places=12)
    self.assertTrue(np.all(np.diff(energies) >= 0))
    self.assertTrue(np.all(energies >= 0))
    # Against the projection computed directly.
    top = system.eigenvectors[:, :5]
    self.assertAlmostEqual(energies[4], np.linalg.norm(top @ (top.T @ y)) /
                           np.linalg.norm(y), places=12)

  def test_labels_along_one_eigenvector(self):
    system = _system(seed=2)
    y = -3.0 * system.eigenvectors[:, 2]
    np.testing.assert_allclose(
        metrics.label_energy(system, y, [1, 2, 3, 4, 20]),
        [0, 0, 1, 1, 1], atol=1e-10)

  def test_bad_input_raises(self):
    system = _system()
    with self.assertRaises(errors.AfterKernelError):
      metrics.label_energy(system, np.ones(19), [1])
    with self.assertRaises(errors.AfterKernelError):
      metrics.label_energy(system, np.ones(20), [21])
    with self.assertRaises(errors.AfterKernelError):
      metrics.label_energy(system, np.zeros(20), [1])


class InitialEigenvectorEnergyTest(absltest.TestCase):

  def test_at_init_equals_eigenvalues(self):
    system = _system(seed=7)
    np.testing.assert_allclose(
        metrics.initial_eigenvector_energy(system, system.gram, 6),
        system.eigenvalues[:6], rtol=1e-10)

  def test_against_numpy_on_a_random_psd_matrix(self):
    # Independent: numpy's eigh of K_0 (no sorting or sign fixing), then
    # v^T K_1 v one vector at a time, for a K_1 that shares nothing with K_0.
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(2, 7, 5))
    initial_gram, current_gram = a @ a.T, b @ b.T + 0.5 * np.eye(7)
    values, vectors = np.linalg.eigh(initial_gram)
    top = vectors[:, np.argsort(values)[::-1][:3]]
    expected = [float(v @ current_gram @ v) for v in top.T]
    got = metrics.initial_eigenvector_energy(
        metrics.eigensystem(initial_gram), current_gram, 3)
    np.testing.assert_allclose(got, expected, rtol=1e-10)
    # Bounded by the current spectrum, and all n shares add up to one.
    current = np.linalg.eigvalsh(current_gram)
    self.assertTrue(np.all(got <= current.max() + 1e-10))
    self.assertTrue(np.all(got >= current.min() - 1e-10))
    all_energies = metrics.initial_eigenvector_energy(
        metrics.eigensystem(initial_gram), current_gram, 7)
    self.assertAlmostEqual(all_energies.sum() / np.trace(current_gram), 1.0,
                           places=12)

  def test_bad_input_raises(self):
    system = _system()
    with self.assertRaises(errors.AfterKernelError):
      metrics.initial_eigenvector_energy(system, np.eye(19), 1)
    with self.assertRaises(errors.AfterKernelError):
      metrics.initial_eigenvector_energy(system, system.gram, 21)


class EigenvectorAlignmentTest(absltest.TestCase):

  def test_kernel_with_itself_is_aligned(self):
    system = _system()
    np.testing.assert_allclose(
        metrics.eigenvector_alignment(system, system, 20), 1.0,
        atol=1e-12)
    self.assertAlmostEqual(metrics.subspace_overlap(system, system, 7),
                           1.0, places=12)

  def test_sign_flip_and_swapped_eigenvalues(self):
    system = _system(seed=4)
    u, values = system.eigenvectors, system.eigenvalues.copy()
    # Swap the first two eigenvalues: u_1 and u_2 trade places.
    values[[0, 1]] = values[[1, 0]]
    swapped = metrics.eigensystem(u @ np.diag(values) @ u.T)
    alignment = metrics.eigenvector_alignment(system, swapped, 3)
    np.testing.assert_allclose(alignment, [0, 0, 1], atol=1e-8)
    self.assertAlmostEqual(metrics.subspace_overlap(system, swapped, 2),
                           1.0, places=8)
    self.assertAlmostEqual(metrics.subspace_overlap(system, swapped, 1),
                           0.0, places=8)
    # Rank-one kernel alignment of u_j u_j^T pairs = a_j^2 (module docstring).
    other = _system(seed=5)
    a = metrics.eigenvector_alignment(system, other, 3)
    for j in range(3):
      u, v = system.eigenvectors[:, j], other.eigenvectors[:, j]
      self.assertAlmostEqual(np.vdot(np.outer(u, u), np.outer(v, v)),
                             a[j]**2, places=10)


class LabelAlignmentTest(absltest.TestCase):

  def test_label_alignment_formula(self):
    y = np.array([1, 0, 1, 0])
    ideal = np.outer(2 * y - 1, 2 * y - 1).astype(float)
    self.assertAlmostEqual(metrics.label_alignment(ideal, y), 1.0)
    self.assertAlmostEqual(metrics.label_alignment(-ideal, y), -1.0)
    self.assertAlmostEqual(metrics.label_alignment(np.eye(4), y), 0.5)


class NewAlignmentTest(parameterized.TestCase):

  @parameterized.parameters(0, 1, 2)
  def test_alignment_of_a_gram_with_itself_is_one(self, seed):
    features, _ = _random_features(seed=seed, n=9, p=4)
    gram = features @ features.T
    self.assertAlmostEqual(metrics.kernel_alignment(gram, gram), 1.0,
                           places=14)
    self.assertAlmostEqual(metrics.centered_kernel_alignment(gram, gram), 1.0,
                           places=14)

  def test_centered_alignment_against_explicit_centering_matrix(self):
    rng = np.random.default_rng(11)
    a, b = rng.standard_normal((2, 10, 3)) + 2.0  # a large shared mean
    g, k = a @ a.T, b @ b.T
    h = np.eye(10) - np.ones((10, 10)) / 10
    gc, kc = h @ g @ h, h @ k @ h
    expected = np.sum(gc * kc) / np.sqrt(np.sum(gc * gc) * np.sum(kc * kc))
    self.assertAlmostEqual(metrics.centered_kernel_alignment(g, k), expected,
                           places=12)
    np.testing.assert_allclose(metrics.center_gram(g), gc, atol=1e-12)
    # Shared constant components inflate the plain alignment only.
    self.assertGreater(metrics.kernel_alignment(g, k), expected)

  def test_centered_alignment_errors(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'shapes differ'):
      metrics.centered_kernel_alignment(np.eye(3), np.eye(4))
    with self.assertRaisesRegex(errors.AfterKernelError, 'zero Gram'):
      metrics.centered_kernel_alignment(np.ones((3, 3)), np.eye(3))

  def test_kernel_target_alignment_is_alignment_with_ideal_kernel(self):
    features, _ = _random_features(seed=12, n=15, p=6)
    gram = features @ features.T
    labels01 = (features[:, 1] > 0).astype(np.float32)
    y = 2.0 * labels01 - 1.0
    expected = np.sum(gram * np.outer(y, y)) / (
        np.sqrt(np.sum(gram * gram)) * np.sqrt(np.sum(np.outer(y, y)**2)))
    self.assertAlmostEqual(metrics.kernel_target_alignment(gram, y), expected,
                           places=12)
    self.assertAlmostEqual(metrics.label_alignment(gram, labels01), expected,
                           places=12)
    self.assertAlmostEqual(metrics.label_alignment(gram, y), expected,
                           places=12)

  def test_signed_labels(self):
    np.testing.assert_array_equal(
        metrics.signed_labels(np.array([0, 1, 1, 0])), [-1, 1, 1, -1])
    np.testing.assert_array_equal(
        metrics.signed_labels(np.array([-1.0, 1.0])), [-1, 1])
    self.assertEqual(metrics.signed_labels(np.array([0, 1])).dtype,
                     np.float64)
    with self.assertRaisesRegex(errors.AfterKernelError, 'binary labels'):
      metrics.signed_labels(np.array([0.0, 0.5]))


class SpectrumTest(absltest.TestCase):

  def test_spectrum_against_float64_eigvalsh(self):
    features, _ = _random_features(seed=13, n=12, p=5)
    gram = (features @ features.T).astype(np.float32)
    expected = np.sort(np.linalg.eigvalsh(gram.astype(np.float64)))[::-1]
    got = metrics.spectrum(gram)
    self.assertEqual(got.dtype, np.float64)
    np.testing.assert_allclose(got[:5], expected[:5], rtol=1e-10)
    # Rank 5: the rest is round-off, clipped at zero.
    self.assertTrue(np.all(got >= 0))
    self.assertTrue(np.all(np.diff(got) <= 0))
    self.assertLess(got[5], 1e-8 * got[0])
    self.assertAlmostEqual(metrics.trace_effective_rank(gram),
                           got.sum() / got[0], places=10)

  def test_eigensystem_trace_effective_rank(self):
    system = _system(seed=14)
    self.assertAlmostEqual(system.trace_effective_rank,
                           metrics.trace_effective_rank(system.gram),
                           places=10)


class SignConventionTest(absltest.TestCase):

  def test_sum_convention(self):
    vectors = np.array([[1.0, -2.0, 0.0, 1.0],
                        [-3.0, 1.0, 0.0, -1.0],
                        [1.0, 0.5, 0.0, 2.0]])
    got = metrics.fix_signs(vectors, 'sum')
    # Column sums -1, -0.5, 0 (all zero: kept), 2.
    np.testing.assert_array_equal(got[:, 0], -vectors[:, 0])
    np.testing.assert_array_equal(got[:, 1], -vectors[:, 1])
    np.testing.assert_array_equal(got[:, 2], vectors[:, 2])
    np.testing.assert_array_equal(got[:, 3], vectors[:, 3])
    # A zero sum: the first non-zero entry decides.
    balanced = np.array([[0.0], [-1.0], [1.0]])
    np.testing.assert_array_equal(metrics.fix_signs(balanced), -balanced)

  def test_largest_convention(self):
    vectors = np.array([[1.0, -2.0],
                        [-3.0, 1.0],
                        [1.0, 1.5]])
    got = metrics.fix_signs(vectors, 'largest')
    np.testing.assert_array_equal(got, [[-1.0, 2.0], [3.0, -1.0],
                                        [-1.0, -1.5]])

  def test_conventions_differ_and_are_flip_invariant(self):
    # Column sum > 0 but largest entry < 0: the two conventions disagree.
    v = np.array([[-3.0], [2.0], [2.0]])
    np.testing.assert_array_equal(metrics.fix_signs(v, 'sum'), v)
    np.testing.assert_array_equal(metrics.fix_signs(v, 'largest'), -v)
    rng = np.random.default_rng(15)
    vectors = rng.standard_normal((6, 4))
    flips = np.array([1.0, -1.0, -1.0, 1.0])
    for convention in metrics.SIGN_CONVENTIONS:
      np.testing.assert_array_equal(
          metrics.fix_signs(vectors * flips, convention),
          metrics.fix_signs(vectors, convention))

  def test_eigensystem_sign_convention_parameter(self):
    features, _ = _random_features(seed=16, n=8, p=8)
    gram = features @ features.T
    by_sum = metrics.eigensystem(gram)
    by_largest = metrics.eigensystem(gram, sign_convention='largest')
    np.testing.assert_array_equal(by_sum.eigenvalues, by_largest.eigenvalues)
    self.assertTrue(np.all(by_sum.eigenvectors.sum(axis=0) >= 0))
    rows = np.arange(8)
    largest = by_largest.eigenvectors[
        np.argmax(np.abs(by_largest.eigenvectors), axis=0), rows]
    self.assertTrue(np.all(largest > 0))
    np.testing.assert_array_equal(np.abs(by_sum.eigenvectors),
                                  np.abs(by_largest.eigenvectors))

  def test_unknown_convention(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'sign convention'):
      metrics.fix_signs(np.eye(2), 'first')


class ReexportTest(absltest.TestCase):

  def test_old_names_are_the_metrics(self):
    self.assertIs(kernels.kernel_alignment, metrics.kernel_alignment)
    self.assertIs(kernels.trace_effective_rank, metrics.trace_effective_rank)
    self.assertIs(kernels.entropy_effective_rank,
                  metrics.entropy_effective_rank)
    self.assertIs(eigentasks.eigensystem, metrics.eigensystem)
    self.assertIs(eigentasks.Eigensystem, metrics.Eigensystem)
    self.assertIs(eigentasks.nystroem_extension, metrics.nystroem_extension)
    self.assertIs(eigentasks.target_alignment, metrics.target_alignment)
    self.assertIs(eigentasks.normalized_target_alignment,
                  metrics.kernel_target_alignment)
    self.assertIs(kernel_rotation.label_energy, metrics.label_energy)
    self.assertIs(kernel_rotation.subspace_overlap, metrics.subspace_overlap)
    self.assertIs(callbacks.label_alignment, metrics.label_alignment)
    self.assertIs(callbacks.signed_labels, metrics.signed_labels)


if __name__ == '__main__':
  absltest.main()
