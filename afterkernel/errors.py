"""The one exception type for bad input, so binaries can print it in one line.

Every check of user input in afterkernel (flags, shapes, label sets, data
paths, non-finite features) raises `AfterKernelError` with a message that
names the problem and, where there is one, the fix. Binaries catch exactly this
type and print `error: <message>`; anything else is a bug and keeps its
traceback.
"""


class AfterKernelError(ValueError):
  """Bad input to afterkernel: the message names the problem and the fix."""


def require(condition: bool, message: str) -> None:
  """Raises `AfterKernelError(message)` unless `condition` holds.

  Args:
    condition: the check that must hold.
    message: one line naming the offending input and what would be valid.

  Raises:
    AfterKernelError: if `condition` is false.
  """
  if not condition:
    raise AfterKernelError(message)


def require_positive(value, name: str) -> None:
  """Raises `AfterKernelError` unless `value` is a number > 0.

  Args:
    value: the number to check (int or float).
    name: the flag or argument name, used in the message.

  Raises:
    AfterKernelError: if `value` is not strictly positive.
  """
  require(value is not None and value > 0,
          f'{name} must be positive, got {value!r}')


def require_choice(value, choices, name: str) -> None:
  """Raises `AfterKernelError` unless `value` is one of `choices`.

  The one message for every enumerated option: "unknown NAME 'x'; choose
  one of a, b, c".

  Args:
    value: the given value.
    choices: the valid values (strings).
    name: the flag or field name, used in the message.

  Raises:
    AfterKernelError: if `value` is not in `choices`.
  """
  require(value in choices, f'unknown {name} {value!r}; choose one of '
          f'{", ".join(choices)}')
