"""``PlanError`` and the number check every planning input goes through."""

from __future__ import annotations

import math
import numbers

from reproduce.core.errors import UserError


class PlanError(UserError, ValueError):
  """Bad planning input. The message is one line and starts with the offending --flag."""

  def __init__(self, flag: str, message: str):
    self.flag, self.message = flag, message
    separator = "" if message[:1] in ("=", ":") else " "
    super().__init__(f"--{flag}{separator}{message}")

  def __reduce__(self):
    # Rebuilt from both arguments: the study's workers send errors to the main process.
    return type(self), (self.flag, self.message)


def positive(flag: str, value, integer: bool = False):
  """``value`` as a float (or int) if it is a finite number > 0; else ``PlanError`` on ``flag``."""
  if isinstance(value, bool) or not isinstance(value, numbers.Real):
    raise PlanError(flag, f"must be a number, got {value!r}")
  if not (value > 0) or not math.isfinite(value):
    raise PlanError(flag, f"must be > 0, got {value:g}")
  if integer and int(value) != value:
    raise PlanError(flag, f"must be a whole number, got {value:g}")
  return int(value) if integer else float(value)
