"""Tests of afterkernel.studies.eigentasks: spectra, Nystroem extension, alignment,
and the eigenfunction-task study on the embedded digits."""

import dataclasses
import os
import tempfile

from absl.testing import absltest
import keras
import numpy as np

from afterkernel.studies import eigentasks
from afterkernel import errors
from afterkernel.kernels import features
from afterkernel import kernel_fit
from afterkernel import models
from afterkernel.studies import store

_TINY = dataclasses.replace(eigentasks.PRESETS['tiny'], num_train=30,
                            num_test=10, width=8, eigen_indices=(1,),
                            epochs=1)


def _random_features(seed=0, n=30, m=12, p=50):
  rng = np.random.default_rng(seed)
  return rng.normal(size=(n, p)), rng.normal(size=(m, p))


def _quiet(message):
  del message


class NystroemTest(absltest.TestCase):

  def test_network_gram_and_extension_against_loop_features(self):
    # The study's Grams come from kernel_fit.EmpiricalNTK (a clone of the
    # model, structured Gram): check it on the FC net the study builds.
    keras.utils.set_random_seed(0)
    model = models.build('fully_connected', (4, 4, 1), width=6,
                         num_layers=2)
    rng = np.random.default_rng(0)
    train = rng.uniform(size=(15, 4, 4, 1)).astype(np.float32)
    test = rng.uniform(size=(5, 4, 4, 1)).astype(np.float32)
    train_features = features.gradient_features(model, train, method='loop')
    test_features = features.gradient_features(model, test, method='loop')
    kernel = kernel_fit.EmpiricalNTK(model)
    self.assertTrue(kernel.structured)
    gram, cross = kernel.train_and_cross_gram(train, test)
    np.testing.assert_allclose(gram, train_features @ train_features.T,
                               rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cross, test_features @ train_features.T,
                               rtol=1e-4, atol=1e-5)
    system = eigentasks.eigensystem(gram)
    _, singular, right = np.linalg.svd(train_features.astype(np.float64),
                                       full_matrices=False)
    got = eigentasks.nystroem_extension(cross, system, [1, 2])
    for column in range(2):
      expected = test_features @ right[column] / singular[column]
      sign = np.sign(got[:, column] @ expected)
      np.testing.assert_allclose(got[:, column], sign * expected, rtol=2e-3,
                                 atol=1e-4)

  def test_vgg_gram_against_loop_features(self):
    keras.utils.set_random_seed(1)
    model = models.build('vgg', (4, 4, 1), width=2, num_layers=1)
    inputs = np.random.default_rng(1).uniform(size=(6, 4, 4, 1)).astype(
        np.float32)
    loop = features.gradient_features(model, inputs, method='loop')
    kernel = kernel_fit.EmpiricalNTK(model)
    np.testing.assert_allclose(kernel.gram(inputs[:4], inputs),
                               loop[:4] @ loop.T, rtol=1e-4, atol=1e-5)
    # A snapshot: changing the model afterwards leaves the kernel alone.
    before = kernel.gram(inputs)
    model.set_weights([2.0 * w for w in model.get_weights()])
    np.testing.assert_array_equal(kernel.gram(inputs), before)

  def test_labels_are_signs(self):
    np.testing.assert_array_equal(
        eigentasks.eigenfunction_labels(np.array([-1.0, 0.5, 0.0, 2.0])),
        [0, 1, 0, 1])


def _entry(j, runs, **means):
  return {'point': {'eigen_index': j}, 'runs': list(range(runs)),
          'metrics': {k: {'mean': v, 'n': runs} for k, v in means.items()}}


class FormatTableTest(absltest.TestCase):

  def test_one_class_tasks_are_flagged(self):
    table = eigentasks.format_table([
        _entry(1, 2, single_class=1.0, nn_test_accuracy=1.0,
               nn_balanced_accuracy=None, majority_rate_test=1.0),
        _entry(2, 2, single_class=0.5, nn_test_accuracy=0.9),
        _entry(3, 2, single_class=0.0, nn_test_accuracy=0.8,
               nn_balanced_accuracy=0.75)]).splitlines()
    self.assertIn('maj test', table[0])
    self.assertIn('nn bal', table[0])
    self.assertTrue(table[1].endswith('ONE-CLASS 2/2'), table[1])
    self.assertTrue(table[2].endswith('ONE-CLASS 1/2'), table[2])
    self.assertNotIn('ONE-CLASS', table[3])
    self.assertIn('0.75', table[3])


