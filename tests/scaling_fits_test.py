"""Tests of afterkernel/studies/scaling_fits.py (zero-error rules, fits)."""

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel.studies import data_scaling
from afterkernel.studies import scaling_fits


class PowerLawFitTest(absltest.TestCase):

  def test_saturated_curve_is_flagged_unidentified_in_the_table(self):
    # Saturated from the second size on (the review's example): any beta
    # from 2 to 20 fits about as well, so the table must say so.
    sizes = (500, 1000, 2000, 4000, 8000, 16000, 32000)
    flat = np.array([.2, .12, .08, .061, .060, .0605, .0598])
    fit = scaling_fits.fit_curve(sizes, np.stack([flat, flat * 1.01]),
                       num_bootstrap=10, seed=0)
    self.assertFalse(fit['identified'])
    self.assertLess(fit['num_points_in_power_regime'], 3)
    summary = {'entries': [], 'sizes': list(sizes),
               'fits': {'network': fit, 'init_ntk': None,
                        'infinite_ntk': None},
               'zero_errors': {'rule': 'exclude', 'excluded_sizes': []}}
    table = data_scaling.format_summary(summary)
    self.assertIn('NO: saturated', table)
    self.assertIn('zero errors: none', table)

  def test_exclude_rule_drops_a_size_with_a_zero_error_from_every_curve(self):
    sizes = [10, 20, 40, 80, 160]
    network = np.array([[0.2, 0.1, 0.05, 0.025, 0.0],
                        [0.2, 0.1, 0.05, 0.025, 0.01]])
    kernel = network + 0.01
    counts = np.full(network.shape, 1000.0)
    kept, curves, excluded = scaling_fits.zero_error_rule(
        sizes, {'network': network, 'kernel': kernel}, counts, 'exclude')
    self.assertEqual(kept, [10, 20, 40, 80])
    self.assertEqual(excluded, [160])
    # The kernel had no zero at n = 160 but is fit on the same sizes.
    np.testing.assert_array_equal(curves['kernel'], kernel[:, :4])
    fit = scaling_fits.fit_curve(kept, curves['network'], num_bootstrap=10,
                                 seed=0)
    self.assertAlmostEqual(fit['beta'], 1.0, places=6)  # Exact 1/n law.
    self.assertEqual(fit['sizes'], kept)
    with self.assertRaisesRegex(errors.AfterKernelError, 'zero_error_rule'):
      scaling_fits.fit_curve(sizes, network, num_bootstrap=10, seed=0)

  def test_continuity_rule_is_k_plus_half_over_m_plus_one(self):
    errors_by_run = np.array([[0.5, 0.0, np.nan]])
    counts = np.array([[10.0, 10.0, np.nan]])
    kept, curves, excluded = scaling_fits.zero_error_rule(
        [1, 2, 3], {'a': errors_by_run}, counts, 'continuity')
    self.assertEqual((kept, excluded), ([1, 2, 3], []))
    np.testing.assert_allclose(curves['a'], [[5.5 / 11, 0.5 / 11, np.nan]])
    with self.assertRaises(errors.AfterKernelError):
      scaling_fits.zero_error_rule([1], {'a': errors_by_run[:, :1]},
                                   counts[:, :1], 'floor')


if __name__ == '__main__':
  absltest.main()
