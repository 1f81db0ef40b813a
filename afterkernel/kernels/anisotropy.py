"""Neural anisotropy directions (NADs): the math (the study is studies.nads).

Ortiz-Jimenez, Modas, Moosavi-Dezfooli and Frossard (2020), "Neural
anisotropy directions" (NeurIPS). We define the NADs
of a network f(theta, x) at theta_0 as the right singular vectors v_1, v_2,
... (singular values s_1 >= s_2 >= ...) of the mixed derivative

    M = E_{x ~ N(0, I)} [ d^2 f(theta_0, x) / (d theta d x) ]   (P x D),

P parameters, D input dimensions; column d of M is
grad_theta E_x[d f / d x_d]. Why it ranks directions: for Gaussian x,
Stein's lemma gives M = E_x[grad_theta f(x) x^T], the cross-covariance
between the gradient features (the linearized model's features) and the
input, so ||M v||^2 = s_j^2 for v = v_j measures how much of the linear
function v . x the tangent features carry, and the target alignment
||E_x[sign(v . x) grad_theta f(x)]||^2 of the task along v has M v as its
linear part (E[sign(v . x) x] = sqrt(2 / pi) v).

(Ortiz-Jimenez et al. also estimate NADs from the covariance of input
gradients grad_x f over random initializations; the mixed derivative is the
variant the issue asks for, and it needs a single theta_0.)

How M is computed (`mixed_derivative`, `mixed_derivative_gram`): with
g(theta) = E_x[grad_x f(theta, x)] in R^D (an inner GradientTape over x,
averaged over the Gaussian sample), M^T = d g / d theta is a D x P Jacobian,
obtained by reverse-over-reverse differentiation (an outer persistent
GradientTape's `jacobian`, vectorized with pfor over chunks of
`dim_chunk` input dimensions, so the pfor never holds more than that many
backward passes). M is formed only when P * D <= `max_elements`; otherwise
the D x D Gram M^T M = sum_v M_v^T M_v is accumulated one network variable
v at a time (never more than P_v x D numbers), and the NADs are its
eigenvectors. `mixed_derivative_times` computes M u matrix-free
(forward-over-reverse: a ForwardAccumulator on x with tangent u inside a
GradientTape on theta), an independent check used by the tests.

Signs: singular vectors are defined up to sign; each v_j is flipped so that
its entry of largest magnitude is positive (the 'largest' convention of
`kernels.metrics.fix_signs`: NADs are input-space patterns whose entries
may sum to about 0, so the eigentask convention, sum >= 0, would be
unstable for them). When D > P, M has rank <= P and the NADs past the
rank span its null space (any orthonormal basis of it).
"""

import dataclasses
from typing import List, Sequence

import keras
import numpy as np
import tensorflow as tf

from afterkernel import distribute
from afterkernel import errors
from afterkernel.kernels import grams
from afterkernel.kernels import metrics as metric_lib
from afterkernel import models

# Largest P x D matrix M formed explicitly (float32: 256 MB); above it the
# D x D Gram is accumulated per variable instead.
DEFAULT_MAX_ELEMENTS = 2**26
# Input dimensions differentiated together by one pfor'd Jacobian: bounds
# the pfor's memory (dim_chunk backward passes over a batch) on 2 CPU cores.
DEFAULT_DIM_CHUNK = 64
# Gaussian inputs per batch of the inner gradient.
DEFAULT_BATCH_SIZE = 128


# ----------------------------------------------------------------------------
# The mixed derivative and its singular vectors.


def _input_dim(model: keras.Model) -> int:
  return int(np.prod(model.input_shape[1:]))


def _check_inputs(model: keras.Model, inputs: np.ndarray) -> np.ndarray:
  inputs = np.asarray(inputs)
  errors.require(inputs.ndim >= 2 and len(inputs) > 0 and
                 tuple(inputs.shape[1:]) == tuple(model.input_shape[1:]),
                 f'inputs must be (n, {", ".join(map(str, model.input_shape[1:]))}'
                 f'), got {inputs.shape}')
  errors.require(bool(np.all(np.isfinite(inputs))), 'inputs have NaN/inf')
  return inputs


def _mean_input_gradient(model, batch, total):
  """g = sum over the batch of grad_x f(theta, x), divided by `total`."""
  with tf.GradientTape() as inner:
    inner.watch(batch)
    outputs = model(batch, training=False)
    value = tf.reduce_sum(outputs)
  gradient = inner.gradient(value, batch)
  return tf.reshape(tf.reduce_sum(gradient, axis=0), [-1]) / total


