"""Smoke tests of benchmarks/ at toy size, so the benchmark code does not rot.

The benchmarks themselves are not part of the test suite (see BENCHMARKS.md);
this runs each one's code path on a few 8x8 images in seconds, and checks the
baselines they compare against: the original eager-Jacobian features equal
afterkernel's, and the original primal eager-TF loop is Algorithm 1 (same
margins per iteration as `margin.max_margin_from_features`).
"""

import importlib
import os
import sys
import tempfile
from unittest import mock

from absl.testing import absltest
import keras
import numpy as np

from afterkernel.kernels import features
from afterkernel import kernels
from afterkernel import margin
from afterkernel import models

# benchmarks/ is not an installed package: make the project root importable
# when this file runs as a script (python tests/benchmarks_test.py).
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
  sys.path.insert(0, _ROOT)

# pylint: disable=g-import-not-at-top,wrong-import-position
from benchmarks import baselines
from benchmarks import common
from benchmarks import defaults_bench
from benchmarks import end_to_end_bench
from benchmarks import features_bench
from benchmarks import gram_bench
from benchmarks import margin_bench
from benchmarks import peers
from benchmarks import solver_bench
from benchmarks import tighten_bench
# pylint: enable=g-import-not-at-top,wrong-import-position

# A folder without MNIST: the benchmarks must fall back to noise / digits.
_NO_DATA = '/nonexistent/afterkernel-benchmarks-test'
_TOY_SHAPE = (8, 8, 1)


def _toy_model(architecture='fully_connected'):
  keras.utils.set_random_seed(0)
  return models.build_model(architecture, _TOY_SHAPE)


class BaselinesTest(absltest.TestCase):

  def test_original_features_equal_afterkernel_features(self):
    model = _toy_model('vgg')
    images = np.random.default_rng(0).random((5,) + _TOY_SHAPE,
                                             dtype=np.float32)
    # Batches of 2 exercise the batching and the short last batch.
    original = baselines.original_gradient_features(model, images,
                                                    batch_size=2)
    reference = features.gradient_features(model, images, method='loop')
    self.assertEqual(original.dtype, np.float64)
    self.assertEqual(original.shape, reference.shape)
    np.testing.assert_allclose(original, reference, rtol=1e-5,
                               atol=1e-6 * np.abs(reference).max())

  def test_original_solver_follows_algorithm_1(self):
    rng = np.random.default_rng(1)
    labels = (np.arange(40) % 2).astype(np.float32)
    phi = rng.standard_normal((40, 15)) + 2.0 * (2 * labels[:, None] - 1)
    ours = baselines.original_primal_solver(phi, labels, max_iterations=30)
    library = margin.max_margin_from_features(phi, labels, max_iterations=30,
                                              tolerance=0.0, check_every=1)
    running_best = np.maximum.accumulate(ours.margins)
    library_best = [lower for _, lower, _ in library.history]
    self.assertEqual(ours.iterations, 30)
    np.testing.assert_allclose(running_best, library_best[:30], rtol=1e-9)

  def test_original_solver_stops_at_target(self):
    rng = np.random.default_rng(2)
    labels = (np.arange(30) % 2).astype(np.float32)
    phi = rng.standard_normal((30, 8)) + 3.0 * (2 * labels[:, None] - 1)
    optimum = margin.max_margin_from_gram(phi @ phi.T, labels,
                                          tolerance=1e-6)
    target = 0.99 * optimum.margin
    solve = baselines.original_primal_solver(phi, labels,
                                             target_margin=target,
                                             max_iterations=100_000)
    self.assertTrue(solve.reached_target)
    self.assertGreaterEqual(solve.margins[-1], target)
    self.assertLess(max(solve.margins[:-1], default=-1.0), target)
    self.assertEqual(solve.iterations_to_target, len(solve.margins))
    self.assertEqual(baselines.iterations_to_reach(
        list(enumerate(solve.margins, start=1)), target),
                     solve.iterations_to_target)


