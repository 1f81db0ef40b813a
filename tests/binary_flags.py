"""Runs a binary's main in-process the way `binaries.flags.run` does.

Every binary can be imported into one process (`binaries/flags.py` defines
a shared flag once), so tests import their binary normally; this helper only
parses a command line as the binary would, with a bad flag giving status 2
and one `error:` line (absl's own parsing would raise in the test instead).
"""

from typing import Sequence
import types

from absl import flags
from absl.testing import flagsaver

from binaries import flags as binary_flags

FLAGS = flags.FLAGS


def run_main(binary: types.ModuleType, argv: Sequence[str]) -> int:
  """Parses `argv` (without the program) and runs `binary.main`.

  Flags are restored afterwards, so tests do not see each other's values.

  Returns:
    The exit status: main's, or 2 when the flags do not parse.
  """
  program = binary.__name__.rsplit('.', 1)[-1]
  with flagsaver.flagsaver():
    FLAGS.unparse_flags()
    try:
      # A binary with its own parser (run_after_kernel reads the original
      # script's spellings) is parsed by it, as `flags.run` does.
      parse = getattr(binary, 'parse_flags', binary_flags.parse_flags)
      remaining = parse([program] + list(argv))
    except SystemExit as e:
      return e.code
    return binary.main(remaining)
