"""Tests for afterkernel.kernel_fit.sgd: SGD on the kernel's linear model.

The dual run (coefficients on the Gram) must equal an explicit primal run
of keras.optimizers.SGD on w with the same minibatches, full-batch gradient
descent its closed form; the reported predictor is the curve's minimum,
divergence stops a run, and evaluation steps grow geometrically.
"""

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np

from afterkernel import kernel_fit
from kernel_fit_fixture import random_problem as _random_problem


def _primal_keras_sgd(phi, y, phi_test, *, learning_rate, batch_size,
                      momentum, max_steps, seed, eval_at):
  """Explicit primal run: keras.optimizers.SGD on w, loss 1/2 mean (phi.w-y)^2.

  Uses the same minibatch order as kernel_fit (same seed), so the iterates
  must match the dual run exactly. Returns {step: (w, train f, test f)}.
  """
  w = keras.Variable(np.zeros(phi.shape[1]), dtype='float64')
  optimizer = keras.optimizers.SGD(learning_rate=learning_rate,
                                   momentum=momentum)
  # pylint: disable-next=protected-access
  batches = kernel_fit.sgd._batches(len(y), min(batch_size, len(y)),
                                np.random.default_rng(seed))
  out = {}
  for step in range(1, max_steps + 1):
    batch = next(batches)
    residual = phi[batch] @ w.numpy() - y[batch]
    gradient = phi[batch].T @ residual / len(batch)  # d/dw 1/2 mean r^2
    optimizer.apply_gradients([(keras.ops.convert_to_tensor(gradient), w)])
    if step in eval_at:
      value = w.numpy().copy()
      out[step] = (value, phi @ value, phi_test @ value)
  return out


class SgdTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ('momentum_minibatch', 0.875, 7), ('plain_minibatch', 0.0, 4),
      ('momentum_full_batch', 0.5, 100))
  def test_dual_run_equals_primal_keras_sgd(self, momentum, batch_size):
    # Keras keeps the learning rate and momentum in float32: use values exact
    # in float32 so that both runs are float64 computations of the same thing.
    phi, y, phi_test, y_test = _random_problem()
    result = kernel_fit.fit_sgd(
        phi @ phi.T, y, phi_test @ phi.T, y_test, learning_rate=0.015625,
        batch_size=batch_size, momentum=momentum, max_steps=60,
        eval_growth=1.3, seed=3)
    steps = result.curve.steps
    primal = _primal_keras_sgd(phi, y, phi_test, learning_rate=0.015625,
                               batch_size=batch_size, momentum=momentum,
                               max_steps=60, seed=3, eval_at=set(steps))
    for index, step in enumerate(steps):
      _, train_f, test_f = primal[step]
      np.testing.assert_allclose(result.curve.train_mse[index],
                                 np.mean((train_f - y)**2), rtol=1e-9)
      np.testing.assert_allclose(result.curve.test_mse[index],
                                 np.mean((test_f - y_test)**2), rtol=1e-9)
    w, _, test_f = primal[result.best_step]
    np.testing.assert_allclose(phi.T @ result.dual_coef, w, rtol=1e-8,
                               atol=1e-12)
    np.testing.assert_allclose(result.test_predictions, test_f, rtol=1e-8,
                               atol=1e-12)

  def test_full_batch_gradient_descent_matches_closed_form(self):
    # Without momentum, full-batch GD from 0 has residual
    # f_t - y = -(I - lr K / n)^t y on the training set.
    phi, y, phi_test, y_test = _random_problem(seed=1, n=20, width=40)
    gram = phi @ phi.T
    rate, n = 0.3, len(y)
    result = kernel_fit.fit_sgd(gram, y, phi_test @ phi.T, y_test,
                                learning_rate=rate, batch_size=n, momentum=0.0,
                                max_steps=200, seed=0)
    s, u = np.linalg.eigh(gram)
    for step, train_mse in zip(result.curve.steps, result.curve.train_mse):
      residual = u @ ((1 - rate * s / n)**step * (u.T @ y))
      np.testing.assert_allclose(train_mse, np.mean(residual**2), rtol=1e-8)
    self.assertLess(result.curve.train_mse[-1], result.curve.train_mse[0])

  def test_reports_the_minimum_of_the_curve(self):
    phi, y, phi_test, y_test = _random_problem(seed=2)
    result = kernel_fit.fit_sgd(phi @ phi.T, y, phi_test @ phi.T, y_test,
                                learning_rate=0.05, batch_size=8, momentum=0.9,
                                max_steps=300, seed=0)
    curve = result.curve
    best = int(np.argmin(curve.test_error))
    self.assertEqual(result.best_step, curve.steps[best])
    self.assertEqual(result.test_error, curve.test_error.min())
    self.assertEqual(result.test_mse, curve.test_mse[best])
    self.assertEqual(result.train_mse, curve.train_mse[best])
    self.assertEqual(result.details['steps_run'], 300)
    self.assertFalse(result.details['diverged'])
    # {0, 1} labels are the same problem as +-1.
    again = kernel_fit.fit_sgd(phi @ phi.T, (y > 0).astype(np.float32),
                               phi_test @ phi.T, (y_test > 0).astype(int),
                               learning_rate=0.05, batch_size=8, momentum=0.9,
                               max_steps=300, seed=0)
    np.testing.assert_array_equal(again.curve.test_mse, curve.test_mse)

  def test_divergence_stops_the_run(self):
    phi, y, phi_test, y_test = _random_problem(seed=3)
    result = kernel_fit.fit_sgd(phi @ phi.T, y, phi_test @ phi.T, y_test,
                                learning_rate=50.0, batch_size=8, momentum=0.9,
                                max_steps=10_000, seed=0)
    self.assertTrue(result.details['diverged'])
    self.assertLess(result.details['steps_run'], 10_000)
    self.assertTrue(np.isfinite(result.test_error))

  def test_eval_steps_grow_geometrically(self):
    steps = kernel_fit.eval_steps(1000, 1.1)
    self.assertEqual(steps[0], 1)
    self.assertEqual(steps[-1], 1000)
    np.testing.assert_array_equal(steps[:10], np.arange(1, 11))
    self.assertTrue(np.all(np.diff(steps) > 0))
    ratios = steps[1:] / steps[:-1]
    self.assertLess(np.max(ratios[steps[:-1] > 100]), 1.12)
    self.assertLess(len(steps), 90)  # ~log(1000) / log(1.1) + the first 10.


if __name__ == '__main__':
  absltest.main()
