"""The obvious per-example gradient features, for the gradient-engine tests.

phi(x) = d f(x) / d theta computed one example at a time with an eager
`tf.GradientTape`: the slow, plain reference that the engine's fast paths
(kernels/features.py, kernels/per_layer.py) are tested against.
"""

import numpy as np
import tensorflow as tf


def reference_features(model, images):
  """One example at a time, eager tape.gradient: the obvious computation."""
  rows = []
  for image in images:
    with tf.GradientTape() as tape:
      logit = tf.reduce_sum(model(image[None], training=False))
    grads = tape.gradient(logit, model.trainable_variables)
    rows.append(np.concatenate([
        np.ravel(np.zeros(v.shape) if g is None else g.numpy())
        for g, v in zip(grads, model.trainable_variables)]))
  return np.stack(rows)


def perturb_weights(model, rng, scale=0.1):
  """Non-zero biases, so every parameter's gradient is exercised."""
  for v in model.trainable_variables:
    v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype(
        np.float32))
