"""The README's Keras-extension example: in sync with examples/ and runnable."""

import os
import re
import subprocess
import sys

from absl.testing import absltest

_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_EXAMPLE = os.path.join(_REPO, 'examples', 'keras_extension.py')
_MARKER = '<!-- example: examples/keras_extension.py -->'


def _readme_block():
  with open(os.path.join(_REPO, 'README.md'), encoding='utf-8') as f:
    text = f.read()
  match = re.search(re.escape(_MARKER) + r'\s*```python\n(.*?)```', text,
                    re.DOTALL)
  return match.group(1) if match else None


def _example_code():
  """The example file without its module docstring."""
  with open(_EXAMPLE, encoding='utf-8') as f:
    text = f.read()
  return text.split('"""', 2)[2].lstrip('\n')


class ReadmeExampleTest(absltest.TestCase):

  def test_readme_shows_the_example_file(self):
    block = _readme_block()
    self.assertIsNotNone(block, f'README.md has no python block after '
                         f'{_MARKER}')
    self.assertEqual(block, _example_code())

  def test_example_runs(self):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3')
    completed = subprocess.run([sys.executable, _EXAMPLE], cwd=_REPO,
                               capture_output=True, text=True, env=env,
                               timeout=600, check=False)
    self.assertEqual(completed.returncode, 0, completed.stderr[-2000:])
    self.assertIn('SVM test error, after kernel:', completed.stdout)
    self.assertIn('linearized test error:', completed.stdout)
    self.assertIn('(8, 10, 650) (8, 8) (80, 80)', completed.stdout)


if __name__ == '__main__':
  absltest.main()
