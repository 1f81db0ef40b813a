"""Tests for afterkernel.kernels against direct numpy formulas."""

from absl.testing import absltest
from absl.testing import parameterized
import numpy as np

from afterkernel import errors
from afterkernel import kernels


if __name__ == '__main__':
  absltest.main()
