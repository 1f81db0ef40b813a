"""A small synthetic result store with data for every figure (test helper).

Records look like those `sweeps.run_sweep` writes (same fields, metric names
and key scheme) but their metrics are made-up smooth curves plus seeded
noise, so plotting and summarizing can be tested in a second without
training anything. Not a test module itself.
"""

import hashlib
import math

import numpy as np

from afterkernel.studies import store as store_lib

TASKS = (('mnist_3v8', 'mnist', 8, 3), ('cifar10_3v5', 'cifar10', 5, 3))
ARCHITECTURES = ('vgg', 'fully_connected')
EPOCHS = (0, 1, 3, 10)
LEARNING_RATES = (0.01, 0.03, 0.1)
WIDTHS = (60_000, 100_000)
NUM_RUNS = 2


def _metrics(rng, progress, architecture):
  """Plausible metrics for a kernel `progress` in [0, 1] of the way trained."""
  sign = 1.0 if architecture == 'vgg' else -1.0
  noise = lambda: float(rng.normal(0.0, 0.005))
  return {
      'svm_error': 0.10 - 0.06 * progress + noise(),
      'conjugate_svm_error': 0.14 - 0.07 * progress + noise(),
      'nn_error': 0.30 - 0.25 * progress + noise(),
      'trans_inv': 0.80 + 0.10 * progress + noise(),
      'zoom_inv': 0.82 + 0.08 * progress + noise(),
      'rotation_inv': 0.84 + 0.09 * progress + noise(),
      'swap_inv': 0.75 - sign * 0.05 * progress + noise(),
      'kalignment': 0.99 - 0.2 * progress + noise(),
      'epochs_trained': 10.0 * 2 ** int(3 * (1 - progress)),
      'svm_converged': 1.0,
  }


def _record(family, task, architecture, run, rng, epoch=None,
            learning_rate=0.01, augment=False, num_parameters=None):
  name, dataset, plus_class, minus_class = task
  progress = (math.log1p(epoch) / math.log1p(max(EPOCHS)) if epoch is not None
              else learning_rate / max(LEARNING_RATES))
  point_id = hashlib.sha256(repr(
      (family, name, architecture, epoch, learning_rate, augment,
       num_parameters)).encode()).hexdigest()[:16]
  point = {
      'family': family, 'task': name, 'dataset': dataset,
      'plus_class': plus_class, 'minus_class': minus_class,
      'nn_architecture': architecture, 'num_parameters': num_parameters,
      'use_augmentation': augment, 'learning_rate': learning_rate,
      'training_loss_target': 0.01 if family == 'learning_rate' else None,
      'train_subset': 100, 'test_subset': 50, 'epoch': epoch,
  }
  metrics = _metrics(rng, progress, architecture)
  if augment and epoch:
    metrics['nn_error'] -= 0.02
  return {'key': f'{family}-{point_id}-run{run:04d}', 'family': family,
          'point_id': point_id, 'point': point, 'run': run, 'seed': run,
          'checkpoint': 'final' if epoch is None else epoch,
          'version': 'fixture', 'metrics': metrics, 'timings': {}}


def fixture_records(seed: int = 0) -> list:
  """Every record of the fixture store."""
  rng = np.random.default_rng(seed)
  records = []
  for task in TASKS:
    for architecture in ARCHITECTURES:
      for run in range(NUM_RUNS):
        for augment in (False, True):
          for epoch in EPOCHS:
            records.append(_record('epochs', task, architecture, run, rng,
                                   epoch=epoch, augment=augment))
          for rate in LEARNING_RATES:
            records.append(_record('learning_rate', task, architecture, run,
                                   rng, learning_rate=rate, augment=augment))
        for width in WIDTHS:
          for epoch in EPOCHS:
            records.append(_record('width', task, architecture, run, rng,
                                   epoch=epoch, num_parameters=width))
  return records


def write_fixture_store(directory: str, seed: int = 0) -> list:
  """Writes the fixture's records into a store at `directory`; returns them."""
  result_store = store_lib.ResultStore(directory)
  records = fixture_records(seed)
  for record in records:
    result_store.put(record)
  return records
