"""The contract between training and analysis: results.json written by the engine feeds the
fits and the comparison unchanged (no hand-written records in between)."""

from __future__ import annotations

import os

import pytest

import engine_helpers as h
from reproduce.analysis import fits as fits_lib, runs, versus_published
from reproduce.core import fileio
from reproduce.core import results as results_schema
from reproduce.train import loop

STEPS = (4, 8, 16, 32)


@pytest.fixture(scope="module")
def engine_runs(tmp_path_factory, tiny):
  """Four real runs of the tiny model at growing compute, written by the training loop."""
  root = tmp_path_factory.mktemp("runs")
  data = h.fake_data()
  records = []
  for steps in STEPS:
    plan = h.tiny_plan(steps=steps)
    plan.core_hours = 1e-4 * steps  # the plan's budget grows with its steps, as planned runs do
    run_dir = os.path.join(root, f"{tiny}__{steps}steps")
    records.append(loop.train(h.tiny_config(), plan, run_dir, h.one_device(), data_module=data,
                              verbose=False))
  return str(root), records


def test_engine_records_satisfy_the_results_schema(engine_runs):
  root, records = engine_runs
  for record in records:
    on_disk = fileio.read_json(fileio.join(root, f"{record['model']}__{record['steps']}steps",
                                           results_schema.FILE))
    assert on_disk["schema"] == results_schema.SCHEMA
    for compute in results_schema.COMPUTE_FIELDS.values():
      assert results_schema.problems(on_disk, compute) == []


def test_fits_and_comparison_read_engine_runs(engine_runs):
  root, records = engine_runs
  points = runs.load_points(os.path.join(root, "*"), compute="planned")
  assert sorted(p.epochs for p in points) == sorted(r["epochs"] for r in records)
  by_steps = {r["steps"]: r for r in records}
  for point in points:
    record = by_steps[round(point.epochs * 64 / 8)]
    assert point.compute == pytest.approx(record["planned_core_hours"])
    assert point.params == record["params"] and point.family == record["family"]
    assert point.heldout_loss == pytest.approx(record["heldout_loss"])
  fits = fits_lib.fit_all(points, bootstrap=20, seed=0)
  result = versus_published.compare(points, fits, model_stats=False)
  assert result["rows"], versus_published.format_table(result)
  assert any("loss_vs_compute_slope_sign" in row["key"] for row in result["rows"])
