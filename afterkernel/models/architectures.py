"""The linearization papers' nets by their 0.1.0 module path.

LeNet-5, AlexNet and the Myrtle CNNs live in `models.cnns`, their NTK
layers in `models.ntk`; this module keeps the 0.1.0 names
(`architectures.build_architecture`, `architectures.NTKDense`, ...) so that
existing callers work unchanged. `build_architecture` goes through the one
registry, `models.build`. New code: `models.build('lenet5', ...)`.
"""

from typing import Sequence

import keras

from afterkernel import errors
from afterkernel import models
from afterkernel.models import cnns
from afterkernel.models import ntk

ARCHITECTURES = cnns.ARCHITECTURES
PARAMETERIZATIONS = ntk.PARAMETERIZATIONS
DEFAULT_PARAMETERIZATION = ntk.DEFAULT_PARAMETERIZATION
DEFAULT_NTK_WEIGHT_STD = ntk.DEFAULT_NTK_WEIGHT_STD
LENET5_CHANNELS = cnns.LENET5_CHANNELS
LENET5_DENSE = cnns.LENET5_DENSE
ALEXNET_CHANNELS = cnns.ALEXNET_CHANNELS
ALEXNET_DENSE = cnns.ALEXNET_DENSE
MYRTLE_WIDTH = cnns.MYRTLE_WIDTH
MYRTLE_LAYERS = cnns.MYRTLE_LAYERS
NTKDense = ntk.NTKDense
NTKConv2D = ntk.NTKConv2D
scaled_width = cnns.scaled_width
build_lenet5 = cnns.build_lenet5
build_alexnet = cnns.build_alexnet
build_myrtle = cnns.build_myrtle


def build_architecture(architecture: str,
                       input_shape: Sequence[int],
                       num_outputs: int = 10,
                       width_multiplier: float = 1.0,
                       parameterization: str = DEFAULT_PARAMETERIZATION,
                       weight_std: float = DEFAULT_NTK_WEIGHT_STD
                       ) -> keras.Model:
  """Builds one of `ARCHITECTURES` by name (`models.build` restricted to them).

  Args:
    architecture: 'lenet5', 'alexnet', 'myrtle5', 'myrtle7' or 'myrtle10'.
    input_shape: (H, W, C).
    num_outputs: units of the last layer.
    width_multiplier: k (see `models.cnns`).
    parameterization: 'standard' or 'ntk'.
    weight_std: sigma_w of the NTK parameterization.

  Returns:
    The functional model.

  Raises:
    AfterKernelError: unknown architecture or bad sizes.
  """
  errors.require_choice(architecture, ARCHITECTURES, 'architecture')
  return models.build(architecture, input_shape, num_outputs=num_outputs,
                      width_multiplier=width_multiplier,
                      parameterization=parameterization,
                      weight_std=weight_std)
