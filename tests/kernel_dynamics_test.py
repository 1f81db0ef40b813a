"""Tests of afterkernel/studies/kernel_dynamics.py (experiment 3)."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
import numpy as np

from afterkernel import infinite_ntk
from afterkernel import kernel_fit
from afterkernel.studies import kernel_dynamics
from afterkernel.studies import scaling_common as common

# Small enough that a whole study runs in a few seconds on 2 loaded cores.
_SMALL = dict(width=16, num_test=60, num_runs=1, batch_size=16,
              feature_batch_size=64)


class StudyTest(absltest.TestCase):

  def test_kernel_dynamics_records_every_snapshot(self):
    config = dataclasses.replace(kernel_dynamics.PRESETS['tiny'], **dict(
        _SMALL, num_train=40, train_steps=12, num_snapshots=3, fit_steps=10))
    directory = tempfile.mkdtemp()
    summary = kernel_dynamics.run(config, directory, log=lambda m: None)
    self.assertEqual(summary['steps'], config.snapshot_steps())
    self.assertEqual(summary['steps'], [0, 1, 3, 12])
    self.assertTrue(os.path.exists(os.path.join(directory,
                                                'kernel_dynamics.png')))
    self.assertIn('K^t', kernel_dynamics.format_summary(summary))

  def test_step_callback_snapshot_at_step_0_is_the_init_ntk(self):
    rng = np.random.default_rng(1)
    x = rng.random((40, 6)).astype(np.float32)
    y = np.where(x[:, 0] > 0.5, 1.0, -1.0).astype(np.float32)
    model = infinite_ntk.build_ntk_fully_connected((6,), 32, 1, seed=2)
    init = kernel_fit.EmpiricalNTK(model, 64).gram(x)
    init_weights = [w.copy() for w in model.get_weights()]
    seen = []
    snapshots = kernel_dynamics.KernelSnapshots(64, x, y)

    def record(step, m):
      seen.append(step)
      snapshots(step, m)

    config = dataclasses.replace(kernel_dynamics.PRESETS['tiny'],
                                 learning_rate=0.5, momentum=0.9,
                                 batch_size=8)
    common.train_network(config, model, x, y, 7, 0, [0, 1, 3, 7], record)
    self.assertEqual(seen, [0, 1, 3, 7])
    np.testing.assert_allclose(snapshots.kernels[0].gram(x), init, rtol=1e-6)
    # Later snapshots saw training; the last one is the final model's kernel.
    self.assertGreater(np.abs(snapshots.kernels[7].gram(x) - init).max(),
                       1e-4 * np.abs(init).max())
    np.testing.assert_allclose(snapshots.kernels[7].gram(x),
                               kernel_fit.EmpiricalNTK(model, 64).gram(x),
                               rtol=1e-5)
    self.assertFalse(all(np.array_equal(a, b) for a, b in
                         zip(init_weights, model.get_weights())))
    self.assertEqual([c[0] for c in snapshots.evaluator.curve], [0, 1, 3, 7])


if __name__ == '__main__':
  absltest.main()
