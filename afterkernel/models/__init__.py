"""Keras networks of the after-kernel paper, each with a scalar logit output.

Every builder returns a functional `keras.Model` whose last layer is a
`Dense(1)` named `LOGIT_LAYER_NAME`; its input is the network's *conjugate*
(penultimate) representation h(x), used for the conjugate projection
K_c(u, v) = h(u).h(v). All layers use Keras default initializers (Glorot
uniform kernels, zero biases), as the paper did.

Architectures (Long 2021, "Properties of the after kernel"):
  * VGG-like: `num_blocks` blocks of `num_layers` 3x3 'same' convolutions with
    ReLU followed by max-pooling; block b has `width * 2**b` channels; then
    Flatten -> Dense(1). Paper: width 26 (26 then 52 channels).
  * mega-VGG: the same with width 119 (119 then 238 channels).
  * fully connected: Flatten -> `num_layers` x Dense(width, relu) -> Dense(1).
    Paper: 4 x 94.
  * Sum net: sum of all input values -> Dense(16, relu) -> Dense(1). Exactly
    invariant to any permutation of pixels, hence to shifts of images with a
    zero border; a sanity check for the invariance code.
"""

from typing import Callable, Optional, Sequence

import keras
import numpy as np

from afterkernel import errors

LOGIT_LAYER_NAME = 'logit'
ARCHITECTURES = ('vgg', 'mega_vgg', 'fully_connected', 'sum')

# Channel widths of the first block in the paper (the second block doubles).
VGG_WIDTH = 26
MEGA_VGG_WIDTH = 119
# The paper's fully connected net: 4 hidden layers of 94 units.
FC_NUM_LAYERS = 4
FC_WIDTH = 94
# Hidden units of the Sum net: small, the net only has to be invariant.
SUM_NET_HIDDEN = 16
# Upper end of the width search when sizing a net by parameter count.
_MAX_SEARCH_WIDTH = 4096


