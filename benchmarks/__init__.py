"""Benchmarks of afterkernel against the original after-kernel methods.

Not part of the test suite (tests/benchmarks_test.py only runs the code paths
at toy size). Run everything with `python -m benchmarks.run_all [--quick]`;
BENCHMARKS.md at the project root records the measured tables.

Modules:
  * `common`: timing (medians of round-robin repeats), peak RSS, tables.
  * `baselines`: the original methods, written here as the reference:
    eager `tf.GradientTape.jacobian` features and the primal eager-TF
    Algorithm 1 loop.
  * `features_bench`, `gram_bench`, `margin_bench`, `end_to_end_bench`: the
    benchmarks 1-4 of issue 3 (each reports peak RSS, item 5).
  * `run_all`: the command-line entry point.
"""
