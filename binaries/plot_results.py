r"""Draws the paper's figures (Figs 1-16) from a result store.

  python -m binaries.plot_results --store_dir=results/cpu

writes results/cpu/figures/fig01_svm_error_vs_epochs.{png,pdf}, ... one file
per figure and format, and prints a line per figure: the files written, or
why it was skipped (e.g. "skipped fig09_lr_svm_error: no records of the
'learning_rate' family"). Lines are means over runs with 95% confidence
bands; see afterkernel/plots.py for what each figure shows. Also refreshes
STORE/summary.{csv,json}.

A folder written by run_after_kernel or linearized_vs_network (runs.jsonl,
no records/) is converted first: its runs become records/ (runs.jsonl is
kept; see afterkernel.studies.store.convert_runs_to_records).
"""

import os
import sys

from absl import app
from absl import flags

from afterkernel import errors
from afterkernel import plots
from afterkernel.studies import store as store_lib

_STORE_DIR = flags.DEFINE_string('store_dir', None,
                                 'The result store to plot.')
flags.mark_flag_as_required('store_dir')
_FIGURE_DIR = flags.DEFINE_string(
    'figure_dir', None, 'Where the figures go (default: STORE/figures).')
_FORMATS = flags.DEFINE_list('formats', list(plots.FORMATS),
                             'File formats: png, pdf, svg.')
_FIGURES = flags.DEFINE_list(
    'figures', None, 'Only these figures, e.g. fig01,fig05 (default: all).')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {" ".join(argv[1:])}')
  figure_dir = _FIGURE_DIR.value or os.path.join(_STORE_DIR.value, 'figures')
  try:
    entries = store_lib.summarize_store(_STORE_DIR.value)
    written = plots.render_all(entries, figure_dir, _FORMATS.value,
                               names=_FIGURES.value)
  except errors.AfterKernelError as e:
    print(f'error: {e}', file=sys.stderr)
    return 2
  print(f'{len(written)} figures in {os.path.abspath(figure_dir)}')
  return 0


if __name__ == '__main__':
  app.run(main)
