"""The miniature study's orchestration: planning, resume, fits, TensorBoard, comparison.

Training itself is replaced by a synthetic law here (the engine's own tests train real mini
models end to end); what is tested is everything the study adds around it.
"""

import json
import os
import types

import pytest

from reproduce.analysis import runs
from reproduce.core import fileio
from reproduce.core import results as results_schema
from reproduce.miniature import grid, study, workers

NFNETS = ("nfnet_mini_f0", "nfnet_mini_f1")
VITS = ("vit_mini_ti", "vit_mini_s")


def _fake_measure(model, batch_size, resolution, num_classes, steps):
  rate = {"nfnet_mini_f0": 400.0, "nfnet_mini_f1": 200.0,
          "vit_mini_ti": 800.0, "vit_mini_s": 400.0}[model]
  return types.SimpleNamespace(median=rate, min=rate * 0.9, max=rate * 1.1), 0.1


def _fake_train(config, plan, run_dir, data_dir):
  """Writes the results.json a run would, with loss = 0.5 * (core-seconds)^-0.4."""
  core_seconds = plan.core_hours * 3600.0
  loss = (0.5 if plan.family == "vit" else 0.6) * core_seconds ** -0.4
  results = {
      "schema": results_schema.SCHEMA, "model": plan.model, "family": plan.family,
      "params": plan.params, "flops_per_image": plan.forward_flops_per_image,
      "resolution": plan.resolution, "dataset": config.dataset,
      "dataset_size": plan.dataset_size, "num_classes": plan.num_classes,
      "epochs": plan.epochs, "steps": plan.steps, "batch_size": plan.batch_size,
      "base_lr": plan.base_lr, "hardware": plan.hardware,
      "planned_core_hours": plan.core_hours, "measured_core_hours": plan.core_hours,
      "heldout_loss": loss, "heldout_top1": 1.0 - loss / 3.0, "finetune_top1": None,
  }
  fileio.write_json(os.path.join(run_dir, results_schema.FILE), results)
  return results, 0.1


@pytest.fixture
def fake_training(monkeypatch):
  calls = {"train": 0, "measure": 0}

  def measure(*args):
    calls["measure"] += 1
    return _fake_measure(*args)

  def train(*args):
    calls["train"] += 1
    return _fake_train(*args)

  monkeypatch.setattr(workers, "measure_job", measure)
  monkeypatch.setattr(workers, "train_job", train)
  return calls


def test_study_end_to_end_and_resume(tmp_path, fake_training, capsys):
  workdir = str(tmp_path / "study")
  budgets = [3.0, 6.0, 12.0, 24.0]
  result = study.run_study(workdir, NFNETS, VITS, budgets, batch_size=32, base_lr=0.2,
                           measure_steps=2, bootstrap=50, seed=0, data_dir=None, workers_at_once=0)
  out = capsys.readouterr().out
  assert fake_training == {"train": 16, "measure": 4}
  assert "[16/16]" in out and "ETA" in out
  for model in NFNETS + VITS:  # one progress line per run, naming its own run
    for budget in budgets:
      assert out.count(f"] {grid.run_name(model, budget)} ") == 1, out
  assert "tensorboard --logdir" in out
  assert "nfnet: frontier loss ~ C^-0.4" in out

  # Budgets are matched across families: every budget has one run per model.
  points = runs.load_points(os.path.join(workdir, "runs", "*"))
  assert len(points) == 16
  assert {p.family for p in points} == {"nfnet", "vit"}
  fits = json.load(open(os.path.join(workdir, "fits", "fits.json")))
  assert fits["per_family"]["nfnet"]["fit"]["b"] == pytest.approx(0.4, abs=1e-3)
  assert fits["per_family"]["vit"]["fit"]["b"] == pytest.approx(0.4, abs=1e-3)
  assert os.path.exists(os.path.join(workdir, "compare.json"))
  assert any(r["key"] == "claim.nfnet.loss_vs_compute_slope_sign" and r["status"] == "PASS"
             for r in result["rows"])

  # A second invocation reuses every finished run and the cached throughputs.
  study.run_study(workdir, NFNETS, VITS, budgets, batch_size=32, base_lr=0.2,
                  measure_steps=2, bootstrap=50, seed=0, data_dir=None, workers_at_once=0)
  assert fake_training == {"train": 16, "measure": 4}
  assert capsys.readouterr().out.count("reused") == 16


def test_plan_runs_matches_budgets_in_measured_core_seconds(fake_training):
  source = types.SimpleNamespace(train_size=1437, num_classes=10)
  rates = {m: _fake_measure(m, 32, 32, 10, 1)[0].median for m in NFNETS + VITS}
  runs, skipped = grid.plan_runs(NFNETS + VITS, [6.0], rates, source, 32, 0.2, 0)
  assert not skipped and len(runs) == 4
  for name, config, plan in runs:
    # Whole steps: within one step of the budget, never over it.
    step_seconds = plan.batch_size / rates[plan.model]
    assert 6.0 - step_seconds < plan.core_hours * 3600.0 <= 6.0 + 1e-9
    assert plan.base_lr == 0.2 and plan.hardware == "cpu" and config.model == plan.model
    assert name == f"{plan.model}__6cs"


def test_tiny_budget_is_skipped_with_the_reason(fake_training):
  source = types.SimpleNamespace(train_size=1437, num_classes=10)
  runs, skipped = grid.plan_runs(["nfnet_mini_f1"], [0.001], {"nfnet_mini_f1": 200.0},
                                  source, 32, 0.2, 0)
  assert runs == [] and "smaller than one training step" in skipped[0]


@pytest.mark.parametrize("values, message", [
    (["a"], "must be numbers"), (["0"], "must be positive"), ([], "must be positive")])
def test_bad_budgets_name_the_flag(values, message):
  with pytest.raises(grid.StudyError, match="--budgets_core_seconds " + message):
    grid.parse_budgets(values)


def test_unknown_model_fails_before_any_work(tmp_path, fake_training):
  import model_defs
  with pytest.raises(model_defs.UnknownModelError):
    study.run_study(str(tmp_path), ["nfnet_mini_f9"], VITS, [1.0], 32, 0.2, 1, 10, 0, None, 0)
  assert fake_training == {"train": 0, "measure": 0}
