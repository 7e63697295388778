"""The run lock: one process at a time trains a ``model_dir``.

``model_dir/lock`` is a JSON record ``{host, pid, started, heartbeat, token}`` of the process
training the directory; ``loop.train`` holds it for its whole call (``holds_model_dir_lock``).
A second process pointed at the same model_dir stops at once with one line naming the holder
(``ModelDirLocked``, an ``EngineError``: exit 2 from the mains). While held, a daemon thread
rewrites the record's ``heartbeat`` every ``HEARTBEAT_SECONDS``.

A lock is stale, and taken over with one ``warning:`` line, when its holder is gone: its pid no
longer runs on this host (kill -9, a crash, a reboot), or its heartbeat is older than
``STALE_SECONDS`` (a holder on another host, or a pid since reused). A process that finds the
lock under its own pid but not taken by itself treats it as stale too (a container restarted
with the same pid). Take-over renames the stale file away before creating a new one, so of two
processes recovering the same lock one wins.

Local disks: creation is exclusive (``fileio.create_exclusive``), so exactly one of two racing
processes wins. gs://: ``tf.io.gfile`` has no conditional write, so the record is read back
after writing and the loser stops; two writers within the same instant could both pass that
check, and the heartbeat, which re-reads the record, then warns the one that lost it.

Workers of one multi-host TPU slice train the same model_dir together: a process on a host
named ``...-w-N`` with N > 0 (how Cloud TPU VMs name their workers) takes no lock; worker 0's
lock covers the slice.
"""

from __future__ import annotations

import datetime
import functools
import inspect
import json
import os
import re
import socket
import threading
import time
import uuid

from reproduce.core import fileio
from reproduce.train import rundir

LOCK_FILE = "lock"
HEARTBEAT_SECONDS = 30.0
STALE_SECONDS = 180.0
_SECONDARY_TPU_WORKER = re.compile(r"-w-[1-9]\d*$")
_HELD_HERE: set[str] = set()  # tokens of the locks this process holds


class ModelDirLocked(rundir.EngineError):
  """Another live process trains this model_dir."""


def _describe(holder: dict) -> str:
  started = datetime.datetime.fromtimestamp(float(holder.get("started", 0)))
  age = time.time() - float(holder.get("heartbeat", 0))
  return (f"pid {holder.get('pid')} on host {holder.get('host')} (since "
          f"{started:%Y-%m-%d %H:%M:%S}, heartbeat {age:.0f} s ago)")


def _pid_running(pid: int) -> bool:
  """Whether ``pid`` runs on this host (a zombie, killed but not yet reaped, does not)."""
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:
    return True
  try:
    with open(f"/proc/{pid}/stat") as f:
      return f.read().rsplit(")", 1)[1].split()[0] != "Z"
  except (OSError, IndexError):
    return True


def stale_reason(holder: dict | None, stale_seconds: float = STALE_SECONDS) -> str | None:
  """Why the lock recorded in ``holder`` is stale, or None while its holder may be alive."""
  if not holder or not {"host", "pid", "heartbeat", "token"} <= set(holder):
    return "the lock file is unreadable"
  pid = int(holder["pid"])
  if holder["host"] == socket.gethostname():
    if pid == os.getpid() and holder["token"] not in _HELD_HERE:
      return f"it names this process's pid {pid}, left by an earlier process"
    if pid != os.getpid() and not _pid_running(pid):
      return f"pid {pid} no longer runs on {holder['host']}"
  age = time.time() - float(holder["heartbeat"])
  if age > stale_seconds:
    return f"its heartbeat is {age:.0f} s old ({_describe(holder)})"
  return None


