"""Tests for afterkernel.distribute: features and training on two CPU devices.

TensorFlow fixes its devices when it initializes, and other tests in the same
pytest process may have initialized it already, so `TwoCpuTest` runs in a
child process (this file, run with `_CHILD_ENV=two_cpus`) that splits the CPU
into two logical devices before any TensorFlow op;
`SingleProcessTest.test_two_logical_cpu_devices` starts it and checks that
all of its tests ran and passed. Likewise the slow multi-worker test starts
two worker processes on localhost (`_CHILD_ENV=worker`, `WorkerTest`).
"""

import contextlib
import dataclasses
import json
import os
import socket
import subprocess
import sys
import tempfile
import unittest
from unittest import mock

from absl.testing import absltest
from absl.testing import parameterized
import keras
import numpy as np
import tensorflow as tf

from afterkernel import distribute
from afterkernel import errors
from afterkernel.studies import after_kernel
from afterkernel.kernels import _blocks
from afterkernel.kernels import anisotropy
from afterkernel.kernels import empirical
from afterkernel.kernels import features
from afterkernel import kernels
from afterkernel import linearize
from afterkernel import models
from afterkernel.studies import after_kernel_vs_m
from afterkernel.studies import data_scaling
from afterkernel.studies import eigentasks
from afterkernel.studies import kernel_dynamics
from afterkernel.studies import kernel_rotation
from afterkernel.studies import linearized
from afterkernel.studies import nads
from afterkernel.studies import nonlinear_advantage
from afterkernel.studies import runner
from afterkernel.studies import second_order
from afterkernel.studies import store
from afterkernel.studies import sweeps
from afterkernel import taylor
from afterkernel import training

_CHILD_ENV = 'AFTERKERNEL_DISTRIBUTE_TEST_CHILD'
_MODE = os.environ.get(_CHILD_ENV)
_IN_CHILD = _MODE is not None
# Before any TensorFlow op: the devices, or the multi-worker collectives.
if _MODE in ('two_cpus', 'two_cpu_studies'):
  distribute.split_cpu(2)
elif _MODE == 'worker':
  distribute.make_strategy('multi_worker')

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_SHAPE = (8, 8, 1)
# Features and Grams on two replicas vs one device: float32 rounding only.
_RTOL = 1e-5
# A tiny but complete experiment (every stage runs) on the embedded digits.
_TINY = after_kernel.ExperimentConfig(
    dataset='digits', train_subset=40, test_subset=20,
    nn_architecture='fully_connected', num_layers=1, num_parameters=2000,
    max_num_epochs=1, num_runs=1, num_translations=6, num_zooms=6,
    num_swaps=6, num_rotations=6, ker_alignment_sample_size=6,
    effective_rank_sample_size=10, svm_max_iterations=2000,
    feature_batch_size=8)


def _toy_task(n, seed=0):
  """Images labelled by whether their left half is brighter."""
  images = np.random.default_rng(seed).random((n,) + _SHAPE).astype(
      np.float32)
  labels = (images[:, :, :4].sum(axis=(1, 2, 3)) >
            images[:, :, 4:].sum(axis=(1, 2, 3))).astype(np.float32)
  return images, labels


def _relative_error(actual, expected):
  return float(np.abs(actual - expected).max() / np.abs(expected).max())


def _recorded(run):
  """(every Gram the engine returned, run()'s result, the methods of the
  feature blocks sharded over replicas), while `run()` runs."""
  gram_list, methods = [], []
  finite, block_fn = empirical._finite, _blocks.sharded_block_fn

  def record(gram, model):
    gram_list.append(np.array(gram))
    return finite(gram, model)

  def spy(model, strategy, method, input_shape):
    methods.append(method)
    return block_fn(model, strategy, method, input_shape)

  with mock.patch.object(empirical, '_finite', record), \
      mock.patch.object(_blocks, 'sharded_block_fn', spy):
    result = run()
  return gram_list, result, sorted(set(methods))


def _quiet(message):
  del message


def _child_env(**changes):
  return dict(os.environ, TF_CPP_MIN_LOG_LEVEL='2', **changes)