class CommonTest(absltest.TestCase):

  def test_run_cases_warms_up_then_repeats_round_robin(self):
    calls = []
    cases = [common.Case('a', lambda: calls.append('a')),
             common.Case('b', lambda: calls.append('b'),
                         warmup=lambda: calls.append('b-warm'))]
    timings = common.run_cases(cases, repeats=3)
    self.assertEqual(calls, ['a', 'b-warm'] + ['a', 'b'] * 3)
    self.assertLen(timings['a'].seconds, 3)
    self.assertEqual(timings['a'].median, sorted(timings['a'].seconds)[1])

  def test_peak_rss_sees_a_large_temporary(self):
    if not common.reset_peak_rss():
      self.skipTest('no resettable RSS high-water mark on this system')
    seconds, peak, delta, per_call, _ = common.time_call(
        lambda: np.ones(25_000_000).sum())  # 200 MB, freed at once.
    self.assertTrue(per_call)
    self.assertGreater(seconds, 0)
    self.assertGreater(delta, 150)
    self.assertGreater(peak, common.current_rss_mib() + 100)

  def test_merge_reports_concatenates_tables_with_the_same_header(self):
    first = common.Report('t', [common.format_table(['a'], [[1]]),
                                common.format_table(['b'], [[2]])],
                          ['same note', 'first'], {'x': 1})
    second = common.Report('t', [common.format_table(['a'], [[3]])],
                           ['same note', 'second'], {'y': 2})
    merged = common.merge_reports([first, second])
    self.assertEqual(merged.tables, [
        common.format_table(['a'], [[1], [3]]),
        common.format_table(['b'], [[2]])])
    self.assertEqual(merged.notes, ['same note', 'first', 'second'])
    self.assertEqual(merged.raw, {'x': 1, 'y': 2})

  def test_format_table(self):
    table = common.format_table(['x', 'y'], [[1.23456, None], ['a', 2]])
    self.assertEqual(table.splitlines(),
                     ['| x | y |', '|---|---|', '| 1.23 | — |', '| a | 2 |'])


_REAL_IMPORT_MODULE = importlib.import_module


def _import_without_torch_and_jax(name, *args, **kwargs):
  if name.split('.')[0] in ('torch', 'jax', 'neural_tangents'):
    raise ModuleNotFoundError(f'No module named {name!r}', name=name)
  return _REAL_IMPORT_MODULE(name, *args, **kwargs)


class PeersTest(absltest.TestCase):
  """The peers' Grams equal afterkernel's for the same weights."""

  def _check_peer_equals_afterkernel(self, peer_name):
    peer = peers.PEERS[peer_name]
    reason = peers.unavailable_reason(peer)
    if reason is not None:
      self.skipTest(reason)
    for architecture in ('vgg', 'fully_connected'):
      model = _toy_model(architecture)
      images = np.random.default_rng(3).random((7,) + _TOY_SHAPE,
                                               dtype=np.float32)
      reference = kernels.gram(features.gradient_features(
          model, images, method='loop'))
      # Blocks of 4 exercise the short last block.
      gram = peer.make(model, 4)(images)
      self.assertEqual(gram.shape, (7, 7))
      self.assertEqual(gram.dtype, np.float32)
      np.testing.assert_allclose(gram, reference, rtol=0,
                                 atol=1e-5 * np.abs(reference).max(),
                                 err_msg=f'{peer_name} on {architecture}')

  def test_tf_vectorized_map_gram_equals_afterkernel(self):
    self._check_peer_equals_afterkernel(peers.TF_VECTORIZED_MAP)

  def test_torch_func_gram_equals_afterkernel(self):
    self._check_peer_equals_afterkernel(peers.TORCH_FUNC)

  def test_neural_tangents_grams_equal_afterkernel(self):
    self._check_peer_equals_afterkernel(peers.NT_STRUCTURED)
    self._check_peer_equals_afterkernel(peers.NT_JACOBIAN)

  def test_missing_package_is_reported_with_its_install_command(self):
    with mock.patch.object(peers.importlib, 'import_module',
                           side_effect=_import_without_torch_and_jax):
      reason = peers.unavailable_reason(peers.PEERS[peers.TORCH_FUNC])
      self.assertIsNone(peers.unavailable_reason(
          peers.PEERS[peers.TF_VECTORIZED_MAP]))
    self.assertEqual(reason, "not installed: no module 'torch' "
                     f'({peers.TORCH_INSTALL})')

  def test_peer_nets_refuse_unsupported_layers(self):
    model = models.build_model('sum', _TOY_SHAPE)
    with self.assertRaisesRegex(ValueError, 'do not support layer'):
      peers.chain_layers(model)

  def test_compare_grams_sets_aside_an_example_at_a_kink(self):
    rng = np.random.default_rng(4)
    phi = rng.standard_normal((200, 30))
    reference = phi @ phi.T
    kinked = phi.copy()
    kinked[17] *= 1.01  # One example's gradient took the other branch.
    check = peers.compare_grams(kinked @ kinked.T, reference)
    self.assertTrue(check.passed)
    self.assertEqual(check.kink_examples, 1)
    self.assertGreater(check.max_relative_difference, 1e-3)
    self.assertLess(check.max_relative_difference_others, 1e-12)
    # A wrong network (every example off) fails.
    wrong = peers.compare_grams(1.01 * reference, reference)
    self.assertFalse(wrong.passed)
    self.assertEqual(wrong.kink_examples, 2)  # 1% of 200, then it gives up.
    self.assertFalse(peers.compare_grams(reference[:5, :5], reference).passed)


