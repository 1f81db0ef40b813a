"""Tests of afterkernel/studies/fields.py: the config fields studies share."""

import dataclasses

from absl.testing import absltest
import numpy as np

from afterkernel import models
from afterkernel.studies import eigentasks
from afterkernel.studies import fields
from binaries import flags

_GROUPS = (fields.TaskSourceFields, fields.TaskFields, fields.NetworkFields,
           fields.SgdFields)


def _defaults(config_class) -> dict:
  return {f.name: f.default for f in dataclasses.fields(config_class)}


@dataclasses.dataclass(frozen=True)
class _AllGroups(fields.TaskFields, fields.NetworkFields, fields.SgdFields):
  pass  # No docstring of its own: help must come from the groups'.


@dataclasses.dataclass(frozen=True)
class _WiderSlowerConfig(fields.TaskFields, fields.NetworkFields,
                         fields.SgdFields):
  """A study that changes two defaults and nothing else."""
  width: int = 64
  learning_rate: float = 0.5


class DefaultsTest(absltest.TestCase):

  def test_every_group_has_its_documented_defaults(self):
    self.assertEqual(_defaults(fields.TaskSourceFields),
                     {'dataset': 'digits', 'plus_class': 8, 'minus_class': 3,
                      'data_dir': None})
    self.assertEqual(_defaults(fields.TaskFields),
                     {'dataset': 'digits', 'plus_class': 8, 'minus_class': 3,
                      'data_dir': None, 'num_train': 200, 'num_test': 100})
    self.assertEqual(_defaults(fields.NetworkFields),
                     {'architecture': 'fully_connected', 'width': 16,
                      'num_layers': 1, 'num_runs': 1, 'seed': 0})
    self.assertEqual(_defaults(fields.SgdFields),
                     {'epochs': 3, 'batch_size': 32, 'learning_rate': 0.05,
                      'momentum': 0.9, 'loss': 'bce'})

  def test_groups_are_frozen(self):
    config = fields.SgdFields()
    with self.assertRaises(dataclasses.FrozenInstanceError):
      config.epochs = 5  # pytype: disable=not-writable

  def test_redeclared_default_changes_only_that_field(self):
    inherited = _defaults(_AllGroups)
    changed = _defaults(_WiderSlowerConfig)
    self.assertEqual(changed['width'], 64)
    self.assertEqual(changed['learning_rate'], 0.5)
    self.assertEqual(set(changed), set(inherited))
    self.assertEqual({k: v for k, v in changed.items()
                      if k not in ('width', 'learning_rate')},
                     {k: v for k, v in inherited.items()
                      if k not in ('width', 'learning_rate')})
    self.assertEqual(inherited['width'], 16)
    self.assertEqual(inherited['learning_rate'], 0.05)


class SeededNetworkTest(absltest.TestCase):

  _SHAPE = (6,)

  def _weights(self, network):
    return [v.numpy() for v in network.trainable_variables]

  def test_seed_is_config_seed_plus_run(self):
    config = fields.NetworkFields(width=4, seed=11)
    self.assertEqual(config.seeded_network(0, self._SHAPE)[0], 11)
    self.assertEqual(config.seeded_network(3, self._SHAPE)[0], 14)

  def test_same_seed_and_run_same_weights_other_run_other_weights(self):
    config = fields.NetworkFields(width=5, seed=2)
    _, first = config.seeded_network(1, self._SHAPE)
    _, again = config.seeded_network(1, self._SHAPE)
    _, other = config.seeded_network(2, self._SHAPE)
    for a, b in zip(self._weights(first), self._weights(again)):
      np.testing.assert_array_equal(a, b)
    # Same seed + run from another (seed, run) pair: same network too.
    _, shifted = fields.NetworkFields(width=5, seed=3).seeded_network(
        0, self._SHAPE)
    for a, b in zip(self._weights(first), self._weights(shifted)):
      np.testing.assert_array_equal(a, b)
    self.assertFalse(np.array_equal(self._weights(first)[0],
                                    self._weights(other)[0]))

  def test_network_is_the_registry_build_of_the_config(self):
    config = fields.NetworkFields(width=7, num_layers=2)
    _, network = config.seeded_network(0, self._SHAPE)
    self.assertEqual(tuple(network.input_shape[1:]), self._SHAPE)
    self.assertEqual(network.output_shape, (None, 1))
    # Flatten, 2 x Dense(7, relu), Dense(1), all with biases: by hand.
    d, w = self._SHAPE[0], 7
    by_hand = (d * w + w) + (w * w + w) + (w + 1)
    self.assertEqual(models.count_parameters(network), by_hand)
    self.assertEqual(models.parameter_count('fully_connected', self._SHAPE,
                                            width=7, num_layers=2), by_hand)


class FlagHelpTest(absltest.TestCase):

  def _shared_names(self):
    names = set()
    for group in _GROUPS:
      names |= {f.name for f in dataclasses.fields(group)}
    return sorted(names)

  def test_every_shared_field_of_a_study_config_has_help(self):
    study_names = {f.name for f in
                   dataclasses.fields(eigentasks.EigentaskConfig)}
    for name in self._shared_names():
      self.assertIn(name, study_names)
      text = flags.field_help(eigentasks.EigentaskConfig, name)
      self.assertNotEmpty(text.strip(), name)

  def test_groups_docstrings_document_a_subclass_without_its_own(self):
    docs = flags.field_docs(_AllGroups)
    self.assertEqual(sorted(docs), self._shared_names())
    # Texts from the groups' Attributes sections, not SHARED_HELP.
    self.assertEqual(flags.field_help(_AllGroups, 'num_runs'),
                     'independent initializations (seed + run).')
    self.assertEqual(flags.field_help(_AllGroups, 'num_train'),
                     'training examples (a subset fixed by `seed`).')
    self.assertNotEqual(flags.field_help(_AllGroups, 'num_runs'),
                        flags.SHARED_HELP['num_runs'])


if __name__ == '__main__':
  absltest.main()