def _free_port():
  with socket.socket() as s:
    s.bind(('localhost', 0))
    return s.getsockname()[1]


def _check_child(test, returncode, stderr, test_case):
  """Asserts a child process ran all of `test_case`'s tests, unskipped."""
  tail = stderr[-4000:]
  test.assertEqual(returncode, 0, tail)
  expected = unittest.TestLoader().loadTestsFromTestCase(
      test_case).countTestCases()
  test.assertRegex(tail, rf'Ran {expected} tests?\b')
  test.assertNotIn('skipped', tail)


class SingleProcessTest(absltest.TestCase):

  def test_unknown_strategy_is_one_line_error(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "unknown distribution strategy 'gpu'.*"
                                'default, mirrored, tpu, multi_worker') as cm:
      distribute.make_strategy('gpu')
    self.assertNotIn('\n', str(cm.exception))

  def test_config_checks_strategy_and_fingerprint_ignores_it(self):
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'unknown distribution_strategy'):
      dataclasses.replace(_TINY, distribution_strategy='gpu').validate()
    mirrored = dataclasses.replace(_TINY, distribution_strategy='mirrored')
    mirrored.validate()
    self.assertEqual(mirrored.fingerprint(), _TINY.fingerprint())

  def test_multi_worker_config_is_refused_in_one_line(self):
    # Also without training: every worker would repeat the Gram and the SVM.
    config = dataclasses.replace(_TINY, distribution_strategy='multi_worker')
    for epochs in (0, 1):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'multi_worker is not supported by the '
                                  'binaries.*--executor=ray') as cm:
        dataclasses.replace(config, max_num_epochs=epochs).validate()
      self.assertNotIn('\n', str(cm.exception))

  def test_default_strategy_is_one_device_and_exact(self):
    strategy = distribute.make_strategy('default')
    self.assertEqual(strategy.num_replicas_in_sync, 1)
    keras.utils.set_random_seed(0)
    model = models.build_model('fully_connected', _SHAPE)
    images, _ = _toy_task(9)
    np.testing.assert_array_equal(
        distribute.sharded_gradient_features(model, images, strategy, 4),
        features.gradient_features(model, images, 4))

  def test_split_cpu_after_initialization_is_one_line_error(self):
    tf.constant(1.0).numpy()  # Makes sure TensorFlow is initialized.
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'already initialized.*program start') as cm:
      distribute.split_cpu(2)
    self.assertNotIn('\n', str(cm.exception))

  @absltest.skipIf(_IN_CHILD, 'starts the child process itself')
  def test_two_logical_cpu_devices(self):
    self._run_child(TwoCpuTest, 'two_cpus', 600)

  def _run_child(self, test_case, mode, timeout):
    """Runs `test_case` in a child process (`_CHILD_ENV=mode`)."""
    process = subprocess.run(
        [sys.executable, os.path.abspath(__file__), test_case.__name__],
        cwd=_REPO, env=_child_env(**{_CHILD_ENV: mode}),
        capture_output=True, text=True, timeout=timeout, check=False)
    _check_child(self, process.returncode, process.stderr, test_case)

  @absltest.skipIf(_IN_CHILD, 'starts the child process itself')
  def test_studies_on_two_logical_cpu_devices(self):
    # ~35 s on 2 quiet cores: in the default suite, so CI checks it.
    self._run_child(TwoCpuStudyTest, 'two_cpu_studies', 1200)

  def test_studies_refuse_multi_worker_in_one_line_default_is_a_no_op(self):
    for make in (lambda: distribute.scoped_executor(runner.local_executor,
                                                    'multi_worker'),
                 lambda: list(distribute.ScopedWork(
                     lambda unit: [unit], 'multi_worker')(0))):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'multi_worker is not supported by the '
                                  'binaries, studies.*--executor=ray') as cm:
        make()
      self.assertNotIn('\n', str(cm.exception))
    self.assertIs(distribute.scoped_executor(runner.local_executor),
                  runner.local_executor)

  @absltest.skipIf(_IN_CHILD, 'starts the worker processes itself')
  @absltest.skipUnless(os.environ.get('AFTERKERNEL_SLOW_TESTS'),
                       'slow; set AFTERKERNEL_SLOW_TESTS=1')
  def test_two_workers_on_localhost(self):
    workers = [f'localhost:{_free_port()}' for _ in range(2)]
    processes = []
    for index in range(2):
      tf_config = json.dumps({'cluster': {'worker': workers},
                              'task': {'type': 'worker', 'index': index}})
      processes.append(subprocess.Popen(
          [sys.executable, os.path.abspath(__file__), 'WorkerTest'],
          cwd=_REPO, env=_child_env(TF_CONFIG=tf_config,
                                    **{_CHILD_ENV: 'worker'}),
          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    try:
      outcomes = [(p.communicate(timeout=900)[1], p.returncode)
                  for p in processes]
    finally:
      for process in processes:  # A failed worker leaves its peer waiting.
        if process.poll() is None:
          process.kill()
    for stderr, returncode in outcomes:
      _check_child(self, returncode, stderr, WorkerTest)

  @absltest.skipIf(_IN_CHILD, 'a binary run, not a two-device test')
  def test_binary_without_tpu_fails_in_one_line_and_writes_nothing(self):
    self._check_refused(['binaries.run_after_kernel',
                         '--distribution_strategy=tpu', '--max_num_epochs=0'],
                        r'^error: distribution strategy tpu: no TPU found '
                        r'\(.*\); run on a TPU VM or set TPU_NAME')

  @absltest.skipIf(_IN_CHILD, 'a binary run, not a two-device test')
  def test_run_after_kernel_refuses_multi_worker_and_writes_nothing(self):
    self._check_refused(['binaries.run_after_kernel',
                         '--distribution_strategy=multi_worker',
                         '--max_num_epochs=0'],
                        r'^error: distribution_strategy=multi_worker is not '
                        r'supported by the binaries, studies and sweeps: .*')

  @absltest.skipIf(_IN_CHILD, 'a binary run, not a two-device test')
  def test_study_binary_refuses_multi_worker_and_writes_nothing(self):
    self._check_refused(['binaries.kernel_dynamics',
                         '--distribution_strategy=multi_worker'],
                        r'^error: distribution_strategy=multi_worker is not '
                        r'supported by the binaries, studies and sweeps: .*'
                        r'--executor=ray')

  def _check_refused(self, command, error_pattern):
    """The binary (module and flags) exits 2 with one `error:` line matching
    `error_pattern` and creates no output folder."""
    directory = os.path.join(tempfile.mkdtemp(), 'out')
    process = subprocess.run(
        [sys.executable, '-m'] + command + [f'--output_dir={directory}'],
        cwd=_REPO, env=_child_env(), capture_output=True, text=True,
        timeout=300, check=False)
    self.assertEqual(process.returncode, 2, process.stderr[-2000:])
    lines = [l for l in process.stderr.splitlines() if l.startswith('error:')]
    self.assertLen(lines, 1)
    self.assertRegex(lines[0], error_pattern)
    self.assertFalse(os.path.exists(directory))


@absltest.skipUnless(_MODE == 'two_cpus', 'runs in a child process with two '
                     'logical CPUs, started by test_two_logical_cpu_devices')
class TwoCpuTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.strategy = distribute.make_strategy('mirrored')
    cls.untrained = {}  # Shared by the feature tests: traced once.

  def _models(self, architecture, fresh=False):
    """The same initial network, on one device and mirrored."""
    if fresh or architecture not in self.untrained:
      keras.utils.set_random_seed(0)
      single = models.build_model(architecture, _SHAPE)
      keras.utils.set_random_seed(0)
      with self.strategy.scope():
        mirrored = models.build_model(architecture, _SHAPE)
      if fresh:
        return single, mirrored
      self.untrained[architecture] = single, mirrored
    return self.untrained[architecture]

  def test_mirrored_spans_both_cpus(self):
    self.assertIs(distribute.make_strategy('mirrored'), self.strategy)
    self.assertEqual(self.strategy.num_replicas_in_sync, 2)
    self.assertEqual(
        [d.split('/')[-1] for d in self.strategy.extended.worker_devices],
        ['device:CPU:0', 'device:CPU:1'])

  def test_model_built_in_scope_is_mirrored_with_same_weights(self):
    single, mirrored = self._models('vgg')
    self.assertIs(mirrored.distribute_strategy, self.strategy)
    for a, b in zip(single.trainable_variables, mirrored.trainable_variables):
      self.assertIsInstance(b.value, tf.distribute.DistributedValues)
      np.testing.assert_array_equal(a.numpy(), b.numpy())

  def test_expansions_and_mixed_derivative_of_mirrored_network(self):
    # Forward mode and Jacobians over mirrored variables, called outside a
    # replica context (directly in the scope): the same numbers as one
    # device (`distribute.variables_as_tensors`).
    single, mirrored = self._models('fully_connected')
    x, _ = _toy_task(6)
    outputs = {}
    for name, network in (('single', single), ('mirrored', mirrored)):
      rng = np.random.default_rng(1)
      with (self.strategy.scope() if name == 'mirrored' else
            contextlib.nullcontext()):
        linear = linearize.linearize(network)
        quadratic = taylor.taylor_expand(network)
        for delta in linear.deltas + quadratic.deltas:
          delta.assign(0.1 * rng.standard_normal(delta.shape))
        outputs[name] = (np.array(linear(x)), np.array(quadratic(x)),
                         anisotropy.mixed_derivative(network, x))
    for got, want in zip(outputs['mirrored'], outputs['single']):
      self.assertLess(_relative_error(got, want), _RTOL)
    # The deltas count: f_lin(x) is not f(theta_0, x).
    self.assertGreater(np.abs(outputs['single'][0] - single(x)).max(), 1e-3)

  @parameterized.parameters(
      # 13 = 2 x 4 + 5: the last block is ragged and split 3 / 2.
      ('vgg', 'auto', 13),
      ('vgg', 'per_layer', 16),
      ('vgg', 'auto', 1),  # Fewer examples than replicas.
      ('fully_connected', 'vectorized', 13),
  )
  def test_features_and_gram_equal_one_device(self, architecture, method, n):
    single, mirrored = self._models(architecture)
    images, _ = _toy_task(n, seed=n)
    expected = features.gradient_features(single, images, 4, method)
    actual = distribute.sharded_gradient_features(
        mirrored, images, self.strategy, batch_size=4, method=method)
    self.assertEqual(actual.shape, expected.shape)
    self.assertEqual(actual.dtype, np.float32)
    self.assertLess(_relative_error(actual, expected), _RTOL)
    self.assertLess(
        _relative_error(kernels.gram(actual), kernels.gram(expected)), _RTOL)

  @parameterized.parameters('auto', 'per_layer', 'vectorized')
  def test_engine_strategy_option_on_every_output(self, method):
    # The engine's own option (what sharded_gradient_features wraps), on a
    # model with 3 outputs, and the traced Gram built from it.
    def build():
      keras.utils.set_random_seed(1)
      return keras.Sequential([
          keras.Input(_SHAPE), keras.layers.Flatten(),
          keras.layers.Dense(6, activation='relu'), keras.layers.Dense(3)])
    single = build()
    with self.strategy.scope():
      mirrored = build()
    images, _ = _toy_task(11, seed=3)
    for index in range(3):
      expected = features.gradient_features(single, images, 4, method,
                                            output_index=index)
      actual = features.gradient_features(mirrored, images, 4, method,
                                          output_index=index,
                                          strategy=self.strategy)
      self.assertEqual(actual.shape, expected.shape)
      self.assertLess(_relative_error(actual, expected), _RTOL)
    self.assertLess(_relative_error(
        empirical.model_gram(mirrored, images, batch_size=4,
                             method=method, strategy=self.strategy),
        empirical.model_gram(single, images, batch_size=4, method=method)),
                    _RTOL)

  @parameterized.parameters('fully_connected', 'vgg')
  def test_structured_fast_path_on_two_replicas(self, architecture):
    # The factored Dense features (the fast Gram path) shard too: every
    # factor equal to one device's, and so the Grams built from them.
    single, mirrored = self._models(architecture)
    images, _ = _toy_task(13, seed=5)
    expected = features.structured_features(single, images, 4)
    actual, methods = _recorded(lambda: features.structured_features(
        mirrored, images, 4, strategy=self.strategy))[1:]
    self.assertEqual(methods, ['structured'])
    for got, want in zip(tf.nest.flatten((actual.dense, actual.other)),
                         tf.nest.flatten((expected.dense, expected.other))):
      self.assertEqual(got.shape, want.shape)
      if want.size:
        self.assertLess(_relative_error(got, want), _RTOL)
    # In the strategy's scope, no strategy= needed: the engine follows it.
    # 'auto' takes the factors where they save work (the FC net) and
    # per_layer rows otherwise (the VGG-like net, whose one Dense layer is
    # the output); 'structured' pins the factors.
    auto_path = {'fully_connected': 'structured', 'vgg': 'per_layer'}
    for method, path in (('auto', auto_path[architecture]),
                         ('structured', 'structured')):
      with distribute.scope('mirrored'):
        grams, methods = _recorded(
            lambda m=method: empirical.model_train_and_cross_gram(
                mirrored, images, images[:5], 4, method=m))[::2]
      self.assertEqual(methods, [path], method)
      for got, want in zip(grams, empirical.model_train_and_cross_gram(
          single, images, images[:5], 4, method=method)):
        self.assertLess(_relative_error(got, want), _RTOL)

  def test_loop_method_is_refused(self):
    _, mirrored = self._models('fully_connected')
    with self.assertRaisesRegex(errors.AfterKernelError,
                                "'loop' cannot be sharded"):
      distribute.sharded_gradient_features(
          mirrored, _toy_task(4)[0], self.strategy, method='loop')

  def test_full_batch_steps_equal_one_device(self):
    # One minibatch per epoch: the step does not depend on the shuffle order,
    # so mirrored SGD (gradients summed over replicas) must match one device.
    single, mirrored = self._models('fully_connected', fresh=True)
    images, labels = _toy_task(24)
    for model in (single, mirrored):
      training.train(model, images, labels, epochs=2, learning_rate=0.5,
                     batch_size=24)
    initial, _ = self._models('fully_connected')
    for a, b, c in zip(single.trainable_variables,
                       mirrored.trainable_variables,
                       initial.trainable_variables):
      self.assertLess(_relative_error(b.numpy(), a.numpy()), 1e-5)
      self.assertGreater(np.abs(a.numpy() - c.numpy()).max(), 1e-4)

  def test_minibatch_epoch_gives_finite_loss(self):
    _, mirrored = self._models('vgg', fresh=True)
    images, labels = _toy_task(40)  # Minibatches of 16, 16 and 8.
    result = training.train(mirrored, images, labels, epochs=1,
                            learning_rate=0.1, batch_size=16)
    self.assertEqual(result.epochs, 1)
    self.assertTrue(np.isfinite(result.final_train_loss))
    self.assertTrue(np.all(np.isfinite(result.epoch_losses)))

  def test_experiment_fntk_metrics_equal_default(self):
    # The FNTK (epoch 0) depends only on the seeded initialization and the
    # features, so mirrored and default runs must agree on its metrics.
    records = {}
    for name in ('default', 'mirrored'):
      directory = os.path.join(tempfile.mkdtemp(), name)
      config = dataclasses.replace(_TINY, distribution_strategy=name)
      after_kernel.run_experiment(config, directory, log=_quiet)
      (records[name],) = store.ResultStore(directory).records()
    default, mirrored = records['default'], records['mirrored']
    self.assertEqual(mirrored['distribution'],
                     {'strategy': 'mirrored', 'replicas': 2})
    self.assertEqual(default['distribution'],
                     {'strategy': 'default', 'replicas': 1})
    self.assertEqual(mirrored['config_fingerprint'],
                     default['config_fingerprint'])
    for name in ('ntk_trans_inv', 'ntk_rotation_inv', 'ntk_zoom_inv',
                 'ntk_swap_inv', 'ntk_kalignment', 'ntk_eff_rank',
                 'ntk_entropy_eff_rank', 'ntk_margin'):
      self.assertAlmostEqual(mirrored['metrics'][name],
                             default['metrics'][name], delta=1e-4, msg=name)
    self.assertEqual(mirrored['metrics']['ntk_linear_error'],
                     default['metrics']['ntk_linear_error'])
    for name in ('nn_train_loss', 'linear_error', 'ak_trans_inv',
                 'ak_kalignment'):
      self.assertTrue(np.isfinite(mirrored['metrics'][name]), name)


@absltest.skipUnless(_MODE == 'two_cpu_studies', 'runs in a child process '
                     'started by test_studies_on_two_logical_cpu_devices')
class TwoCpuStudyTest(absltest.TestCase):
  """Every study: the same Grams and records on two replicas.

  Studies that train use full-batch steps (batch = all examples): training
  is then the same SGD on both (see test_full_batch_steps_equal_one_device),
  and so are the kernels and every metric.
  """

  def _check(self, run_with, method='structured'):
    """run_with(strategy name) runs a study; its Grams must not depend on
    the strategy, and on two replicas come from the sharded `method` path
    (method=None: the study computes no Gram through `kernels.empirical`)."""
    single, _, methods = _recorded(lambda: run_with('default'))
    self.assertEqual(methods, [])
    mirrored, _, methods = _recorded(lambda: run_with('mirrored'))
    if method is None:
      self.assertEqual((single, mirrored, methods), ([], [], []))
      return
    self.assertIn(method, methods)
    self.assertNotEmpty(single)
    self.assertLen(mirrored, len(single))
    for got, want in zip(mirrored, single):
      self.assertEqual(got.shape, want.shape)
      self.assertLess(_relative_error(got, want), _RTOL)

  def _check_study(self, run, config, method='structured'):
    """`run(config, output_dir, log=, executor=)` under both strategies:
    the same Grams (`_check`) and the same metrics in every record."""
    directories = {}

    def run_with(name):
      directories[name] = tempfile.mkdtemp()
      return run(config, directories[name], log=_quiet,
                 executor=distribute.scoped_executor(runner.local_executor,
                                                     name))

    self._check(run_with, method)
    single, mirrored = (
        {r['key']: r['metrics']
         for r in store.ResultStore(directories[name]).records()}
        for name in ('default', 'mirrored'))
    self.assertNotEmpty(single)
    self.assertEqual(sorted(mirrored), sorted(single))
    for key, metrics in single.items():
      self.assertEqual(sorted(mirrored[key]), sorted(metrics), key)
      for name, value in metrics.items():
        if isinstance(value, (int, float)) and np.isfinite(value):
          self.assertAlmostEqual(mirrored[key][name], value,
                                 delta=1e-4 * max(1.0, abs(value)),
                                 msg=f'{key} {name}')

  def test_run_after_kernel_probe(self):
    self._check(lambda name: after_kernel.run_experiment(
        dataclasses.replace(_TINY, distribution_strategy=name,
                            max_num_epochs=0), tempfile.mkdtemp(),
        log=_quiet))

  def test_sweep_point(self):
    def run_with(name):
      base = dataclasses.replace(_TINY, distribution_strategy=name)
      sweeps.run_sweep(
          sweeps.Sweep('epochs', base, tasks=('digits_3v8',),
                       architectures=('fully_connected',), epochs=(0,)),
          store.ResultStore(tempfile.mkdtemp()), log=_quiet,
          executor=distribute.scoped_executor(runner.local_executor, name))
    self._check(run_with)

  def test_scaling_studies(self):
    self._check_study(kernel_dynamics.run, dataclasses.replace(
        kernel_dynamics.PRESETS['tiny'], num_runs=1, num_train=40,
        num_test=20, train_steps=2, num_snapshots=2, fit_steps=5,
        batch_size=40))
    self._check_study(data_scaling.run, dataclasses.replace(
        data_scaling.PRESETS['tiny'], num_runs=1, sample_sizes=(10, 20, 40),
        num_test=20, max_steps=2, num_bootstrap=5, batch_size=40))

  def test_after_kernel_vs_m(self):
    self._check_study(after_kernel_vs_m.run, dataclasses.replace(
        after_kernel_vs_m.PRESETS['tiny'], num_test=20, width=8, num_runs=1,
        train_sizes=(0, 20), fit_sizes=(10, 20), reference_fit_size=20,
        epochs=1, fit_steps=5, num_bootstrap=5, num_validation=20,
        full_batch=True, feature_batch_size=16))

  def test_eigenfunction_tasks_and_kernel_rotation(self):
    # Both train the network's linearization too (forward mode over the
    # mirrored theta_0: `distribute.variables_as_tensors`).
    self._check_study(eigentasks.run_study, dataclasses.replace(
        eigentasks.PRESETS['tiny'], num_train=30, num_test=10, width=8,
        eigen_indices=(1,), epochs=1, batch_size=30))
    self._check_study(kernel_rotation.run_study, dataclasses.replace(
        kernel_rotation.PRESETS['tiny'], num_train=40, num_test=20, width=8,
        num_kernel_examples=30, checkpoint_epochs=(0, 1),
        num_eigenfunctions=3, energy_ks=(1, 3, 10, 30), batch_size=40))

  def test_linearized_vs_network(self):
    # A convolutional net: Grams (effective ranks) from sharded full
    # gradient rows, not the Dense-layer factors.
    self._check_study(linearized.run_study, linearized.StudyConfig(
        dataset='digits', num_train=20, num_test=20, architecture='myrtle5',
        width_multipliers=(0.0625,), epochs=1, batch_size=20,
        rank_sample_size=10), method='vectorized')

  def test_studies_without_gram_matrices(self):
    # NADs (mixed derivatives), second-order and nonlinear-advantage models:
    # no empirical Gram, but Jacobians and forward-mode products over
    # mirrored variables; the same numbers on two replicas.
    for run, config in (
        (nads.run_study, dataclasses.replace(
            nads.PRESETS['tiny'], num_train=40, num_test=20, epochs=1,
            batch_size=40, num_nad_samples=32, nad_indices=(1,))),
        (second_order.run_study, dataclasses.replace(
            second_order.PRESETS['tiny'], num_train=40, num_test=20, width=8,
            epochs=1, batch_size=40, expansion_epochs=1)),
        (nonlinear_advantage.run_study, dataclasses.replace(
            nonlinear_advantage.PRESETS['tiny'], train_set_sizes=(20,),
            num_train=20, num_test=20, width=8, epochs=1, batch_size=20))):
      with self.subTest(study=type(config).__name__):
        self._check_study(run, config, method=None)


@absltest.skipUnless(_MODE == 'worker', 'runs in two worker processes, '
                     'started by test_two_workers_on_localhost')
class WorkerTest(absltest.TestCase):

  def test_features_and_fntk_equal_one_device(self):
    strategy = distribute.make_strategy('multi_worker')
    self.assertEqual(strategy.num_replicas_in_sync, 2)
    keras.utils.set_random_seed(0)
    single = models.build_model('vgg', _SHAPE)
    keras.utils.set_random_seed(0)
    with strategy.scope():
      mirrored = models.build_model('vgg', _SHAPE)
    images, _ = _toy_task(13)
    # Every worker gets all rows, in order.
    self.assertLess(_relative_error(
        distribute.sharded_gradient_features(mirrored, images, strategy, 4),
        features.gradient_features(single, images, 4)), _RTOL)
    # The Grams behind every kernel metric: the factored (structured) path
    # and the train x test cross-Gram, as library calls under the strategy
    # (the binaries refuse multi_worker; see distribute.MULTI_WORKER_REFUSAL).
    test_images, _ = _toy_task(7)
    for method in ('structured', 'per_layer'):
      self.assertLess(_relative_error(
          empirical.model_gram(mirrored, images, test_images, batch_size=4,
                               method=method, strategy=strategy),
          empirical.model_gram(single, images, test_images, batch_size=4,
                               method=method)), _RTOL, msg=method)
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'multi_worker is not supported'):
      dataclasses.replace(_TINY, distribution_strategy='multi_worker',
                          max_num_epochs=0).validate()

if __name__ == '__main__':
  absltest.main()
