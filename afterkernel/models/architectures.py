"""Architectures of the linearization papers, with width multipliers.

Kept apart from `models` (the after-kernel paper's nets): these are the
networks that Samarin et al. (2020, "On the empirical neural tangent kernel
of standard finite-width convolutional neural network architectures") and
Ortiz-Jimenez et al. (2021, "What can linearized neural networks actually
say about generalization?") compare with their linearizations, and the
Myrtle CNN of Shankar et al. (2020, "Neural kernels without tangents").
Every builder returns a functional `keras.Model` whose last layer, named
`models.LOGIT_LAYER_NAME`, is a dense layer with `num_outputs` units (10
logits, or 1 for binary tasks); its input is the conjugate representation.

Architectures (`ARCHITECTURES`); k is the width multiplier, every channel
count and hidden dense width is max(1, round(k * base)):
  * 'lenet5': LeNet-5 with ReLU and max-pooling: Conv(6k, 5x5, same) ->
    MaxPool 2 -> Conv(16k, 5x5, valid) -> MaxPool 2 -> Dense(120k) ->
    Dense(84k) -> Dense(out). On 28x28x1 with k = 1 and 10 outputs: 61,706
    parameters (the classic count).
  * 'alexnet': the small AlexNet of Zhang et al. (2017) used for MNIST and
    CIFAR-10 in these studies, without dropout or local response
    normalization: Conv(64k, 5x5, same) -> MaxPool 3/2 -> Conv(64k, 5x5,
    same) -> MaxPool 3/2 -> Dense(384k) -> Dense(192k) -> Dense(out).
  * 'myrtle5', 'myrtle7', 'myrtle10': Myrtle CNNs as in neural-tangents'
    example (3x3 'same' convolutions of constant width 64k with ReLU; 2/1/1,
    2/2/2 or 3/3/3 convolutions at three scales separated by 2x2 average
    pooling), then global average pooling and Dense(out).

Parameterizations (`PARAMETERIZATIONS`):
  * 'standard': Keras layers with default initialization (Glorot uniform
    kernels, zero biases).
  * 'ntk': the NTK parameterization (Jacot et al. 2018): kernels drawn from
    N(0, 1) and the pre-activation scaled, z = (weight_std / sqrt(fan_in))
    x.W + b, with fan_in = input units (dense) or kh * kw * in_channels (conv)
    and zero-initialized biases. The function at initialization has the same
    distribution as He-style standard init with std weight_std / sqrt(fan_in),
    but gradients with respect to W are 1/sqrt(fan_in) smaller, which is what
    makes the infinite-width limit a fixed kernel (see Vyas et al. 2022 on the
    two parameterizations' after kernels).
"""

import math
from typing import Optional, Sequence

import keras
import numpy as np

from afterkernel import errors
from afterkernel import models

ARCHITECTURES = ('lenet5', 'alexnet', 'myrtle5', 'myrtle7', 'myrtle10')
PARAMETERIZATIONS = ('standard', 'ntk')
DEFAULT_PARAMETERIZATION = 'standard'
# sqrt(2) keeps ReLU pre-activations at unit scale through depth (He et al.).
DEFAULT_NTK_WEIGHT_STD = math.sqrt(2.0)
# Base widths (k = 1) of the published architectures.
LENET5_CHANNELS = (6, 16)
LENET5_DENSE = (120, 84)
ALEXNET_CHANNELS = (64, 64)
ALEXNET_DENSE = (384, 192)
MYRTLE_WIDTH = 64
# Convolutions at each of the three scales, by Myrtle depth.
MYRTLE_LAYERS = {'myrtle5': (2, 1, 1), 'myrtle7': (2, 2, 2),
                 'myrtle10': (3, 3, 3)}


@keras.saving.register_keras_serializable(package='afterkernel')
class NTKDense(keras.layers.Layer):
  """Dense layer in NTK parameterization: (weight_std / sqrt(fan_in)) x.W + b.

  W ~ N(0, 1), b = 0 at initialization.
  """

  def __init__(self, units: int, activation=None,
               weight_std: float = DEFAULT_NTK_WEIGHT_STD, **kwargs):
    super().__init__(**kwargs)
    self.units = int(units)
    self.activation = keras.activations.get(activation)
    self.weight_std = float(weight_std)

  def build(self, input_shape):
    fan_in = int(input_shape[-1])
    self.scale = self.weight_std / math.sqrt(fan_in)
    self.kernel = self.add_weight(
        shape=(fan_in, self.units), name='kernel',
        initializer=keras.initializers.RandomNormal(0.0, 1.0))
    self.bias = self.add_weight(shape=(self.units,), name='bias',
                                initializer='zeros')

  def call(self, inputs):
    return self.activation(
        keras.ops.matmul(inputs, self.kernel) * self.scale + self.bias)

  def multipliers(self):
    """(kernel, bias) factors of z = k (x.W) + c b; `features` uses them."""
    return self.scale, 1.0

  def compute_output_shape(self, input_shape):
    return tuple(input_shape[:-1]) + (self.units,)

  def get_config(self):
    config = super().get_config()
    config.update(units=self.units,
                  activation=keras.activations.serialize(self.activation),
                  weight_std=self.weight_std)
    return config


