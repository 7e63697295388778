"""The three verdicts of a comparison row, and the rules that give them.

PASS: the row's interval agrees with the paper. FAIL: the interval excludes the paper's
claim. UNDECIDED: neither (the interval spans zero or both sides of the claim's band, the
optima sit at the edge of the grid, too few interior points, no interval); the reason is the
row's note. Only a FAIL among counted rows fails the comparison (``versus_published.compare``).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

from reproduce.core import formatting

PASS, FAIL, UNDECIDED = "PASS", "FAIL", "UNDECIDED"
VERDICTS = (PASS, FAIL, UNDECIDED)


@dataclasses.dataclass
class Row:
  """One comparison. ``difference`` = ours - published.

  ``status`` is set by the row's rule; left empty, it is the tolerance rule of a plain value
  (PASS when |difference| <= tolerance, FAIL otherwise, UNDECIDED when ours is not a
  number). ``counted`` is False for a row shown for comparison only (a claim measured on a
  family the paper does not make it for): its status is reported but not in the verdict.
  """
  key: str
  kind: str
  model: str
  quantity: str
  ours: float
  published: float
  unit: str
  tolerance: float
  source: str
  note: str = ""
  counted: bool = True
  status: str = ""

  def __post_init__(self):
    if not self.status:
      self.status = tolerance_status(self.ours, self.published, self.tolerance)
    assert self.status in VERDICTS, self.status

  @property
  def difference(self) -> float:
    return self.ours - self.published

  def to_dict(self) -> dict:
    return dict(dataclasses.asdict(self), difference=self.difference)


def tolerance_status(ours: float, published: float, tolerance: float) -> str:
  if ours is None or not math.isfinite(ours):
    return UNDECIDED
  # A hair of slack so values printed equal to the tolerance's precision pass.
  slack = 1e-9 * max(1.0, abs(published))
  return PASS if abs(ours - published) <= tolerance + slack else FAIL


def _has_interval(ci: Sequence | None) -> bool:
  return bool(ci) and ci[0] is not None and ci[1] is not None


def sign_status(expected: float, estimate: float | None,
                ci: Sequence | None) -> tuple[float, str, str]:
  """(sign, status, why) of a claimed sign (+1 rises, -1 falls) judged on an interval.

  The sign is +1/-1 when the interval is on one side of 0, else 0 ("cannot tell"): PASS
  when it is the claimed one, FAIL when it is the other, UNDECIDED when 0 or no interval.
  """
  if estimate is None or not math.isfinite(estimate):
    return math.nan, UNDECIDED, "no estimate"
  if not _has_interval(ci):
    return 0.0, UNDECIDED, f"estimate {estimate:.4g}, no interval"
  lo, hi = ci
  sign = 1.0 if lo > 0 else -1.0 if hi < 0 else 0.0
  why = f"estimate {estimate:.4g}, CI {formatting.interval(ci)}"
  if sign == 0:
    return sign, UNDECIDED, f"{why}: the interval spans zero"
  return sign, PASS if sign == expected else FAIL, why


def band_status(claimed: float, tolerance: float, ci: Sequence | None) -> tuple[str, str]:
  """(status, why) of a claimed value +- tolerance against an interval: PASS inside the
  band, FAIL disjoint from it, UNDECIDED when it reaches both in and out, or is missing."""
  if not _has_interval(ci):
    return UNDECIDED, "no interval"
  lo, hi = ci
  band = (claimed - tolerance, claimed + tolerance)
  if band[0] <= lo and hi <= band[1]:
    return PASS, f"CI {formatting.interval(ci)} inside {formatting.interval(band)}"
  if hi < band[0] or lo > band[1]:
    return FAIL, f"CI {formatting.interval(ci)} outside {formatting.interval(band)}"
  return UNDECIDED, (f"CI {formatting.interval(ci)} reaches both in and out of "
                     f"{formatting.interval(band)}")


def interval_status(observed: float, interval: Sequence | None) -> tuple[str, str]:
  """(status, why) of an observed value against a prediction interval."""
  if not _has_interval(interval):
    return UNDECIDED, "no interval"
  inside = interval[0] <= observed <= interval[1]
  return (PASS if inside else FAIL), ("inside" if inside else "outside")


def counts(rows: Sequence[Row]) -> dict:
  """n_pass, n_fail, n_undecided of the counted rows, and the overall verdict."""
  counted = [r for r in rows if r.counted]
  n = {v: sum(r.status == v for r in counted) for v in VERDICTS}
  verdict = FAIL if n[FAIL] else PASS if n[PASS] and not n[UNDECIDED] else UNDECIDED
  return dict(n_rows=len(counted), n_pass=n[PASS], n_fail=n[FAIL], n_undecided=n[UNDECIDED],
              n_info=len(rows) - len(counted), verdict=verdict, passed=not n[FAIL])


def verdict_line(result: dict) -> str:
  return (f"{result['n_pass']} PASS, {result['n_fail']} FAIL, {result['n_undecided']} "
          f"UNDECIDED of {result['n_rows']} counted rows -> {result['verdict']}")
