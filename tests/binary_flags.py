"""Loads a binary for in-process tests without absl flag clashes.

Every absl binary defines its flags when imported, into the one global
`flags.FLAGS`; two binaries that share a flag name (--dataset, --output_dir,
...) cannot both be imported into one pytest process. Test modules therefore
load their binary in `setUpModule` through `load_binary`, which first forgets
the flags other `binaries.*` modules defined (tests of one module run
together, so only the current binary's flags are needed at a time).
"""

import importlib
import sys
import types

from absl import flags

FLAGS = flags.FLAGS


def load_binary(module_name: str) -> types.ModuleType:
  """Imports (or re-imports) `module_name` with only its own binary flags.

  Args:
    module_name: e.g. 'binaries.run_after_kernel'.

  Returns:
    The freshly imported module; its flag holders are the registered flags.
  """
  for module, defined in list(FLAGS.flags_by_module_dict().items()):
    if module.startswith('binaries.'):
      for flag in list(defined):  # deleting edits this list
        if flag.name in FLAGS:
          delattr(FLAGS, flag.name)
  if module_name in sys.modules:
    return importlib.reload(sys.modules[module_name])
  return importlib.import_module(module_name)
