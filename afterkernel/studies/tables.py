"""Text tables and figure panels of study summaries, shared by the studies.

The task studies (eigentasks, nads, second_order) and kernel rotation print
one line per summary entry (`summary.summarize` format: 'point', 'runs',
'metrics' -> {'mean', 'ci95', ...}) with the means of chosen metrics, and
plot mean +- 95% CI of metrics against a point field; these are the one
copy of both.
"""

from typing import Any, Callable, Mapping, Optional, Sequence, Tuple

from afterkernel import plots

Entry = Mapping[str, Any]
# (column header, metric name)
Column = Tuple[str, str]
DEFAULT_NUMBER_FORMAT = '.4g'


def mean_cell(entry: Entry, metric: str, width: int,
              number_format: str = DEFAULT_NUMBER_FORMAT,
              with_ci: bool = False) -> str:
  """The mean of `metric` right-aligned in `width` ('-' when missing).

  With `with_ci`, 'mean±half' (the 95% CI half-width) when there is one.
  """
  stats = entry['metrics'].get(metric) or {}
  mean = stats.get('mean')
  if mean is None:
    return f'{"-":>{width}}'
  if with_ci and stats.get('ci95') is not None:
    return f'{mean:.4g}±{stats["ci95"]:.2g}'.rjust(width)
  return f'{mean:>{width}{number_format}}'


def format_table(entries: Sequence[Entry], index_header: str,
                 index: Callable[[Entry], Any], columns: Sequence[Column],
                 widths: Sequence[int],
                 number_formats: Optional[Mapping[str, str]] = None,
                 with_ci: bool = False,
                 note: Optional[Callable[[Entry], str]] = None) -> str:
  """One line per entry: its index, its number of runs, metric means.

  Args:
    entries: summary entries, in table order.
    index_header: the first column's header (e.g. 'j', 'epoch', 'model').
    index: entry -> the first column's value.
    columns: (header, metric) of the mean columns.
    widths: width of every column (index, runs, then one per column).
    number_formats: metric -> format spec of its mean (default '.4g').
    with_ci: show mean±ci95 where the CI exists.
    note: entry -> text after the cells (a 'note' column is added).

  Returns:
    The table, lines joined by newlines (no trailing newline).
  """
  formats = number_formats or {}
  header = [index_header, 'runs'] + [name for name, _ in columns]
  lines = [' '.join(f'{h:>{w}}' for h, w in zip(header, widths)) +
           ('  note' if note else '')]
  for entry in entries:
    cells = [f'{index(entry):>{widths[0]}}',
             f'{len(entry["runs"]):>{widths[1]}d}']
    for (_, metric), width in zip(columns, widths[2:]):
      cells.append(mean_cell(entry, metric, width,
                             formats.get(metric, DEFAULT_NUMBER_FORMAT),
                             with_ci))
    line = ' '.join(cells)
    lines.append((line + '  ' + note(entry)).rstrip() if note else line)
  return '\n'.join(lines)


def errorbar_series(axes, entries: Sequence[Entry], x_field: str,
                    series: Sequence[Tuple[str, str, str, str]]) -> None:
  """Mean +- 95% CI of each (metric, label, color, linestyle) vs x_field."""
  for metric, label, color, style in series:
    x, mean, half = plots.series(entries, x_field, metric)
    axes.errorbar(x, mean, yerr=half, label=label, color=color,
                  linestyle=style, marker='o', capsize=3)
