"""Tests for afterkernel.models.paper: the after-kernel paper's nets.

Exact parameter counts of the VGG-like nets, the fully connected net and the
sum net, worked out by hand from their layer sizes; the width search that
sizes a net to ~N parameters; the sum net depends only on the pixel sum; bad
sizes raise one AfterKernelError; the original script's width search
(`original_width`) against hand-computed counts.
"""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel import errors
from afterkernel import models
from afterkernel.models import paper

MNIST = (28, 28, 1)
CIFAR = (32, 32, 3)
DIGITS = (8, 8, 1)


def _conv_params(k, c_in, c_out):
  return (k * k * c_in + 1) * c_out


def _vgg_params(c_in, width, side):
  """Two blocks of two 3x3 convs (width, then 2 width channels), pooled to
  side x side, then Dense(1)."""
  return (_conv_params(3, c_in, width) + _conv_params(3, width, width) +
          _conv_params(3, width, 2 * width) +
          _conv_params(3, 2 * width, 2 * width) + side * side * 2 * width + 1)


class ParameterCountTest(parameterized.TestCase):

  def test_vgg_mnist(self):
    # 26 -> 26 channels, pool, 52 -> 52, pool: 28 -> 14 -> 7 spatial.
    expected = _vgg_params(1, 26, 7)
    self.assertEqual(expected, 45527)
    self.assertEqual(
        models.count_parameters(models.build_model('vgg', (28, 28, 1))),
        expected)

  def test_vgg_cifar(self):
    expected = _vgg_params(3, 26, 8)
    self.assertEqual(
        models.count_parameters(models.build_model('vgg', (32, 32, 3))),
        expected)

  def test_mega_vgg_mnist(self):
    expected = _vgg_params(1, 119, 7)
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


class OriginalWidthTest(parameterized.TestCase):
  """models.original_width against counts worked out by hand.

  The original's VGG estimate with k = 3, C input channels, side H, L per
  block, 2 blocks is 10 [C w + (L - 1) w^2] + 10 [2 w^2 + (L - 1) 4 w^2] +
  (H / 4)^2 2 w + 1; on MNIST with L = 2: 70 w^2 + 108 w + 1, which first
  reaches 1e5 at w = 38 (w = 37: 99,827).
  """

  @parameterized.named_parameters(
      # name, architecture, shape, num_parameters, num_layers, num_blocks,
      # width, estimate at width, estimate at width - 1, exact count.
      ('vgg_mnist_1e5', 'vgg', MNIST, 100_000, 4, 2, 38, 105_185, 99_827,
       95_267),
      ('vgg_mnist_5_layers', 'vgg', MNIST, 100_000, 5, 2, 38, 105_185,
       99_827, 95_267),
      ('vgg_mnist_6_layers', 'vgg', MNIST, 100_000, 6, 2, 29, 104_053,
       97_105, 94_193),
      ('vgg_cifar_1e5', 'vgg', CIFAR, 100_000, 4, 2, 37, 101_677, 96_409,
       92_205),
      ('vgg_digits_2000', 'vgg', DIGITS, 2000, 4, 2, 6, 2629, 1841, 2407),
      ('mlp_mnist_1e5', 'fully_connected', MNIST, 100_000, 4, 2, 94,
       100_581, 99_232, 100_675),
      ('mlp_mnist_1_layer', 'fully_connected', MNIST, 100_000, 1, 2, 128,
       100_481, 99_696, 100_609),
      ('mlp_cifar_1e5', 'fully_connected', CIFAR, 100_000, 4, 2, 32,
       101_505, 98_240, 101_537),
  )
  def test_smallest_width_whose_estimate_reaches_the_target(
      self, architecture, shape, num_parameters, num_layers, num_blocks,
      width, estimate, estimate_below, exact):
    net = models.OriginalNet(architecture, shape, num_layers, num_blocks)
    self.assertEqual(models.original_width(net, num_parameters), width)
    self.assertEqual(paper.original_parameter_estimate(net, width), estimate)
    self.assertEqual(paper.original_parameter_estimate(net, width - 1),
                     estimate_below)
    self.assertLess(estimate_below, num_parameters)
    self.assertGreaterEqual(estimate, num_parameters)
    if architecture == 'vgg':
      options = dict(num_layers=num_layers // num_blocks,
                     num_blocks=num_blocks)
    else:
      options = dict(num_layers=num_layers)
    built = models.build(architecture, shape, width=width, **options)
    self.assertEqual(models.count_parameters(built), exact)

  def test_search_starts_at_4_for_vgg_and_5_for_mlp_and_sum_is_the_target(
      self):
    self.assertEqual(
        models.original_width(models.OriginalNet('vgg', MNIST), 1), 4)
    mlp = models.OriginalNet('fully_connected', MNIST)
    self.assertEqual(models.original_width(mlp, 1), 5)
    self.assertEqual(
        models.original_width(models.OriginalNet('sum', MNIST), 16), 16)
    self.assertEqual(
        models.original_width(models.OriginalNet('sum', MNIST), 100_000),
        100_000)

  def test_fewer_layers_than_blocks_is_an_error(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'num_layers >= num_blocks'):
      models.original_layers_per_block(1, 2)

  def test_layer_widths(self):
    model = models.build('vgg', MNIST, width=38)
    self.assertEqual(models.layer_widths(model), [38, 38, 76, 76, 1])


if __name__ == '__main__':
  absltest.main()
