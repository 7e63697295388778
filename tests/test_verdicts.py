"""A row that cannot fail is not a test: each rule gives PASS on data that obey the claim,
FAIL on data that break it, UNDECIDED on data too sparse to tell (synthetic families through
the study's own selections; tests/analysis_helpers.verdict_points)."""

import math

import pytest

from reproduce.analysis import fits as fits_lib
from reproduce.analysis import prediction
from reproduce.analysis import verdicts
from reproduce.analysis import versus_published

import analysis_helpers as helpers

LOSS = "claim.nfnet.loss_vs_compute_slope_sign"
SIZE = "claim.nfnet.optimal_size_exponent_sign"
EPOCHS = "claim.nfnet.optimal_epochs_exponent_sign"
RATIO = "claim.nfnet.size_vs_epochs_exponent_ratio"
LR = "claim.nfnet.optimal_lr_vs_epochs_sign"
FINETUNE = "claim.nfnet.finetune_error_vs_compute_slope_sign"
PRED_LOSS, PRED_SIZE = "prediction.nfnet.loss", "prediction.nfnet.optimal_size"
NARROW = tuple(0.4 * 2.0 ** (k / 2) for k in range(6))  # 5.7x: optima stay inside the sizes


def _status(off_law: float = 1.0, **design) -> tuple[dict, dict]:
  points = helpers.verdict_points(**design)
  if off_law != 1.0:
    top = max(p.compute for p in points)
    points = [p if p.compute < 0.9 * top else
              p.__class__(**{**p.to_dict(), "heldout_loss": p.heldout_loss * off_law})
              for p in points]
  fits = fits_lib.fit_all(points, bootstrap=100)
  result = versus_published.compare(points, fits, model_stats=False,
                                    predictions=prediction.predict_all(points, bootstrap=100))
  return {r["key"]: r["status"] for r in result["rows"]}, result


@pytest.fixture(scope="module")
def obeying():
  return _status(finetune_b=0.2)


def test_data_that_obey_every_claim_pass(obeying):
  status, result = obeying
  assert set(status.values()) == {"PASS"}, versus_published.format_table(result)
  assert {LOSS, SIZE, EPOCHS, RATIO, LR, FINETUNE, PRED_LOSS, PRED_SIZE} <= set(status)
  assert result["verdict"] == "PASS" and result["passed"] and result["n_undecided"] == 0


@pytest.mark.parametrize("design, failing", [
    (dict(b=-0.05), {LOSS}),                          # loss rises with compute
    (dict(size_exponent=-0.3), {SIZE, RATIO}),        # optimal size shrinks
    (dict(size_exponent=1.4, budgets=NARROW), {EPOCHS, RATIO}),  # optimal epochs shrink
    (dict(lr_slope=0.25), {LR}),                      # optimal LR rises with epochs
    (dict(finetune_b=-0.2), {FINETUNE}),              # fine-tuned error rises
    (dict(off_law=1.3), {PRED_LOSS}),                 # largest budget off the law
])
def test_data_that_break_a_claim_fail_it(design, failing):
  status, result = _status(**design)
  failed = {k for k, v in status.items() if v == "FAIL"}
  assert failed == failing, versus_published.format_table(result)
  assert result["verdict"] == "FAIL" and not result["passed"]


def test_sparse_data_are_undecided_with_the_reason():
  status, result = _status(budgets=helpers.BUDGETS[:3], noise=0.05, finetune_b=0.2)
  rows = {r["key"]: r for r in result["rows"]}
  undecided = {k for k, v in status.items() if v == "UNDECIDED"}
  assert {LOSS, RATIO, LR, PRED_LOSS, PRED_SIZE} <= undecided, versus_published.format_table(result)
  assert "FAIL" not in status.values() and result["passed"]
  assert result["verdict"] == "UNDECIDED" and result["n_undecided"] == len(undecided)
  assert "spans zero" in rows[LOSS]["note"]
  assert "budget(s)" in rows[PRED_LOSS]["note"]
  assert "UNDECIDED of" in versus_published.format_table(result).splitlines()[-1]


def test_edge_optima_leave_the_size_rows_undecided():
  # Optimal size grows far faster than the grid of sizes: most budgets' optima are edges.
  status, result = _status(size_exponent=2.0)
  rows = {r["key"]: r for r in result["rows"]}
  assert status[SIZE] == status[EPOCHS] == status[RATIO] == "UNDECIDED"
  assert "too few interior optima" in rows[SIZE]["note"]


def test_lr_trend_resolves_a_slope_of_one_tenth_on_a_sqrt2_grid():
  status, result = _status(lr_slope=-0.1, noise=0.005)
  trend = next(r for r in result["rows"] if r["key"] == LR)
  assert status[LR] == "PASS", trend["note"]


def test_sign_zero_is_undecided_never_fail():
  assert verdicts.sign_status(-1.0, 0.01, [-0.02, 0.04])[:2] == (0.0, "UNDECIDED")
  assert verdicts.sign_status(-1.0, 0.05, [0.01, 0.09])[1] == "FAIL"
  assert verdicts.sign_status(-1.0, -0.05, [-0.09, -0.01])[1] == "PASS"
  assert verdicts.sign_status(-1.0, -0.05, None)[1] == "UNDECIDED"
  assert math.isnan(verdicts.sign_status(-1.0, None, None)[0])
  assert verdicts.band_status(1.0, 0.5, [0.7, 1.2])[0] == "PASS"
  assert verdicts.band_status(1.0, 0.5, [1.6, 2.0])[0] == "FAIL"
  assert verdicts.band_status(1.0, 0.5, [0.9, 2.0])[0] == "UNDECIDED"


def test_strict_fails_only_on_a_counted_fail():
  rows = [verdicts.Row("a", "claim", "nfnet", "q", 0.0, -1.0, "sign", 0.0, "P", status="UNDECIDED"),
          verdicts.Row("b", "claim", "vit", "q", 1.0, -1.0, "sign", 0.0, "P", counted=False,
                       status="FAIL")]
  result = verdicts.counts(rows)
  assert result["passed"] and result["verdict"] == "UNDECIDED" and result["n_info"] == 1


def test_fits_and_compare_json_are_identical_across_runs():
  from reproduce.core import fileio

  def once():
    points = helpers.verdict_points(noise=0.02)
    fits = fits_lib.fit_all(points, bootstrap=30, seed=3)
    predictions = prediction.predict_all(points, bootstrap=30, seed=3)
    result = versus_published.compare(points, fits, model_stats=False, predictions=predictions)
    return fileio.dumps(fits), fileio.dumps(result)

  assert once() == once()
