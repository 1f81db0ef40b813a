"""Tests for afterkernel.models.common: helpers every model builder shares.

The closed-form counts of a dense and a convolution layer against Keras's own
count of the built layer, the conjugate model (the logit is affine in its
features), layer widths, and the positive-size check.
"""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel import errors
from afterkernel import models
from afterkernel.models import common


class ConjugateTest(absltest.TestCase):

  def test_logit_is_affine_in_conjugate_features(self):
    keras.utils.set_random_seed(0)
    model = models.build_model('vgg', (12, 12, 1))
    x = np.random.RandomState(0).rand(5, 12, 12, 1).astype(np.float32)
    h = keras.ops.convert_to_numpy(models.conjugate_model(model)(x))
    kernel, bias = [keras.ops.convert_to_numpy(v)
                    for v in model.get_layer(models.LOGIT_LAYER_NAME).weights]
    logits = keras.ops.convert_to_numpy(model(x))
    np.testing.assert_allclose(h @ kernel + bias, logits, rtol=1e-5,
                               atol=1e-6)


class CountTest(parameterized.TestCase):

  @parameterized.parameters((1, 1), (7, 3), (784, 94))
  def test_dense_parameters_match_keras(self, fan_in, units):
    layer = keras.layers.Dense(units)
    layer.build((None, fan_in))
    self.assertEqual(common.dense_parameters(fan_in, units),
                     layer.count_params())

  @parameterized.parameters((1, 1, 1), (3, 2, 5), (5, 26, 52))
  def test_conv_parameters_match_keras(self, kernel_size, c_in, filters):
    layer = keras.layers.Conv2D(filters, kernel_size)
    layer.build((None, 9, 9, c_in))
    self.assertEqual(common.conv_parameters(kernel_size, c_in, filters),
                     layer.count_params())

  def test_count_parameters_and_layer_widths(self):
    inputs = keras.Input((6, 6, 2))
    hidden = keras.layers.Conv2D(3, 3, name='hidden_conv')(inputs)
    hidden = keras.layers.Flatten()(hidden)
    hidden = keras.layers.Dense(4, name='hidden')(hidden)
    model = keras.Model(inputs, keras.layers.Dense(1)(hidden))
    expected = (common.conv_parameters(3, 2, 3) +
                common.dense_parameters(4 * 4 * 3, 4) +
                common.dense_parameters(4, 1))
    self.assertEqual(common.count_parameters(model), expected)
    self.assertEqual(common.count_parameters(model), model.count_params())
    self.assertEqual(common.layer_widths(model), [3, 4, 1])

  def test_check_positive(self):
    common.check_positive(width=3, depth=np.int64(2))
    for bad in (0, -1, 2.0, None):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'width must be a positive integer'):
        common.check_positive(width=bad)

if __name__ == '__main__':
  absltest.main()
