"""BUILD matches the files: every module, program and test has a target.

Bazel is not installed here, so nothing else would notice a BUILD file that
drifted from the tree (a new module without a py_library, a renamed test, a
dependency on a target that no longer exists). This reads BUILD as text.
"""

import glob
import os
import re

from absl.testing import absltest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _build_text() -> str:
  with open(os.path.join(_REPO, 'BUILD'), encoding='utf-8') as f:
    return f.read()


def _quoted(text: str) -> set:
  return set(re.findall(r'"([^"\n]*)"', text))


def _python_files(folder: str) -> list:
  """Python files under folder, subpackages included; a package's
  __init__.py counts when it is not the folder's own (it holds code)."""
  own_init = os.path.join(_REPO, folder, '__init__.py')
  return sorted(os.path.relpath(p, _REPO) for p in
                glob.glob(os.path.join(_REPO, folder, '**', '*.py'),
                          recursive=True)
                if p != own_init)


class BuildFileTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.text = _build_text()
    self.strings = _quoted(self.text)
    # Files named through list comprehensions: [rule(... "folder/%s.py" %
    # name ...) for name(, ...) in [ names ]]: the stems of THAT list only.
    self.templated = set()
    for body, names in re.findall(
        r'^\[py_\w+\((.*?)^\) for name(?:, \w+)* in \[(.*?)^\]\]',
        self.text, re.M | re.S):
      for folder in re.findall(r'"([\w/]+)/%s\.py" % name', body):
        for stem in re.findall(r'^\s*\(?"([\w-]+)"', names, re.M):
          self.templated.add(f'{folder}/{stem}.py')
    self.assertNotEmpty(self.templated, 'no templated targets found')

  def _listed(self, path: str) -> bool:
    """path is named, or made by a "folder/%s.py" % name comprehension."""
    return path in self.strings or path in self.templated

  def test_every_module_program_and_test_has_a_target(self):
    missing = [path for folder in ('afterkernel', 'binaries', 'tests',
                                   'benchmarks')
               for path in _python_files(folder) if not self._listed(path)]
    self.assertEmpty(missing, 'files without a BUILD target')

  def test_every_named_source_exists(self):
    named = [s for s in self.strings
             if re.fullmatch(r'(afterkernel|binaries|tests|benchmarks|'
                             r'examples)/[\w/]+\.py', s)]
    self.assertNotEmpty(named)
    missing = [s for s in named if not os.path.exists(os.path.join(_REPO, s))]
    self.assertEmpty(missing, 'BUILD names files that do not exist')

  def test_every_local_dependency_is_a_defined_target(self):
    defined = set(re.findall(r'^\s*name = "([\w-]+)"', self.text, re.M))
    # Targets made by list comprehensions: (name, ...) tuples or "name",
    # entries of the `for name in [...]` lists.
    for block in re.findall(r'for name(?:, \w+)* in \[(.*?)\n\]\]', self.text,
                            re.S):
      defined |= set(re.findall(r'^\s*\(?"([\w-]+)"', block, re.M))
    used = set(re.findall(r'"(:[\w-]+)"', self.text))
    undefined = sorted(u for u in used if u[1:] not in defined)
    self.assertEmpty(undefined, 'deps on targets BUILD does not define')


if __name__ == '__main__':
  absltest.main()
