"""Layers in the NTK parameterization, and the NTK fully connected network.

The NTK parameterization (Jacot et al. 2018) draws every kernel from N(0, 1)
and scales the pre-activation instead, z = (weight_std / sqrt(fan_in)) x.W
+ b, with fan_in = input units (dense) or kh * kw * in_channels (conv). The
function at initialization has the same distribution as He-style standard
init with std weight_std / sqrt(fan_in), but gradients with respect to W are
1/sqrt(fan_in) smaller, which is what makes the infinite-width limit a fixed
kernel (see Vyas et al. 2022 on the two parameterizations' after kernels).

  * `NTKDense`, `NTKConv2D`: b = 0 at initialization with gradient 1 (the
    'ntk' parameterization of `cnns`' LeNet / AlexNet / Myrtle nets).
  * `NTKBiasDense`: a scaled Gaussian bias, z = (sigma_w / sqrt(fan_in)) x.W
    + sigma_b b with b ~ N(0, 1): neural-tangents' `stax.Dense(W_std, b_std,
    parameterization='ntk')`, the family of the closed-form kernels.
  * `build_ntk_fully_connected`: Flatten -> `depth` x NTKBiasDense(width,
    relu) -> NTKBiasDense(1):
        z_1 = (sigma_w / sqrt(d_0)) W_1 x + sigma_b b_1,
        z_{l+1} = (sigma_w / sqrt(n)) W_{l+1} relu(z_l) + sigma_b b_{l+1},
    f(x) = z_{L+1}, L = depth, d_0 input values, n = width. Its infinite-width
    twin, the NTK / NNGP Gram in closed form, is `afterkernel.infinite_ntk`.
    Parameters (`ntk_fully_connected_parameters`):
        (d_0 + 1) n + (L - 1)(n + 1) n + n + 1.

Every layer reports its scales via `multipliers()`, which the per-layer and
structured gradient-feature paths use.
"""

import math
from typing import Optional, Sequence

import keras
import numpy as np

from afterkernel import errors
from afterkernel.models import common

PARAMETERIZATIONS = ('standard', 'ntk')
DEFAULT_PARAMETERIZATION = 'standard'
# sqrt(2) keeps ReLU pre-activations at unit scale through depth (He et al.).
DEFAULT_NTK_WEIGHT_STD = math.sqrt(2.0)
# No bias by default: the plain arc-cosine recursion of Cho & Saul / Jacot.
DEFAULT_BIAS_STD = 0.0


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
                                initializer=self._bias_initializer())

  def _bias_initializer(self):
    return 'zeros'

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


@keras.saving.register_keras_serializable(package='afterkernel')
class NTKBiasDense(NTKDense):
  """`NTKDense` with a scaled Gaussian bias.

  z = (weight_std / sqrt(fan_in)) x.W + bias_std * b, with W and b drawn from
  N(0, 1), so the bias adds bias_std^2 to the pre-activation covariance at
  initialization and bias_std^2 to the tangent kernel through d z / d b, the
  parameterization the infinite-width formulas assume. (`NTKDense` itself
  keeps b = 0 at initialization with gradient 1, a different family.) With
  bias_std = 0 the bias has no effect and zero gradient.
  """

  def __init__(self, units: int, activation=None,
               weight_std: float = DEFAULT_NTK_WEIGHT_STD,
               bias_std: float = DEFAULT_BIAS_STD, **kwargs):
    super().__init__(units, activation, weight_std, **kwargs)
    self.bias_std = float(bias_std)

  def _bias_initializer(self):
    return keras.initializers.RandomNormal(0.0, 1.0)

  def call(self, inputs):
    return self.activation(
        keras.ops.matmul(inputs, self.kernel) * self.scale +
        self.bias * self.bias_std)

  def multipliers(self):
    """(kernel, bias) factors of z = k (x.W) + c b; `features` uses them."""
    return self.scale, self.bias_std

  def get_config(self):
    config = super().get_config()
    config.update(bias_std=self.bias_std)
    return config


class LayerFactory:
  """Makes dense / conv layers in the chosen parameterization.

  'standard' gives Keras' Dense / Conv2D (Glorot uniform, zero bias); 'ntk'
  gives `NTKDense` / `NTKConv2D` with `weight_std`.
  """

  def __init__(self, parameterization: str, weight_std: float):
    errors.require_choice(parameterization, PARAMETERIZATIONS,
                          'parameterization')
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