@keras.saving.register_keras_serializable(package='afterkernel')
class NTKConv2D(keras.layers.Layer):
  """2-D convolution in NTK parameterization, stride 1.

  z = (weight_std / sqrt(kh kw c_in)) conv(x, W) + b, W ~ N(0, 1), b = 0.
  """

  def __init__(self, filters: int, kernel_size: int, padding: str = 'valid',
               activation=None, weight_std: float = DEFAULT_NTK_WEIGHT_STD,
               **kwargs):
    super().__init__(**kwargs)
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.padding = padding
    self.activation = keras.activations.get(activation)
    self.weight_std = float(weight_std)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    fan_in = self.kernel_size * self.kernel_size * channels
    self.scale = self.weight_std / math.sqrt(fan_in)
    self.kernel = self.add_weight(
        shape=(self.kernel_size, self.kernel_size, channels, self.filters),
        name='kernel', initializer=keras.initializers.RandomNormal(0.0, 1.0))
    self.bias = self.add_weight(shape=(self.filters,), name='bias',
                                initializer='zeros')

  def call(self, inputs):
    z = keras.ops.conv(inputs, self.kernel, strides=1, padding=self.padding)
    return self.activation(z * self.scale + self.bias)

  def compute_output_shape(self, input_shape):
    height, width = input_shape[1], input_shape[2]
    if self.padding == 'valid':
      height = None if height is None else height - self.kernel_size + 1
      width = None if width is None else width - self.kernel_size + 1
    return (input_shape[0], height, width, self.filters)

  def get_config(self):
    config = super().get_config()
    config.update(filters=self.filters, kernel_size=self.kernel_size,
                  padding=self.padding,
                  activation=keras.activations.serialize(self.activation),
                  weight_std=self.weight_std)
    return config


def scaled_width(base: int, width_multiplier: float) -> int:
  """max(1, round(k * base)): a layer's width under multiplier k."""
  return max(1, int(round(base * width_multiplier)))


class _LayerFactory:
  """Makes dense / conv layers in the chosen parameterization."""

  def __init__(self, parameterization: str, weight_std: float):
    errors.require(parameterization in PARAMETERIZATIONS,
                   f'unknown parameterization {parameterization!r}; choose '
                   f'one of {", ".join(PARAMETERIZATIONS)}')
    errors.require_positive(weight_std, 'weight_std')
    self.ntk = parameterization == 'ntk'
    self.weight_std = weight_std

  def dense(self, units, activation=None, name=None):
    if self.ntk:
      return NTKDense(units, activation, self.weight_std, name=name)
    return keras.layers.Dense(units, activation=activation, name=name)

  def conv(self, filters, kernel_size, padding, activation='relu', name=None):
    if self.ntk:
      return NTKConv2D(filters, kernel_size, padding, activation,
                       self.weight_std, name=name)
    return keras.layers.Conv2D(filters, kernel_size, padding=padding,
                               activation=activation, name=name)


def _check_common(input_shape, num_outputs, width_multiplier):
  errors.require(len(input_shape) == 3,
                 f'input_shape must be (height, width, channels), got '
                 f'{tuple(input_shape)}')
  errors.require(isinstance(num_outputs, (int, np.integer)) and
                 num_outputs >= 1,
                 f'num_outputs must be a positive integer, got {num_outputs!r}')
  errors.require_positive(width_multiplier, 'width_multiplier')


