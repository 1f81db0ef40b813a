"""The first-order Taylor model of a network, as a trainable Keras model.

For a network f(theta, x) and base weights theta_0 (its initialization or any
checkpoint), the linearized network is

    f_lin(theta, x) = f(theta_0, x) + J(theta_0, x) (theta - theta_0),

with J(theta_0, x) = d f(theta_0, x) / d theta (Lee et al. 2019, "Wide neural
networks of any depth evolve as linear models under gradient descent"; used
by Ortiz-Jimenez et al. 2021 and Samarin et al. 2020 to compare a network
with its kernel regime). Training f_lin by gradient descent is kernel
regression with the fixed empirical NTK at theta_0.

`LinearizedModel` holds the network frozen at theta_0 and one trainable
variable per network variable for delta = theta - theta_0 (initialized to 0,
so f_lin = f at the start). Its forward pass runs the network once inside a
`tf.autodiff.ForwardAccumulator` whose tangents are the deltas: the JVP
J(theta_0, x) delta costs about two forward passes and never forms J.
Gradients with respect to delta flow back through the JVP ops, so
`compile`/`fit` work as for any Keras model; the optimizer, its momentum and
weight decay act on delta (Keras' decoupled weight decay therefore pulls theta
towards theta_0, not towards 0).

With `unbiased=True` the model drops f(theta_0, x), computing only
J(theta_0, x) (theta - theta_0): the "centred" linearization whose output is
0 at theta_0, so the random initial function does not bias the fit.
"""

import sys
import types
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf

from afterkernel import distribute
from afterkernel import errors


class TaylorModel(keras.Model):
  """A Taylor model of a frozen network in delta = theta - theta_0.

  The shared part of the first- and second-order models (`LinearizedModel`,
  `taylor.QuadraticModel`): the network frozen at theta_0, one trainable
  delta per expanded network variable, and saving / loading. Subclasses
  define `call`.

  Attributes:
    network: the network, frozen at theta_0 (its variables are theta_0).
    unbiased: whether f(theta_0, x) is dropped from the output.
    deltas: the trainable theta - theta_0, one per expanded network
      variable, in `network`'s trainable-variable order.
  """

  def __init__(self, network: keras.Model, unbiased: bool = False,
               base_weight_indices: Optional[List[int]] = None, **kwargs):
    """Freezes `network` at its current weights theta_0.

    Args:
      network: a built Keras model.
      unbiased: drop f(theta_0, x) from the output.
      base_weight_indices: positions in `network.weights` of the variables
        theta that get a delta; None means the network's trainable
        variables. Saved in the config, because a reloaded network comes
        back frozen (its trainable variables are then empty).
      **kwargs: keras.Model arguments (name, dtype, ...).

    Raises:
      AfterKernelError: a network without trainable variables, or indices
        that do not name its weights.
    """
    super().__init__(**kwargs)
    if base_weight_indices is None:
      errors.require(bool(network.trainable_variables),
                     f'network {network.name!r} has no trainable variables; '
                     'build it (call it on a batch) before expanding it')
      trainable = {id(v) for v in network.trainable_variables}
      base_weight_indices = [i for i, v in enumerate(network.weights)
                             if id(v) in trainable]
    weights = network.weights
    errors.require(
        bool(base_weight_indices) and
        all(0 <= i < len(weights) for i in base_weight_indices),
        f'base_weight_indices {base_weight_indices} do not index the '
        f'{len(weights)} weights of network {network.name!r}')
    self._base_weight_indices = [int(i) for i in base_weight_indices]
    # Set past Keras' attribute tracking: these variables belong to (and are
    # saved with) `network`; tracked here too, they would be saved twice and
    # reload in a different order than the deltas.
    object.__setattr__(self, '_base_variables',
                       [weights[i] for i in self._base_weight_indices])
    network.trainable = False
    self.network = network
    self.unbiased = bool(unbiased)
    self.deltas = [
        self.add_weight(shape=tuple(v.shape), initializer='zeros',
                        dtype=v.dtype, trainable=True,
                        name=f'delta_{i}_{v.name.replace("/", "_")}')
        for i, v in enumerate(self._base_variables)
    ]

  def compute_output_shape(self, input_shape):
    return self.network.compute_output_shape(input_shape)

  def base_parameters(self) -> List[np.ndarray]:
    """theta_0, one array per expanded network variable."""
    return [keras.ops.convert_to_numpy(v) for v in self._base_variables]

  def parameters(self) -> List[np.ndarray]:
    """theta = theta_0 + delta, one array per expanded network variable."""
    return [keras.ops.convert_to_numpy(v) + keras.ops.convert_to_numpy(d)
            for v, d in zip(self._base_variables, self.deltas)]

  def reset(self) -> None:
    """Sets delta = 0 (theta = theta_0)."""
    for delta in self.deltas:
      delta.assign(np.zeros(delta.shape, delta.dtype))

  def get_config(self):
    config = super().get_config()
    config.update(network=keras.saving.serialize_keras_object(self.network),
                  unbiased=self.unbiased,
                  base_weight_indices=list(self._base_weight_indices))
    return config

  @classmethod
  def from_config(cls, config):
    config = dict(config)
    network = keras.saving.deserialize_keras_object(config.pop('network'))
    return cls(network, **config)


