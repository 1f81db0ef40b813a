"""The after-kernel paper's networks, each with a scalar logit output.

All layers use Keras default initializers (Glorot uniform kernels, zero
biases), as the paper did; the last layer is `Dense(1)` named
`common.LOGIT_LAYER_NAME`.

Architectures (Long 2021, "Properties of the after kernel"):
  * VGG-like: `num_blocks` blocks of `num_layers` k x k 'same' convolutions
    with ReLU followed by p x p max-pooling; block b has `width * 2**b`
    channels; then Flatten -> Dense(1). Paper: width 26 (26 then 52
    channels). Parameters (`vgg_parameters`), with c_b = width 2^b, input
    (H, W, C):
      sum_b [(k^2 c_{b-1} + 1) c_b + (num_layers - 1)(k^2 c_b + 1) c_b]
      + (H // p^B)(W // p^B) c_{B-1} + 1,   c_{-1} = C, B = num_blocks;
    45,527 on MNIST (28x28x1).
  * mega-VGG: the same with width 119 (119 then 238 channels): 905,591 on
    MNIST.
  * fully connected: Flatten -> `num_layers` x Dense(width, relu) -> Dense(1).
    Paper: 4 x 94. Parameters (`fully_connected_parameters`), d input values:
      (d + 1) w + (num_layers - 1)(w + 1) w + w + 1;  100,675 on MNIST.
  * Sum net: sum of all input values -> Dense(16, relu) -> Dense(1): 3 h + 1
    = 49 parameters whatever the input. Exactly invariant to any permutation
    of pixels, hence to shifts of images with a zero border; a sanity check
    for the invariance code.
"""

from typing import NamedTuple, Sequence

import keras
import numpy as np

from afterkernel import errors
from afterkernel.models import common

# Channel widths of the first block in the paper (the second block doubles).
VGG_WIDTH = 26
MEGA_VGG_WIDTH = 119
# The paper's fully connected net: 4 hidden layers of 94 units.
FC_NUM_LAYERS = 4
FC_WIDTH = 94
# Hidden units of the Sum net: small, the net only has to be invariant.
SUM_NET_HIDDEN = 16


def _check_vgg(input_shape, width, num_blocks, num_layers, filter_size,
               pool_size, name):
  common.check_positive(width=width, num_blocks=num_blocks,
                        num_layers=num_layers, filter_size=filter_size,
                        pool_size=pool_size)
  errors.require(len(input_shape) == 3,
                 f'{name} needs images (height, width, channels), got input '
                 f'shape {tuple(input_shape)}; use fully_connected for vectors')
  height, image_width = int(input_shape[0]), int(input_shape[1])
  errors.require(
      min(height, image_width) // pool_size**num_blocks >= 1,
      f'{num_blocks} pooling blocks of size {pool_size} shrink a '
      f'{height}x{image_width} image below one pixel; use fewer blocks or a '
      'smaller pool_size')


