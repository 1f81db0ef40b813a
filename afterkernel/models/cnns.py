"""Convolutional nets of the linearization papers, with width multipliers.

The networks that Samarin et al. (2020, "On the empirical neural tangent
kernel of standard finite-width convolutional neural network architectures")
and Ortiz-Jimenez et al. (2021, "What can linearized neural networks actually
say about generalization?") compare with their linearizations, and the Myrtle
CNN of Shankar et al. (2020, "Neural kernels without tangents"). Every
builder returns a functional `keras.Model` whose last layer, named
`common.LOGIT_LAYER_NAME`, is a dense layer with `num_outputs` units (10
logits, or 1 for binary tasks); its input is the conjugate representation.

Architectures (`ARCHITECTURES`); k is the width multiplier, every channel
count and hidden dense width is max(1, round(k * base)); parameters on an
(H, W, C) input with `num_outputs` = o:
  * 'lenet5': LeNet-5 with ReLU and max-pooling: Conv(6k, 5x5, same) ->
    MaxPool 2 -> Conv(16k, 5x5, valid) -> MaxPool 2 -> Dense(120k) ->
    Dense(84k) -> Dense(o). With s = (H // 2 - 4) // 2 (and likewise for W):
    (25 C + 1) c1 + (25 c1 + 1) c2 + (s_H s_W c2 + 1) d1 + (d1 + 1) d2
    + (d2 + 1) o. On 28x28x1 with k = 1 and 10 outputs: 61,706 (the
    classic count).
  * 'alexnet': the small AlexNet of Zhang et al. (2017) for 32x32 inputs
    (MNIST, CIFAR-10), without dropout or local response normalization.
    NOT the AlexNet of Samarin et al.: theirs is the ImageNet AlexNet
    (five convolutions, 224x224 inputs) trained on a 10-class ImageNet
    subset, which is not obtainable offline here, so their AlexNet numbers
    are not reproduced by this one: Conv(64k, 5x5, same) -> MaxPool 3/2 -> Conv(64k, 5x5,
    same) -> MaxPool 3/2 -> Dense(384k) -> Dense(192k) -> Dense(o). The
    'same' pools halve sides rounding up: 1,756,426 on CIFAR-10.
  * 'myrtle5', 'myrtle7', 'myrtle10': Myrtle CNNs as in neural-tangents'
    example (3x3 'same' convolutions of constant width w = 64k with ReLU;
    2/1/1, 2/2/2 or 3/3/3 convolutions at three scales separated by 2x2
    average pooling), then global average pooling and Dense(o):
    (9 C + 1) w + (n - 1)(9 w + 1) w + (w + 1) o for n convolutions;
    113,226 for Myrtle-5 on CIFAR-10.
And, outside `ARCHITECTURES` (a scalar net with an integer width):
  * 'cnn' (`build_global_pool_cnn`): num_layers x Conv2D(width, 3x3, 'same',
    relu) -> global average pooling -> Dense(1): translation equivariant up
    to the zero-padded border, the kind of architecture whose neural
    anisotropy directions Ortiz-Jimenez et al. find strongly anisotropic.
    (9 C + 1) w + (num_layers - 1)(9 w + 1) w + w + 1 parameters.

Parameterizations (`ntk.PARAMETERIZATIONS`): 'standard' (Keras layers with
default initialization) or 'ntk' (`ntk.NTKDense` / `ntk.NTKConv2D`); both
have the same parameter count.
"""

import dataclasses
import math
from typing import Callable, List, Optional, Sequence, Tuple

import keras
import numpy as np

from afterkernel import errors
from afterkernel.models import common
from afterkernel.models import ntk

ARCHITECTURES = ('lenet5', 'alexnet', 'myrtle5', 'myrtle7', 'myrtle10')
# Base widths (k = 1) of the published architectures.
LENET5_CHANNELS = (6, 16)
LENET5_DENSE = (120, 84)
ALEXNET_CHANNELS = (64, 64)
ALEXNET_DENSE = (384, 192)
MYRTLE_WIDTH = 64
# Convolutions at each of the three scales, by Myrtle depth.
MYRTLE_LAYERS = {'myrtle5': (2, 1, 1), 'myrtle7': (2, 2, 2),
                 'myrtle10': (3, 3, 3)}