class BenchmarksSmokeTest(absltest.TestCase):
  """Each benchmark at toy size, without MNIST (its fallbacks)."""

  def test_features_bench(self):
    report = features_bench.run(
        [features_bench.FeatureConfig('fully_connected', 8, 4),
         features_bench.FeatureConfig('vgg', 8, 0)],
        input_shape=_TOY_SHAPE, data_dir=_NO_DATA, repeats=1, batch_size=4)
    fc = report.raw['fully_connected']
    for method in features_bench.METHODS:
      self.assertLess(fc['max_relative_error_vs_original'][method], 1e-5)
      self.assertGreater(fc['fraction_of_ceiling'][method], 0)
    self.assertNotIn('original', report.raw['vgg']['examples_per_second'])
    self.assertIn('| fully_connected |', report.text())

  def test_gram_bench(self):
    report = gram_bench.run([gram_bench.GramConfig('fully_connected', 12)],
                            input_shape=_TOY_SHAPE, data_dir=_NO_DATA,
                            repeats=1, batch_size=8, peers='none')
    raw = report.raw['fully_connected n=12']
    for name, error in raw['max_relative_error_vs_original'].items():
      self.assertLess(error, 1e-5, name)
    self.assertGreater(raw['gemm_fraction']['kernels.gram (float32)'], 0)
    self.assertLen(report.tables, 2)  # --peers=none: no peer table.

  def test_gram_bench_reports_missing_peers_as_not_installed(self):
    # torch and jax hidden: their peers get rows, the TF peer is measured.
    with mock.patch.object(peers.importlib, 'import_module',
                           side_effect=_import_without_torch_and_jax):
      report = gram_bench.run([gram_bench.GramConfig('vgg', 12)],
                              input_shape=_TOY_SHAPE, data_dir=_NO_DATA,
                              repeats=1, batch_size=8, peers='all')
    measured = report.raw['vgg n=12']['peers']
    self.assertEqual(set(measured), set(peers.PEERS))
    tf_peer = measured[peers.TF_VECTORIZED_MAP]
    self.assertEqual(tf_peer['status'], 'measured')
    self.assertTrue(tf_peer['gram_check']['passed'])
    self.assertLess(tf_peer['gram_check']['max_relative_difference'], 1e-5)
    self.assertIn(tf_peer['verdict'], ('ahead', 'NOT ahead'))
    for name in (peers.TORCH_FUNC, peers.NT_STRUCTURED, peers.NT_JACOBIAN):
      self.assertStartsWith(measured[name]['status'], 'not installed')
      self.assertIn('pip install', measured[name]['status'])
    self.assertLen(report.tables, 3)
    self.assertIn('| not installed: no module', report.tables[2])
    self.assertIn(f'| {peers.TF_VECTORIZED_MAP} | measured |',
                  report.tables[2])

  def test_margin_bench(self):
    report = margin_bench.run([margin_bench.MarginConfig(60)],
                              data_dir=_NO_DATA, repeats=1,
                              tolerances=(1e-3,), original_max_seconds=60)
    raw = report.raw['n=60']
    self.assertIn('FALLBACK', raw['source'])
    self.assertLess(raw['reference']['gap'], 1e-6)
    # The original ran to the target, as many iterations as the recursion.
    measured = raw['original']['measured']
    self.assertTrue(measured['reached_target'])
    self.assertEqual(measured['iterations_to_target'],
                     raw['dual_iterations_to_target'])
    self.assertGreater(raw['speedup_best'], 0)
    self.assertIn('| True |', report.text())

  def test_solver_bench(self):
    rng = np.random.default_rng(0)
    labels = (np.arange(80) % 2).astype(np.float32)
    phi = rng.standard_normal((80, 30)) + 1.5 * (2 * labels[:, None] - 1)
    gram = (phi @ phi.T).astype(np.float32)
    report = solver_bench.run([60], gram=gram, labels=labels)
    raw = report.raw
    for solver in solver_bench.SOLVERS:
      self.assertIn(f'n=60/{solver}', raw)
    self.assertEqual(raw['n=60/exact']['stop_reason'], 'tolerance')
    self.assertLessEqual(raw['n=60/exact']['gap'], margin.DEFAULT_TOLERANCE)
    self.assertIsNone(raw['n=60/sklearn']['gap'])
    # Every certified solver found the same margin within its tolerance.
    np.testing.assert_allclose(raw['n=60/working_set']['margin'],
                               raw['n=60/exact']['margin'], rtol=2e-4)
    self.assertIn('| exact |', report.text())

  def test_tighten_bench(self):
    rng = np.random.default_rng(1)
    direction = rng.standard_normal(30)
    points = rng.standard_normal((660, 30))
    points = points[np.abs(points @ direction) > 0.05 * np.linalg.norm(
        direction)]
    labels = (points @ direction > 0).astype(np.float64)
    x, x_test = points[:60], points[60:]
    arrays = dict(k=x @ x.T, c=x_test @ x.T, t=np.sum(x_test**2, axis=1),
                  y=labels[:60], yt=labels[60:])
    report = tighten_bench.run({'toy': arrays}, tolerance=0.05)
    raw = report.raw['toy']
    # The loose solve leaves the interval open; tightening closes it at the
    # error of the cold solve at the floor tolerance.
    self.assertLess(raw['once']['bounds'][0], raw['once']['bounds'][1])
    self.assertEqual(raw['tightened']['bounds'][0],
                     raw['tightened']['bounds'][1])
    self.assertGreater(len(raw['tightened']['tolerances']), 1)
    self.assertEqual(raw['tightened']['error'], raw['cold']['error'])
    self.assertIn('| toy | tightened |', report.text())
    self.assertIn('agree', report.text())

  def test_solver_bench_child_measures_one_solve(self):
    rng = np.random.default_rng(1)
    labels = (np.arange(60) % 2).astype(np.float32)
    phi = rng.standard_normal((60, 20)) + 1.5 * (2 * labels[:, None] - 1)
    with tempfile.TemporaryDirectory() as cache_dir:
      np.save(os.path.join(cache_dir, solver_bench.GRAM_FILE),
              (phi @ phi.T).astype(np.float32))
      np.save(os.path.join(cache_dir, solver_bench.LABELS_FILE), labels)
      child = solver_bench.child_solve('exact', 50, cache_dir, 10.0)
    self.assertEqual(child['stop_reason'], 'tolerance')
    self.assertLessEqual(child['gap'], margin.DEFAULT_TOLERANCE)
    self.assertAlmostEqual(child['gram_mib'], 50 * 50 * 4 / 2**20)
    self.assertGreater(child['max_rss_mib'], 0)

  def test_defaults_bench(self):
    report = defaults_bench.run(['fully_connected'], [8], repeats=1)
    rows = report.raw['fully_connected n=8']
    self.assertIn(rows['fastest_path'],
                  ('structured', 'per_layer + gram', 'vectorized + gram'))
    text = report.text()
    for path in ('structured', 'per_layer + gram', 'vectorized + gram',
                 defaults_bench.CEILING):
      self.assertIn(path, text)

  def test_end_to_end_bench(self):
    protocol = dict(train_subset=40, test_subset=12, max_num_epochs=1,
                    num_translations=6, num_zooms=6, num_swaps=6,
                    num_rotations=6, ker_alignment_sample_size=6,
                    effective_rank_sample_size=10)
    report = end_to_end_bench.run(data_dir=_NO_DATA, protocol=protocol,
                                  repeats=1, original_feature_examples=4)
    raw = report.raw
    self.assertEqual(raw['config']['dataset'], 'digits')
    # Per kernel: train + test for the SVM, 6 images + 6 perturbed versions
    # of them (translation and rotation have 2 each), alignment and
    # effective rank. (0.1.0 also computed 1 row to probe the feature width;
    # the one probe's Gram path, kernels.empirical, does not need it.) The
    # test rows once more for their norms (the certified error bounds,
    # margin/stability.py).
    per_kernel = 40 + 12 + 12 + 6 + 6 * 6 + 6 + 10
    self.assertEqual(raw['feature_rows'], 2 * per_kernel)
    self.assertLen(raw['solves'], 2)
    self.assertGreater(raw['speedup'], 0)
    self.assertIn('FALLBACK', report.text())


if __name__ == '__main__':
  absltest.main()
