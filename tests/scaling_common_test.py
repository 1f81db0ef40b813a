"""Tests of afterkernel/studies/scaling_common.py: configs, presets, net."""

import dataclasses

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel import infinite_ntk
from afterkernel import kernel_fit
from afterkernel.kernels import features
from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import data_scaling
from afterkernel.studies import kernel_dynamics
from afterkernel.studies import runner
from afterkernel.studies import store as store_lib
from afterkernel.studies import scaling_common as common

# Small enough that a whole study runs in a few seconds on 2 loaded cores.
_SMALL = dict(width=16, num_test=60, num_runs=1, batch_size=16,
              feature_batch_size=64)


def _data_scaling_config(**overrides):
  return dataclasses.replace(data_scaling.PRESETS['tiny'], **dict(
      dict(_SMALL, sample_sizes=(20, 40, 80), max_steps=20,
           num_bootstrap=20), **overrides))


class ConfigTest(absltest.TestCase):

  def test_presets_validate(self):
    for study in (data_scaling, after_kernel_vs_m, kernel_dynamics):
      for config in study.PRESETS.values():
        config.validate()

  def test_bad_fields_raise_one_line(self):
    cases = [
        # Fewer than 3 sizes.
        (data_scaling.DataScalingConfig, dict(sample_sizes=(10, 20))),
        (data_scaling.DataScalingConfig, dict(sample_sizes=(10, 10, 20))),
        (data_scaling.DataScalingConfig, dict(kernel_method='lasso')),
        (data_scaling.DataScalingConfig, dict(momentum=1.0)),
        (data_scaling.DataScalingConfig, dict(dataset='imagenet')),
        (after_kernel_vs_m.AfterKernelVsMConfig, dict(reference_fit_size=7)),
        (after_kernel_vs_m.AfterKernelVsMConfig, dict(curve_train_sizes=(3,))),
        (after_kernel_vs_m.AfterKernelVsMConfig, dict(fit_examples='old')),
        (after_kernel_vs_m.AfterKernelVsMConfig, dict(epochs=-1)),
        (kernel_dynamics.KernelDynamicsConfig, dict(num_snapshots=0)),
    ]
    for cls, fields in cases:
      with self.assertRaises(errors.AfterKernelError) as raised:
        cls(**fields).validate()
      self.assertNotIn('\n', str(raised.exception))

  def test_preset_overrides_and_unknown_field(self):
    config = data_scaling.preset('cpu', max_steps=7)
    self.assertEqual(config.max_steps, 7)
    self.assertEqual(config.dataset, 'mnist')
    with self.assertRaises(errors.AfterKernelError):
      data_scaling.preset('cpu', epochs=3)
    with self.assertRaises(errors.AfterKernelError):
      data_scaling.preset('gpu')

  def test_fingerprint_ignores_growable_fields_only(self):
    base = _data_scaling_config()
    self.assertEqual(base.fingerprint(), dataclasses.replace(
        base, num_runs=5, sample_sizes=(1, 2, 3)).fingerprint())
    self.assertNotEqual(base.fingerprint(), dataclasses.replace(
        base, learning_rate=0.5).fingerprint())

  def test_log_spaced_steps(self):
    steps = common.log_spaced_steps(1000, 10)
    self.assertEqual(steps[0], 1)
    self.assertEqual(steps[-1], 1000)
    self.assertEqual(steps, sorted(set(steps)))
    ratios = np.diff(np.log(steps))
    self.assertLess(np.ptp(ratios[3:]), 0.06)  # Equal ratios, up to rounding.
    self.assertEqual(common.log_spaced_steps(3, 10), [1, 2, 3])
    config = kernel_dynamics.KernelDynamicsConfig(train_steps=50,
                                                  num_snapshots=4)
    self.assertEqual(config.snapshot_steps()[0], 0)


class RunTaskTest(absltest.TestCase):

  def test_new_fields_at_their_defaults_keep_the_old_fingerprint(self):
    config = after_kernel_vs_m.PRESETS['tiny']
    added = set(common.CommonConfig.ADDED_FIELDS)
    old = {k: v for k, v in config.to_dict().items() if k not in added}
    self.assertEqual(config.fingerprint(), store_lib.config_fingerprint(
        old, tuple(config.FINGERPRINT_IGNORES)))
    self.assertNotEqual(config.fingerprint(), dataclasses.replace(
        config, after_kernel_at='early_stopping').fingerprint())

  def test_standardized_run_uses_its_training_rows_only(self):
    config = _data_scaling_config(standardize_run_inputs=True)
    base = common.load_base_task(config, 80)
    unit = runner.WorkUnit(run=1, points=(80,))
    seed, task = common.seeded_run_task(config, unit, base, 80)
    _, plain = common.seeded_run_task(
        dataclasses.replace(config, standardize_run_inputs=False), unit, base,
        80)
    self.assertEqual(seed, config.seed + 1)
    x = np.asarray(plain.x_train, np.float64)
    mean = x.mean(axis=0)
    scale = np.sqrt(np.mean((x - mean)**2))
    np.testing.assert_allclose(task.x_train, (x - mean) / scale, atol=1e-5)
    np.testing.assert_allclose(task.x_test, (plain.x_test - mean) / scale,
                               atol=1e-5)
    np.testing.assert_array_equal(task.y_train, plain.y_train)


class NetworkTest(absltest.TestCase):

  def test_empirical_ntk_of_the_network_is_structured_and_exact(self):
    # The study's kernels use the factored path on NTKBiasDense layers; it
    # must equal the Gram of slow per-example 'loop' gradient features.
    x = np.random.default_rng(0).random((12, 5, 3)).astype(np.float32)
    model = infinite_ntk.build_ntk_fully_connected((5, 3), 24, 2,
                                                   bias_std=0.6, seed=4)
    kernel = kernel_fit.EmpiricalNTK(model, 8)
    self.assertTrue(kernel.structured)
    phi = features.gradient_features(model, x, method='loop').astype(
        np.float64)
    slow = phi @ phi.T
    np.testing.assert_allclose(kernel.gram(x), slow, rtol=1e-4,
                               atol=1e-6 * np.abs(slow).max())
    np.testing.assert_allclose(kernel.gram(x[:5], x[5:]), slow[:5, 5:],
                               rtol=1e-4, atol=1e-6 * np.abs(slow).max())


if __name__ == '__main__':
  absltest.main()