class RunLock:
  """``with RunLock(model_dir):`` holds ``model_dir/lock`` (see the module docstring)."""

  def __init__(self, model_dir: str, *, heartbeat_seconds: float = HEARTBEAT_SECONDS,
               stale_seconds: float = STALE_SECONDS, warn=print):
    self.model_dir, self.path = model_dir, fileio.join(model_dir, LOCK_FILE)
    self.heartbeat_seconds, self.stale_seconds, self.warn = (heartbeat_seconds,
                                                             stale_seconds, warn)
    self.record = {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(),
                   "heartbeat": time.time(), "token": uuid.uuid4().hex}
    self.held = False
    self._stop = threading.Event()
    self._thread = None

  def _read(self) -> dict | None:
    """The lock's record; {} when unreadable, None when there is no lock."""
    try:
      return json.loads(fileio.read_text(self.path))
    except ValueError:
      return {}
    except Exception:  # pylint: disable=broad-except  # gone in between (NotFoundError)
      return None if not fileio.exists(self.path) else {}

  def acquire(self) -> "RunLock":
    """Takes the lock; raises ``ModelDirLocked`` (a live holder) or ``EngineError``."""
    if _SECONDARY_TPU_WORKER.search(self.record["host"]):
      return self
    try:
      fileio.makedirs(self.model_dir)
    except Exception as e:  # pylint: disable=broad-except  # tf.errors.OpError or OSError
      raise rundir.unusable(self.model_dir, e) from None
    for _ in range(3):  # a holder that vanishes (or a lost race) while we look: look again
      if self._create():
        break
      holder = self._read()
      if holder and holder.get("token") in _HELD_HERE:
        return self  # this process holds it already (pretrain.run around loop.train)
      why = None if holder is None else stale_reason(holder, self.stale_seconds)
      if holder is not None and why is None:
        raise ModelDirLocked(f"model_dir {self.model_dir} is being trained by "
                             f"{_describe(holder)}; wait for it to finish, or stop it "
                             f"(a killed holder's lock is recovered)")
      if holder is not None:
        self.warn(f"warning: taking over the lock of {self.model_dir}: {why}")
        self._remove_stale()
    else:
      raise ModelDirLocked(f"model_dir {self.model_dir}: could not take {self.path} "
                           "(other processes keep taking it)")
    self.held = True
    _HELD_HERE.add(self.record["token"])
    self._thread = threading.Thread(target=self._beat, name="run-lock-heartbeat", daemon=True)
    self._thread.start()
    return self

  def _create(self) -> bool:
    """Writes the record if no lock exists; True when it is now ours."""
    try:
      created = fileio.create_exclusive(self.path, fileio.dumps(self.record))
    except Exception as e:  # pylint: disable=broad-except  # read-only, disk full
      raise rundir.unusable(self.model_dir, e, self.path) from None
    if created and fileio.is_remote(self.path):  # no exclusive create there: did we win?
      created = (self._read() or {}).get("token") == self.record["token"]
    return created

  def _remove_stale(self) -> None:
    """Moves the stale lock away (one of several recovering processes succeeds)."""
    aside = f"{self.path}.stale-{self.record['token']}"
    try:
      fileio.rename(self.path, aside)
      fileio.remove(aside)
    except Exception:  # pylint: disable=broad-except  # another process moved it first
      pass

  def _beat(self) -> None:
    while not self._stop.wait(self.heartbeat_seconds):
      holder = self._read()
      if (holder or {}).get("token") != self.record["token"]:
        self.warn(f"warning: lost the lock of {self.model_dir} to "
                  f"{_describe(holder) if holder else 'nobody (removed)'}")
        return
      self.record["heartbeat"] = time.time()
      try:
        fileio.write_json(self.path, self.record)
      except Exception:  # pylint: disable=broad-except  # disk full: the next beat retries
        pass

  def release(self) -> None:
    """Stops the heartbeat and removes the lock if it is still ours."""
    if not self.held:
      return
    self._stop.set()
    self._thread.join()
    self.held = False
    _HELD_HERE.discard(self.record["token"])
    try:
      if (self._read() or {}).get("token") == self.record["token"]:
        fileio.remove(self.path)
    except Exception:  # pylint: disable=broad-except  # read-only by now: left, and stale
      pass

  def __enter__(self) -> "RunLock":
    return self.acquire()

  def __exit__(self, *exc) -> bool:
    self.release()
    return False


def holds_model_dir_lock(train_fn):
  """Decorates ``loop.train``: its ``model_dir`` is locked for the whole call (warnings go
  to its ``log`` argument when given)."""
  signature = inspect.signature(train_fn)

  @functools.wraps(train_fn)
  def locked(*args, **kwargs):
    arguments = signature.bind(*args, **kwargs).arguments
    warn = arguments.get("log") or (lambda line: print(line, flush=True))
    with RunLock(arguments["model_dir"], warn=warn):
      return train_fn(*args, **kwargs)

  return locked
