"""The model registry: every network of the library, by name.

One public entry builds any of them, `build(name, input_shape, **options)`;
`REGISTRY` maps each name to its `Architecture` (builder, closed-form
parameter count, one-line summary) and `describe(name)` prints it. Every net
is a functional `keras.Model` whose last layer is a dense layer named
`LOGIT_LAYER_NAME` whose input is the conjugate representation h(x)
(`conjugate_model`).

Names (`NAMES`), with the module that builds them and the exact parameter
count of a reference configuration (`parameter_count` gives the closed form of
any configuration; tests check both against the built nets):
  * the after-kernel paper (Long 2021), `paper`, one logit:
      'vgg' (45,527 on 28x28x1), 'mega_vgg' (905,591 on 28x28x1),
      'fully_connected' (100,675 on 28x28x1), 'sum' (49 on any input).
  * the linearization papers, `cnns`, `num_outputs` logits, width multiplier
    k and parameterization 'standard' / 'ntk': 'lenet5' (61,706 on
    28x28x1), 'alexnet' (1,756,426 on 32x32x3), 'myrtle5' (113,226 on
    32x32x3), 'myrtle7' (187,082), 'myrtle10' (297,866); and 'cnn', a scalar
    global-pooling CNN of integer width (673 on 28x28x1 with width 8, two
    convolutions).
  * the NTK parameterization with Gaussian biases, `ntk`:
    'ntk_fully_connected' (width and depth required), whose infinite-width
    NTK / NNGP are `afterkernel.infinite_ntk`.

`ARCHITECTURES` stays the after-kernel paper's four nets that `build_model`
sizes by parameter count (the 0.1.0 API; run_after_kernel and the sweeps
offer exactly these), and `architectures.build_architecture` the
linearization nets; both go through `build`. Models know nothing of kernels:
nothing here imports `kernels`, `infinite_ntk` or a study.

To add a network: write its builder and its closed-form parameter count
beside its siblings (or in a new module) as `build_<stem>` and
`<stem>_parameters`, add a row to `_FAMILIES` and its summary to
`_SUMMARIES`, and a count test to tests/models_test.py.
"""

import dataclasses
import functools
import inspect
import types
from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

import keras

from afterkernel import errors
from afterkernel.models import cnns
from afterkernel.models import common
from afterkernel.models import ntk
from afterkernel.models import paper

# 0.1.0 names, kept at the package top level.
LOGIT_LAYER_NAME = common.LOGIT_LAYER_NAME
VGG_WIDTH = paper.VGG_WIDTH
MEGA_VGG_WIDTH = paper.MEGA_VGG_WIDTH
FC_NUM_LAYERS = paper.FC_NUM_LAYERS
FC_WIDTH = paper.FC_WIDTH
SUM_NET_HIDDEN = paper.SUM_NET_HIDDEN
SumOfInputs = paper.SumOfInputs
build_vgg = paper.build_vgg
build_mega_vgg = paper.build_mega_vgg
build_fully_connected = paper.build_fully_connected
build_sum_net = paper.build_sum_net
count_parameters = common.count_parameters
width_for_num_parameters = common.width_for_num_parameters
conjugate_model = common.conjugate_model
layer_widths = common.layer_widths
# The original script's names and sizing (run_ak_experiment.py).
ORIGINAL_ARCHITECTURES = paper.ORIGINAL_ARCHITECTURES
OriginalNet = paper.OriginalNet
original_width = paper.original_width
original_layers_per_block = paper.original_layers_per_block

# The after-kernel paper's nets, the names `build_model` accepts.
ARCHITECTURES = ('vgg', 'mega_vgg', 'fully_connected', 'sum')


@dataclasses.dataclass(frozen=True)
class Architecture:
  """One registered network.

  Attributes:
    name: the registry name (also the Keras model name by default).
    builder: `builder(input_shape, **options)` -> keras.Model.
    parameters: `parameters(input_shape, **options)` -> the exact number of
      trainable scalars of that build, in closed form (no Keras model made).
    summary: what the net is, in one line.
    reference_shape: the input shape of the count quoted by `describe`.
    reference_options: options of that count (the required ones at least).
    sizable: whether `build(..., num_parameters=N)` may choose the integer
      `width` whose count is closest to N.
  """
  name: str
  builder: Callable[..., keras.Model]
  parameters: Callable[..., int]
  summary: str
  reference_shape: Tuple[int, ...]
  reference_options: Mapping[str, Any] = dataclasses.field(
      default_factory=dict)
  sizable: bool = False

  @property
  def options(self) -> Tuple[str, ...]:
    """Option names `build` accepts: the count's arguments, then 'name'."""
    return tuple(_signature(self.parameters)) + ('name',)

  @property
  def required(self) -> Tuple[str, ...]:
    """Options without a default (they must be given)."""
    return tuple(k for k, p in _signature(self.parameters).items()
                 if p.default is inspect.Parameter.empty)


def _signature(fn) -> dict:
  """The keyword parameters of `fn` after input_shape, by name."""
  params = dict(inspect.signature(fn).parameters)
  params.pop('input_shape')
  return params


