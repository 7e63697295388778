"""Figure 1's claim: the fine-tuned top-1 error falls with pre-training compute, per family."""

import dataclasses

import pytest

from reproduce.analysis import figures
from reproduce.analysis import fits as fits_lib
from reproduce.analysis import frontier
from reproduce.analysis import tensorboard
from reproduce.analysis import versus_published

import synthetic_runs

EPOCHS = (0.25, 0.5, 1.0, 2.0, 4.0)
KEY = "finetune_error_vs_compute_slope_sign"


def _points(family="nfnet", finetune_b=0.2, noise=0.0, seed=0, epochs=EPOCHS, models=3):
  return synthetic_runs.as_points(synthetic_runs.synthetic_records(
      {f"{family}_mini_s{i}": 1e5 * 2.0 ** i for i in range(models)}, epochs, (1.0,),
      noise=noise, seed=seed, finetune_b=finetune_b, finetune_a=0.1))


def _fit_and_compare(points, bootstrap=100):
  fits = fits_lib.fit_all(points, bootstrap=bootstrap)
  return fits, versus_published.compare(points, fits, model_stats=False)


def test_best_per_budget_keeps_budgets_whose_best_is_worse():
  points = _points(finetune_b=-0.2)  # error rises with compute: every budget stays in
  error = lambda p: 1.0 - p.finetune_top1
  best = frontier.best_per_budget(points, error)
  assert len(best) == len({round(p.compute, 12) for p in points})  # computes on a 2x grid
  assert [p.compute for p in best] == sorted(p.compute for p in best)


def test_the_law_is_recovered_and_both_families_get_a_row():
  points = _points("nfnet", 0.2) + _points("vit", 0.3)
  fits, result = _fit_and_compare(points)
  for family, b in (("nfnet", 0.2), ("vit", 0.3)):
    law = fits["per_family"][family]["finetune_fit"]
    assert law["b"] == pytest.approx(b, abs=1e-6)
    assert law["selection"] == "best fine-tuned run per budget" and law["n_finetuned"] == 15
    assert law["bootstrap"] == 100 and law["ci"]["b"][0] <= b <= law["ci"]["b"][1]
  rows = {r["key"]: r for r in result["rows"]}
  nfnet, vit = rows[f"claim.nfnet.{KEY}"], rows[f"claim.vit.{KEY}"]
  assert nfnet["status"] == "PASS" and nfnet["counted"] and nfnet["ours"] == -1.0
  assert vit["ours"] == -1.0 and not vit["counted"] and "not a paper claim" in vit["note"]
  assert "fine-tuned top-1 error vs pre-training compute" in tensorboard.coefficients_markdown(
      fits)
  assert figures.png_bytes(figures.figure_top1_vs_compute(points, fits))[:4] == b"\x89PNG"


def test_rising_error_fails_and_noise_widens_the_interval():
  _, result = _fit_and_compare(_points(finetune_b=-0.2))
  row = {r["key"]: r for r in result["rows"]}[f"claim.nfnet.{KEY}"]
  assert row["ours"] == 1.0 and row["status"] == "FAIL"
  fits, _ = _fit_and_compare(_points(finetune_b=0.2, noise=0.05, seed=3))
  lo, hi = fits["per_family"]["nfnet"]["finetune_fit"]["ci"]["b"]
  assert 0 < lo < hi and hi - lo > 0.01  # noisy, yet the falling error is still resolved


def test_without_fine_tunes_there_is_no_row_and_no_note():
  fits, result = _fit_and_compare(_points(finetune_b=None))
  assert fits["per_family"]["nfnet"]["finetune_fit"] is None
  assert not any("finetune" in key for key in fits["notes"])
  assert not any(KEY in r["key"] for r in result["rows"])
  assert not any("fine-tuned error" in note for note in result["notes"])


def test_too_few_budgets_is_a_note():
  points = _points()
  cheapest = sorted({p.compute for p in points})[:2]  # fine-tuned at two budgets only
  points = [p if p.compute in cheapest else dataclasses.replace(p, finetune_top1=None)
            for p in points]
  fits, result = _fit_and_compare(points)
  assert fits["per_family"]["nfnet"]["finetune_fit"] is None
  assert "per_family.nfnet.finetune_fit" in fits["notes"]
  row = {r["key"]: r for r in result["rows"]}[f"claim.nfnet.{KEY}"]
  assert row["status"] == "UNDECIDED" and "no fine-tuned error law" in row["note"]