def _jacobian_blocks(model: keras.Model, inputs: np.ndarray,
                     variables: Sequence[tf.Variable], dim_chunk: int,
                     batch_size: int) -> List[np.ndarray]:
  """d g / d v for each variable v: (D, size(v)) float64 arrays, summed over
  input batches (g = E_x grad_x f)."""
  dim = _input_dim(model)
  blocks = [np.zeros((dim, int(np.prod(v.shape))), np.float64)
            for v in variables]
  total = float(len(inputs))
  for start in range(0, len(inputs), batch_size):
    batch = tf.convert_to_tensor(inputs[start:start + batch_size],
                                 dtype=model.trainable_variables[0].dtype)
    # Jacobians with respect to the variables' values as tensors (works for
    # mirrored variables outside a replica context too).
    with distribute.variables_as_tensors(variables) as sources, \
        tf.GradientTape(persistent=True) as outer:
      outer.watch(sources)
      mean_gradient = _mean_input_gradient(model, batch, total)
      chunks = [mean_gradient[a:a + dim_chunk]
                for a in range(0, dim, dim_chunk)]
    for index, chunk in enumerate(chunks):
      jacobians = outer.jacobian(
          chunk, sources, experimental_use_pfor=True,
          unconnected_gradients=tf.UnconnectedGradients.ZERO)
      a = index * dim_chunk
      for block, jacobian in zip(blocks, jacobians):
        block[a:a + chunk.shape[0]] += np.reshape(
            jacobian.numpy(), (chunk.shape[0], -1))
    del outer
  return blocks


def mixed_derivative(model: keras.Model, inputs: np.ndarray,
                     dim_chunk: int = DEFAULT_DIM_CHUNK,
                     batch_size: int = DEFAULT_BATCH_SIZE,
                     max_elements: int = DEFAULT_MAX_ELEMENTS) -> np.ndarray:
  """M = mean over `inputs` of d^2 f / (d theta d x), as a (P, D) array.

  Rows follow the model's trainable variables in order, each flattened
  (the layout of `features.gradient_features`); columns are the flattened
  input dimensions.

  Args:
    model: a built Keras model with one scalar output.
    inputs: (n, ...) inputs of the model's input shape (e.g. Gaussian).
    dim_chunk: input dimensions per pfor'd Jacobian (memory bound).
    batch_size: inputs per inner-gradient batch.
    max_elements: refuse to form M when P * D exceeds this.

  Returns:
    (P, D) float64.

  Raises:
    AfterKernelError: bad inputs, or M larger than max_elements (use
      `mixed_derivative_gram` / `neural_anisotropy_directions`).
  """
  inputs = _check_inputs(model, inputs)
  num_parameters = models.count_parameters(model)
  dim = _input_dim(model)
  errors.require(num_parameters * dim <= max_elements,
                 f'M would have {num_parameters} x {dim} entries, more than '
                 f'max_elements={max_elements}; use mixed_derivative_gram')
  blocks = _jacobian_blocks(model, inputs, model.trainable_variables,
                            dim_chunk, batch_size)
  return np.concatenate(blocks, axis=1).T


def mixed_derivative_gram(model: keras.Model, inputs: np.ndarray,
                          dim_chunk: int = DEFAULT_DIM_CHUNK,
                          batch_size: int = DEFAULT_BATCH_SIZE,
                          max_elements: int = DEFAULT_MAX_ELEMENTS
                          ) -> np.ndarray:
  """M^T M (D x D, float64), accumulated one network variable at a time.

  M^T M = sum over variables v of M_v^T M_v, where M_v holds the rows of M
  of v's entries; only one (size(v), D) block exists at a time, so M itself
  is never formed. Costs one Jacobian pass per variable (vs one in total
  for `mixed_derivative`).

  Raises:
    AfterKernelError: bad inputs, or one variable's block larger than
      max_elements.
  """
  inputs = _check_inputs(model, inputs)
  dim = _input_dim(model)
  gram = np.zeros((dim, dim), np.float64)
  for variable in model.trainable_variables:
    size = int(np.prod(variable.shape))
    errors.require(size * dim <= max_elements,
                   f'variable {variable.name} alone gives a {size} x {dim} '
                   f'block of M, more than max_elements={max_elements}; use '
                   'fewer input dimensions or a smaller layer')
    (block,) = _jacobian_blocks(model, inputs, [variable], dim_chunk,
                                batch_size)
    gram += grams.gram(block, accumulate_float64=True)
  return gram


