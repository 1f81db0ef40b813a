"""Tests for afterkernel.progress: durations, ETAs and throttled lines."""

import math
from unittest import mock

from absl.testing import absltest
import numpy as np

from afterkernel import progress


class DurationTest(absltest.TestCase):

  def test_units_and_no_estimate(self):
    self.assertEqual(progress.duration(42.4), '42 s')
    self.assertEqual(progress.duration(210.0), '3.5 min')
    self.assertEqual(progress.duration(4.5 * 3600), '4.5 h')
    self.assertEqual(progress.duration(float('nan')), '?')
    self.assertEqual(progress.duration(math.inf), '?')

  def test_items_eta_is_the_average_time_per_item(self):
    self.assertAlmostEqual(progress.items_eta(4, 10, 8.0), 12.0)
    self.assertTrue(math.isnan(progress.items_eta(0, 10, 8.0)))
    self.assertEqual(progress.items_eta(12, 10, 8.0), 0.0)


class CounterTest(absltest.TestCase):

  def test_lines_are_throttled_and_carry_the_eta(self):
    lines = []
    clock = iter([0.0, 1.0, 20.0, 25.0, 40.0])
    with mock.patch.object(progress.time, 'perf_counter',
                           lambda: next(clock)):
      counter = progress.Counter('features of examples', 100, lines.append,
                                 every=10.0)
      counter.update(10)   # t = 1: too soon after the start.
      counter.update(50)   # t = 20: due; 50 in 20 s -> 20 s left.
      counter.update(60)   # t = 25: too soon after the last line.
      counter.update(100)  # t = 40: the stage is over, nothing to say.
    self.assertEqual(lines, ['    features of examples 50/100 (20 s '
                             'elapsed, ETA ~20 s)'])

  def test_silent_without_a_printer(self):
    progress.Counter('x', 3, None, every=0.0).update(1)

  def test_gradient_features_report_progress(self):
    # The engine reports per block when a line is due (every block here).
    from afterkernel import models  # pylint: disable=g-import-not-at-top
    from afterkernel.kernels import features  # pylint: disable=g-import-not-at-top
    model = models.build_fully_connected((4,), width=3, num_layers=1)
    lines = []
    with mock.patch.object(progress, 'EVERY_SECONDS', 0.0):
      phi = features.gradient_features(
          model, np.ones((6, 4), np.float32), batch_size=2,
          method='vectorized', log=lines.append)
    self.assertEqual(phi.shape[0], 6)
    self.assertEqual([line.split('(')[0].strip() for line in lines],
                     ['gradient features of examples 2/6',
                      'gradient features of examples 4/6'])


class GapEtaTest(absltest.TestCase):

  def test_extrapolates_the_fall_of_the_log_gap(self):
    clock = iter([0.0, 10.0, 20.0, 30.0])
    with mock.patch.object(progress.time, 'perf_counter',
                           lambda: next(clock)):
      eta = progress.GapEta(tolerance=1e-4)
      self.assertEqual(eta.text(1e-1), ', ETA ?')  # nothing to compare
      # 1e-1 -> 1e-2 in 10 s: two more decades to 1e-4 take 20 s.
      self.assertEqual(eta.text(1e-2), ', ETA ~20 s')
      self.assertEqual(eta.text(2e-2), ', ETA ?')  # the gap grew
      self.assertEqual(eta.text(math.inf), ', ETA ?')


if __name__ == '__main__':
  absltest.main()