def _myrtle(depth: int) -> Architecture:
  name = f'myrtle{depth}'
  return Architecture(
      name, functools.partial(cnns.build_myrtle, depth=depth, name=name),
      _fixed(cnns.myrtle_parameters, depth=depth),
      f'Myrtle CNN of depth {depth}: 3x3 convolutions of width 64k at three '
      'scales, global average pooling, Dense(num_outputs)', (32, 32, 3))


def _fixed(fn, **fixed):
  """`fn` with some keyword arguments fixed and hidden from its signature."""
  wrapped = functools.partial(fn, **fixed)
  signature = inspect.signature(fn)
  wrapped.__signature__ = signature.replace(parameters=[
      p for k, p in signature.parameters.items() if k not in fixed])
  return wrapped


_MNIST_SHAPE = (28, 28, 1)
_CIFAR_SHAPE = (32, 32, 3)
# One row a family, in registry order: name, module, the stem of its builder
# `build_<stem>` and of its closed-form count `<stem>_parameters` in that
# module, the reference input shape, whether `num_parameters` may size it.
# The Myrtle CNNs (one entry a depth, `_myrtle`) follow AlexNet.
_FAMILIES = (
    ('vgg', paper, 'vgg', _MNIST_SHAPE, True),
    ('mega_vgg', paper, 'mega_vgg', _MNIST_SHAPE, False),
    ('fully_connected', paper, 'fully_connected', _MNIST_SHAPE, True),
    ('sum', paper, 'sum_net', _MNIST_SHAPE, False),
    ('cnn', cnns, 'global_pool_cnn', _MNIST_SHAPE, True),
    ('lenet5', cnns, 'lenet5', _MNIST_SHAPE, False),
    ('alexnet', cnns, 'alexnet', _CIFAR_SHAPE, False),
    ('ntk_fully_connected', ntk, 'ntk_fully_connected', _MNIST_SHAPE, False),
)
_SUMMARIES = {
    'vgg': 'VGG-like: blocks of 3x3 convolutions (width, 2 width, ...) with '
           'max-pooling, Flatten, Dense(1)',
    'mega_vgg': 'the paper\'s mega-VGG: the VGG-like net with 119 then 238 '
                'channels',
    'fully_connected': 'Flatten, num_layers x Dense(width, relu), Dense(1) '
                       '(paper: 4 x 94)',
    'sum': 'sum of the input values, Dense(16, relu), Dense(1): exactly '
           'invariant to pixel permutations',
    'cnn': 'num_layers x Conv2D(width, 3x3, same, relu), global average '
           'pooling, Dense(1)',
    'lenet5': 'LeNet-5 with ReLU and max-pooling, widths scaled by k',
    'alexnet': 'small AlexNet (Zhang et al. 2017) without dropout or LRN, '
               'widths scaled by k',
    'ntk_fully_connected': 'Flatten, depth x NTKBiasDense(width, relu), '
                           'NTKBiasDense(1): the family of infinite_ntk\'s '
                           'closed-form kernels',
}
# The reference configuration's options where some are required.
_REFERENCE_OPTIONS = {'ntk_fully_connected': {'width': 512, 'depth': 2}}


def _family(name: str, module: types.ModuleType, stem: str,
            reference_shape: Tuple[int, ...], sizable: bool) -> Architecture:
  """The entry of `module.build_<stem>`, counted by `<stem>_parameters`."""
  return Architecture(
      name, getattr(module, f'build_{stem}'),
      getattr(module, f'{stem}_parameters'), _SUMMARIES[name],
      reference_shape,
      types.MappingProxyType(_REFERENCE_OPTIONS.get(name, {})), sizable)


def _entries():
  """Every `Architecture`, in registry order (`NAMES` and messages list it)."""
  for row in _FAMILIES:
    yield _family(*row)
    if row[0] == 'alexnet':
      yield from (_myrtle(depth) for depth in (5, 7, 10))


_ARCHITECTURE_LIST = tuple(_entries())
REGISTRY: Mapping[str, Architecture] = types.MappingProxyType(
    {spec.name: spec for spec in _ARCHITECTURE_LIST})
NAMES = tuple(REGISTRY)


def _spec(name: str) -> Architecture:
  errors.require(name in REGISTRY,
                 f'unknown architecture {name!r}; choose one of '
                 f'{", ".join(NAMES)}')
  return REGISTRY[name]


def _checked_options(spec: Architecture, options: Mapping[str, Any],
                     sized: bool) -> None:
  unknown = sorted(set(options) - set(spec.options))
  errors.require(not unknown,
                 f'{spec.name} takes no option(s) {", ".join(unknown)}; its '
                 f'options are {", ".join(spec.options)}')
  missing = [k for k in spec.required
             if k not in options and not (sized and k == 'width')]
  errors.require(not missing,
                 f'{spec.name} needs option(s) {", ".join(missing)}')