def check_ntk_hyperparameters(depth, weight_std, bias_std) -> None:
  """Checks depth >= 1, weight_std > 0 and a finite bias_std >= 0.

  Shared with `infinite_ntk`, whose kernels take the same three numbers.

  Raises:
    AfterKernelError: naming the bad value.
  """
  errors.require(
      isinstance(depth, (int, np.integer)) and not isinstance(depth, bool) and
      depth >= 1,
      f'depth (hidden layers) must be an integer >= 1, got {depth!r}')
  errors.require_positive(weight_std, 'weight_std')
  errors.require(bias_std is not None and bias_std >= 0 and
                 math.isfinite(bias_std),
                 f'bias_std must be a finite number >= 0, got {bias_std!r}')


def _check_fully_connected(input_shape, width, depth, weight_std, bias_std):
  check_ntk_hyperparameters(depth, weight_std, bias_std)
  errors.require(isinstance(width, (int, np.integer)) and width >= 1,
                 f'width must be a positive integer, got {width!r}')
  errors.require(len(input_shape) >= 1 and all(
      isinstance(d, (int, np.integer)) and d >= 1 for d in input_shape),
                 f'input_shape must be positive sizes, got {input_shape!r}')


def build_ntk_fully_connected(input_shape: Sequence[int],
                              width: int,
                              depth: int,
                              weight_std: float = DEFAULT_NTK_WEIGHT_STD,
                              bias_std: float = DEFAULT_BIAS_STD,
                              seed: Optional[int] = None,
                              name: str = 'ntk_fully_connected'
                              ) -> keras.Model:
  """Fully connected ReLU network in the NTK parameterization, scalar output.

  Flatten -> `depth` x NTKBiasDense(width, relu) named dense0, dense1, ... ->
  NTKBiasDense(1) named `common.LOGIT_LAYER_NAME` (see the module docstring
  for the exact function). Its empirical NTK at initialization converges to
  `infinite_ntk.ntk_gram(..., depth, weight_std, bias_std)` as width grows,
  with fluctuations of order 1 / sqrt(width).

  Args:
    input_shape: shape of one input (without the batch axis); flattened.
    width: units per hidden layer.
    depth: number of hidden ReLU layers, >= 1.
    weight_std: sigma_w.
    bias_std: sigma_b (0 disables the bias).
    seed: seeds the initializers (via `keras.utils.set_random_seed`, which
      also seeds Python's and NumPy's global generators); None leaves the
      global state alone.
    name: Keras model name.

  Returns:
    A functional model mapping (batch,) + input_shape to (batch, 1).

  Raises:
    AfterKernelError: non-positive width or depth, bad stds or input_shape.
  """
  _check_fully_connected(input_shape, width, depth, weight_std, bias_std)
  if seed is not None:
    keras.utils.set_random_seed(int(seed))
  inputs = keras.Input(shape=tuple(int(d) for d in input_shape), name='inputs')
  x = keras.layers.Flatten(name='flatten')(inputs)
  for layer in range(depth):
    x = NTKBiasDense(int(width), 'relu', weight_std, bias_std,
                     name=f'dense{layer}')(x)
  outputs = NTKBiasDense(1, None, weight_std, bias_std,
                         name=common.LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def ntk_fully_connected_parameters(input_shape: Sequence[int],
                                   width: int,
                                   depth: int,
                                   weight_std: float = DEFAULT_NTK_WEIGHT_STD,
                                   bias_std: float = DEFAULT_BIAS_STD,
                                   seed: Optional[int] = None) -> int:
  """Trainable parameters of `build_ntk_fully_connected` (module docstring).

  Every bias counts, even with bias_std = 0 (it is a trainable variable whose
  gradient is then 0).
  """
  del seed  # The count does not depend on the draw.
  _check_fully_connected(input_shape, width, depth, weight_std, bias_std)
  return (common.dense_parameters(int(np.prod(input_shape)), width) +
          (depth - 1) * common.dense_parameters(width, width) +
          common.dense_parameters(width, 1))