# Width and convolutions of the global-pooling CNN (the NAD study's default).
CNN_WIDTH = 8
CNN_NUM_LAYERS = 2


def scaled_width(base: int, width_multiplier: float) -> int:
  """max(1, round(k * base)): a layer's width under multiplier k."""
  return max(1, int(round(base * width_multiplier)))


def _check_common(input_shape, num_outputs, width_multiplier):
  errors.require(len(input_shape) == 3,
                 f'input_shape must be (height, width, channels), got '
                 f'{tuple(input_shape)}')
  errors.require(isinstance(num_outputs, (int, np.integer)) and
                 num_outputs >= 1,
                 f'num_outputs must be a positive integer, got {num_outputs!r}')
  errors.require_positive(width_multiplier, 'width_multiplier')


def _check_lenet5(input_shape, num_outputs, width_multiplier):
  _check_common(input_shape, num_outputs, width_multiplier)
  errors.require(min(input_shape[:2]) >= 16,
                 f'LeNet-5 needs images of at least 16x16, got '
                 f'{tuple(input_shape)}')


def build_lenet5(input_shape: Sequence[int] = (28, 28, 1),
                 num_outputs: int = 10,
                 width_multiplier: float = 1.0,
                 parameterization: str = ntk.DEFAULT_PARAMETERIZATION,
                 weight_std: float = ntk.DEFAULT_NTK_WEIGHT_STD,
                 name: str = 'lenet5') -> keras.Model:
  """LeNet-5 with ReLU and max-pooling (see the module docstring).

  Args:
    input_shape: (H, W, C); H and W >= 16 (two 2x2 poolings around a valid
      5x5 convolution).
    num_outputs: units of the last layer (10 logits, or 1 for binary).
    width_multiplier: k, scales the 6/16 channels and 120/84 dense units.
    parameterization: 'standard' or 'ntk'.
    weight_std: sigma_w of the NTK parameterization (unused for standard).
    name: Keras model name.

  Returns:
    The functional model.

  Raises:
    AfterKernelError: bad sizes or parameterization.
  """
  _check_lenet5(input_shape, num_outputs, width_multiplier)
  return _two_conv_two_dense(_LENET5, input_shape, num_outputs,
                             width_multiplier, parameterization, weight_std,
                             name)


