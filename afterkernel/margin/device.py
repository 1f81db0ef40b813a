"""Where the solvers' Gram products run: numpy on the CPU or TensorFlow.

The solvers touch the n x n Gram in two ways: full Gram-vector products
(the exact solver's gradient resyncs and certificate checks, every step of
the JST solvers 'dual' / 'stochastic', `certificate.certificate`) and, in
the exact solver, one Gram row per coordinate step. Only the first kind is
worth a device: a row step is O(n) work whose next choice depends on the
last (inherently sequential), so the coordinate loop stays compiled on the
CPU (numba) and reads the Gram in host memory; the full products, O(n^2)
each, are what a GPU speeds up.

Devices (`DEVICES`, the `device=` argument of `max_margin_from_gram` and
`certificate.certificate`):
  * 'cpu': numpy / numba on the host (the path of every earlier release).
  * 'gpu': TensorFlow on '/GPU:0'; an AfterKernelError if TensorFlow sees
    no GPU.
  * 'auto' (default): 'gpu' when TensorFlow is already imported (every
    afterkernel pipeline imports it) and sees a GPU, else 'cpu'. A
    numpy-only user of the solvers never pays TensorFlow's import.
  * a TensorFlow device name ('/GPU:1', '/CPU:0'): the TensorFlow path on
    that device ('/CPU:0' is how the tests check it on a machine without
    a GPU).
The TensorFlow path keeps one copy of the Gram on the device (float64 for
a float64 solve; a float32 Gram is widened once, exactly, so products are
float64 as on the CPU path) and returns float64 numpy vectors: results
agree with the CPU path to float64 rounding of the summation order.
"""

import sys
from typing import Callable, Optional

import numpy as np

from afterkernel import errors

DEVICES = ('auto', 'cpu', 'gpu')
DEFAULT_DEVICE = 'auto'


def _tensorflow():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf


def resolve_device(device: str) -> str:
  """'cpu' or a TensorFlow device name for `device` (see module docstring).

  Raises:
    AfterKernelError: unknown device, or 'gpu' without a visible GPU.
  """
  errors.require(
      isinstance(device, str) and (device in DEVICES or
                                   device.startswith('/')),
      f'device must be one of {", ".join(DEVICES)} or a TensorFlow device '
      f"name such as '/GPU:0', got {device!r}")
  if device == 'cpu':
    return 'cpu'
  if device == 'auto':
    if 'tensorflow' not in sys.modules:
      return 'cpu'
    has_gpu = bool(_tensorflow().config.list_logical_devices('GPU'))
    return '/GPU:0' if has_gpu else 'cpu'
  if device == 'gpu':
    errors.require(bool(_tensorflow().config.list_logical_devices('GPU')),
                   "device='gpu' but TensorFlow sees no GPU; use 'auto' or "
                   "'cpu'")
    return '/GPU:0'
  _require_visible(device)
  return device


def _require_visible(name: str) -> None:
  """One error unless TensorFlow sees the device `name` (TensorFlow would
  otherwise place the products elsewhere without a word)."""
  tf = _tensorflow()
  try:
    spec = tf.DeviceSpec.from_string(name)
  except ValueError as e:
    raise errors.AfterKernelError(
        f'device {name!r} is not a TensorFlow device name: {e}') from None
  visible = (tf.config.list_logical_devices(spec.device_type)
             if spec.device_type else [])
  indices = {tf.DeviceSpec.from_string(d.name).device_index for d in visible}
  errors.require(
      (spec.device_index or 0) in indices,
      f'device {name!r} is not visible to TensorFlow (visible: '
      f'{", ".join(d.name for d in tf.config.list_logical_devices()) or "none"})')


def gram_matvec(gram: np.ndarray, device: str,
                cpu_matvec: Optional[Callable[[np.ndarray], np.ndarray]]
                ) -> Optional[Callable[[np.ndarray], np.ndarray]]:
  """v -> K v (float64) on the resolved `device`.

  Args:
    gram: (n, n) Gram (float32 or float64), not modified.
    device: a `resolve_device` result.
    cpu_matvec: returned as is when the device is 'cpu' (None: the caller
      keeps its own host product).

  Returns:
    A function of a float64 (n,) vector returning float64 (n,) K v (or
    `cpu_matvec` on the CPU).
  """
  if device == 'cpu':
    return cpu_matvec
  # Widened on the device: no float64 host copy of a float32 Gram.
  on_device = to_device(gram, device)
  return lambda vector: matvec(on_device, vector, device)


