"""Smoke and bad-input tests of binaries/linearized_vs_network.py."""

import os
import tempfile

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from afterkernel.studies import linearized as linearized_study
from afterkernel.studies import store
from binaries import linearized_vs_network
import binary_flags

FLAGS = flags.FLAGS
_TINY_FLAGS = ('--dataset=digits', '--num_train=50', '--num_test=30',
               '--architecture=myrtle5', '--width_multipliers=0.0625',
               '--epochs=1', '--batch_size=25', '--rank_sample_size=10',
               '--momentum=0.5', '--weight_decay=1e-4')


def _run_main(*argv):
  return binary_flags.run_main(linearized_vs_network, argv)


class MainTest(absltest.TestCase):

  def test_tiny_run_writes_results_and_figure(self):
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY_FLAGS, f'--output_dir={directory}'), 0)
    records = store.ResultStore(directory).records()
    self.assertLen(records, 1)
    self.assertIn('lin_test_accuracy', records[0]['metrics'])
    self.assertTrue(os.path.exists(os.path.join(
        directory, linearized_study.FIGURE_FILE)))

  def test_bad_flag_is_one_line_error(self):
    # Status 2 as in every binary (0.1.0 returned 1 here).
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY_FLAGS, '--width_multipliers=wide',
                               f'--output_dir={directory}'), 2)
    self.assertEqual(_run_main(*_TINY_FLAGS, '--momentum=2',
                               f'--output_dir={directory}'), 2)
    self.assertEqual(_run_main(*_TINY_FLAGS), 2)  # No --output_dir.

  def test_flags_not_given_keep_study_config_defaults(self):
    with flagsaver.flagsaver():
      FLAGS.unparse_flags()
      FLAGS(['prog', '--epochs=3', '--width_multipliers=0.5,2'])
      config = linearized_vs_network.config_from_flags()
    self.assertEqual(config, linearized_study.StudyConfig(
        epochs=3, width_multipliers=(0.5, 2.0)))


if __name__ == '__main__':
  absltest.main()