def build(architecture: str,
          input_shape: Sequence[int],
          num_parameters: Optional[int] = None,
          **options) -> keras.Model:
  """Builds the registered network `architecture` for `input_shape` inputs.

  Args:
    architecture: one of `NAMES`.
    input_shape: shape of one input (without the batch axis), e.g. (28, 28,
      1) for MNIST images or (30,) for vectors.
    num_parameters: for the sizable nets ('vgg', 'fully_connected', 'cnn'),
      choose the integer `width` whose parameter count is closest to this
      (`width_for_num_parameters`); then `width` must not be given.
    **options: the builder's arguments (`describe(name)` lists them with
      their defaults), e.g. width and num_layers, or num_outputs,
      width_multiplier and parameterization; 'name' sets the Keras name
      (default: the architecture's name).

  Returns:
    The freshly initialized functional model (weights drawn from Keras' and
    Python's global seeds, as its builder does).

  Raises:
    AfterKernelError: unknown name, unknown or missing options, an option
      the net does not support, or bad sizes.
  """
  spec = _spec(architecture)
  _checked_options(spec, options, num_parameters is not None)
  if num_parameters is not None:
    errors.require(spec.sizable,
                   f'{architecture} cannot be sized by num_parameters; the '
                   'sizable nets are ' + ', '.join(
                       s.name for s in _ARCHITECTURE_LIST if s.sizable))
    errors.require('width' not in options,
                   f'give {architecture} either width or num_parameters, '
                   'not both')
    search = {k: v for k, v in options.items() if k != 'name'}
    options = dict(options, width=common.width_for_num_parameters(
        spec.builder, input_shape, num_parameters, **search))
  return spec.builder(input_shape, **options)


def parameter_count(architecture: str, input_shape: Sequence[int],
                    **options) -> int:
  """Exact number of trainable scalars that `build` would give.

  `parameter_count(architecture, input_shape, **options)` equals
  `count_parameters(build(architecture, input_shape, **options))`,
  computed in closed form (the formulas are in each module's docstring), so
  no network is built and no random numbers are drawn.

  Raises:
    AfterKernelError: as `build` for bad names, options or sizes.
  """
  spec = _spec(architecture)
  _checked_options(spec, options, sized=False)
  return spec.parameters(input_shape,
                         **{k: v for k, v in options.items() if k != 'name'})


def describe(name: str) -> str:
  """A few lines on network `name`: what it is, its options, its size.

  Example: `print(models.describe('lenet5'))`.
  """
  spec = _spec(name)
  signature = _signature(spec.parameters)
  options = ', '.join(
      k + (' (required)' if p.default is inspect.Parameter.empty
           else f'={p.default!r}') for k, p in signature.items())
  reference = dict(spec.reference_options)
  count = spec.parameters(spec.reference_shape, **reference)
  config = ''.join(f', {k}={v!r}' for k, v in reference.items())
  sizing = ('; sizable by num_parameters (chooses width)' if spec.sizable
            else '')
  return (f'{name}: {spec.summary}\n'
          f'  options: {options}, name{sizing}\n'
          f'  parameters: {count:,} for input shape '
          f'{tuple(spec.reference_shape)}{config} and default options')


def build_model(architecture: str,
                input_shape: Sequence[int],
                num_parameters: Optional[int] = None,
                **kwargs) -> keras.Model:
  """Builds one of the paper's nets (`ARCHITECTURES`), as in 0.1.0.

  The after-kernel experiments' entry: `build` restricted to the paper's
  four nets, with their 0.1.0 argument handling (the fully connected net
  ignores VGG-only options; the Keras model is named after the
  architecture).

  Args:
    architecture: one of `ARCHITECTURES`.
    input_shape: shape of one input image (H, W, C).
    num_parameters: if set, the width (VGG first-block channels, or hidden
      units of the fully connected net) is chosen so that the parameter count
      is as close as possible to this number. Not valid for 'mega_vgg' and
      'sum', whose width is fixed.
    **kwargs: builder arguments: num_blocks, num_layers, filter_size,
      pool_size (and width, for 'vgg') for the VGG nets; num_layers and
      width for the fully connected net; hidden for the sum net.

  Returns:
    The Keras model.

  Raises:
    AfterKernelError: unknown architecture or unsupported option.
  """
  errors.require_choice(architecture, ARCHITECTURES, 'architecture')
  if architecture == 'sum':
    errors.require(num_parameters is None and set(kwargs) <= {'hidden'},
                   'the sum net takes no size options but hidden '
                   '(num_parameters, num_layers, ...); got '
                   f'{sorted(set(kwargs) - {"hidden"}) or "num_parameters"}')
  elif architecture == 'fully_connected':
    kwargs = {k: v for k, v in kwargs.items() if k in ('num_layers', 'width')}
  elif architecture == 'mega_vgg':
    errors.require(num_parameters is None,
                   'mega_vgg has a fixed width; use --nn_architecture=vgg '
                   'with --num_parameters to size a VGG-like net')
  return build(architecture, input_shape, num_parameters,
               name=architecture, **kwargs)
