"""Tests for afterkernel.models.cnns: LeNet-5, AlexNet and the Myrtle CNNs.

Exact parameter counts worked out by hand from the layer sizes (through the
0.1.0 entry point `architectures.build_architecture`), the same count under
the NTK parameterization, width rounding and bad sizes.
"""

from absl.testing import absltest
from absl.testing import parameterized

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

if __name__ == '__main__':
  absltest.main()
