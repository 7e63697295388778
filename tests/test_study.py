"""The miniature study: its grid, its LR prediction, its time accounting, and the real main
job end to end at a tiny scale (real worker processes, throughput measurement, training,
fine-tuning, fits; ``--strict``), then re-run to check that it resumes.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import types

import pytest

from reproduce.analysis import frontier
from reproduce.miniature import accounting
from reproduce.miniature import grid


def test_lr_sweep_is_a_factor_two_grid_around_its_centre():
  assert grid.lr_sweep(0.2, 3) == (0.1, 0.2, 0.4)
  assert grid.lr_sweep(1e-3, 4) == (5e-4, 1e-3, 2e-3, 4e-3)
  assert grid.lr_sweep(0.2, 1) == (0.2,)


def test_default_grid_spans_two_decades_with_three_sizes_a_family_and_lr_sweeps():
  budgets = grid.DEFAULT_BUDGETS_CORE_SECONDS
  grids = grid.make_grid(grid.DEFAULT_NFNETS, grid.DEFAULT_VITS, budgets,
                         grid.DEFAULT_LR_CENTRES, grid.DEFAULT_LR_POINTS)
  for family in ("nfnet", "vit"):
    members = [g for g in grids if g.family == family]
    assert len(members) >= 3
    trained = [b for g in members for b in g.sweep_budgets + ((g.top_budget,) if g.top_budget
                                                                else ())]
    assert max(trained) / min(trained) >= 100
    for g in members:
      assert len(g.lrs) >= 3 and g.lrs[1] / g.lrs[0] == 2.0
      assert len(g.sweep_budgets) >= 2
    for budget in budgets:  # every budget has two sizes or more: its optimum can move
      at_budget = [g for g in members if budget in g.sweep_budgets or budget == g.top_budget]
      assert len(at_budget) >= 2, (family, budget)
  smallest, largest = grids[0], grids[2]
  assert smallest.top_budget is None and budgets[0] in smallest.sweep_budgets
  assert largest.top_budget == budgets[-1] and budgets[0] not in largest.sweep_budgets


@pytest.mark.parametrize("values, message", [(["a"], "must be numbers"),
                                             (["0", "1"], "must be positive")])
def test_bad_budgets_name_the_flag(values, message):
  with pytest.raises(grid.StudyError, match="--budgets_core_seconds " + message):
    grid.parse_budgets(values)


def _point(model, epochs, lr, loss):
  return types.SimpleNamespace(model=model, family="nfnet", epochs=epochs, base_lr=lr,
                               heldout_loss=loss, batch_size=32, resolution=32,
                               dataset="digits", name=f"{model}_{epochs}_{lr}",
                               sweep_key=(model, epochs, 32, 32, "digits"))


def test_the_largest_budget_lr_follows_the_sweeps_trend():
  # Optimal LR 0.4 at 1 epoch, 0.2 at 4 epochs (interior optima): slope -1/2 in log-log.
  points = []
  for epochs, best in ((1.0, 0.4), (4.0, 0.2)):
    for lr in (best / 2, best, best * 2):
      points.append(_point("m", epochs, lr, 1.0 + abs(math.log2(lr / best))))
  assert frontier.extrapolated_lr(points, "m", 16.0, default=9.0) == pytest.approx(0.1)
  assert frontier.extrapolated_lr(points, "other", 16.0, default=9.0) == 9.0
  # Kept within a factor 2 of the LRs tried.
  assert frontier.extrapolated_lr(points, "m", 1e6, default=9.0) == pytest.approx(0.05)


def test_breakdown_names_every_core_second_that_is_not_training():
  clock = accounting.StudyClock(started=0.0, workers=2)
  clock.cores = 2
  clock.phases = {"process start": 5.0, "data preparation": 5.0, "workers": 100.0,
                  "fits and report": 10.0}
  jobs = [dict(model="a", traces={"pretrain": 1}, cost={"training": 70.0, "tracing": 10.0,
                                                        "job wall": 90.0}),
          dict(model="b", traces={"pretrain": 1}, cost={"training": 80.0, "evaluation": 5.0,
                                                        "job wall": 95.0})]
  result = accounting.breakdown_from(clock, jobs, wall=120.0)
  kinds = result["overhead_core_seconds"]
  assert kinds["cores idle while others worked"] == pytest.approx(15.0)
  assert kinds["other in jobs (results, files, scheduling)"] == pytest.approx(20.0)
  assert kinds["fits and report"] == pytest.approx(20.0)
  assert result["training_core_seconds"] == 150.0
  assert result["overhead_fraction"] == pytest.approx(1 - 150.0 / 240.0)
  # Every core-second is either training or a named overhead.
  assert sum(kinds.values()) + 150.0 == pytest.approx(240.0)
  assert any("ABOVE the 25% goal" in line for line in accounting.format_breakdown(result))


TINY_STUDY = ["--nfnet_models=nfnet_mini_f0", "--vit_models=vit_mini_ti",
              "--budgets_core_seconds=1,2,4", "--lr_points=2", "--finetune_steps=4",
              "--bootstrap=10", "--measure_steps=2", "--strict"]


def _study(workdir):
  return subprocess.run([sys.executable, "-m", "reproduce.study", f"--workdir={workdir}"]
                        + TINY_STUDY, capture_output=True, text=True, timeout=900)


def test_the_real_study_end_to_end_then_resumed(tmp_path):
  """The main job itself: real workers, measurement, training, fine-tunes, fits, report."""
  workdir = tmp_path / "study"
  first = _study(workdir)
  compare = json.loads((workdir / "compare.json").read_text())
  assert first.returncode == (0 if compare["passed"] else 1), first.stdout + first.stderr
  breakdown = json.loads((workdir / "time_breakdown.json").read_text())
  # One trace per model, however many budgets, LRs and fine-tunes went through its program.
  assert breakdown["traces"] == {"nfnet_mini_f0": 1, "vit_mini_ti": 1}
  runs = sorted(os.listdir(workdir / "runs"))
  assert len(runs) == 2 * (2 * 2 + 1), runs  # 2 budgets x 2 LRs + the predicted-LR run
  assert len(os.listdir(workdir / "finetune")) == 2 * 3  # the best run of each budget
  assert "time not spent training" in first.stdout
  assert "claim.nfnet.loss_vs_compute_slope_sign" in first.stdout
  # An interrupted study loses at most the run in progress: drop one run, re-run.
  lost = next(r for r in runs if r.startswith("vit_mini_ti__1cs"))
  shutil.rmtree(workdir / "runs" / lost)
  second = _study(workdir)
  assert second.returncode == first.returncode, second.stdout + second.stderr
  trained_again = [line for line in second.stdout.splitlines()
                   if "] " in line and " s x" in line and "fine-tune" not in line]
  assert len(trained_again) == 1 and lost in trained_again[0], second.stdout
  assert json.loads((workdir / "compare.json").read_text())["n_rows"] == compare["n_rows"]


def test_the_eta_waits_until_five_percent_of_the_plan_is_trained(capsys):
  """Early on the elapsed time is mostly start-up and tracing: no ETA from it."""
  from reproduce.miniature import study
  grids = grid.make_grid(["nfnet_mini_f0"], [], [1.0, 9.0, 90.0],
                         {"nfnet": 0.4, "vit": 4e-3}, 1)
  progress = study.Progress(grids, finetune_steps=0)

  def run_event(core_seconds):
    results = {"planned_core_hours": core_seconds / 3600, "epochs": 1.0, "steps": 10,
               "heldout_loss": 1.0, "heldout_top1": 0.5}
    return {"kind": "run", "name": "r", "results": results, "status": "1.0 s"}

  progress.show(run_event(1.0))  # 1 of 100 planned core-seconds
  assert "ETA" not in capsys.readouterr().out
  progress.show(run_event(9.0))  # 10 of 100
  assert "ETA" in capsys.readouterr().out
