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
  tf = _tensorflow()
  with tf.device(device):
    # Widened on the device: no float64 host copy of a float32 Gram.
    on_device = tf.cast(tf.constant(gram), tf.float64)

  def matvec(vector: np.ndarray) -> np.ndarray:
    with tf.device(device):
      return tf.linalg.matvec(on_device, tf.constant(
          np.asarray(vector, np.float64))).numpy()

  return matvec
