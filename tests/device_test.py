"""Tests for afterkernel.margin.device: the TensorFlow product path.

The TensorFlow path is forced on the CPU ('/CPU:0') and compared with the
numpy path: the same certificate, margin and support to float64 rounding.
"""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np
import tensorflow as tf

from afterkernel import errors
from afterkernel import margin
from afterkernel.margin import device

TF_CPU = '/CPU:0'


def _problem(n=120, dims=40, seed=0):
  """A separable float32 Gram of random features (labels by a hyperplane)."""
  rng = np.random.default_rng(seed)
  features = rng.normal(size=(n, dims))
  labels = (features @ rng.normal(size=dims) > 0).astype(np.float64)
  return (features @ features.T).astype(np.float32), labels


class DeviceTest(parameterized.TestCase):

  def test_tf_product_equals_float64_numpy(self):
    gram, _ = _problem()
    vector = np.random.default_rng(1).normal(size=len(gram))
    product = device.gram_matvec(gram, TF_CPU, None)(vector)
    np.testing.assert_allclose(product, gram.astype(np.float64) @ vector,
                               rtol=1e-12, atol=1e-12)

  @parameterized.parameters('exact', 'jst1', 'jst2')
  def test_tf_path_gives_the_numpy_result(self, solver):
    gram, labels = _problem()
    results = {
        where: margin.max_margin_from_gram(gram, labels, solver=solver,
                                           device=where)
        for where in ('cpu', TF_CPU)}
    cpu, on_tf = results['cpu'], results[TF_CPU]
    self.assertEqual(on_tf.stop_reason, cpu.stop_reason)
    self.assertTrue(on_tf.converged)
    np.testing.assert_allclose(on_tf.margin, cpu.margin, rtol=1e-9)
    np.testing.assert_allclose(on_tf.margin_upper_bound,
                               cpu.margin_upper_bound, rtol=1e-9)
    np.testing.assert_allclose(on_tf.dual_coef, cpu.dual_coef, rtol=1e-7,
                               atol=1e-12)
    # The certificate computed on either path is the same.
    np.testing.assert_allclose(
        margin.certificate(gram, labels, on_tf.dual_coef, device=TF_CPU),
        margin.certificate(gram, labels, on_tf.dual_coef), rtol=1e-9)

  def test_not_separable_on_the_tf_path(self):
    # XOR: 0 is in the convex hull of the y_i x_i.
    points = np.array([[1., 1.], [-1., -1.], [1., -1.], [-1., 1.]] * 10)
    points += np.random.default_rng(2).normal(scale=0.01, size=points.shape)
    labels = np.array([1., 1., 0., 0.] * 10)
    result = margin.max_margin_from_gram(points @ points.T, labels,
                                         device=TF_CPU)
    self.assertEqual(result.stop_reason, margin.STOP_NOT_SEPARABLE)

  def test_device_resolution(self):
    self.assertEqual(device.resolve_device('cpu'), 'cpu')
    self.assertEqual(device.resolve_device(TF_CPU), TF_CPU)
    has_gpu = bool(tf.config.list_logical_devices('GPU'))
    # tensorflow is imported here, so 'auto' looks for a GPU.
    self.assertEqual(device.resolve_device('auto'),
                     '/GPU:0' if has_gpu else 'cpu')
    if not has_gpu:
      with self.assertRaisesRegex(errors.AfterKernelError, 'no GPU'):
        device.resolve_device('gpu')
    with self.assertRaisesRegex(errors.AfterKernelError, 'device must be'):
      device.resolve_device('tpu')
    # A named device TensorFlow does not see is refused, not silently
    # replaced (soft placement would run the products elsewhere).
    for name in ('/CPU:7', '/GPU:3', '/device:TPU:0'):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'is not visible to TensorFlow.*CPU:0'):
        device.resolve_device(name)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'is not a TensorFlow device name'):
      device.resolve_device('/GPU:x')


if __name__ == '__main__':
  absltest.main()
