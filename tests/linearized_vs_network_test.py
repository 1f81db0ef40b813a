"""Smoke and bad-input tests of binaries/linearized_vs_network.py."""

import os
import tempfile

from absl import flags
from absl.testing import absltest
from absl.testing import flagsaver

from afterkernel.studies import linearized as linearized_study
from afterkernel.studies import store
import binary_flags

FLAGS = flags.FLAGS
linearized_vs_network = None  # loaded in setUpModule, see binary_flags


def setUpModule():
  global linearized_vs_network
  linearized_vs_network = binary_flags.load_binary('binaries.linearized_vs_network')
_TINY_FLAGS = ('--dataset=digits', '--num_train=50', '--num_test=30',
               '--architecture=myrtle5', '--width_multipliers=0.0625',
               '--epochs=1', '--batch_size=25', '--rank_sample_size=10',
               '--momentum=0.5', '--weight_decay=1e-4')


def _run_main(*argv):
  with flagsaver.flagsaver():
    FLAGS.unparse_flags()
    FLAGS(['linearized_vs_network'] + list(argv))
    return linearized_vs_network.main(['linearized_vs_network'])


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
    directory = tempfile.mkdtemp()
    self.assertEqual(_run_main(*_TINY_FLAGS, '--width_multipliers=wide',
                               f'--output_dir={directory}'), 1)
    self.assertEqual(_run_main(*_TINY_FLAGS, '--momentum=2',
                               f'--output_dir={directory}'), 1)
    self.assertEqual(_run_main(*_TINY_FLAGS), 1)  # No --output_dir.


if __name__ == '__main__':
  absltest.main()