def _check_positive(**values: int) -> None:
  for name, value in values.items():
    errors.require(
        isinstance(value, (int, np.integer)) and value > 0,
        f'{name} must be a positive integer, got {value!r}')


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
  _check_positive(width=width, num_blocks=num_blocks, num_layers=num_layers,
                  filter_size=filter_size, pool_size=pool_size)
  errors.require(len(input_shape) == 3,
                 f'{name} needs images (height, width, channels), got input '
                 f'shape {tuple(input_shape)}; use fully_connected for vectors')
  height, image_width = int(input_shape[0]), int(input_shape[1])
  errors.require(
      min(height, image_width) // pool_size**num_blocks >= 1,
      f'{num_blocks} pooling blocks of size {pool_size} shrink a '
      f'{height}x{image_width} image below one pixel; use fewer blocks or a '
      'smaller pool_size')
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
  outputs = keras.layers.Dense(1, name=LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def build_mega_vgg(input_shape: Sequence[int], **kwargs) -> keras.Model:
  """The paper's mega-VGG: `build_vgg` with 119 (then 238) channels."""
  kwargs.setdefault('name', 'mega_vgg')
  return build_vgg(input_shape, width=MEGA_VGG_WIDTH, **kwargs)


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
  _check_positive(width=width, num_layers=num_layers)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = keras.layers.Flatten(name='flatten')(inputs)
  for layer in range(num_layers):
    x = keras.layers.Dense(width, activation='relu', name=f'dense{layer}')(x)
  outputs = keras.layers.Dense(1, name=LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


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
  _check_positive(hidden=hidden)
  inputs = keras.Input(shape=tuple(input_shape), name='images')
  x = SumOfInputs(name='sum_of_inputs')(inputs)
  x = keras.layers.Dense(hidden, activation='relu', name='dense0')(x)
  outputs = keras.layers.Dense(1, name=LOGIT_LAYER_NAME)(x)
  return keras.Model(inputs, outputs, name=name)


def count_parameters(model: keras.Model) -> int:
  """Number of trainable scalars, i.e. the dimension of the gradient features."""
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def width_for_num_parameters(builder: Callable[..., keras.Model],
                             input_shape: Sequence[int],
                             num_parameters: int, **kwargs) -> int:
  """The width whose parameter count is closest to `num_parameters`.

  Parameter counts grow monotonically with width, so a bisection over widths
  finds the crossing; the closer of its two neighbours wins (ties go to the
  smaller net). This is how the paper sized nets of ~60K/80K/100K parameters.

  Args:
    builder: `build_vgg` or `build_fully_connected` (anything taking `width`).
    input_shape: shape of one input.
    num_parameters: target number of trainable parameters.
    **kwargs: further builder arguments (num_blocks, num_layers, ...).

  Returns:
    The best width (>= 1).
  """
  _check_positive(num_parameters=num_parameters)

  def count(width: int) -> int:
    return count_parameters(builder(input_shape, width=width, **kwargs))

  low, high = 1, 1
  while count(high) < num_parameters and high < _MAX_SEARCH_WIDTH:
    low, high = high, min(2 * high, _MAX_SEARCH_WIDTH)
  while high - low > 1:
    middle = (low + high) // 2
    if count(middle) < num_parameters:
      low = middle
    else:
      high = middle
  return min((low, high), key=lambda w: (abs(count(w) - num_parameters), w))


def build_model(architecture: str,
                input_shape: Sequence[int],
                num_parameters: Optional[int] = None,
                **kwargs) -> keras.Model:
  """Builds a named architecture, optionally sized by parameter count.

  Args:
    architecture: one of `ARCHITECTURES`.
    input_shape: shape of one input image (H, W, C).
    num_parameters: if set, the width (VGG first-block channels, or hidden
      units of the fully connected net) is chosen so that the parameter count
      is as close as possible to this number. Not valid for 'mega_vgg' and
      'sum', whose width is fixed.
    **kwargs: builder arguments: num_blocks, num_layers, filter_size,
      pool_size for the VGG nets; num_layers for the fully connected net.

  Returns:
    The Keras model.

  Raises:
    AfterKernelError: unknown architecture or unsupported option.
  """
  errors.require(architecture in ARCHITECTURES,
                 f'unknown architecture {architecture!r}; choose one of '
                 f'{", ".join(ARCHITECTURES)}')
  if architecture == 'sum':
    errors.require(num_parameters is None and not kwargs,
                   'the sum net takes no size options (num_parameters, '
                   f'num_layers, ...); got {sorted(kwargs) or "num_parameters"}')
    return build_sum_net(input_shape)
  if architecture == 'fully_connected':
    kwargs = {k: v for k, v in kwargs.items() if k == 'num_layers'}
    builder = build_fully_connected
  else:
    builder = build_vgg
    if architecture == 'mega_vgg':
      errors.require(num_parameters is None,
                     'mega_vgg has a fixed width; use --nn_architecture=vgg '
                     'with --num_parameters to size a VGG-like net')
      return build_mega_vgg(input_shape, **kwargs)
  if num_parameters is not None:
    kwargs['width'] = width_for_num_parameters(builder, input_shape,
                                               num_parameters, **kwargs)
  return builder(input_shape, name=architecture, **kwargs)


def conjugate_model(model: keras.Model) -> keras.Model:
  """The model's penultimate representation h(x): the input of the last Dense.

  Args:
    model: a functional model built here (or any functional model whose last
      layer is the output Dense).

  Returns:
    A model sharing `model`'s layers and weights that outputs h(x), flattened
    to (batch, features).
  """
  head = model.layers[-1]
  # A single input stays a single tensor (not a one-element list), so calls
  # with a plain array match the model's input structure.
  inputs = model.inputs[0] if len(model.inputs) == 1 else model.inputs
  return keras.Model(inputs, head.input, name=f'{model.name}_conjugate')
