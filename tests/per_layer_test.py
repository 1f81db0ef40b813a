"""Tests for afterkernel.kernels.per_layer (the per_layer and structured
methods of the gradient engine) against plain per-example tape.gradient."""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel.models import architectures
from afterkernel.kernels import features
from afterkernel import kernels
from afterkernel.kernels import per_layer
from gradient_fixture import perturb_weights as _perturb_weights
from gradient_fixture import reference_features as _reference_features


class PerLayerTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('valid_stride2', dict(padding='valid', strides=2)),
      ('same_stride2_odd', dict(padding='same', strides=2)),
      ('dilated', dict(padding='same', dilation_rate=2)),
      ('rect_kernel', dict(padding='valid', kernel_size=(3, 2))),
      ('no_bias_tanh', dict(padding='same', use_bias=False,
                            activation='tanh')))
  def test_per_layer_conv_variants(self, conv_kwargs):
    conv_kwargs = dict(conv_kwargs)
    kernel_size = conv_kwargs.pop('kernel_size', 3)
    keras.utils.set_random_seed(6)
    model = keras.Sequential([
        keras.Input((9, 7, 2)),
        keras.layers.Conv2D(3, kernel_size, **conv_kwargs),
        keras.layers.AveragePooling2D(2, padding='same'),
        keras.layers.Flatten(),
        keras.layers.Dense(4, activation='sigmoid'),
        keras.layers.Dense(1)])
    self.assertTrue(features.supports_per_layer(model))
    _perturb_weights(model, np.random.default_rng(6))
    images = np.random.default_rng(7).random((5, 9, 7, 2)).astype(np.float32)
    np.testing.assert_allclose(
        features.gradient_features(model, images, method='per_layer'),
        _reference_features(model, images), rtol=1e-4, atol=1e-6)

  def test_factored_size_counts_dense_factors_on_rank2_inputs_only(self):
    # Dense on (h, w, c) maps: materialized (its parameter count); Dense
    # after Flatten: its factors (d_in + bias) + d_out; Conv2D: parameters.
    model = keras.Sequential([
        keras.Input((3, 2, 4)), keras.layers.Conv2D(3, 2, padding='same'),
        keras.layers.Dense(5), keras.layers.Flatten(),
        keras.layers.Dense(7, use_bias=False), keras.layers.Dense(1)])
    conv = 2 * 2 * 4 * 3 + 3
    self.assertEqual(per_layer.factored_size(model),
                     conv + (3 * 5 + 5) + (30 + 7) + (7 + 1 + 1))
    branch_input = keras.Input((4,))
    hidden = keras.layers.Dense(3)(branch_input)
    branched = keras.Model(branch_input, keras.layers.Add()(
        [hidden, keras.layers.Dense(3)(hidden)]))
    self.assertIsNone(per_layer.factored_size(branched))

  def test_dense_on_rank4_inputs_sums_over_positions(self):
    # Dense on (h, w, c) feature maps shares its weights over positions:
    # per_layer sums the per-position outer products, structured keeps
    # such a layer materialized (a sum of outer products has no factors).
    keras.utils.set_random_seed(8)
    model = keras.Sequential([
        keras.Input((3, 2, 4)), keras.layers.Dense(5, activation='tanh'),
        keras.layers.Dense(2, activation='relu', use_bias=False),
        keras.layers.Flatten(), keras.layers.Dense(1)])
    self.assertTrue(features.supports_per_layer(model))
    _perturb_weights(model, np.random.default_rng(8))
    images = np.random.default_rng(9).random((6, 3, 2, 4)).astype(np.float32)
    expected = _reference_features(model, images)
    np.testing.assert_allclose(
        features.gradient_features(model, images, batch_size=4,
                                   method='per_layer'),
        expected, rtol=1e-5, atol=1e-6)
    factored = features.structured_features(model, images, batch_size=4)
    self.assertLen(factored.dense, 1)  # only the rank-2 output Dense
    np.testing.assert_allclose(kernels.structured_gram(factored),
                               expected @ expected.T, rtol=1e-5, atol=1e-5)

  def test_chain_detection(self):
    sequential = keras.Sequential([
        keras.Input((4, 4, 1)), keras.layers.Conv2D(2, 3),
        keras.layers.Flatten(), keras.layers.Dense(3)])
    chain = per_layer.chain_layers(sequential)
    self.assertEqual([entry.kind for entry in chain],
                     ['conv2d', 'apply', 'dense'])
    inputs = keras.Input((3,))
    hidden = keras.layers.Dense(2)(inputs)
    branching = keras.Model(inputs, keras.layers.Dense(1)(
        keras.layers.Concatenate()([inputs, hidden])))
    self.assertIsNone(per_layer.chain_layers(branching))
    # A trainable layer per_layer cannot differentiate: not a chain.
    normalized = keras.Sequential([
        keras.Input((3,)), keras.layers.Dense(2),
        keras.layers.LayerNormalization(), keras.layers.Dense(1)])
    self.assertIsNone(per_layer.chain_layers(normalized))


class NTKLayerFeaturesTest(absltest.TestCase):

  def test_ntk_dense_chain_uses_per_layer_with_its_scale(self):
    keras.utils.set_random_seed(3)
    model = keras.Sequential([
        keras.Input((6,)),
        architectures.NTKDense(5, 'relu', weight_std=1.7),
        architectures.NTKDense(1, weight_std=0.9)])
    # Biases start at 0; make them matter.
    for layer in model.layers:
      layer.bias.assign(np.linspace(-1, 1, layer.units).astype(np.float32))
    self.assertTrue(features.supports_per_layer(model))
    x = np.random.default_rng(3).standard_normal((7, 6)).astype(np.float32)
    loop = features.gradient_features(model, x, method='loop')
    np.testing.assert_allclose(
        features.gradient_features(model, x, method='per_layer'), loop,
        rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(
        kernels.structured_gram(features.structured_features(model, x)),
        loop @ loop.T, rtol=1e-5, atol=1e-5)


if __name__ == '__main__':
  absltest.main()
