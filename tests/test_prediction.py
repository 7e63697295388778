"""The prediction of the largest budget, edge optima, and their comparison rows."""


import numpy as np
import pytest

from reproduce.analysis import fits as fits_lib
from reproduce.analysis import frontier
from reproduce.analysis import prediction
from reproduce.analysis import runs
from reproduce.analysis import versus_published

import analysis_helpers as helpers
import synthetic_runs

THREE_SIZES = {f"nfnet_mini_f{i}": 1e5 * 4.0 ** i for i in range(3)}


def _predict(points, bootstrap=100):
  return prediction.predict_all(points, bootstrap=bootstrap)["nfnet"]


def test_prediction_from_a_true_power_law_is_inside_its_interval():
  record = _predict(helpers.study_points())
  assert record["status"] == "ok" and record["note"] is None
  assert record["budgets"] == pytest.approx(helpers.BUDGETS)  # grouped by config budget
  assert record["compute"] == pytest.approx(max(helpers.BUDGETS))
  loss = record["loss"]
  lo, hi = loss["interval"]
  assert lo < loss["predicted"] < hi and loss["inside"]
  assert record["law"]["b"] == pytest.approx(0.1, abs=0.01)  # the generator's law
  size = record["optimal_size"]
  assert size["inside"]  # the top budget's iso-compute vertex vs the size law's interval
  # The interval is a prediction interval: line, seed noise (a floor here: no replicates)
  # and the selection shift, all reported.
  assert record["seed_source"] == "floor (no replicates)"
  assert loss["line_sd"] > 0 and loss["seed_sd"] >= 0 and loss["selection_shift"] <= 1e-3
  # The observed run is the largest budget's best, and only smaller budgets were fitted.
  assert record["observed_run"] in {r["name"] for r in record["held_out"]}
  assert max(r["compute"] for r in record["train_frontier"]) < record["compute"]
  assert len(record["band"]["compute"]) == len(record["band"]["lo"]) == prediction.BAND_POINTS


def test_prediction_is_outside_when_the_largest_budget_is_off_law():
  record = _predict(helpers.study_points(off_law=1.3))
  assert record["status"] == "ok"
  assert record["loss"]["observed"] > record["loss"]["interval"][1]
  assert record["loss"]["inside"] is False


def test_prediction_needs_four_budgets_and_two_sizes():
  few = _predict(helpers.study_points(budgets=helpers.BUDGETS[:3]))
  assert few["status"] == "skipped" and "3 budget(s)" in few["note"]
  one_size = _predict(helpers.study_points({"nfnet_mini_f0": 1e5}))
  assert one_size["status"] == "ok"  # the loss law needs no second size
  assert one_size["optimal_size"]["inside"] is None
  assert "too few interior optima" in one_size["optimal_size"]["note"]


def test_budget_comes_from_config_and_old_results_still_load():
  record = helpers.study_records()[0]
  point = runs.point_from_record("r/results.json", "r", record)
  assert point.budget == record["config"]["budget_core_hours"]
  old = dict(record)
  del old["config"]
  assert runs.point_from_record("r/results.json", "r", old).budget is None
  # Without a budget, runs within BUDGET_GAP of compute share one (the older grouping).
  plain = synthetic_runs.as_points(synthetic_runs.synthetic_records(epochs=(0.5, 1.0, 2.0)))
  ids = frontier.budget_ids(plain)
  for p, i in zip(plain, ids):
    same = [q for q, j in zip(plain, ids) if j == i]
    assert max(q.compute for q in same) <= frontier.BUDGET_GAP * min(q.compute for q in same)
    assert p in same


def test_edge_optima_are_flagged_and_left_out_of_the_size_law():
  points = helpers.verdict_points(size_exponent=0.9, noise=0.0)
  entry, notes = fits_lib.fit_family(points, bootstrap=20)
  edges = [o["edge"] for o in entry["optimal"]]
  assert edges[0] == "smallest" and edges[-1] == "largest"  # the grid cannot hold them
  scaling = entry["optimal_scaling"]
  assert scaling["n"] == sum(e is None for e in edges) >= 3
  assert scaling["edge_budgets"] == [o["compute"] for o in entry["optimal"] if o["edge"]]
  assert "optimal_scaling" not in notes


def test_three_sizes_give_interior_vertices_when_the_middle_one_wins():
  entry, _ = fits_lib.fit_family(helpers.study_points(THREE_SIZES, noise=0.0), bootstrap=0)
  assert entry["optimal_scaling"]["size"]["exponent"] == pytest.approx(0.5, abs=0.05)


