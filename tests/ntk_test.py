"""Tests for afterkernel.models.ntk: the NTK-parameterized net and its layer.

The layer tests of `NTKDense` / `NTKConv2D` (through their 0.1.0 path) are in
architectures_test.py; the closed-form kernels of this net family in
infinite_ntk_test.py.
"""

from absl.testing import absltest
import numpy as np

from afterkernel import errors
from afterkernel import infinite_ntk
from afterkernel import models
from afterkernel.models import ntk


class ModelTest(absltest.TestCase):

  def test_structure(self):
    model = ntk.build_ntk_fully_connected((5, 2), 7, 3, seed=0)
    self.assertEqual(model.output_shape, (None, 1))
    self.assertEqual(model.layers[-1].name, models.LOGIT_LAYER_NAME)
    # 3 hidden layers: 10*7+7, 2 x (7*7+7), 7+1.
    self.assertEqual(models.count_parameters(model), 77 + 2 * 56 + 8)
    self.assertEqual(
        ntk.ntk_fully_connected_parameters((5, 2), 7, 3), 77 + 2 * 56 + 8)

  def test_initial_weights_are_standard_normal(self):
    model = ntk.build_ntk_fully_connected((64,), 256, 1, seed=3)
    values = np.concatenate([np.ravel(w) for w in model.get_weights()])
    self.assertLen(values, 64 * 256 + 256 + 256 + 1)
    self.assertAlmostEqual(float(values.mean()), 0.0, delta=0.02)
    self.assertAlmostEqual(float(values.std()), 1.0, delta=0.02)

  def test_seed_reproduces(self):
    first, second = (ntk.build_ntk_fully_connected((4,), 8, 2, seed=5)
                     for _ in range(2))
    for a, b in zip(first.get_weights(), second.get_weights()):
      np.testing.assert_array_equal(a, b)

  def test_layer_config_round_trip(self):
    layer = ntk.NTKBiasDense(3, 'relu', 1.25, 0.75, name='d')
    clone = ntk.NTKBiasDense.from_config(layer.get_config())
    self.assertEqual((clone.units, clone.weight_std, clone.bias_std),
                     (3, 1.25, 0.75))

  def test_bias_is_scaled(self):
    layer = ntk.NTKBiasDense(2, None, weight_std=1.0, bias_std=0.5)
    x = np.ones((1, 4), np.float32)
    layer.build(x.shape)
    layer.kernel.assign(np.zeros((4, 2), np.float32))
    layer.bias.assign(np.array([2.0, -4.0], np.float32))
    np.testing.assert_allclose(np.asarray(layer(x)), [[1.0, -2.0]])
    self.assertEqual(layer.multipliers(), (0.5, 0.5))

  def test_infinite_ntk_uses_this_family(self):
    # The 0.1.0 names in infinite_ntk are this module's objects, not copies.
    self.assertIs(infinite_ntk.build_ntk_fully_connected,
                  ntk.build_ntk_fully_connected)
    self.assertIs(infinite_ntk.NTKBiasDense, ntk.NTKBiasDense)
    self.assertEqual(infinite_ntk.DEFAULT_WEIGHT_STD,
                     ntk.DEFAULT_NTK_WEIGHT_STD)
    self.assertEqual(infinite_ntk.DEFAULT_BIAS_STD, ntk.DEFAULT_BIAS_STD)


class BadInputTest(absltest.TestCase):

  def _assert_one_line_error(self, fn, pattern):
    with self.assertRaisesRegex(errors.AfterKernelError, pattern) as caught:
      fn()
    self.assertNotIn('\n', str(caught.exception))

  def test_bad_model_arguments(self):
    self._assert_one_line_error(
        lambda: ntk.build_ntk_fully_connected((4,), 8, 0), 'depth')
    self._assert_one_line_error(
        lambda: ntk.build_ntk_fully_connected((4,), 0, 2), 'width')
    self._assert_one_line_error(
        lambda: ntk.build_ntk_fully_connected((4,), 8, 1, bias_std=-0.1),
        'bias_std')

  def test_bad_parameterization(self):
    self._assert_one_line_error(lambda: ntk.LayerFactory('mup', 1.0),
                                'parameterization')
    self._assert_one_line_error(lambda: ntk.LayerFactory('ntk', 0.0),
                                'weight_std')


if __name__ == '__main__':
  absltest.main()
