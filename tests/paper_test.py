"""Tests for afterkernel.models.paper: the after-kernel paper's nets.

Exact parameter counts of the VGG-like nets, the fully connected net and the
sum net, worked out by hand from their layer sizes; the width search that
sizes a net to ~N parameters; the sum net depends only on the pixel sum; bad
sizes raise one AfterKernelError.
"""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel import errors
from afterkernel import models


def _conv_params(k, c_in, c_out):
  return (k * k * c_in + 1) * c_out


class ParameterCountTest(parameterized.TestCase):

  def test_vgg_mnist(self):
    # 26 -> 26 channels, pool, 52 -> 52, pool: 28 -> 14 -> 7 spatial.
    expected = (_conv_params(3, 1, 26) + _conv_params(3, 26, 26) +
                _conv_params(3, 26, 52) + _conv_params(3, 52, 52) +
                7 * 7 * 52 + 1)
    self.assertEqual(expected, 45527)
    self.assertEqual(
        models.count_parameters(models.build_model('vgg', (28, 28, 1))),
        expected)

  def test_vgg_cifar(self):
    expected = (_conv_params(3, 3, 26) + _conv_params(3, 26, 26) +
                _conv_params(3, 26, 52) + _conv_params(3, 52, 52) +
                8 * 8 * 52 + 1)
    self.assertEqual(
        models.count_parameters(models.build_model('vgg', (32, 32, 3))),
        expected)

  def test_mega_vgg_mnist(self):
    expected = (_conv_params(3, 1, 119) + _conv_params(3, 119, 119) +
                _conv_params(3, 119, 238) + _conv_params(3, 238, 238) +
                7 * 7 * 238 + 1)
    self.assertEqual(expected, 905591)
    self.assertEqual(
        models.count_parameters(models.build_model('mega_vgg', (28, 28, 1))),
        expected)

  def test_fully_connected_mnist(self):
    expected = (784 + 1) * 94 + 3 * (94 + 1) * 94 + 94 + 1
    self.assertEqual(expected, 100675)
    self.assertEqual(
        models.count_parameters(
            models.build_model('fully_connected', (28, 28, 1))), expected)

  def test_sum_net(self):
    # Dense(1 -> 16) and Dense(16 -> 1): 2 * 16 + 16 + 1.
    self.assertEqual(
        models.count_parameters(models.build_model('sum', (28, 28, 1))), 49)

  def test_custom_vgg_shape(self):
    model = models.build_vgg((16, 16, 1), width=4, num_blocks=3, num_layers=1,
                             filter_size=5, pool_size=2)
    expected = (_conv_params(5, 1, 4) + _conv_params(5, 4, 8) +
                _conv_params(5, 8, 16) + 2 * 2 * 16 + 1)
    self.assertEqual(models.count_parameters(model), expected)

  @parameterized.parameters(60_000, 80_000, 100_000)
  def test_num_parameters_picks_closest_width(self, target):
    for architecture, builder in (('vgg', models.build_vgg),
                                  ('fully_connected',
                                   models.build_fully_connected)):
      model = models.build_model(architecture, (28, 28, 1),
                                 num_parameters=target)
      count = models.count_parameters(model)
      width = models.width_for_num_parameters(builder, (28, 28, 1), target)
      for neighbour in (width - 1, width + 1):
        other = models.count_parameters(builder((28, 28, 1), width=neighbour))
        self.assertLessEqual(abs(count - target), abs(other - target))
      self.assertLess(abs(count - target) / target, 0.05)

  def test_a_count_no_width_reaches_within_5_percent_is_an_error(self):
    smallest = models.count_parameters(models.build_vgg((8, 8, 1), width=1))
    self.assertGreater(smallest, 10 * 1.05)
    with self.assertRaisesRegex(
        errors.AfterKernelError,
        rf'num_parameters=10 cannot be met within 5% .*nearest reachable '
        rf'counts are {smallest} \(width 1\)'):
      models.build_model('vgg', (8, 8, 1), num_parameters=10)


class SumNetTest(absltest.TestCase):

  def test_sum_net_depends_only_on_pixel_sum(self):
    keras.utils.set_random_seed(0)
    model = models.build_sum_net((6, 6, 1))
    x = np.random.RandomState(1).rand(3, 6, 6, 1).astype(np.float32)
    permuted = x.reshape(3, -1)[:, ::-1].reshape(x.shape)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(x)),
                               keras.ops.convert_to_numpy(model(permuted)),
                               rtol=1e-5)


class BadInputTest(absltest.TestCase):

  def test_non_positive_sizes(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'width'):
      models.build_vgg((28, 28, 1), width=0)
    with self.assertRaisesRegex(errors.AfterKernelError, 'num_parameters'):
      models.build_model('vgg', (28, 28, 1), num_parameters=-5)

  def test_too_much_pooling(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'below one pixel'):
      models.build_vgg((8, 8, 1), num_blocks=4)

  def test_mega_vgg_has_fixed_width(self):
    with self.assertRaisesRegex(errors.AfterKernelError, 'fixed width'):
      models.build_model('mega_vgg', (28, 28, 1), num_parameters=1000)


if __name__ == '__main__':
  absltest.main()