def lenet5_parameters(input_shape: Sequence[int] = (28, 28, 1),
                      num_outputs: int = 10,
                      width_multiplier: float = 1.0,
                      parameterization: str = ntk.DEFAULT_PARAMETERIZATION,
                      weight_std: float = ntk.DEFAULT_NTK_WEIGHT_STD) -> int:
  """Trainable parameters of `build_lenet5` (module docstring)."""
  del parameterization, weight_std  # Same count in both.
  _check_lenet5(input_shape, num_outputs, width_multiplier)
  spatial = [(int(side) // 2 - 4) // 2 for side in input_shape[:2]]
  return _two_conv_two_dense_parameters(_LENET5, input_shape[2], spatial,
                                        width_multiplier, num_outputs)


def build_alexnet(input_shape: Sequence[int] = (32, 32, 3),
                  num_outputs: int = 10,
                  width_multiplier: float = 1.0,
                  parameterization: str = ntk.DEFAULT_PARAMETERIZATION,
                  weight_std: float = ntk.DEFAULT_NTK_WEIGHT_STD,
                  name: str = 'alexnet') -> keras.Model:
  """Small 32x32 AlexNet without dropout or LRN (see the module docstring).

  Not the ImageNet AlexNet of Samarin et al. (2020), whose 10-class
  ImageNet subset is not available offline; use it for their LeNet-vs-
  AlexNet trends only at this small scale.

  Args:
    input_shape: (H, W, C).
    num_outputs: units of the last layer (10, or 1 for binary tasks).
    width_multiplier: k, scales 64/64 channels and 384/192 dense units.
    parameterization: 'standard' or 'ntk'.
    weight_std: sigma_w of the NTK parameterization.
    name: Keras model name.

  Returns:
    The functional model.
  """
  _check_common(input_shape, num_outputs, width_multiplier)
  return _two_conv_two_dense(_ALEXNET, input_shape, num_outputs,
                             width_multiplier, parameterization, weight_std,
                             name)


def alexnet_parameters(input_shape: Sequence[int] = (32, 32, 3),
                       num_outputs: int = 10,
                       width_multiplier: float = 1.0,
                       parameterization: str = ntk.DEFAULT_PARAMETERIZATION,
                       weight_std: float = ntk.DEFAULT_NTK_WEIGHT_STD) -> int:
  """Trainable parameters of `build_alexnet` (module docstring)."""
  del parameterization, weight_std  # Same count in both.
  _check_common(input_shape, num_outputs, width_multiplier)
  # Two 'same' poolings with stride 2: ceil(ceil(side / 2) / 2).
  spatial = [math.ceil(math.ceil(int(side) / 2) / 2)
             for side in input_shape[:2]]
  return _two_conv_two_dense_parameters(_ALEXNET, input_shape[2], spatial,
                                        width_multiplier, num_outputs)


def _scaled(widths: Sequence[int], width_multiplier: float) -> List[int]:
  return [scaled_width(w, width_multiplier) for w in widths]


@dataclasses.dataclass(frozen=True)
class _TwoConvTwoDense:
  """One net of the shape LeNet-5 and the small AlexNet share (k = 1).

  Attributes:
    channels: the two convolutions' channel counts.
    dense: the two hidden Dense layers' units.
    paddings: the two convolutions' paddings.
    pool: builds the pooling layer after each convolution from its name.
  """
  channels: Tuple[int, int]
  dense: Tuple[int, int]
  paddings: Tuple[str, str]
  pool: Callable[[str], keras.layers.Layer]


_LENET5 = _TwoConvTwoDense(
    LENET5_CHANNELS, LENET5_DENSE, ('same', 'valid'),
    lambda name: keras.layers.MaxPooling2D(2, name=name))
_ALEXNET = _TwoConvTwoDense(
    ALEXNET_CHANNELS, ALEXNET_DENSE, ('same', 'same'),
    lambda name: keras.layers.MaxPooling2D(3, strides=2, padding='same',
                                           name=name))


def _two_conv_two_dense(spec: _TwoConvTwoDense, input_shape: Sequence[int],
                        num_outputs: int, width_multiplier: float,
                        parameterization: str, weight_std: float,
                        name: str) -> keras.Model:
  """Builds `spec` at width k (checked inputs).

  (5x5 conv -> pool) per channel count -> flatten -> ReLU Dense per unit
  count -> linear Dense logits; layers are created (and so initialized) in
  that order, as 0.1.0 did.
  """
  make = ntk.LayerFactory(parameterization, weight_std)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = inputs
  for index, (count, padding) in enumerate(
      zip(_scaled(spec.channels, width_multiplier), spec.paddings)):
    x = make.conv(count, 5, padding, name=f'conv{index}')(x)
    x = spec.pool(f'pool{index}')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  for index, units in enumerate(_scaled(spec.dense, width_multiplier)):
    x = make.dense(units, 'relu', name=f'dense{index}')(x)
  outputs = make.dense(num_outputs, name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def _two_conv_two_dense_parameters(spec: _TwoConvTwoDense, in_channels: int,
                                   spatial: Sequence[int],
                                   width_multiplier: float,
                                   num_outputs: int) -> int:
  """Parameters of `_two_conv_two_dense` (spatial: H, W after the pools)."""
  c1, c2 = _scaled(spec.channels, width_multiplier)
  d1, d2 = _scaled(spec.dense, width_multiplier)
  return (common.conv_parameters(5, in_channels, c1) +
          common.conv_parameters(5, c1, c2) +
          common.dense_parameters(spatial[0] * spatial[1] * c2, d1) +
          common.dense_parameters(d1, d2) +
          common.dense_parameters(d2, num_outputs))


def _check_myrtle(input_shape, num_outputs, width_multiplier, depth):
  _check_common(input_shape, num_outputs, width_multiplier)
  errors.require(f'myrtle{depth}' in MYRTLE_LAYERS,
                 f'Myrtle depth must be 5, 7 or 10, got {depth!r}')
  errors.require(min(input_shape[:2]) >= 4,
                 f'a Myrtle CNN needs images of at least 4x4, got '
                 f'{tuple(input_shape)}')


def build_myrtle(input_shape: Sequence[int] = (32, 32, 3),
                 num_outputs: int = 10,
                 width_multiplier: float = 1.0,
                 depth: int = 5,
                 parameterization: str = ntk.DEFAULT_PARAMETERIZATION,
                 weight_std: float = ntk.DEFAULT_NTK_WEIGHT_STD,
                 name: Optional[str] = None) -> keras.Model:
  """Myrtle CNN of depth 5, 7 or 10 (see the module docstring).

  Args:
    input_shape: (H, W, C); H and W >= 4 (two 2x2 average poolings).
    num_outputs: units of the last layer.
    width_multiplier: k, every convolution has round(64 k) channels.
    depth: 5, 7 or 10 (convolutions + the dense layer).
    parameterization: 'standard' or 'ntk'.
    weight_std: sigma_w of the NTK parameterization.
    name: Keras model name; default 'myrtle<depth>'.

  Returns:
    The functional model.
  """
  _check_myrtle(input_shape, num_outputs, width_multiplier, depth)
  key = f'myrtle{depth}'
  make = ntk.LayerFactory(parameterization, weight_std)
  width = scaled_width(MYRTLE_WIDTH, width_multiplier)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = inputs
  for scale, count in enumerate(MYRTLE_LAYERS[key]):
    if scale > 0:
      x = keras.layers.AveragePooling2D(2, name=f'pool{scale}')(x)
    for layer in range(count):
      x = make.conv(width, 3, 'same', name=f'scale{scale}_conv{layer}')(x)
  x = keras.layers.GlobalAveragePooling2D(name='global_pool')(x)
  outputs = make.dense(num_outputs, name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name or key)


def myrtle_parameters(input_shape: Sequence[int] = (32, 32, 3),
                      num_outputs: int = 10,
                      width_multiplier: float = 1.0,
                      depth: int = 5,
                      parameterization: str = ntk.DEFAULT_PARAMETERIZATION,
                      weight_std: float = ntk.DEFAULT_NTK_WEIGHT_STD) -> int:
  """Trainable parameters of `build_myrtle` (module docstring)."""
  del parameterization, weight_std  # Same count in both.
  _check_myrtle(input_shape, num_outputs, width_multiplier, depth)
  width = scaled_width(MYRTLE_WIDTH, width_multiplier)
  convolutions = sum(MYRTLE_LAYERS[f'myrtle{depth}'])
  return (common.conv_parameters(3, input_shape[2], width) +
          (convolutions - 1) * common.conv_parameters(3, width, width) +
          common.dense_parameters(width, num_outputs))


def _check_cnn(input_shape, width, num_layers):
  common.check_positive(width=width, num_layers=num_layers)
  errors.require(len(input_shape) == 3,
                 f'cnn needs images (height, width, channels), got input '
                 f'shape {tuple(input_shape)}; use fully_connected for vectors')


def build_global_pool_cnn(input_shape: Sequence[int],
                          width: int = CNN_WIDTH,
                          num_layers: int = CNN_NUM_LAYERS,
                          name: str = 'cnn') -> keras.Model:
  """Builds num_layers x Conv2D(width, 3x3, same, relu) -> GAP -> Dense(1).

  Layers are named conv0, conv1, ..., 'pool' and the logit; Keras default
  initializers (see the module docstring for why this net).

  Args:
    input_shape: (H, W, C).
    width: channels of every convolution.
    num_layers: number of convolutions.
    name: Keras model name.

  Returns:
    A functional model mapping images to one logit each.

  Raises:
    AfterKernelError: non-positive sizes or a non-image input shape.
  """
  _check_cnn(input_shape, width, num_layers)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = inputs
  for layer in range(num_layers):
    x = keras.layers.Conv2D(width, 3, padding='same', activation='relu',
                            name=f'conv{layer}')(x)
  x = keras.layers.GlobalAveragePooling2D(name='pool')(x)
  outputs = keras.layers.Dense(1, name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def global_pool_cnn_parameters(input_shape: Sequence[int],
                               width: int = CNN_WIDTH,
                               num_layers: int = CNN_NUM_LAYERS) -> int:
  """Trainable parameters of `build_global_pool_cnn` (module docstring)."""
  _check_cnn(input_shape, width, num_layers)
  return (common.conv_parameters(3, input_shape[2], width) +
          (num_layers - 1) * common.conv_parameters(3, width, width) +
          common.dense_parameters(width, 1))