def build_lenet5(input_shape: Sequence[int] = (28, 28, 1),
                 num_outputs: int = 10,
                 width_multiplier: float = 1.0,
                 parameterization: str = DEFAULT_PARAMETERIZATION,
                 weight_std: float = DEFAULT_NTK_WEIGHT_STD,
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
  _check_common(input_shape, num_outputs, width_multiplier)
  errors.require(min(input_shape[:2]) >= 16,
                 f'LeNet-5 needs images of at least 16x16, got '
                 f'{tuple(input_shape)}')
  make = _LayerFactory(parameterization, weight_std)
  c1, c2 = (scaled_width(c, width_multiplier) for c in LENET5_CHANNELS)
  d1, d2 = (scaled_width(d, width_multiplier) for d in LENET5_DENSE)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = make.conv(c1, 5, 'same', name='conv0')(inputs)
  x = keras.layers.MaxPooling2D(2, name='pool0')(x)
  x = make.conv(c2, 5, 'valid', name='conv1')(x)
  x = keras.layers.MaxPooling2D(2, name='pool1')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  x = make.dense(d1, 'relu', name='dense0')(x)
  x = make.dense(d2, 'relu', name='dense1')(x)
  outputs = make.dense(num_outputs, name=models.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def build_alexnet(input_shape: Sequence[int] = (32, 32, 3),
                  num_outputs: int = 10,
                  width_multiplier: float = 1.0,
                  parameterization: str = DEFAULT_PARAMETERIZATION,
                  weight_std: float = DEFAULT_NTK_WEIGHT_STD,
                  name: str = 'alexnet') -> keras.Model:
  """Small AlexNet without dropout or LRN (see the module docstring).

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
  make = _LayerFactory(parameterization, weight_std)
  c1, c2 = (scaled_width(c, width_multiplier) for c in ALEXNET_CHANNELS)
  d1, d2 = (scaled_width(d, width_multiplier) for d in ALEXNET_DENSE)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = make.conv(c1, 5, 'same', name='conv0')(inputs)
  x = keras.layers.MaxPooling2D(3, strides=2, padding='same', name='pool0')(x)
  x = make.conv(c2, 5, 'same', name='conv1')(x)
  x = keras.layers.MaxPooling2D(3, strides=2, padding='same', name='pool1')(x)
  x = keras.layers.Flatten(name='flatten')(x)
  x = make.dense(d1, 'relu', name='dense0')(x)
  x = make.dense(d2, 'relu', name='dense1')(x)
  outputs = make.dense(num_outputs, name=models.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def build_myrtle(input_shape: Sequence[int] = (32, 32, 3),
                 num_outputs: int = 10,
                 width_multiplier: float = 1.0,
                 depth: int = 5,
                 parameterization: str = DEFAULT_PARAMETERIZATION,
                 weight_std: float = DEFAULT_NTK_WEIGHT_STD,
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
  _check_common(input_shape, num_outputs, width_multiplier)
  key = f'myrtle{depth}'
  errors.require(key in MYRTLE_LAYERS,
                 f'Myrtle depth must be 5, 7 or 10, got {depth!r}')
  errors.require(min(input_shape[:2]) >= 4,
                 f'a Myrtle CNN needs images of at least 4x4, got '
                 f'{tuple(input_shape)}')
  make = _LayerFactory(parameterization, weight_std)
  width = scaled_width(MYRTLE_WIDTH, width_multiplier)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = inputs
  for scale, count in enumerate(MYRTLE_LAYERS[key]):
    if scale > 0:
      x = keras.layers.AveragePooling2D(2, name=f'pool{scale}')(x)
    for layer in range(count):
      x = make.conv(width, 3, 'same', name=f'scale{scale}_conv{layer}')(x)
  x = keras.layers.GlobalAveragePooling2D(name='global_pool')(x)
  outputs = make.dense(num_outputs, name=models.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name or key)


def build_architecture(architecture: str,
                       input_shape: Sequence[int],
                       num_outputs: int = 10,
                       width_multiplier: float = 1.0,
                       parameterization: str = DEFAULT_PARAMETERIZATION,
                       weight_std: float = DEFAULT_NTK_WEIGHT_STD
                       ) -> keras.Model:
  """Builds one of `ARCHITECTURES` by name.

  Args:
    architecture: 'lenet5', 'alexnet', 'myrtle5', 'myrtle7' or 'myrtle10'.
    input_shape: (H, W, C).
    num_outputs: units of the last layer.
    width_multiplier: k (see the module docstring).
    parameterization: 'standard' or 'ntk'.
    weight_std: sigma_w of the NTK parameterization.

  Returns:
    The functional model.

  Raises:
    AfterKernelError: unknown architecture or bad sizes.
  """
  errors.require(architecture in ARCHITECTURES,
                 f'unknown architecture {architecture!r}; choose one of '
                 f'{", ".join(ARCHITECTURES)}')
  common = dict(num_outputs=num_outputs, width_multiplier=width_multiplier,
                parameterization=parameterization, weight_std=weight_std)
  if architecture == 'lenet5':
    return build_lenet5(input_shape, **common)
  if architecture == 'alexnet':
    return build_alexnet(input_shape, **common)
  return build_myrtle(input_shape, depth=int(architecture[len('myrtle'):]),
                      **common)
