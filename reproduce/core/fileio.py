"""File I/O for local paths and remote ones (``gs://``, ``ram://``), over ``tf.io.gfile``.

Every file the kit writes goes through ``write_text``/``write_json``, which write a temporary
file and rename it, so a reader never sees half a file (a kill during the write leaves the
previous version); ``create_exclusive`` writes a file only if none exists (the run lock). JSON
is normalised by ``to_jsonable`` (NumPy scalars, tuples, NaN -> null).

TensorFlow is imported on first use (``cli.import_tensorflow``), not at import time: see
core/cli.py.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

from reproduce.core import cli


def _gfile():
  return cli.import_tensorflow().io.gfile


def join(base: str, *parts: str) -> str:
  """``base/part/...`` with exactly one '/' between parts (works for gs:// too)."""
  return "/".join([base.rstrip("/")] + [p.strip("/") for p in parts if p])


def expand(path: str) -> str:
  """``~`` expanded for local paths; remote paths unchanged."""
  return path if is_remote(path) else os.path.expanduser(path)


def is_remote(path: str) -> bool:
  return "://" in path


def exists(path: str) -> bool:
  return _gfile().exists(expand(path))


def isdir(path: str) -> bool:
  return _gfile().isdir(expand(path))


def makedirs(path: str) -> None:
  _gfile().makedirs(expand(path))


def glob(pattern: str) -> list[str]:
  """Sorted matches of ``pattern`` (an empty list when nothing matches)."""
  return sorted(_gfile().glob(expand(pattern)))


def remove(path: str) -> None:
  _gfile().remove(expand(path))


def read_text(path: str) -> str:
  with _gfile().GFile(expand(path), "r") as f:
    return f.read()


def read_json(path: str) -> Any:
  return json.loads(read_text(path))


def write_text(path: str, text: str) -> None:
  """Writes ``text`` through a temporary file and a rename (atomic on local disks and GCS)."""
  _write_atomic(path, text, "w")


def write_bytes(path: str, content: bytes) -> None:
  """``write_text`` for binary content (PNG images)."""
  _write_atomic(path, content, "wb")


def _write_atomic(path: str, content, mode: str) -> None:
  gfile = _gfile()
  path = expand(path)
  parent = os.path.dirname(path)
  if parent:
    gfile.makedirs(parent)
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with gfile.GFile(tmp, mode) as f:
      f.write(content)
    gfile.rename(tmp, path, overwrite=True)
  except BaseException:
    if gfile.exists(tmp):  # a failed write (disk full) leaves no partial file behind
      gfile.remove(tmp)
    raise


def remove_tree(path: str) -> None:
  """Deletes a directory and everything under it."""
  _gfile().rmtree(expand(path))


def rename(source: str, target: str) -> None:
  """Renames ``source`` to ``target``; fails when ``target`` exists (or ``source`` is gone).

  Atomic on local disks (so of two processes renaming the same file, one fails); on GCS a
  copy then a delete.
  """
  _gfile().rename(expand(source), expand(target), overwrite=False)


def create_exclusive(path: str, text: str) -> bool:
  """Creates ``path`` holding ``text`` unless it exists; returns whether this call created it.

  Local disks: the text goes to a temporary file that is then hard-linked to ``path`` (a link
  fails when ``path`` exists), so of two processes racing for the same path exactly one wins,
  and a reader never sees the file half-written. Remote paths (gs://): an existence check,
  then an atomic write (``tf.io.gfile`` has no conditional create), so two writers within the
  same instant can both believe they won; callers that need one winner read the file back
  (``train/lock.py`` does).
  """
  path = expand(path)
  if is_remote(path):
    if exists(path):
      return False
    write_text(path, text)
    return True
  tmp = f"{path}.tmp-{os.getpid()}"
  try:
    with open(tmp, "w") as f:
      f.write(text)
    os.link(tmp, path)
    return True
  except FileExistsError:
    return False
  finally:
    if os.path.exists(tmp):
      os.remove(tmp)


def to_jsonable(value: Any) -> Any:
  """Plain JSON types: NumPy scalars/arrays unwrapped, tuples/sets listed, NaN/inf -> None."""
  if hasattr(value, "to_dict") and callable(value.to_dict):
    value = value.to_dict()
  if isinstance(value, dict):
    return {str(k): to_jsonable(v) for k, v in value.items()}
  if isinstance(value, (list, tuple, set, frozenset)):
    return [to_jsonable(v) for v in value]
  if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalar or array
    return to_jsonable(value.tolist())
  if isinstance(value, float) and not math.isfinite(value):
    return None
  if value is None or isinstance(value, (bool, int, float, str)):
    return value
  return str(value)


def dumps(value: Any, sort_keys: bool = True) -> str:
  """The kit's JSON text: ``to_jsonable``, indented, keys sorted by default."""
  return json.dumps(to_jsonable(value), indent=2, sort_keys=sort_keys) + "\n"


def write_json(path: str, value: Any, sort_keys: bool = True) -> None:
  """Atomic ``write_text`` of ``dumps(value)``."""
  write_text(path, dumps(value, sort_keys=sort_keys))
