"""Tests for afterkernel.errors."""

from absl.testing import absltest

from afterkernel import errors


class ErrorsTest(absltest.TestCase):

  def test_require(self):
    errors.require(True, 'unused')
    with self.assertRaisesRegex(errors.AfterKernelError, '^bad thing$'):
      errors.require(False, 'bad thing')

  def test_is_value_error(self):
    # Callers that already catch ValueError keep working.
    self.assertTrue(issubclass(errors.AfterKernelError, ValueError))

  def test_require_positive(self):
    errors.require_positive(0.5, 'x')
    for bad in (0, -1, None):
      with self.assertRaisesRegex(errors.AfterKernelError,
                                  'num_runs must be positive'):
        errors.require_positive(bad, 'num_runs')


if __name__ == '__main__':
  absltest.main()
