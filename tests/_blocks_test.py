"""Tests of afterkernel/kernels/_blocks.py: the gradient engine's internals.

The public engine (kernels/features.py) is tested in features_test.py; this
file tests the block-level pieces directly: the 'auto' rule, the vectorized
and loop block functions against a per-example GradientTape, the input and
feature checks, and the float32 scope.
"""

from absl.testing import absltest
import keras
import numpy as np

from afterkernel import errors
from afterkernel.kernels import _blocks
import gradient_fixture

_DIM = 5


def _dense_chain(name='dense_chain', outputs=1):
  keras.utils.set_random_seed(0)
  inputs = keras.Input((_DIM,))
  hidden = keras.layers.Dense(4, activation='tanh')(inputs)
  return keras.Model(inputs, keras.layers.Dense(outputs)(hidden), name=name)


def _conv_chain():
  keras.utils.set_random_seed(0)
  return keras.Sequential([
      keras.Input((6, 6, 1)),
      keras.layers.Conv2D(2, 3, activation='relu'),
      keras.layers.Flatten(),
      keras.layers.Dense(1)], name='conv_chain')


def _branching(outputs=2):
  keras.utils.set_random_seed(0)
  inputs = keras.Input((_DIM,))
  left = keras.layers.Dense(3, activation='tanh')(inputs)
  right = keras.layers.Dense(3, activation='sigmoid')(inputs)
  merged = keras.layers.Add()([left, right])
  return keras.Model(inputs, keras.layers.Dense(outputs)(merged),
                     name='branching')


def _dtype(tensor) -> str:
  return keras.backend.standardize_dtype(tensor.dtype)


def _output(model, index):
  """The model restricted to output `index` (same variables, same order)."""
  return keras.Model(model.inputs, model.outputs[0][:, index:index + 1])


class ResolveMethodTest(absltest.TestCase):

  def test_auto_is_per_layer_for_chains_and_vectorized_otherwise(self):
    images = np.zeros((2, _DIM), np.float32)
    self.assertEqual(_blocks.resolve_method(_dense_chain(), images, 2, 'auto'),
                     'per_layer')
    self.assertEqual(_blocks.resolve_method(
        _conv_chain(), np.zeros((2, 6, 6, 1), np.float32), 2, 'auto'),
                     'per_layer')
    self.assertEqual(_blocks.resolve_method(_branching(), images, 2, 'auto'),
                     'vectorized')

  def test_a_concrete_method_is_kept(self):
    images = np.zeros((2, _DIM), np.float32)
    for method in ('per_layer', 'vectorized', 'loop'):
      self.assertEqual(
          _blocks.resolve_method(_branching(), images, 2, method), method)

  def test_per_layer_on_a_branching_model_is_one_clear_error(self):
    with self.assertRaisesRegex(errors.AfterKernelError, "'per_layer'.*"
                                "branching.*vectorized"):
      _blocks.block_fn(_branching(), 'per_layer', (_DIM,))


class BlockFunctionTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.images = np.random.default_rng(1).standard_normal(
        (4, _DIM)).astype(np.float32)

  def _check_against_tape(self, model, method):
    rng = np.random.default_rng(2)
    gradient_fixture.perturb_weights(model, rng)
    block = _blocks.block_fn(model, method, (_DIM,))
    num_outputs = model.output_shape[-1]
    for index in range(num_outputs):
      got = np.asarray(block(self.images, index))
      want = gradient_fixture.reference_features(_output(model, index),
                                                 self.images)
      self.assertEqual(got.shape, want.shape)
      np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    return block

  def test_vectorized_and_loop_match_a_tape_per_example(self):
    for model in (_branching(outputs=2), _dense_chain(outputs=2)):
      for method in ('vectorized', 'loop'):
        self._check_against_tape(model, method)

  def test_block_function_is_cached_per_model_and_method(self):
    model = _branching()
    first = _blocks.block_fn(model, 'vectorized', (_DIM,))
    self.assertIs(_blocks.block_fn(model, 'vectorized', (_DIM,)), first)
    self.assertIsNot(_blocks.block_fn(model, 'loop', (_DIM,)), first)
    self.assertIs(_blocks.block_fn(model, 'auto', (_DIM,)).python_function,
                  first.python_function)


class ChecksTest(absltest.TestCase):

  def test_nan_features_name_the_model_and_examples(self):
    model = _dense_chain(name='my_net')
    block = np.ones((3, 4), np.float32)
    _blocks.require_finite_features(model, block, 0)  # Finite: no error.
    block[1, 2] = np.nan
    with self.assertRaisesRegex(errors.AfterKernelError,
                                r"'my_net'.*1 examples \(first: example 11\)"
                                r".*overflow"):
      _blocks.require_finite_features(model, block, 10)

  def test_nan_weights_are_named_as_the_cause(self):
    model = _dense_chain(name='diverged')
    kernel = model.trainable_variables[0]
    kernel.assign(np.full(kernel.shape, np.nan, np.float32))
    block = np.full((2, 4), np.nan, np.float32)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "'diverged'.*non-finite weights " +
                                kernel.path):
      _blocks.require_finite_features(model, block, 0)

  def test_wrong_input_shape_is_one_clear_error(self):
    model = _dense_chain()
    _blocks.check_inputs(model, np.zeros((2, _DIM), np.float32), 2)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                r'shape \(2, 7\).*expects \(n,\) \+ \(5,\)'):
      _blocks.check_inputs(model, np.zeros((2, 7), np.float32), 2)
    with self.assertRaisesRegex(errors.AfterKernelError, 'batch_size'):
      _blocks.check_inputs(model, np.zeros((2, _DIM), np.float32), 0)


class Float32ComputeTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    saved = keras.config.dtype_policy()
    self.addCleanup(keras.config.set_dtype_policy, saved)
    keras.config.set_dtype_policy('mixed_float16')
    self.model = _dense_chain(name='mixed')
    keras.config.set_dtype_policy(saved)

  def test_layers_compute_in_float32_inside_and_half_outside(self):
    images = np.ones((2, _DIM), np.float32)
    self.assertEqual(self.model.layers[-1].compute_dtype, 'float16')
    self.assertEqual(_dtype(self.model(images)), 'float16')
    with _blocks.float32_compute(self.model):
      self.assertEqual(self.model.layers[-1].compute_dtype, 'float32')
      self.assertEqual(_dtype(self.model(images)), 'float32')
    self.assertEqual(self.model.layers[-1].compute_dtype, 'float16')

  def test_features_of_a_mixed_model_are_float32_and_exact(self):
    images = np.random.default_rng(3).standard_normal(
        (3, _DIM)).astype(np.float32)
    got = np.asarray(_blocks.block_fn(self.model, 'vectorized',
                                      (_DIM,))(images, 0))
    self.assertEqual(got.dtype, np.float32)
    twin = _dense_chain(name='float32_twin')  # Under the float32 policy.
    twin.set_weights(self.model.get_weights())
    want = gradient_fixture.reference_features(twin, images)
    # float16 features would differ in the 4th digit.
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


if __name__ == '__main__':
  absltest.main()
