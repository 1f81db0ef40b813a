"""Tests of afterkernel.studies.after_kernel_config: the experiment's config,
network and task (the 0.1.0 fingerprint test moved from after_kernel_test,
its assertions kept)."""

import dataclasses

from absl.testing import absltest

from afterkernel import errors
from afterkernel import models
from afterkernel.studies import after_kernel
from afterkernel.studies import after_kernel_config

_TINY = after_kernel_config.ExperimentConfig(
    dataset='digits', plus_class=8, minus_class=3, train_subset=48,
    test_subset=24, nn_architecture='fully_connected', num_layers=1,
    num_parameters=3000, max_num_epochs=2, num_runs=2, num_translations=8,
    num_zooms=8, num_swaps=8, num_rotations=8, ker_alignment_sample_size=10,
    effective_rank_sample_size=12, svm_max_iterations=3000)


class ExperimentConfigTest(absltest.TestCase):

  def test_fingerprint_is_the_0_1_0_hash(self):
    # Independent of store.config_fingerprint: the 0.1.0 formula, so folders
    # written by 0.1.0 still resume.
    import hashlib  # pylint: disable=g-import-not-at-top
    import json  # pylint: disable=g-import-not-at-top
    # Solving the SVM once (no tightening), as 0.1.0 did.
    once = dataclasses.replace(_TINY, svm_min_tolerance=None)
    fields = once.to_dict()
    for name in ('num_runs', 'data_dir', 'feature_batch_size',
                 'feature_method', 'memory_budget_gb', 'distribution_strategy',
                 'measure_ntk', 'svm_device', 'width',
                 'svm_min_tolerance'):  # Added after 0.1.0; see below.
      fields.pop(name)
    expected = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()
                              ).hexdigest()[:16]
    self.assertTrue(once.measure_ntk)
    self.assertIsNone(once.width)
    self.assertEqual(once.fingerprint(), expected)
    # A floor at or above svm_tolerance also solves once: the same hash.
    self.assertEqual(dataclasses.replace(
        _TINY, svm_min_tolerance=_TINY.svm_tolerance).fingerprint(), expected)
    # The default tightens the SVM, which can change its numbers: a new
    # fingerprint, so 0.1.0 folders are not silently mixed with it.
    self.assertNotEqual(_TINY.fingerprint(), expected)
    self.assertNotEqual(dataclasses.replace(
        _TINY, svm_min_tolerance=1e-8).fingerprint(), _TINY.fingerprint())
    # Configurations the option cannot change keep their hash: no SVM, or
    # a solver that solves once (the original script's jst1 among them).
    for changes in (dict(train_linear_model=False), dict(svm_solver='jst1'),
                    dict(svm_solver='dual'), dict(svm_solver='sklearn'),
                    dict(svm_solver='primal')):
      self.assertEqual(
          dataclasses.replace(_TINY, **changes).fingerprint(),
          dataclasses.replace(once, **changes).fingerprint(), changes)
    self.assertNotEqual(
        dataclasses.replace(_TINY, svm_solver='interior_point').fingerprint(),
        dataclasses.replace(once, svm_solver='interior_point').fingerprint())

  def test_validate_names_the_bad_field(self):
    _TINY.validate()
    for pattern, changes in (('unknown dataset', dict(dataset='imagenet')),
                             ('both 3', dict(plus_class=3)),
                             ('num_translations',
                              dict(num_translations=-1)),
                             ('svm_tolerance', dict(svm_tolerance=-1.0)),
                             ('svm_min_tolerance',
                              dict(svm_min_tolerance=0.0)),
                             ('^svm_device: device must be one of auto, '
                              'cpu, gpu', dict(svm_device='tpu')),
                             ('feature_method.*structured',
                              dict(feature_method='fast'))):
      with self.assertRaisesRegex(errors.AfterKernelError, pattern):
        dataclasses.replace(_TINY, **changes).validate()

  def test_svm_device_changes_no_result_hence_not_the_fingerprint(self):
    on_tf = dataclasses.replace(_TINY, svm_device='/CPU:0')
    on_tf.validate()
    self.assertEqual(on_tf.fingerprint(), _TINY.fingerprint())
    # The Gram path too (same Gram to float32 rounding): 'structured' pins
    # the factored Dense Grams, the feature rows stay 'auto'.
    pinned = dataclasses.replace(_TINY, feature_method='structured')
    pinned.validate()
    self.assertEqual(pinned.fingerprint(), _TINY.fingerprint())

  def test_task_sizes_and_network(self):
    task = after_kernel_config.load_task(_TINY)
    self.assertEqual(task.x_train.shape[1:], (8, 8, 1))
    with self.assertRaisesRegex(errors.AfterKernelError,
                                'exceeds the 24 test images'):
      after_kernel_config.load_task(dataclasses.replace(_TINY, num_zooms=25))
    # Every sample size over the test set is named in the one message.
    with self.assertRaisesRegex(
        errors.AfterKernelError,
        r'^num_translations=30, num_swaps=25 exceed the 24 test images .*'
        r'lower them to at most 24$'):
      after_kernel_config.load_task(dataclasses.replace(
          _TINY, num_translations=30, num_swaps=25))
    network = after_kernel_config.build_network(_TINY, (8, 8, 1))
    self.assertEqual(network.count_params(),
                     models.count_parameters(network))
    self.assertLessEqual(abs(models.count_parameters(network) - 3000), 300)

  def test_after_kernel_keeps_the_names(self):
    self.assertIs(after_kernel.ExperimentConfig,
                  after_kernel_config.ExperimentConfig)
    self.assertIs(after_kernel.load_task, after_kernel_config.load_task)
    self.assertIs(after_kernel.build_network,
                  after_kernel_config.build_network)


if __name__ == '__main__':
  absltest.main()