def build_vgg(input_shape: Sequence[int],
              width: int = VGG_WIDTH,
              num_blocks: int = 2,
              num_layers: int = 2,
              filter_size: int = 3,
              pool_size: int = 2,
              name: str = 'vgg') -> keras.Model:
  """Builds the VGG-like net: conv blocks with doubling width, then Dense(1).

  Args:
    input_shape: (height, width, channels) of one image.
    width: channels of the first block; block b has `width * 2**b`.
    num_blocks: number of conv + max-pool blocks.
    num_layers: convolutions per block.
    filter_size: side of the square convolution kernels.
    pool_size: side of the square max-pooling window (stride = pool size).
    name: Keras model name.

  Returns:
    A functional model mapping images to one logit per image.

  Raises:
    AfterKernelError: on non-positive sizes, or when pooling would shrink the
      image below one pixel.
  """
  _check_vgg(input_shape, width, num_blocks, num_layers, filter_size,
             pool_size, name)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = inputs
  for block in range(num_blocks):
    channels = width * 2**block
    for layer in range(num_layers):
      x = keras.layers.Conv2D(
          channels, filter_size, padding='same', activation='relu',
          name=f'block{block}_conv{layer}')(x)
    x = keras.layers.MaxPooling2D(pool_size, name=f'block{block}_pool')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  outputs = keras.layers.Dense(1, name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def vgg_parameters(input_shape: Sequence[int],
                   width: int = VGG_WIDTH,
                   num_blocks: int = 2,
                   num_layers: int = 2,
                   filter_size: int = 3,
                   pool_size: int = 2) -> int:
  """Trainable parameters of `build_vgg` (closed form, module docstring)."""
  _check_vgg(input_shape, width, num_blocks, num_layers, filter_size,
             pool_size, 'vgg')
  total, channels = 0, int(input_shape[2])
  for block in range(num_blocks):
    out = width * 2**block
    total += common.conv_parameters(filter_size, channels, out)
    total += (num_layers - 1) * common.conv_parameters(filter_size, out, out)
    channels = out
  shrink = pool_size**num_blocks
  flat = (int(input_shape[0]) // shrink) * (int(input_shape[1]) // shrink)
  return total + common.dense_parameters(flat * channels, 1)


def build_mega_vgg(input_shape: Sequence[int], **kwargs) -> keras.Model:
  """The paper's mega-VGG: `build_vgg` with 119 (then 238) channels."""
  kwargs.setdefault('name', 'mega_vgg')
  return build_vgg(input_shape, width=MEGA_VGG_WIDTH, **kwargs)


def mega_vgg_parameters(input_shape: Sequence[int],
                        num_blocks: int = 2,
                        num_layers: int = 2,
                        filter_size: int = 3,
                        pool_size: int = 2) -> int:
  """Trainable parameters of `build_mega_vgg` (`vgg_parameters`, width 119)."""
  return vgg_parameters(input_shape, MEGA_VGG_WIDTH, num_blocks, num_layers,
                        filter_size, pool_size)


def build_fully_connected(input_shape: Sequence[int],
                          width: int = FC_WIDTH,
                          num_layers: int = FC_NUM_LAYERS,
                          name: str = 'fully_connected') -> keras.Model:
  """Builds Flatten -> `num_layers` x Dense(width, relu) -> Dense(1).

  Args:
    input_shape: shape of one input, flattened by the first layer.
    width: units per hidden layer.
    num_layers: number of hidden layers.
    name: Keras model name.

  Returns:
    A functional model mapping inputs to one logit each.
  """
  common.check_positive(width=width, num_layers=num_layers)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = keras.layers.Flatten(name='flatten')(inputs)
  for layer in range(num_layers):
    x = keras.layers.Dense(width, activation='relu', name=f'dense{layer}')(x)
  outputs = keras.layers.Dense(1, name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def fully_connected_parameters(input_shape: Sequence[int],
                               width: int = FC_WIDTH,
                               num_layers: int = FC_NUM_LAYERS) -> int:
  """Trainable parameters of `build_fully_connected` (module docstring)."""
  common.check_positive(width=width, num_layers=num_layers)
  return (common.dense_parameters(int(np.prod(input_shape)), width) +
          (num_layers - 1) * common.dense_parameters(width, width) +
          common.dense_parameters(width, 1))


@keras.saving.register_keras_serializable(package='afterkernel')
class SumOfInputs(keras.layers.Layer):
  """Sums every value of each example: (batch, ...) -> (batch, 1)."""

  def call(self, inputs):
    flat = keras.ops.reshape(inputs, (keras.ops.shape(inputs)[0], -1))
    return keras.ops.sum(flat, axis=1, keepdims=True)

  def compute_output_shape(self, input_shape):
    return (input_shape[0], 1)


def build_sum_net(input_shape: Sequence[int],
                  hidden: int = SUM_NET_HIDDEN,
                  name: str = 'sum') -> keras.Model:
  """Builds sum(inputs) -> Dense(hidden, relu) -> Dense(1).

  The output depends on the image only through the sum of its pixels, so the
  network, and hence its gradient features, are exactly invariant to any
  transformation that preserves that sum (a shift of an image with a zero
  border, a quadrant swap). Used to test the invariance code.

  Args:
    input_shape: shape of one input.
    hidden: units of the hidden layer.
    name: Keras model name.

  Returns:
    A functional model mapping inputs to one logit each.
  """
  common.check_positive(hidden=hidden)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = SumOfInputs(name='sum_of_inputs')(inputs)
  x = keras.layers.Dense(hidden, activation='relu', name='dense0')(x)
  outputs = keras.layers.Dense(1, name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def sum_net_parameters(input_shape: Sequence[int],
                       hidden: int = SUM_NET_HIDDEN) -> int:
  """Trainable parameters of `build_sum_net`: 3 hidden + 1, any input."""
  del input_shape  # The net sees only the sum of the input.
  common.check_positive(hidden=hidden)
  return common.dense_parameters(1, hidden) + common.dense_parameters(hidden, 1)


# The original script's sizing (google-research after_kernel/
# run_ak_experiment.py, Long 2021): its names of the nets, and the estimate
# of the parameter count its --num_parameters search uses.
ORIGINAL_ARCHITECTURES = {'VGG': 'vgg', 'MLP': 'fully_connected',
                          'Sum': 'sum'}
# Its search starts at this width (VGG) and steps by one.
ORIGINAL_FIRST_WIDTH = 4


def original_layers_per_block(num_layers: int, num_blocks: int) -> int:
  """Convolutions per block when `num_layers` is the VGG net's total.

  The original split its --num_layers over --num_blocks as
  int(num_layers / num_blocks) (a remainder is dropped: 5 over 2 is 2).

  Raises:
    AfterKernelError: fewer layers than blocks (the original then built no
      convolution at all, a net this library does not build).
  """
  common.check_positive(num_layers=num_layers, num_blocks=num_blocks)
  errors.require(
      num_layers >= num_blocks,
      f'num_layers={num_layers} over num_blocks={num_blocks} is 0 '
      'convolutions per block (the original script then built pooling '
      'layers only); give num_layers >= num_blocks')
  return num_layers // num_blocks


class OriginalNet(NamedTuple):
  """The original script's net, as its --num_parameters sizing reads it.

  Attributes:
    architecture: 'vgg', 'fully_connected' or 'sum' (this library's names;
      `ORIGINAL_ARCHITECTURES` maps the original's).
    input_shape: (height, width, channels) of one image.
    num_layers: the original's --num_layers (VGG: the total, split over
      blocks, `original_layers_per_block`; MLP: hidden layers).
    num_blocks: the VGG net's number of blocks.
    filter_size: the VGG net's convolution size k.
  """
  architecture: str
  input_shape: Sequence[int]
  num_layers: int = 4
  num_blocks: int = 2
  filter_size: int = 3


def original_parameter_estimate(net: OriginalNet, width: int) -> float:
  """The original script's approximate parameter count (what it sized by).

  Reimplemented from run_ak_experiment.py (calc_vgg_param_count and its MLP
  expression) for `net` at `width`. With c_0 = width, c_b = 2 c_{b-1}, C
  input channels, side H, k = filter_size, L = layers per block, B =
  num_blocks:
    VGG: sum_b (1 + k^2) [c_{b-1} c_b + (L - 1) c_b^2] + (H / 2^B)^2 c_{B-1}
         + 1   (c_{-1} = C; the side halves per block whatever pool_size);
    MLP: d w + (num_layers - 1)(w + 1) w + w + 1   (d input values).
  Both undercount the exact number (biases, pooling), e.g. VGG width 38 on
  MNIST: 105,185 estimated, 95,267 built.

  Raises:
    AfterKernelError: another architecture than VGG and MLP.
  """
  architecture, input_shape, num_layers, num_blocks, filter_size = net
  errors.require(architecture in ('vgg', 'fully_connected'),
                 f'the original script sized only VGG and MLP, not '
                 f'{architecture}')
  if architecture == 'fully_connected':
    inputs = int(np.prod(input_shape))
    return (inputs * width + (num_layers - 1) * (width + 1) * width + width +
            1)
  per_block = original_layers_per_block(num_layers, num_blocks)
  taps = 1 + filter_size * filter_size
  channels, side, total = int(input_shape[2]), float(input_shape[0]), 0
  for block in range(num_blocks):
    out = width if block == 0 else 2 * channels
    total += taps * (channels * out + (per_block - 1) * out * out)
    channels = out
    side /= 2
  return total + side * side * channels + 1


def original_width(net: OriginalNet, num_parameters: int) -> int:
  """The width the original script built for --num_parameters.

  VGG: the smallest width >= 4 whose `original_parameter_estimate` reaches
  `num_parameters`; MLP: the same from 5 (its search steps before the first
  test); Sum: `num_parameters` itself is the hidden width. E.g. MNIST at the
  original default 1e5: VGG 38 (38/76 channels, 95,267 parameters built),
  MLP 94 (100,675); CIFAR-10: VGG 37, MLP 32.

  Args:
    net: the original's net flags.
    num_parameters: the original's --num_parameters.

  Raises:
    AfterKernelError: a non-positive size or another architecture.
  """
  common.check_positive(num_parameters=num_parameters)
  if net.architecture == 'sum':
    return int(num_parameters)
  width = (ORIGINAL_FIRST_WIDTH if net.architecture == 'vgg' else
           ORIGINAL_FIRST_WIDTH + 1)
  while original_parameter_estimate(net, width) < num_parameters:
    width += 1
  return width
