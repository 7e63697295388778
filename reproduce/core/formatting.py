"""How durations and confidence intervals read in progress lines, reports and tables."""

from __future__ import annotations


def duration(seconds: float) -> str:
  """``H:MM:SS`` (progress lines, ETAs, time breakdowns)."""
  seconds = max(0, int(round(seconds)))
  return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def interval(interval) -> str:
  """``[lo, hi]`` of a confidence interval, ``n/a`` when unknown."""
  if not interval or any(v is None for v in interval):
    return "n/a"
  return f"[{interval[0]:.3g}, {interval[1]:.3g}]"
