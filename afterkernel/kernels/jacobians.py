"""Old names (0.1.0) of the multi-output part of the gradient engine.

Per-example Jacobians J(x) = d f(x) / d theta (L x P) of a model with L
outputs come from the one engine, `afterkernel.kernels.features`
(`gradient_features(..., output_index=l)`, `per_example_jacobians`); their
Grams (traced over outputs or full) from `afterkernel.kernels.grams` and,
from a model, `afterkernel.kernels.empirical.model_gram`. The names below
keep working; they default to method 'vectorized', as in 0.1.0, so they give
the numbers they gave then.
"""

from typing import Iterator, Optional, Sequence

import keras
import numpy as np

from afterkernel.kernels import empirical
from afterkernel.kernels import features
# The engine's names under their 0.1.0 names in this module.
from afterkernel.kernels.features import count_parameters
from afterkernel.kernels.features import DEFAULT_BATCH_SIZE
from afterkernel.kernels.features import FEATURE_METHODS as JACOBIAN_METHODS
from afterkernel.kernels.features import num_outputs
from afterkernel.kernels.grams import DEFAULT_KERNEL_KIND
from afterkernel.kernels.grams import gram_from_jacobians
from afterkernel.kernels.grams import KERNEL_KINDS

# 0.1.0's default for these names (the golden records use it).
DEFAULT_JACOBIAN_METHOD = 'vectorized'


def iter_output_gradient_blocks(model: keras.Model,
                                inputs: np.ndarray,
                                output_index: int,
                                batch_size: int = DEFAULT_BATCH_SIZE,
                                method: str = DEFAULT_JACOBIAN_METHOD
                                ) -> Iterator[np.ndarray]:
  """`features.iter_feature_blocks(..., output_index=l)`."""
  return features.iter_feature_blocks(model, inputs, batch_size, method,
                                      output_index=output_index)


def output_gradients(model: keras.Model,
                     inputs: np.ndarray,
                     output_index: int,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     method: str = DEFAULT_JACOBIAN_METHOD) -> np.ndarray:
  """Row l of every per-example Jacobian, (n, P) float32:
  `features.gradient_features(..., output_index=l)`."""
  return features.gradient_features(model, inputs, batch_size, method,
                                    output_index=output_index)


def per_example_jacobians(model: keras.Model,
                          inputs: np.ndarray,
                          batch_size: int = DEFAULT_BATCH_SIZE,
                          method: str = DEFAULT_JACOBIAN_METHOD,
                          output_indices: Optional[Sequence[int]] = None
                          ) -> np.ndarray:
  """(n, L, P) Jacobians: `features.per_example_jacobians`."""
  return features.per_example_jacobians(model, inputs, batch_size, method,
                                        output_indices)


def jacobian_gram(model: keras.Model,
                  inputs_a: np.ndarray,
                  inputs_b: Optional[np.ndarray] = None,
                  kind: str = DEFAULT_KERNEL_KIND,
                  batch_size: int = DEFAULT_BATCH_SIZE,
                  method: str = DEFAULT_JACOBIAN_METHOD) -> np.ndarray:
  """Empirical NTK Gram, traced or full: `empirical.model_gram`."""
  return empirical.model_gram(model, inputs_a, inputs_b, kind, batch_size,
                              method)
