"""What every network of the registry shares: the logit head, sizes, counts.

Every builder of `afterkernel.models` returns a functional `keras.Model`
whose last layer, named `LOGIT_LAYER_NAME`, is a dense layer; its input is
the network's *conjugate* (penultimate) representation h(x), used for the
conjugate projection K_c(u, v) = h(u).h(v) (`conjugate_model`). The number of
trainable scalars (`count_parameters`) is the dimension of the gradient
features phi(x) = df/dtheta.
"""

from typing import Callable, List, Sequence

import keras
import numpy as np

from afterkernel import errors

LOGIT_LAYER_NAME = 'logit'
# Upper end of the width search when sizing a net by parameter count.
MAX_SEARCH_WIDTH = 4096
# A net sized by num_parameters must have this close a count (relative), or
# the record would describe a network that was not built.
PARAMETER_COUNT_TOLERANCE = 0.05


def check_positive(**values: int) -> None:
  """Raises AfterKernelError unless every value is a positive integer."""
  for name, value in values.items():
    errors.require(
        isinstance(value, (int, np.integer)) and value > 0,
        f'{name} must be a positive integer, got {value!r}')


def count_parameters(model: keras.Model) -> int:
  """Number of trainable scalars, i.e. the dimension of the gradient features."""
  return int(sum(np.prod(v.shape) for v in model.trainable_variables))


def layer_widths(model: keras.Model) -> List[int]:
  """Output units / channels of each Dense and convolution layer, in order.

  E.g. [26, 26, 52, 52, 1] for the paper's VGG-like net: what a run records
  beside its parameter count, so that a record says which net it measured.
  """
  widths = []
  for layer in model.layers:
    size = getattr(layer, 'units', None) or getattr(layer, 'filters', None)
    if size is not None:
      widths.append(int(size))
  return widths


def width_for_num_parameters(builder: Callable[..., keras.Model],
                             input_shape: Sequence[int],
                             num_parameters: int, **kwargs) -> int:
  """The width whose parameter count is closest to `num_parameters`.

  Parameter counts grow monotonically with width, so a bisection over widths
  finds the crossing; the closer of its two neighbours wins (ties go to the
  smaller net). This is how the paper sized nets of ~60K/80K/100K parameters.
  The candidate nets are built (not counted in closed form) as in 0.1.0:
  each build draws initializer seeds from Python's global generator, so the
  final net's weights for a given seed depend on this exact sequence.

  Args:
    builder: `build_vgg` or `build_fully_connected` (anything taking `width`).
    input_shape: shape of one input.
    num_parameters: target number of trainable parameters.
    **kwargs: further builder arguments (num_blocks, num_layers, ...).

  Returns:
    The best width (>= 1).

  Raises:
    AfterKernelError: no width comes within `PARAMETER_COUNT_TOLERANCE` of
      `num_parameters` (the message names the nearest reachable counts).
  """
  check_positive(num_parameters=num_parameters)

  def count(width: int) -> int:
    return count_parameters(builder(input_shape, width=width, **kwargs))

  low, high = 1, 1
  while count(high) < num_parameters and high < MAX_SEARCH_WIDTH:
    low, high = high, min(2 * high, MAX_SEARCH_WIDTH)
  while high - low > 1:
    middle = (low + high) // 2
    if count(middle) < num_parameters:
      low = middle
    else:
      high = middle
  # Each candidate is built exactly once here, in this order, as in 0.1.0
  # (every build moves the global seed generator; see above).
  counts = {}
  for width in (low, high):
    counts.setdefault(width, count(width))
  best = min((low, high), key=lambda w: (abs(counts[w] - num_parameters), w))
  errors.require(
      abs(counts[best] - num_parameters) <= (
          PARAMETER_COUNT_TOLERANCE * num_parameters),
      f'num_parameters={num_parameters} cannot be met within '
      f'{PARAMETER_COUNT_TOLERANCE:.0%} by this network: the nearest '
      f'reachable counts are {counts[low]} (width {low}) and {counts[high]} '
      f'(width {high})')
  return best


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


def dense_parameters(fan_in: int, units: int) -> int:
  """Kernel and bias of a dense layer: (fan_in + 1) units."""
  return (int(fan_in) + 1) * int(units)


def conv_parameters(kernel_size: int, in_channels: int, filters: int) -> int:
  """Kernel and bias of a square convolution: (k^2 c_in + 1) c_out."""
  return (int(kernel_size)**2 * int(in_channels) + 1) * int(filters)
