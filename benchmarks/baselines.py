"""The original after-kernel methods, reimplemented as benchmark baselines.

Issue 3 asks every benchmark to compare against the methods of the original
after-kernel code, written inside the benchmark:

  * features: eager `tf.GradientTape.jacobian` of the model's (batch, 1)
    output with respect to its trainable variables, on batches of 32, written
    into a dense float64 numpy array (n, P);
  * Gram: a float64 numpy product of those features;
  * solver: Algorithm 1 of Ji, Srebro & Telgarsky (2021) in the primal, as an
    eager TensorFlow loop on Z (rows z_i = y_i phi(x_i), rescaled to average
    norm 1):
        q = softmax(-Z w),  g = beta_t (g + Z^T q),  w = w + (g + Z^T q),
        beta_t = t / (t + 1),
    which the original ran for a fixed 120 s of wall clock.

The solver here also records the normalized margin min_i (Z w)_i / ||w|| of
every iterate (Z w is computed by the iteration anyway) so the benchmarks can
time when it first reaches a target margin.
"""

import dataclasses
import math
import time
from typing import List, Optional

import keras
import numpy as np
import tensorflow as tf

# The original code's Jacobian batch.
ORIGINAL_BATCH_SIZE = 32
# The original solver's fixed wall-clock budget, seconds.
ORIGINAL_SOLVER_SECONDS = 120.0


def original_gradient_features(model: keras.Model, images: np.ndarray,
                               batch_size: int = ORIGINAL_BATCH_SIZE
                               ) -> np.ndarray:
  """Per-example gradients by eager `tape.jacobian`, into float64 numpy.

  Args:
    model: a Keras model with one scalar output per example.
    images: (n, ...) float32 inputs.
    batch_size: examples per `tape.jacobian` call (32 in the original).

  Returns:
    (n, P) float64 features in `model.trainable_variables` order.
  """
  variables = model.trainable_variables
  num_parameters = int(sum(np.prod(v.shape) for v in variables))
  out = np.zeros((len(images), num_parameters), np.float64)
  for start in range(0, len(images), batch_size):
    batch = tf.constant(images[start:start + batch_size], tf.float32)
    with tf.GradientTape() as tape:
      outputs = model(batch, training=False)
    jacobian = tape.jacobian(outputs, variables)
    out[start:start + len(batch)] = np.concatenate(
        [np.reshape(j.numpy(), (len(batch), -1)) for j in jacobian], axis=1)
  return out


def original_gram(features_a: np.ndarray,
                  features_b: Optional[np.ndarray] = None) -> np.ndarray:
  """G = A B^T in float64 numpy (B = A if omitted), as the original did."""
  a = np.asarray(features_a, np.float64)
  b = a if features_b is None else np.asarray(features_b, np.float64)
  return a @ b.T


@dataclasses.dataclass
class OriginalSolve:
  """Outcome of the original primal solver.

  Attributes:
    margin: best normalized margin over the iterates (features rescaled to
      average norm 1, the units of `afterkernel.margin`).
    iterations: updates w_t -> w_{t+1} performed.
    seconds: wall clock, including building Z.
    setup_seconds: wall clock spent building Z (rescaling, signs, the copy
      into a TF tensor) before the first iteration.
    reached_target: whether the margin reached `target_margin`.
    iterations_to_target: iterate index t at which it did (None if not).
    seconds_to_target: wall clock until then (None if not).
    margins: normalized margin of every iterate t = 1, 2, ... (if tracked).
  """
  margin: float
  iterations: int
  seconds: float
  reached_target: bool
  iterations_to_target: Optional[int]
  seconds_to_target: Optional[float]
  margins: List[float]
  setup_seconds: float = 0.0

  @property
  def seconds_per_iteration(self) -> float:
    """Loop time per update, set-up excluded."""
    return (self.seconds - self.setup_seconds) / max(self.iterations, 1)


def original_primal_solver(features: np.ndarray, labels: np.ndarray,
                           max_iterations: Optional[int] = None,
                           max_seconds: Optional[float] = None,
                           target_margin: Optional[float] = None
                           ) -> OriginalSolve:
  """Algorithm 1 in the primal, an eager TensorFlow float64 loop.

  Stops at the first of: `max_iterations` updates, `max_seconds` of wall
  clock (the original used 120 s), or an iterate whose normalized margin
  reaches `target_margin`.

  Args:
    features: (n, P) features phi(x_i).
    labels: (n,) in {0, 1} (0 means -1) or {-1, +1}.
    max_iterations: update budget; None = unbounded.
    max_seconds: wall-clock budget; None = unbounded.
    target_margin: stop once min_i (Z w)_i / ||w|| >= this.

  Returns:
    An `OriginalSolve`.
  """
  if max_iterations is None and max_seconds is None and target_margin is None:
    raise ValueError('original_primal_solver needs a stopping rule')
  start = time.perf_counter()
  features = np.asarray(features, np.float64)
  signs = np.where(np.asarray(labels) > 0, 1.0, -1.0)
  scale = float(np.mean(np.linalg.norm(features, axis=1)))
  z = tf.constant(features * (signs / scale)[:, None])
  w = tf.zeros([z.shape[1]], tf.float64)
  g = tf.zeros([z.shape[1]], tf.float64)
  setup_seconds = time.perf_counter() - start
  best = -math.inf
  margins_seen = []
  reached_at, reached_seconds = None, None
  t = 0
  while True:
    margins = tf.linalg.matvec(z, w)
    if t > 0:
      margin = float(tf.reduce_min(margins) / tf.norm(w))
      margins_seen.append(margin)
      best = max(best, margin)
      if target_margin is not None and margin >= target_margin:
        reached_at, reached_seconds = t, time.perf_counter() - start
        break
    if max_iterations is not None and t >= max_iterations:
      break
    if max_seconds is not None and time.perf_counter() - start >= max_seconds:
      break
    q = tf.nn.softmax(-margins)
    z_q = tf.linalg.matvec(z, q, transpose_a=True)
    beta = t / (t + 1.0)
    g = beta * (g + z_q)
    w = w + (g + z_q)
    t += 1
  return OriginalSolve(
      margin=best, iterations=t, seconds=time.perf_counter() - start,
      reached_target=reached_at is not None, iterations_to_target=reached_at,
      seconds_to_target=reached_seconds, margins=margins_seen,
      setup_seconds=setup_seconds)


def iterations_to_reach(margins_by_iteration: List[tuple],
                        target: float) -> Optional[int]:
  """First iteration whose (best) margin is >= target, from (t, margin) pairs."""
  for iteration, margin in margins_by_iteration:
    if margin >= target:
      return int(iteration)
  return None
