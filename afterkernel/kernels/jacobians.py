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
from afterkernel.kernels import grams

JACOBIAN_METHODS = features.FEATURE_METHODS
# 0.1.0's default for these names (the golden records use it).
DEFAULT_JACOBIAN_METHOD = 'vectorized'
KERNEL_KINDS = grams.KERNEL_KINDS
DEFAULT_KERNEL_KIND = grams.DEFAULT_KERNEL_KIND
DEFAULT_BATCH_SIZE = features.DEFAULT_BATCH_SIZE
num_outputs = features.num_outputs
count_parameters = features.count_parameters
gram_from_jacobians = grams.gram_from_jacobians


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
