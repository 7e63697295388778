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


def _fake_finetune(config, plan, init_dir, run_dir, data_dir):
  """Writes a fine-tune's results.json, with error = 0.4 * (pre-training core-seconds)^-0.3."""
  pretrain = fileio.read_json(os.path.join(init_dir, results_schema.FILE))
  error = (0.4 if plan.family == "vit" else 0.5) * (
      pretrain["planned_core_hours"] * 3600.0) ** -0.3
  results = {
      "schema": results_schema.SCHEMA, "model": plan.model, "family": plan.family,
      "resolution": plan.resolution, "steps": plan.steps, "heldout_top1": 1.0 - error,
      "finetune_top1": 1.0 - error, "finetune_core_hours": 2 * plan.core_hours,
      "finetune_planned_core_hours": 2 * plan.core_hours,
      "pretrain_core_hours": pretrain["planned_core_hours"], "init": init_dir,
  }
  fileio.write_json(os.path.join(run_dir, results_schema.FILE), results)
  return results, 0.1


@pytest.fixture
def fake_training(monkeypatch):
  calls = {"train": 0, "measure": 0, "finetune": 0}

  def measure(*args):
    calls["measure"] += 1
    return _fake_measure(*args)

  def train(*args):
    calls["train"] += 1
    return _fake_train(*args)

  def finetune(*args):
    calls["finetune"] += 1
    return _fake_finetune(*args)

  monkeypatch.setattr(workers, "measure_job", measure)
  monkeypatch.setattr(workers, "train_job", train)
  monkeypatch.setattr(workers, "finetune_job", finetune)
  return calls


def _run(workdir, budgets=(3.0, 6.0, 12.0, 24.0), **kwargs):
  return study.run_study(workdir, NFNETS, VITS, list(budgets), batch_size=32, base_lr=0.2,
                         measure_steps=2, bootstrap=50, seed=0, data_dir=None,
                         workers_at_once=0, **kwargs)


def test_study_end_to_end_and_resume(tmp_path, fake_training, capsys):
  workdir = str(tmp_path / "study")
  budgets = [3.0, 6.0, 12.0, 24.0]
  result = _run(workdir, budgets, finetune_steps=8)
  out = capsys.readouterr().out
  assert fake_training == {"train": 16, "measure": 4, "finetune": 16}
  assert "[16/16]" in out and "ETA" in out
  for model in NFNETS + VITS:  # one progress line per run, naming its own run
    for budget in budgets:
      assert out.count(f"] {grid.run_name(model, budget)} ") == 1, out
      assert out.count(f"] fine-tune {grid.run_name(model, budget)} ") == 1, out
  assert "3/4 fine-tuning every run for 8 steps" in out
  assert "fine-tuning took" in out and "core-s measured (16 run, 0 reused" in out
  assert "tensorboard --logdir" in out
  assert "nfnet: frontier loss ~ C^-0.4" in out
  assert "fine-tuned top-1 error ~ C^-0.300" in out

  # Budgets are matched across families: every budget has one run per model.
  points = runs.load_points(os.path.join(workdir, "runs", "*"))
  assert len(points) == 16
  assert {p.family for p in points} == {"nfnet", "vit"}
  # Every run was fine-tuned from its own pre-training run, at the fine-tune resolution, for
  # the same steps; its top-1 is in the pre-training results.json, where the fits read it.
  for p in points:
    finetuned = fileio.read_json(os.path.join(workdir, "finetune", p.name, "results.json"))
    pretrained = fileio.read_json(os.path.join(workdir, "runs", p.name, "results.json"))
    assert finetuned["init"] == os.path.join(workdir, "runs", p.name)
    assert finetuned["steps"] == 8 and finetuned["resolution"] == 48
    assert pretrained["finetune_top1"] == finetuned["finetune_top1"] == p.finetune_top1
    assert pretrained["finetune_core_hours"] == finetuned["finetune_core_hours"]
    assert p.top1_source == "finetune"
  fits = json.load(open(os.path.join(workdir, "fits", "fits.json")))
  assert fits["per_family"]["nfnet"]["fit"]["b"] == pytest.approx(0.4, abs=1e-3)
  assert fits["per_family"]["vit"]["fit"]["b"] == pytest.approx(0.4, abs=1e-3)
  for family in ("nfnet", "vit"):
    law = fits["per_family"][family]["finetune_fit"]
    assert law["b"] == pytest.approx(0.3, abs=1e-3) and law["n"] == 4
    assert law["n_finetuned"] == 8 and law["ci"]["b"][0] > 0
  assert fits["top1_error"]["source"] == "finetune"
  assert os.path.exists(os.path.join(workdir, "fits", study.FIGURE1_PNG))
  assert os.path.exists(os.path.join(workdir, "compare.json"))
  rows = {r["key"]: r for r in result["rows"]}
  assert rows["claim.nfnet.loss_vs_compute_slope_sign"]["status"] == "PASS"
  finetune_row = rows["claim.nfnet.finetune_error_vs_compute_slope_sign"]
  assert finetune_row["status"] == "PASS" and finetune_row["counted"]
  vit_row = rows["claim.vit.finetune_error_vs_compute_slope_sign"]
  assert vit_row["ours"] == -1.0 and not vit_row["counted"]

  # A second invocation reuses every finished run, fine-tune and the cached throughputs.
  _run(workdir, budgets, finetune_steps=8)
  assert fake_training == {"train": 16, "measure": 4, "finetune": 16}
  out = capsys.readouterr().out
  assert out.count("reused") == 32 + 1 and "(0 run, 16 reused, 0 diverged)" in out


def test_finetune_resumes_the_missing_ones_and_records_them(tmp_path, fake_training, capsys):
  workdir = str(tmp_path / "study")
  _run(workdir, finetune_steps=8)
  lost = grid.run_name("vit_mini_s", 6.0)
  os.remove(os.path.join(workdir, "finetune", lost, "results.json"))
  pretrain_path = os.path.join(workdir, "runs", lost, "results.json")
  record = fileio.read_json(pretrain_path)
  record["finetune_top1"] = None  # as if killed between the fine-tune and the record
  fileio.write_json(pretrain_path, record)
  capsys.readouterr()
  _run(workdir, finetune_steps=8)
  assert fake_training["finetune"] == 17
  assert "(1 run, 15 reused, 0 diverged)" in capsys.readouterr().out
  assert fileio.read_json(pretrain_path)["finetune_top1"] is not None


def test_finetune_steps_zero_skips_the_stage(tmp_path, fake_training, capsys):
  workdir = str(tmp_path / "study")
  result = _run(workdir, finetune_steps=0)
  out = capsys.readouterr().out
  assert fake_training["finetune"] == 0 and "fine-tuning skipped (--finetune_steps=0)" in out
  assert not os.path.exists(os.path.join(workdir, "finetune"))
  fits = json.load(open(os.path.join(workdir, "fits", "fits.json")))
  assert fits["per_family"]["nfnet"]["finetune_fit"] is None
  assert not any("finetune" in key for key in fits["notes"])
  assert not any("finetune_error" in r["key"] for r in result["rows"])


def test_changed_finetune_steps_is_refused(tmp_path, fake_training):
  workdir = str(tmp_path / "study")
  _run(workdir, finetune_steps=8)
  with pytest.raises(grid.StudyError, match="--finetune_steps=12"):
    _run(workdir, finetune_steps=12)


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
  assert fake_training == {"train": 0, "measure": 0, "finetune": 0}