def test_edge_optima_leave_the_size_rows_undecided():
  # Three sizes and an optimal size that outgrows them: too few interior vertices.
  points = helpers.study_points(THREE_SIZES, noise=0.0, size_exponent=1.5)
  fits = fits_lib.fit_all(points, bootstrap=50)
  assert fits["per_family"]["nfnet"]["optimal_scaling"] is None
  assert "too few interior optima" in fits["notes"]["per_family.nfnet.optimal_scaling"]
  rows = {r["key"]: r for r in versus_published.compare(points, fits, model_stats=False)["rows"]}
  for key in ("claim.nfnet.optimal_size_exponent_sign",
              "claim.nfnet.optimal_epochs_exponent_sign",
              "claim.nfnet.size_vs_epochs_exponent_ratio"):
    assert rows[key]["status"] == "UNDECIDED" and "interior" in rows[key]["note"], key
  assert _predict(points)["optimal_size"]["inside"] is None


def test_prediction_rows_count_for_nfnet_only():
  nfnets = helpers.study_points()
  vits = helpers.study_points({f"vit_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}, seed=2,
                              off_law=1.3)
  predictions = prediction.predict_all(nfnets + vits, bootstrap=100)
  result = versus_published.compare(model_stats=False, predictions=predictions)
  rows = {r["key"]: r for r in result["rows"]}
  assert set(rows) == {f"prediction.{f}.{part}" for f in ("nfnet", "vit")
                       for part in ("loss", "optimal_size")}
  assert rows["prediction.nfnet.loss"]["status"] == "PASS" and rows["prediction.nfnet.loss"][
      "counted"]
  assert rows["prediction.nfnet.loss"]["ours"] == predictions["nfnet"]["loss"]["observed"]
  assert rows["prediction.vit.loss"]["status"] == "FAIL"  # off law, shown only
  assert not rows["prediction.vit.loss"]["counted"]
  assert "not a paper claim" in rows["prediction.vit.loss"]["note"]
  assert result["passed"] and result["n_rows"] == 2 and result["n_info"] == 2
  table = versus_published.format_table(result)
  assert "(FAIL)" in table.split("prediction.vit.loss")[1].splitlines()[0]
  # The PASS rule is the interval: the tolerance is its half on the observed side.
  loss = predictions["nfnet"]["loss"]
  row = rows["prediction.nfnet.loss"]
  side = loss["interval"][1 if loss["observed"] >= loss["predicted"] else 0]
  assert abs(row["tolerance"]) == pytest.approx(abs(side - loss["predicted"]))


def test_skipped_prediction_is_an_undecided_row():
  points = helpers.study_points(budgets=helpers.BUDGETS[:3])
  result = versus_published.compare(model_stats=False, predictions=prediction.predict_all(points))
  assert {r["status"] for r in result["rows"]} == {"UNDECIDED"}
  assert all("3 budget(s)" in r["note"] for r in result["rows"])
  assert result["passed"] and result["verdict"] == "UNDECIDED"
  assert np.isfinite(_predict(helpers.study_points(), bootstrap=0)["loss"]["predicted"])


def test_judged_is_inside_on_both_bounds_and_unjudged_without_an_interval():
  part = prediction._judged(0.5, [0.4, 0.6], 0.6, note="n")
  assert part == dict(predicted=0.5, interval=[0.4, 0.6], observed=0.6, inside=True, note="n")
  assert prediction._judged(0.5, [0.4, 0.6], 0.4)["inside"] is True
  assert prediction._judged(0.5, [0.4, 0.6], 0.61)["inside"] is False
  assert prediction._judged(0.5, [0.4, 0.6], 0.39)["inside"] is False
  assert prediction._judged(0.5, [None, None], 0.5)["inside"] is None


def test_band_is_the_loss_law_and_its_interval_at_each_compute():
  """The figure's band: centre a*C^-b at each compute, between the exp of the log interval."""
  from reproduce.analysis import bootstrap
  from reproduce.analysis.pipeline import ESTIMATES
  estimate = np.zeros(len(ESTIMATES))
  estimate[ESTIMATES.index("log_a")], estimate[ESTIMATES.index("b")] = np.log(2.0), 0.5
  samples = np.tile(estimate, (50, 1))
  samples[:, ESTIMATES.index("log_a")] += np.random.default_rng(0).normal(0.0, 0.1, 50)
  band = prediction._band(estimate, samples, np.array([1.0, 4.0]), 0.9)
  assert set(band) == {"compute", "centre", "lo", "hi"}
  assert band["compute"] == [1.0, 4.0]
  assert band["centre"] == pytest.approx([2.0, 1.0])
  for i, c in enumerate((1.0, 4.0)):
    centre = np.log(2.0) - 0.5 * np.log(c)
    lo, hi = bootstrap.normal_interval(centre, samples[:, 0] - 0.5 * np.log(c), 0.9)
    assert [band["lo"][i], band["hi"][i]] == pytest.approx([np.exp(lo), np.exp(hi)])
    assert band["lo"][i] < band["centre"][i] < band["hi"][i]
