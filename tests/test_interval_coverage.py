"""Coverage of the whole-pipeline bootstrap intervals on runs drawn from a known law.

Each replicate draws a new study from the same design: 5 sizes x 5 epoch budgets x 3 LRs,
L = 3 * C^-0.1 at the optimal size (optimal size and epochs both ~ C^0.5), raised away from
the optimal size and LR, times log-normal noise (5%). The size penalty 0.7 is about the
smallest at which the noiseless pipeline still recovers every exponent exactly (so "the
truth" below is the law's) while off-optimal runs still compete under noise: the selection
noise the intervals must include. A nominal 95% interval must cover the truth in 90-98% of
200 replicates (docs/scaling.md lists other designs); the size and epochs exponents and their
ratio may over-cover (up to 100%): they are fitted on interior optima only (an optimum at the
smallest or largest size of its budget is left out), 5 of this design's 8, and on a grid of
sizes their estimate equals the truth exactly in ~40% of replicates.
"""

import numpy as np
import pytest

from reproduce.analysis import fits as fits_lib
from reproduce.analysis import synthetic

MODELS = {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}
EPOCHS = (0.25, 0.5, 1.0, 2.0, 4.0)
DESIGN = dict(size_penalty=0.7, a=3.0, b=0.1, size_exponent=0.5)
TRUTH = {"b": 0.1, "size": 0.5, "epochs": 0.5, "ratio": 1.0, "lr_slope": -0.25}
REPLICATES = 200
RESAMPLES = 150


def _estimates(entry: dict) -> dict:
  """(estimate, interval) of every exponent of one family's fits."""
  opt, trend = entry["optimal_scaling"], entry["lr_trend"]
  return {"b": (entry["fit"]["b"], entry["fit"]["ci"]["b"]),
          "size": (opt["size"]["exponent"], opt["size"]["ci"]["exponent"]),
          "epochs": (opt["epochs"]["exponent"], opt["epochs"]["ci"]["exponent"]),
          "ratio": (opt["ratio"]["value"], opt["ratio"]["ci"]),
          "lr_slope": (trend["pooled_slope"], trend["ci"])}


def _study(noise: float, seed: int):
  return synthetic.as_points(synthetic.synthetic_records(MODELS, EPOCHS, noise=noise,
                                                         seed=seed, **DESIGN))


def test_noiseless_design_recovers_the_law():
  entry, notes = fits_lib.fit_family(_study(0.0, 0), bootstrap=0)
  assert notes == {}
  for name, (estimate, _) in _estimates(entry).items():
    assert estimate == pytest.approx(TRUTH[name], abs=1e-9), name


def test_nominal_95_intervals_cover_the_truth_90_to_98_percent():
  covered = dict.fromkeys(TRUTH, 0)
  for replicate in range(REPLICATES):
    entry, _ = fits_lib.fit_family(_study(0.05, replicate), bootstrap=RESAMPLES,
                                   seed=replicate)
    for name, (_, (lo, hi)) in _estimates(entry).items():
      covered[name] += lo <= TRUTH[name] <= hi
  coverage = {name: count / REPLICATES for name, count in covered.items()}
  print("coverage of nominal 95% intervals:", coverage)
  conservative = {"size", "epochs", "ratio"}  # over-coverage allowed (module docstring)
  assert all(0.90 <= c <= (1.0 if name in conservative else 0.98)
             for name, c in coverage.items()), coverage
  assert np.isfinite(list(coverage.values())).all()
