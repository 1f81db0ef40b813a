"""Claims on work in a result store, so that processes share it safely.

Several processes may run the same study into one folder (two terminals,
one job per machine on a shared filesystem). Each unit of work (one run of
one group of points) is claimed before it is run: an exclusive OS lock
(`fcntl.flock`) on `records/.claims/<name>.lock`. A process that cannot take
the lock skips that unit (another process is running it) and goes on with
the next, so processes fill a study together and never run, or store, a run
twice. The kernel drops the lock when its holder exits in any way,
`kill -9` included, so a crashed holder never blocks a later rerun; the
rerun finds the unit unclaimed and without records, and runs it.

Why a lock per unit rather than one per folder: a folder lock would make a
second process wait or fail; unit claims let it help.
"""

import errno
import hashlib
import os
import socket
from typing import Optional, Sequence

try:
  import fcntl  # pylint: disable=g-import-not-at-top
except ImportError:  # Not POSIX: no claims (documented in README).
  fcntl = None

CLAIMS_DIR = '.claims'


class Claim:
  """A held claim; `release()` (or leaving a `with` block) lets it go.

  Attributes:
    path: the lock file.
  """

  def __init__(self, fd: int, path: str, created: Sequence[str] = ()):
    self._fd = fd
    self.path = path
    self._created = tuple(created)

  def release(self) -> None:
    """Drops the lock and removes its file (idempotent)."""
    if self._fd is None:
      return
    try:
      os.remove(self.path)
    except OSError:
      pass
    os.close(self._fd)  # Closing the descriptor releases the flock.
    self._fd = None
    # Folders made for this claim go again if nothing else was put in them
    # (a study that failed before its first record leaves no trace).
    for directory in self._created:
      try:
        os.rmdir(directory)
      except OSError:
        pass

  def __enter__(self) -> 'Claim':
    return self

  def __exit__(self, *exc) -> None:
    self.release()


def claim_name(*parts) -> str:
  """A file-name-safe id of a unit of work (hash of its parts' reprs)."""
  return hashlib.sha256(repr(parts).encode()).hexdigest()[:24]


def holder(records_dir: str, name: str) -> str:
  """Who holds claim `name` ('pid P on HOST'), or '' if unknown."""
  try:
    with open(_path(records_dir, name), encoding='utf-8') as f:
      return f.read().strip()
  except OSError:
    return ''


def _path(records_dir: str, name: str) -> str:
  return os.path.join(records_dir, CLAIMS_DIR, name + '.lock')


def try_claim(records_dir: str, name: str) -> Optional[Claim]:
  """Claims unit `name` of the store whose records are in `records_dir`.

  Returns:
    The `Claim`, or None when another live process holds it. Without
    `fcntl` (not POSIX) every claim succeeds: nothing is shared safely.
  """
  path = _path(records_dir, name)
  created = []
  directory = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(directory):
    created.append(directory)  # Deepest first: the order to remove them.
    directory = os.path.dirname(directory)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  while True:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:
      return Claim(fd, path, created)
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      os.close(fd)
      if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
        return None
      raise
    # The holder we waited on may have removed the file between our open
    # and our lock: then we hold a lock on a deleted file; start again.
    try:
      same = os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
      same = False
    if same:
      os.ftruncate(fd, 0)
      os.write(fd, f'pid {os.getpid()} on {socket.gethostname()}\n'.encode())
      return Claim(fd, path, created)
    os.close(fd)
