"""Features + Gram: the default method 'auto' against every path (issue 13).

For each network and n, in one process and round-robin (3 repeats, medians):
  * 'auto': `kernels.empirical.model_gram(model, x)` with its default method,
    what every study calls;
  * each concrete path: 'structured' (Dense layers factored,
    `structured_gram(structured_features(...))`), 'per_layer' and
    'vectorized' (materialized features, then `kernels.gram`);
  * the ceiling: one batched forward + backward over the same n examples
    (`features_bench.batched_forward_backward`).
The Grams are checked against each other (max |K - K_auto| / max |K_auto|).

  python -m benchmarks.defaults_bench --architectures=fully_connected,vgg \\
      --sizes=256,1024,2048
"""

from typing import Callable, Optional, Sequence

from absl import app
from absl import flags
import keras
import numpy as np

from afterkernel import models
from afterkernel.kernels import empirical
from afterkernel.kernels import features
from afterkernel.kernels import grams
from benchmarks import common
from benchmarks import features_bench

ARCHITECTURES = ('fully_connected', 'vgg')
FULL_SIZES = (256, 1024, 2048)
AUTO = "auto (model_gram's default)"
CEILING = 'ceiling (batched fwd+bwd)'


def path_cases(model: keras.Model, x: np.ndarray,
               batch_size: int) -> list:
  """The cases of one (model, n): 'auto', each path that applies, ceiling."""
  cases = [common.Case(AUTO, lambda: empirical.model_gram(
      model, x, batch_size=batch_size))]
  if features.supports_per_layer(model):
    cases.append(common.Case('structured', lambda: grams.structured_gram(
        features.structured_features(model, x, batch_size))))
  for method in ('per_layer', 'vectorized'):
    if method == 'vectorized' or features.supports_per_layer(model):
      cases.append(common.Case(f'{method} + gram', (
          lambda m=method: grams.gram(features.gradient_features(
              model, x, batch_size, m)))))
  ceiling = features_bench.batched_forward_backward(model, batch_size)
  cases.append(common.Case(CEILING, lambda: ceiling(x)))
  return cases


def run(architectures: Sequence[str] = ARCHITECTURES,
        sizes: Sequence[int] = FULL_SIZES,
        data_dir: Optional[str] = None,
        repeats: int = common.DEFAULT_REPEATS,
        batch_size: int = features.DEFAULT_BATCH_SIZE,
        log: Optional[Callable[[str], None]] = None) -> common.Report:
  """Times every path on every (architecture, n); returns the report."""
  report = common.Report("Features + Gram: 'auto' vs every path")
  images, source = common.mnist_shaped_images(max(sizes), data_dir,
                                              (28, 28, 1))
  rows, raw = [], {}
  for architecture in architectures:
    keras.utils.set_random_seed(0)
    model = models.build_model(architecture, (28, 28, 1))
    for n in sizes:
      name = f'{architecture} n={n}'
      if log:
        log(f'  {name}')
      cases = path_cases(model, images[:n], batch_size)
      timings = common.run_cases(cases, repeats, log,
                                 warmups=features_bench.WARMUPS)
      reference = np.asarray(timings[AUTO].warmup_result, np.float64)
      best = min((c.name for c in cases if c.name not in (AUTO, CEILING)),
                 key=lambda c: timings[c].median)
      for case in cases:
        t = timings[case.name]
        result = t.warmup_result
        diff = (None if case.name == CEILING else float(
            np.max(np.abs(np.asarray(result, np.float64) - reference)) /
            np.max(np.abs(reference))))
        rows.append([name, case.name, t.median,
                     t.median / timings[AUTO].median,
                     timings[CEILING].median / t.median,
                     'fastest path' if case.name == best else '', diff,
                     t.peak_rss_mib])
        t.warmup_result = None
      raw[name] = {'timings': timings, 'fastest_path': best}
  report.tables.append(common.format_table(
      ['model, n', 'path', 'median s', "x auto's time", 'fraction of ceiling',
       '', 'max rel. diff vs auto', 'peak RSS MiB'], rows))
  report.notes.append(
      f'Inputs: {source}; medians of {repeats} round-robin repeats after '
      f'{features_bench.WARMUPS} warm-ups; load average '
      f'{common.load_average()} (shared machine).')
  report.raw = raw
  return report


def _define_flags() -> dict:
  return {
      'architectures': flags.DEFINE_list('architectures', list(ARCHITECTURES),
                                         'Networks.'),
      'sizes': flags.DEFINE_list('sizes', [str(n) for n in FULL_SIZES],
                                 'Numbers of examples.'),
      'data_dir': flags.DEFINE_string('data_dir', None,
                                      'Folder with mnist/ (noise without).'),
  }


def main(argv, defined):
  del argv
  report = run(defined['architectures'].value,
               [int(n) for n in defined['sizes'].value],
               defined['data_dir'].value or common.default_data_dir(),
               log=print)
  print(report.text())


if __name__ == '__main__':
  _FLAGS = _define_flags()
  app.run(lambda argv: main(argv, _FLAGS))
