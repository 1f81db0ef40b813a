"""Tests for afterkernel.models.architectures: parameter counts and NTK layers."""

import math

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel.models import architectures
from afterkernel import errors
from afterkernel import models


def _count(model):
  return models.count_parameters(model)


class ParameterCountTest(parameterized.TestCase):

  @parameterized.named_parameters(
      # LeNet-5 on MNIST: 156 + 2416 + 48120 + 10164 + 850.
      ('lenet5_mnist', 'lenet5', (28, 28, 1), 10, 1.0, 61706),
      # k = 0.5: 3/8 channels, 60/42 units: 78 + 608 + 12060 + 2562 + 430.
      ('lenet5_half', 'lenet5', (28, 28, 1), 10, 0.5, 15738),
      ('lenet5_binary', 'lenet5', (28, 28, 1), 1, 1.0, 61706 - 9 * 85),
      # AlexNet on CIFAR-10: 4864 + 102464 + 1573248 + 73920 + 1930.
      ('alexnet_cifar', 'alexnet', (32, 32, 3), 10, 1.0, 1756426),
      # On MNIST the flattened map is 7 x 7 x 64.
      ('alexnet_mnist', 'alexnet', (28, 28, 1), 10, 1.0, 1384586),
      # Myrtle-5: 1792 + 3 x 36928 + 650.
      ('myrtle5', 'myrtle5', (32, 32, 3), 10, 1.0, 113226),
      ('myrtle7', 'myrtle7', (32, 32, 3), 10, 1.0, 1792 + 5 * 36928 + 650),
      ('myrtle10_k2', 'myrtle10', (32, 32, 3), 10, 2.0,
       (27 * 128 + 128) + 8 * (9 * 128 * 128 + 128) + 1290),
  )
  def test_counts(self, architecture, shape, outputs, width, expected):
    model = architectures.build_architecture(architecture, shape, outputs,
                                             width)
    self.assertEqual(_count(model), expected)
    self.assertEqual(model.output_shape, (None, outputs))
    self.assertEqual(model.layers[-1].name, models.LOGIT_LAYER_NAME)

  @parameterized.parameters('lenet5', 'alexnet', 'myrtle5')
  def test_ntk_parameterization_has_same_count(self, architecture):
    shape = (28, 28, 1)
    standard = architectures.build_architecture(architecture, shape,
                                                width_multiplier=0.25)
    ntk = architectures.build_architecture(architecture, shape,
                                           width_multiplier=0.25,
                                           parameterization='ntk')
    self.assertEqual(_count(ntk), _count(standard))

  def test_width_multiplier_rounding(self):
    self.assertEqual(architectures.scaled_width(6, 0.1), 1)
    self.assertEqual(architectures.scaled_width(84, 1.5), 126)

  def test_bad_inputs(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'unknown arch'):
      architectures.build_architecture('resnet', (28, 28, 1))
    with self.assertRaisesRegex(errors.AfterKernelError, '16x16'):
      architectures.build_lenet5((8, 8, 1))
    with self.assertRaisesRegex(errors.AfterKernelError, 'width_multiplier'):
      architectures.build_alexnet(width_multiplier=0)
    with self.assertRaisesRegex(errors.AfterKernelError, 'parameterization'):
      architectures.build_myrtle(parameterization='mup')


class NTKLayersTest(absltest.TestCase):

  def test_dense_computes_scaled_product(self):
    keras.utils.set_random_seed(0)
    layer = architectures.NTKDense(4, weight_std=2.0)
    x = np.random.default_rng(0).standard_normal((3, 9)).astype(np.float32)
    y = keras.ops.convert_to_numpy(layer(x))
    layer.bias.assign(np.arange(4, dtype=np.float32))
    y_bias = keras.ops.convert_to_numpy(layer(x))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    np.testing.assert_allclose(y, 2.0 / 3.0 * x @ kernel, rtol=1e-5)
    np.testing.assert_allclose(y_bias, y + np.arange(4), rtol=1e-5)

  def test_conv_matches_keras_conv_with_scaled_kernel(self):
    keras.utils.set_random_seed(1)
    ntk = architectures.NTKConv2D(5, 3, padding='same', weight_std=1.0)
    x = np.random.default_rng(1).random((2, 7, 7, 2)).astype(np.float32)
    got = keras.ops.convert_to_numpy(ntk(x))
    standard = keras.layers.Conv2D(5, 3, padding='same')
    standard.build(x.shape)
    standard.kernel.assign(keras.ops.convert_to_numpy(ntk.kernel) /
                           math.sqrt(3 * 3 * 2))
    np.testing.assert_allclose(got, keras.ops.convert_to_numpy(standard(x)),
                               rtol=1e-5, atol=1e-6)

  def test_weights_are_standard_normal(self):
    keras.utils.set_random_seed(2)
    layer = architectures.NTKDense(200)
    layer.build((None, 300))
    kernel = keras.ops.convert_to_numpy(layer.kernel)
    self.assertAlmostEqual(float(kernel.std()), 1.0, delta=0.02)
    self.assertAlmostEqual(float(kernel.mean()), 0.0, delta=0.02)

  def test_ntk_model_round_trips_through_keras_saving(self):
    keras.utils.set_random_seed(3)
    model = architectures.build_lenet5((16, 16, 1), num_outputs=2,
                                       width_multiplier=0.5,
                                       parameterization='ntk')
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    x = np.random.default_rng(3).random((2, 16, 16, 1)).astype(np.float32)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(clone(x)),
                               keras.ops.convert_to_numpy(model(x)),
                               rtol=1e-6)


if __name__ == '__main__':
  absltest.main()
