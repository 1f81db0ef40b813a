"""Tests of binaries/mains.py: the study and sweep main bodies."""

import contextlib
import dataclasses
import io
import signal
import tempfile
from typing import Tuple

from absl import flags as absl_flags
from absl.testing import absltest

from afterkernel import errors
from afterkernel.studies import runner
from afterkernel.studies import after_kernel
from afterkernel.studies import store
from afterkernel.studies import sweeps
from binaries import flags
from binaries import mains


@dataclasses.dataclass(frozen=True)
class _Config:
  """A test configuration.

  Attributes:
    size: how many.
    sizes: several sizes.
  """
  size: int = 3
  sizes: Tuple[int, ...] = (1, 2)

  def validate(self):
    errors.require(self.size > 0, f'size must be positive, got {self.size}')


class StudyMainTest(absltest.TestCase):

  def _run(self, *argv, positional=('prog',)):
    values = absl_flags.FlagValues()
    study = mains.StudyFlags(_Config, {'tiny': _Config()}, 'tiny',
                             'for tests', flag_values=values)
    values(['prog'] + list(argv))
    calls = []

    def run(config, output_dir, log, executor):
      log('running')
      # Without --executor the study runs locally, with no Ray import.
      self.assertIs(executor, runner.local_executor)
      calls.append((config, output_dir))
      return 'result'

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
      code = mains.study_main(list(positional), study, run,
                              lambda result, config: f'table {result}',
                              'figure', footer='footnote')
    return code, out.getvalue(), err.getvalue(), calls

  def test_runs_the_study_and_prints_its_table(self):
    code, out, err, calls = self._run('--output_dir=/tmp/out', '--size=2')
    self.assertEqual((code, err), (0, ''))
    self.assertEqual(calls, [(_Config(size=2), '/tmp/out')])
    for text in ('running', 'table result', 'footnote', 'figure.png'):
      self.assertIn(text, out)

  def test_bad_input_is_one_error_line_and_status_2_without_running(self):
    for argv, positional in ((('--size=2',), ('prog',)),
                             (('--output_dir=/tmp/o', '--size=-1'),
                              ('prog',)),
                             (('--output_dir=/tmp/o', '--preset=huge'),
                              ('prog',)),
                             (('--output_dir=/tmp/o',), ('prog', 'extra'))):
      code, out, err, calls = self._run(*argv, positional=positional)
      self.assertEqual(code, 2)
      self.assertEqual((out, calls), ('', []))
      self.assertLen(err.strip().splitlines(), 1)
      self.assertStartsWith(err, 'error: ')


class LostCtrlCTest(absltest.TestCase):
  """A Ctrl-C whose KeyboardInterrupt a library swallowed still stops the run
  at the next record (status 130, the record kept)."""

  def test_store_stops_at_the_next_record(self):
    folder = tempfile.mkdtemp()
    written = []

    def body():
      try:
        signal.raise_signal(signal.SIGINT)  # The handler raises ...
      except KeyboardInterrupt:
        pass  # ... and something swallows it.
      result_store = store.ResultStore(folder)
      for index in range(3):
        result_store.put({'key': f'r{index}'})
        written.append(index)

    before = signal.getsignal(signal.SIGINT)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
      status = mains.main_status(body)
    self.assertEqual(status, mains.INTERRUPTED_STATUS)
    self.assertEqual(written, [])  # Stopped right after the first record,
    self.assertEqual(store.ResultStore(folder).keys(), ['r0'])  # kept.
    self.assertIn('interrupted:', stderr.getvalue())
    # The previous SIGINT handler is back, and the next run starts clean.
    self.assertIs(signal.getsignal(signal.SIGINT), before)
    self.assertEqual(mains.main_status(lambda: 0), 0)

  def test_body_finishing_after_a_lost_interrupt_is_interrupted(self):

    def body():
      try:
        signal.raise_signal(signal.SIGINT)
      except KeyboardInterrupt:
        pass
      return 0

    with contextlib.redirect_stderr(io.StringIO()):
      self.assertEqual(mains.main_status(body), mains.INTERRUPTED_STATUS)


class ScalingClassesTest(absltest.TestCase):

  def test_two_class_datasets_get_classes_1_vs_0_unless_given(self):
    for overrides, expected in (
        ({'dataset': 'synthetic'}, (1, 0)),
        ({'dataset': 'mnist'}, (8, 3)),
        ({'dataset': 'synthetic', 'plus_class': 0, 'minus_class': 1},
         (0, 1))):
      mains.scaling_classes(overrides)
      self.assertEqual((overrides['plus_class'], overrides['minus_class']),
                       expected)
    overrides = {'width': 3}
    mains.scaling_classes(overrides)
    self.assertEqual(overrides, {'width': 3})


class SweepFlagsTest(absltest.TestCase):

  def test_flags_change_the_paper_sweep_and_its_base(self):
    values = absl_flags.FlagValues()
    paper = sweeps.Sweep(family='epochs', base=mains.PAPER_SWEEP_BASE)
    sweep_flags = flags.define_config_flags(
        sweeps.Sweep, only=mains.SWEEP_FIELDS + ('epochs',),
        flag_values=values)
    base_flags = flags.define_config_flags(
        after_kernel.ExperimentConfig, only=mains.SWEEP_BASE_FIELDS,
        flag_values=values)
    values(['prog'])
    self.assertEqual(mains.sweep_from_flags(paper, sweep_flags, base_flags),
                     paper)
    values.unparse_flags()
    values(['prog', '--epochs=0,2', '--num_zooms=5', '--augmentation=true'])
    sweep = mains.sweep_from_flags(paper, sweep_flags, base_flags)
    self.assertEqual(sweep, dataclasses.replace(
        paper, epochs=(0, 2), augmentation=(True,),
        base=dataclasses.replace(paper.base, num_zooms=5)))
    # The paper's sample sizes, not ExperimentConfig's defaults.
    self.assertEqual(sweep.base.num_translations, mains.PAPER_SAMPLE_SIZE)
    self.assertEqual(sweep.base.num_runs, sweeps.PAPER_NUM_RUNS)


if __name__ == '__main__':
  absltest.main()