class StudyTest(absltest.TestCase):

  def test_validate(self):
    for bad in (dict(eigen_indices=()), dict(eigen_indices=(0,)),
                dict(eigen_indices=(31,)), dict(loss='hinge'),
                dict(momentum=1.0), dict(architecture='resnet'),
                dict(num_train=0), dict(standardize_inputs='yes')):
      with self.assertRaises(errors.AfterKernelError):
        dataclasses.replace(_TINY, **bad).validate()
    for preset in eigentasks.PRESETS.values():
      preset.validate()
      self.assertTrue(preset.standardize_inputs)
    self.assertNotEqual(
        _TINY.fingerprint(),
        dataclasses.replace(_TINY, standardize_inputs=False).fingerprint())

  def test_load_inputs_standardizes_with_training_statistics(self):
    raw = eigentasks.load_inputs('digits', 8, 3, None, 30, 10, 0)
    task = eigentasks.load_inputs('digits', 8, 3, None, 30, 10, 0,
                                  standardize=True)
    self.assertTrue(task.info['standardized'])
    self.assertNotIn('standardized', raw.info)
    mean = raw.x_train.mean(axis=0)
    scale = np.sqrt(np.mean((raw.x_train - mean)**2))
    np.testing.assert_allclose(task.x_test, (raw.x_test - mean) / scale,
                               rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(task.y_train, raw.y_train)

  def test_tiny_study_runs_resumes_and_extends(self):
    directory = os.path.join(tempfile.mkdtemp(), 'out')
    entries = eigentasks.run_study(_TINY, directory, log=_quiet)
    self.assertEqual([e['point']['eigen_index'] for e in entries], [1])
    result_store = store.ResultStore(directory)
    self.assertLen(result_store.keys(), 1)
    for suffix in ('png', 'pdf'):
      self.assertTrue(os.path.exists(os.path.join(
          directory, f'{eigentasks.FIGURE_NAME}.{suffix}')))
    self.assertTrue(os.path.exists(os.path.join(directory,
                                                store.SUMMARY_JSON)))
    mtimes = {k: os.path.getmtime(result_store.path(k))
              for k in result_store.keys()}

    messages = []
    eigentasks.run_study(_TINY, directory, log=messages.append)
    self.assertTrue(any('skipped' in m for m in messages))
    self.assertEqual(mtimes, {k: os.path.getmtime(result_store.path(k))
                              for k in result_store.keys()})

    messages = []
    extended = dataclasses.replace(_TINY, eigen_indices=(1, 3))
    entries = eigentasks.run_study(extended, directory, log=messages.append)
    self.assertEqual([e['point']['eigen_index'] for e in entries], [1, 3])
    self.assertEqual(sum('j =' in m for m in messages), 1)  # only j = 3
    self.assertEqual(mtimes, {k: os.path.getmtime(result_store.path(k))
                              for k in mtimes})
    for entry in entries:
      metrics = {k: v['mean'] for k, v in entry['metrics'].items()}
      for name in ('nn_test_accuracy', 'lin_test_accuracy',
                   'plus_fraction_test'):
        self.assertBetween(metrics[name], 0.0, 1.0)
      self.assertBetween(metrics['majority_rate_test'], 0.5, 1.0)
      self.assertGreater(metrics['alpha_init'], 0.0)
      self.assertGreater(metrics['alpha_after'], 0.0)
    record = result_store.get(eigentasks.record_key(3, 0))
    self.assertTrue(record['data']['standardized'])
    self.assertEqual(record['metrics']['single_class'], 0.0)
    for name in ('nn', 'lin'):
      self.assertBetween(record['metrics'][f'{name}_balanced_accuracy'], 0.0,
                         1.0)
    # The resumed run rebuilt the same initialization: same spectrum.
    self.assertGreater(entries[0]['metrics']['eigenvalue']['mean'],
                       entries[1]['metrics']['eigenvalue']['mean'])
    for entry in entries:  # single_class says whether a split is one class
      metrics = {k: v['mean'] for k, v in entry['metrics'].items()}
      one_class = any(metrics[f'plus_fraction_{split}'] in (0.0, 1.0)
                      for split in ('train', 'test'))
      self.assertEqual(metrics['single_class'], float(one_class))
      self.assertEqual('ONE-CLASS' in eigentasks.format_table([entry]),
                       one_class)

    for changed in (dict(epochs=2), dict(standardize_inputs=False)):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'different configuration'):
        eigentasks.run_study(dataclasses.replace(_TINY, **changed),
                             directory, log=_quiet)


if __name__ == '__main__':
  absltest.main()
