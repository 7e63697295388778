"""``UserError``: the base of every error a user fixes by changing their input.

Each layer's root error (``PlanError``, ``DataError``, ``EngineError``, ...) derives from it
and keeps its builtin base (``ValueError`` or ``RuntimeError``), so existing ``except``
clauses still match. A main catches this one base (``cli.errors_as_one_line``) instead of
listing every layer's classes.
"""

from __future__ import annotations


class UserError(Exception):
  """Bad input (a flag, a config value, a file): the mains print its first line, exit 2."""


class UsageError(UserError, ValueError):
  """A main's own flags used wrongly (a required flag missing, two that exclude each other)."""