# The interior-point solver's TensorFlow path (`interior._DeviceDenseSystem`
# and `interior._DeviceFeatureSystem`): float64 tensors on `device`,
# float64 numpy vectors in and out.


def to_device(array: np.ndarray, device: str):
  """`array` as a float64 tensor on `device` (widened there)."""
  tf = _tensorflow()
  with tf.device(device):
    return tf.cast(tf.constant(array), tf.float64)


def signed_scaled_gram(gram: np.ndarray, signs: np.ndarray, scale: float,
                       device: str):
  """Q = diag(signs) K diag(signs) * scale on `device`, float64, with the
  host path's operation order (so Q has the same bits)."""
  tf = _tensorflow()
  with tf.device(device):
    signs = tf.constant(np.asarray(signs, np.float64))
    q = to_device(gram, device) * scale
    return q * signs[:, None] * signs[None, :]


def matvec(matrix, vector: np.ndarray, device: str) -> np.ndarray:
  """matrix @ vector for a device tensor `matrix`; float64 numpy."""
  tf = _tensorflow()
  with tf.device(device):
    return tf.linalg.matvec(matrix, tf.constant(
        np.asarray(vector, np.float64))).numpy()


def feature_matvec(z, vector: np.ndarray, device: str) -> np.ndarray:
  """Z (Z^T vector) for a device tensor Z; float64 numpy."""
  tf = _tensorflow()
  with tf.device(device):
    inner = tf.linalg.matvec(z, tf.constant(np.asarray(vector, np.float64)),
                             transpose_a=True)
    return tf.linalg.matvec(z, inner).numpy()


def _cholesky(matrix, device: str):
  """Lower Cholesky factor of a device tensor; np.linalg.LinAlgError when
  it is not positive definite (TensorFlow raises InvalidArgumentError on a
  CPU and returns NaNs on a GPU), as scipy does on the host path."""
  tf = _tensorflow()
  try:
    with tf.device(device):
      factor = tf.linalg.cholesky(matrix)
      finite = bool(tf.reduce_all(tf.math.is_finite(
          tf.linalg.diag_part(factor))))
  except tf.errors.InvalidArgumentError as e:
    raise np.linalg.LinAlgError(str(e)) from None
  if not finite:
    raise np.linalg.LinAlgError('Cholesky factor has non-finite entries')
  return factor


def cholesky_solver(q, diagonal: np.ndarray, device: str
                    ) -> Callable[[np.ndarray], np.ndarray]:
  """v -> (Q + diag(diagonal))^-1 v on `device`; LinAlgError if not PD."""
  tf = _tensorflow()
  with tf.device(device):
    shifted = tf.linalg.set_diag(q, tf.linalg.diag_part(q) + tf.constant(
        np.asarray(diagonal, np.float64)))
  factor = _cholesky(shifted, device)
  del shifted

  def solve(vector: np.ndarray) -> np.ndarray:
    with tf.device(device):
      return tf.linalg.cholesky_solve(factor, tf.constant(
          np.asarray(vector, np.float64))[:, None])[:, 0].numpy()

  return solve


def woodbury_solver(z, inverse: np.ndarray, device: str
                    ) -> Callable[[np.ndarray], np.ndarray]:
  """v -> (D + Z Z^T)^-1 v, D^-1 = diag(inverse), by Woodbury on `device`
  (C = I + Z^T D^-1 Z, P x P)."""
  tf = _tensorflow()
  with tf.device(device):
    inverse = tf.constant(np.asarray(inverse, np.float64))
    root = z * tf.sqrt(inverse)[:, None]
    inner = tf.linalg.matmul(root, root, transpose_a=True)
    inner = tf.linalg.set_diag(inner, tf.linalg.diag_part(inner) + 1.0)
  factor = _cholesky(inner, device)

  def solve(vector: np.ndarray) -> np.ndarray:
    with tf.device(device):
      first = inverse * tf.constant(np.asarray(vector, np.float64))
      small = tf.linalg.cholesky_solve(factor, tf.linalg.matvec(
          z, first, transpose_a=True)[:, None])[:, 0]
      return (first - inverse * tf.linalg.matvec(z, small)).numpy()

  return solve
