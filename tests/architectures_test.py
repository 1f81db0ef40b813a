"""Tests for afterkernel.models.architectures: NTK layers by 0.1.0 names."""

import math

from absl.testing import absltest
import keras
import numpy as np

from afterkernel.models import architectures


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
