r"""Draws the paper's figures (Figs 1-16, numbered as in the paper) from a store.

  python -m binaries.plot_results --store_dir=results/cpu

writes results/cpu/figures/fig01_svm_error_vs_epochs.{png,pdf}, ... one file
per figure and format, and prints a line per figure: the files written, or
why it was skipped (e.g. "skipped fig09_lr_svm_error: no records of the
'learning_rate' family; run python -m binaries.sweep_learning_rate ...").

  python -m binaries.plot_results --store_dir=results/cpu --figures=fig14

draws just Fig 14 (also: 14, or a full name; the project's own extra figures
by name: lr_epochs_to_target, width_svm_and_swap_vs_epochs); a figure named
here that the store cannot support is an error naming the sweep to run.
Lines are means over runs with 95% confidence bands; each caption states the
protocol and the number of runs from the store. See
afterkernel/paper_figures.py for what each figure shows. Also refreshes
STORE/summary.{csv,json}.

A folder written by run_after_kernel or linearized_vs_network (runs.jsonl,
no records/) is converted first: its runs become records/ (runs.jsonl is
kept; see afterkernel.studies.store.convert_runs_to_records).
"""

import os

from afterkernel import paper_figures
from afterkernel import plots
from afterkernel.studies import store as store_lib
from binaries import flags
from binaries import mains

STORE_DIR = flags.define_folder('store_dir')
FIGURE_DIR = flags.define_string(
    'figure_dir', None, 'Where the figures go (default: STORE/figures).')
FORMATS = flags.define_list('formats', plots.FORMATS,
                            'File formats (matplotlib\'s: png, pdf, svg, ...).')
FIGURES = flags.define_list(
    'figures', None, 'Only these figures, e.g. fig01,fig05 or 14, or the '
    'extra figures lr_epochs_to_target, width_svm_and_swap_vs_epochs '
    '(default: the sixteen paper figures the store supports).')


def main(argv):

  def body():
    mains.require_no_arguments(argv)
    store_dir = mains.require_folder(STORE_DIR, 'the result store to plot')
    figure_dir = FIGURE_DIR.value or os.path.join(store_dir, 'figures')
    entries = store_lib.summarize_store(store_dir)
    names = None if FIGURES.value is None else list(FIGURES.value)
    written = paper_figures.render_all(entries, figure_dir,
                                       list(FORMATS.value), names=names)
    print(f'{len(written)} figures in {os.path.abspath(figure_dir)}')

  return mains.main_status(body)


if __name__ == '__main__':
  flags.run(main)