@keras.saving.register_keras_serializable(package='afterkernel')
class LinearizedModel(TaylorModel):
  """f_lin(x) = f(theta_0, x) + J(theta_0, x) delta, delta = theta - theta_0.

  Build it with `linearize`, which copies the network first; constructing a
  `LinearizedModel` directly freezes the given network in place. See
  `TaylorModel` for the attributes.
  """

  def call(self, inputs, training=None):
    del training  # The network runs in inference mode at theta_0.
    tangents = [keras.ops.convert_to_tensor(d) for d in self.deltas]
    # theta_0 read as tensors: forward mode on the variables themselves
    # fails for mirrored variables outside a replica context.
    with distribute.variables_as_tensors(self._base_variables) as primals:
      with tf.autodiff.ForwardAccumulator(primals, tangents) as accumulator:
        outputs = self.network(inputs, training=False)
    jvp = accumulator.jvp(outputs,
                          unconnected_gradients=tf.UnconnectedGradients.ZERO)
    if self.unbiased:
      return jvp
    return tf.stop_gradient(outputs) + jvp


def expansion_base(network: keras.Model,
                   base_weights: Optional[List[np.ndarray]] = None,
                   copy: bool = True) -> keras.Model:
  """The network to expand, holding theta_0 (`linearize`, `taylor_expand`).

  Args:
    network: a built Keras model.
    base_weights: theta_0 as `network.get_weights()`-style arrays; None
      means the network's current weights.
    copy: return a copy (`keras.models.clone_model`) so that `network`
      stays trainable and unchanged; else `network` itself, set to theta_0.

  Returns:
    The network (or its copy) with weights theta_0.

  Raises:
    AfterKernelError: unbuilt network, a copy that fails, or base_weights
      that do not match the network's weights.
  """
  errors.require(network.built and bool(network.weights),
                 f'network {network.name!r} is not built; call it on a batch '
                 'first')
  weights = network.get_weights() if base_weights is None else list(
      base_weights)
  if copy:
    try:
      base = keras.models.clone_model(network)
    except Exception as e:  # pylint: disable=broad-except
      # Keras raises several types for models it cannot rebuild.
      raise errors.AfterKernelError(
          f'cannot copy {type(network).__name__} {network.name!r} ({e}); '
          'pass copy=False to expand it in place') from None
    errors.require(base.built and len(base.weights) == len(network.weights),
                   f'the copy of {network.name!r} is not built like the '
                   'original; pass copy=False to expand it in place')
  else:
    base = network
  errors.require(len(weights) == len(base.weights),
                 f'base_weights has {len(weights)} arrays but the network has '
                 f'{len(base.weights)} weights')
  base.set_weights(weights)
  return base


def linearize(network: keras.Model,
              base_weights: Optional[List[np.ndarray]] = None,
              unbiased: bool = False,
              copy: bool = True,
              name: Optional[str] = None) -> LinearizedModel:
  """The linearization of `network` around theta_0, as a trainable model.

  Args:
    network: a built Keras model (any number of outputs).
    base_weights: theta_0 as `network.get_weights()`-style arrays (all
      weights, trainable and not, e.g. a checkpoint); None means the
      network's current weights.
    unbiased: drop f(theta_0, x): f_lin = J(theta_0, x)(theta - theta_0).
    copy: work on a copy of `network` (`keras.models.clone_model`), so the
      caller's network stays trainable and unchanged. Sequential and
      functional models are always copyable; for a subclassed model Keras
      rebuilds it from `get_config()`, and if that fails, pass copy=False
      (the network is then frozen in place and becomes theta_0).
    name: Keras name of the result; default '<network>_linearized'.

  Returns:
    A `LinearizedModel` with delta = 0, i.e. equal to the network at theta_0.

  Raises:
    AfterKernelError: unbuilt network, or copy failed for a subclassed model.
  """
  base = expansion_base(network, base_weights, copy)
  return LinearizedModel(base, unbiased=unbiased,
                         name=name or f'{network.name}_linearized')


class _CallableModule(types.ModuleType):
  """This module, callable: `ak.linearize(network, ...)` is `linearize`.

  neural-tangents users write `nt.linearize(f, params)`; here the top-level
  name `afterkernel.linearize` is this module (0.1.0 code imports it and
  reads `LinearizedModel`, `expansion_base`, ... from it), so calling the
  module calls the function instead of raising a TypeError.
  """

  def __call__(self, *args, **kwargs) -> LinearizedModel:
    return linearize(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