def mixed_derivative_times(model: keras.Model, inputs: np.ndarray,
                           direction: np.ndarray) -> np.ndarray:
  """M u (a P-vector), matrix-free, by forward-over-reverse differentiation.

  M u = grad_theta E_x[ (grad_x f(theta, x)) . u ]: a ForwardAccumulator on
  the inputs with tangent u (the same for every x) inside a GradientTape on
  theta. Independent of the Jacobian code of `mixed_derivative`.

  Args:
    model: a built Keras model with one scalar output.
    inputs: (n, ...) inputs.
    direction: u, D numbers (any shape with D entries).

  Returns:
    (P,) float64 in the row order of `mixed_derivative`.
  """
  inputs = _check_inputs(model, inputs)
  dtype = model.trainable_variables[0].dtype
  u = np.reshape(np.asarray(direction), (1,) + tuple(inputs.shape[1:]))
  errors.require(u.size == _input_dim(model),
                 f'direction has {u.size} entries, the input has '
                 f'{_input_dim(model)}')
  x = tf.convert_to_tensor(inputs, dtype=dtype)
  tangent = tf.convert_to_tensor(np.broadcast_to(u, inputs.shape), dtype=dtype)
  with distribute.variables_as_tensors(model.trainable_variables) as theta, \
      tf.GradientTape() as tape:
    tape.watch(theta)
    with tf.autodiff.ForwardAccumulator(x, tangent) as accumulator:
      outputs = model(x, training=False)
    directional = accumulator.jvp(outputs)
    value = tf.reduce_sum(directional) / len(inputs)
  gradients = tape.gradient(value, theta,
                            unconnected_gradients=tf.UnconnectedGradients.ZERO)
  return np.concatenate([np.reshape(g.numpy(), -1) for g in gradients]
                        ).astype(np.float64)


@dataclasses.dataclass(frozen=True)
class NeuralAnisotropyDirections:
  """The NADs of a network.

  Attributes:
    singular_values: (D,) s_1 >= s_2 >= ... of M (0 past its rank).
    directions: (D, D); row j-1 is v_j (unit norm, largest-magnitude entry
      positive), flattened like the input.
    input_shape: the shape of one input (reshape a row to see it as an image).
    method: 'svd' (M formed) or 'gram' (eigenvectors of M^T M).
  """
  singular_values: np.ndarray
  directions: np.ndarray
  input_shape: tuple
  method: str

  def direction(self, j: int) -> np.ndarray:
    """v_j (1-based) in the input's shape."""
    errors.require(1 <= j <= len(self.singular_values),
                   f'NAD index {j} is out of range 1..'
                   f'{len(self.singular_values)}')
    return self.directions[j - 1].reshape(self.input_shape)


def _fix_signs(rows: np.ndarray) -> np.ndarray:
  """Flips each row so that its entry of largest magnitude is positive."""
  return metric_lib.fix_signs(rows.T, 'largest').T


def directions_from_matrix(matrix: np.ndarray) -> tuple:
  """(singular values (D,), right singular vectors as rows (D, D)) of M."""
  m = np.asarray(matrix, np.float64)
  num_parameters, dim = m.shape
  _, singular, vt = np.linalg.svd(m, full_matrices=dim > num_parameters)
  values = np.zeros(dim)
  values[:len(singular)] = singular
  return values, _fix_signs(vt[:dim])


def directions_from_gram(gram: np.ndarray) -> tuple:
  """(singular values, right singular vectors as rows) from M^T M."""
  g = np.asarray(gram, np.float64)
  eigenvalues, vectors = np.linalg.eigh((g + g.T) / 2)
  order = np.argsort(eigenvalues)[::-1]
  return (np.sqrt(np.maximum(eigenvalues[order], 0.0)),
          _fix_signs(vectors[:, order].T))


def gaussian_inputs(input_shape: Sequence[int], num: int,
                    seed) -> np.ndarray:
  """num standard Gaussian inputs of `input_shape`, float32."""
  rng = np.random.default_rng(seed)
  return rng.standard_normal((num,) + tuple(input_shape)).astype(np.float32)


def neural_anisotropy_directions(model: keras.Model, num_samples: int = 256,
                                 seed: int = 0,
                                 dim_chunk: int = DEFAULT_DIM_CHUNK,
                                 batch_size: int = DEFAULT_BATCH_SIZE,
                                 max_elements: int = DEFAULT_MAX_ELEMENTS
                                 ) -> NeuralAnisotropyDirections:
  """The NADs at the model's current weights, E_x over x ~ N(0, I).

  Args:
    model: a built Keras model with one scalar output.
    num_samples: Gaussian inputs of the expectation E_x.
    seed: seed of those inputs.
    dim_chunk, batch_size: see `mixed_derivative`.
    max_elements: form M (then SVD) when P * D <= this, else accumulate
      M^T M per variable (then eigh; small singular values below ~1e-8 s_1
      are then lost to round-off).

  Returns:
    The `NeuralAnisotropyDirections`.
  """
  errors.require_positive(num_samples, 'num_samples')
  input_shape = tuple(model.input_shape[1:])
  inputs = gaussian_inputs(input_shape, num_samples, seed)
  if models.count_parameters(model) * _input_dim(model) <= max_elements:
    values, directions = directions_from_matrix(mixed_derivative(
        model, inputs, dim_chunk, batch_size, max_elements))
    method = 'svd'
  else:
    values, directions = directions_from_gram(mixed_derivative_gram(
        model, inputs, dim_chunk, batch_size, max_elements))
    method = 'gram'
  return NeuralAnisotropyDirections(values, directions, input_shape, method)
