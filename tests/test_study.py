"""The miniature study: its grid, budgets in FLOPs, its LR re-centring, its time accounting,
and the real main job end to end at a tiny scale (real worker processes, training, transfer
fine-tuning, fits; ``--strict``), re-run to check that it resumes, and run again elsewhere to
check that it gives the same fits and verdicts.
"""

import json
import math
import os
import shutil
import subprocess
import sys
import types

import pytest

from reproduce.miniature import accounting
from reproduce.miniature import grid
from reproduce.miniature import worker_pool


def test_lr_sweep_is_a_factor_sqrt2_grid_around_its_centre():
  r = math.sqrt(2.0)
  assert grid.lr_sweep(0.2, 3) == pytest.approx((0.2 / r, 0.2, 0.2 * r))
  assert grid.lr_sweep(1e-3, 4) == pytest.approx((1e-3 / r, 1e-3, 1e-3 * r, 2e-3))
  assert grid.lr_sweep(0.2, 1) == (0.2,)


def _family(grids, family):
  return [g for g in grids if g.family == family]


@pytest.mark.parametrize("preset, sizes, span", [("default", 4, 30), ("long", 5, 30)])
def test_each_presets_grid_can_show_an_optimum_in_the_papers_regime(preset, sizes, span):
  """Four sizes a family (the long preset: five, the hybrids' four aside), 30x of compute or
  more, every budget a band of the preset's sizes (at least three, so its optimum can be
  interior), the largest size not at the smallest budget, seeds at the largest."""
  ladders = grid.PRESETS[preset]
  budgets = ladders["budgets"]
  grids = grid.make_grid(ladders["nfnets"], ladders["vits"], budgets,
                         grid.DEFAULT_LR_CENTRES, grid.DEFAULT_LR_POINTS,
                         hybrids=ladders["hybrids"], band=ladders["band"])
  for family in grid.FAMILIES:
    members = _family(grids, family)
    assert len(members) >= (4 if family == "hybrid" else sizes)
    trained = [b for g in members for b in g.trained_budgets()]
    assert max(trained) / min(trained) >= span
    for budget in budgets:
      assert sum(budget in g.trained_budgets() for g in members) == ladders["band"], (family,
                                                                                 budget)
    assert ladders["band"] >= grid.MIN_BAND
    if len(members) > ladders["band"]:  # else every size at every budget
      assert budgets[0] not in members[-1].trained_budgets()
      assert budgets[-1] not in members[0].trained_budgets()
    assert all(g.top_seeds >= 2 for g in members if g.top_budget)
    assert all(g.lr_points >= 3 for g in members)


@pytest.mark.parametrize("preset", sorted(grid.PRESETS))
def test_each_presets_sizes_are_compute_matched_across_families(preset):
  import model_defs
  ladders = grid.PRESETS[preset]
  for nfnet, vit in zip(ladders["nfnets"], ladders["vits"], strict=True):
    macs = [model_defs.stats(m, resolution=grid.RESOLUTION, num_classes=10).macs
            for m in (nfnet, vit)]
    assert 0.85 < macs[0] / macs[1] < 1.15, (nfnet, vit, macs)
  for family in (ladders["nfnets"], ladders["vits"]):
    sizes = [model_defs.stats(m, resolution=grid.RESOLUTION).macs for m in family]
    assert all(1.5 < b / a < 2.5 for a, b in zip(sizes, sizes[1:])), sizes


def test_the_third_arm_is_opt_in_and_trains_each_rung_where_its_matches_train():
  """Without hybrids the grid is the two families'; with them each hybrid rung trains at the
  budgets of the NFNet and ViT rungs it is matched to, from its own LR centre, on the ViTs'
  recipe (AdamW)."""
  args = (grid.DEFAULT_NFNETS, grid.DEFAULT_VITS, grid.DEFAULT_BUDGETS_CORE_SECONDS,
          grid.DEFAULT_LR_CENTRES, grid.DEFAULT_LR_POINTS)
  assert {g.family for g in grid.make_grid(*args)} == {"nfnet", "vit"}
  grids = grid.make_grid(*args, hybrids=grid.DEFAULT_HYBRIDS)
  nfnets, hybrids = _family(grids, "nfnet"), _family(grids, "hybrid")
  assert [g.model for g in hybrids] == list(grid.DEFAULT_HYBRIDS)
  for nfnet, hybrid in zip(nfnets, hybrids):
    assert (hybrid.sweep_budgets, hybrid.top_budget) == (nfnet.sweep_budgets, nfnet.top_budget)
    assert hybrid.lr_centre == grid.DEFAULT_LR_CENTRES["hybrid"] == 1e-2
  assert grid.family_config("hybrid_mini_mu").optimizer == "adamw"
  assert grid.family_config("nfnet_mini_f0w50").optimizer == "sgd_agc"


def test_each_arm_takes_only_its_own_family():
  from reproduce.miniature import stages
  assert stages.check_models(["nfnet_mini_f0w25"], ["vit_mini_pico"], ["hybrid_mini_pico"]) == [
      "nfnet_mini_f0w25", "vit_mini_pico", "hybrid_mini_pico"]
  with pytest.raises(grid.StudyError, match="--hybrid_models names vit_mini_pico, a model of "
                                            "family vit"):
    stages.check_models(["nfnet_mini_f0w25"], ["vit_mini_pico"], ["vit_mini_pico"])
  with pytest.raises(grid.StudyError, match="--vit_models names nfnet_mini_f0w25"):
    stages.check_models(["nfnet_mini_f0w25"], ["nfnet_mini_f0w25"])


def test_every_run_in_the_papers_regime_under_two_epochs():
  import model_defs
  budgets = grid.DEFAULT_BUDGETS_CORE_SECONDS
  grids = grid.make_grid(grid.DEFAULT_NFNETS, grid.DEFAULT_VITS, budgets,
                         grid.DEFAULT_LR_CENTRES, grid.DEFAULT_LR_POINTS,
                         hybrids=grid.DEFAULT_HYBRIDS)
  for g in grids:
    train_flops = 3 * model_defs.stats(g.model, resolution=32, num_classes=10).flops
    for budget in g.trained_budgets():
      epochs = budget * 1e10 / train_flops / 60000
      assert epochs < 2.0, (g.model, budget, epochs)


def test_a_budget_is_flops_so_every_machine_trains_the_same_steps():
  """Steps come from the analytic counts, not from a measured speed: the same on any CPU."""
  import model_defs
  source = types.SimpleNamespace(train_size=60000, num_classes=10)
  _, plan = grid.plan_run("nfnet_mini_f0", 12.0, 0.4, 0, source)
  _, again = grid.plan_run("nfnet_mini_f0", 12.0, 0.4, 0, source)
  assert plan == again and plan.hardware == grid.HARDWARE
  train_flops = 3 * model_defs.stats("nfnet_mini_f0", resolution=32, num_classes=10).flops
  assert plan.steps == round(12.0 * 1e10 / train_flops / grid.BATCH_SIZE)
  config, _ = grid.plan_run("vit_mini_ti", 12.0, 4e-3, 0, source)
  assert config.label_smoothing == 0.0 and config.dataset == "fashion_mnist"


def test_the_band_slides_from_small_to_large_sizes():
  budgets = [1, 2, 4, 8, 16, 32]
  own = [grid.size_budgets(rank, 4, budgets) for rank in range(4)]
  assert own[0] == [1, 2, 4] and own[3] == [8, 16, 32]
  assert own[1] == own[2] == budgets
  assert grid.size_budgets(0, 3, budgets) == budgets  # three sizes: all at every budget
  # Bands of four (``--band=4``) over five sizes and seven budgets.
  long = [grid.size_budgets(rank, 5, budgets + [64], band=4) for rank in range(5)]
  assert long[0] == [1, 2, 4, 8] and long[4] == [16, 32, 64]
  assert long[1] == long[2] == long[3] == budgets + [64]


def _sweep(epochs, lr, lrs=None):
  lrs = lrs or [lr / 2, lr, lr * 2]
  return dict(epochs=epochs, refined_lr=lr, lrs=lrs)


def test_the_next_sweep_is_centred_where_the_trend_points():
  # Optimal LR 0.4 at 1 epoch, 0.2 at 4 epochs: slope -1/2 in log-log.
  sweeps = [_sweep(1.0, 0.4), _sweep(4.0, 0.2)]
  assert grid.predicted_lr(sweeps, 16.0) == pytest.approx(0.1, rel=1e-3)
  # One sweep: its own optimum.
  assert grid.predicted_lr(sweeps[:1], 8.0) == pytest.approx(0.4)


def test_an_implausible_trend_is_clipped():
  # Two noisy sweeps that suggest the LR quadruples per doubling of epochs (slope 2).
  sweeps = [_sweep(1.0, 0.1, [0.05, 0.1, 0.8]), _sweep(2.0, 0.4, [0.05, 0.4, 0.8])]
  slope_max = grid.LR_SLOPE_RANGE[1]
  expected = math.exp(math.log(0.2) + slope_max * (math.log(4.0) - math.log(2.0) / 2))
  assert grid.predicted_lr(sweeps, 4.0) == pytest.approx(expected, rel=1e-3)


def test_breakdown_names_every_core_second_that_is_not_training():
  clock = accounting.StudyClock(started=0.0, workers=2)
  clock.cores = 2
  clock.phases = {"process start": 5.0, "data preparation": 5.0, "workers": 100.0,
                  "fits and report": 10.0}
  jobs = [dict(model="a", traces=1, cost={"training": 70.0, "tracing": 10.0,
                                                        "job wall": 90.0}),
          dict(model="b", traces=1, cost={"training": 80.0, "evaluation": 5.0,
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


TINY_STUDY = ["--nfnet_models=nfnet_mini_f0w38,nfnet_mini_f0w50",
              "--vit_models=vit_mini_nano,vit_mini_mu", "--hybrid_models=hybrid_mini_nano",
              "--budgets_core_seconds=0.5,1,2",
              "--lr_points=2", "--finetune_steps=4", "--bootstrap=10", "--strict"]


def _study(workdir):
  return subprocess.run([sys.executable, "-m", "reproduce.study", f"--workdir={workdir}"]
                        + TINY_STUDY, capture_output=True, text=True, timeout=900)


def _trained_lines(stdout):
  return [line for line in stdout.splitlines()
          if "] " in line and " s x" in line and "fine-tune" not in line]


def test_the_real_study_end_to_end_then_resumed_then_again(tmp_path):
  """The main job itself on Fashion-MNIST: real workers, training, transfer fine-tunes on
  the digits, fits, report; resumed after a lost run; and run again elsewhere, with the same
  fits.json and compare.json (budgets are FLOPs, ops deterministic)."""
  workdir = tmp_path / "study"
  first = _study(workdir)
  compare = json.loads((workdir / "compare.json").read_text())
  assert first.returncode == (1 if compare["n_fail"] else 0), first.stdout + first.stderr
  breakdown = json.loads((workdir / "time_breakdown.json").read_text())
  # One trace per model, however many runs and datasets (the transfer reuses it).
  assert breakdown["traces"] == {m: 1 for m in ("nfnet_mini_f0w38", "nfnet_mini_f0w50",
                                                "vit_mini_nano", "vit_mini_mu",
                                                "hybrid_mini_nano")}
  runs = sorted(os.listdir(workdir / "runs"))
  # Per model: 2 budgets x 2 LRs (+ one LR beyond an edge optimum), the largest x 2 seeds.
  assert 5 * 6 <= len(runs) <= 5 * 8, runs
  assert sum("__seed1" in r for r in runs) == 5
  # A replicate is another data order through the same program: data_seed differs, so does
  # its loss.
  for seed1 in (r for r in runs if r.endswith("__seed1")):
    pair = [json.loads((workdir / "runs" / name / "results.json").read_text())
            for name in (seed1[:-len("__seed1")], seed1)]
    assert pair[1]["config"]["data_seed"] == pair[0]["config"]["data_seed"] + 1
    assert pair[1]["heldout_loss"] != pair[0]["heldout_loss"]
  record = json.loads((workdir / "runs" / runs[0] / "results.json").read_text())
  assert record["dataset"] == "fashion_mnist" and record["config"]["label_smoothing"] == 0.0
  # The best run of each swept budget, every seed of the largest: 5 x (2 + 2).
  assert len(os.listdir(workdir / "finetune")) == 5 * 4
  fits = json.loads((workdir / "fits" / "fits.json").read_text())
  # The third arm: its own fits and rows (in parentheses), a sentence in the report.
  assert "claim.hybrid.loss_vs_compute_slope_sign" in first.stdout and "hybrid: frontier" in (
      first.stdout)
  assert "The hybrids" in (workdir / "report.md").read_text()
  assert (workdir / "frontiers_loss_vs_compute.png").exists()
  for family in ("nfnet", "vit", "hybrid"):  # every budget has a fine-tuned point
    assert fits["per_family"][family]["finetune_fit"]["n"] == 3, fits["per_family"][family]
  for finetune in (workdir / "finetune").iterdir():  # transfer: another real dataset
    assert json.loads((finetune / "results.json").read_text())["dataset"] == "digits"
  assert "time not spent training" in first.stdout
  assert "claim.nfnet.loss_vs_compute_slope_sign" in first.stdout
  assert "UNDECIDED of" in first.stdout  # the three-valued verdict line
  # An interrupted study loses at most the run in progress: drop one run, re-run.
  lost = next(r for r in runs if r.startswith("vit_mini_mu__1cs"))
  shutil.rmtree(workdir / "runs" / lost)
  second = _study(workdir)
  assert second.returncode == first.returncode, second.stdout + second.stderr
  trained_again = _trained_lines(second.stdout)
  assert len(trained_again) == 1 and lost in trained_again[0], second.stdout
  # Another study's runs in the same workdir are refused, not reused: one line, exit 2.
  other = subprocess.run([sys.executable, "-m", "reproduce.study", f"--workdir={workdir}",
                          "--seed=1"] + TINY_STUDY, capture_output=True, text=True, timeout=900)
  assert other.returncode == 2 and "holds another run (seed, data_seed differ)" in (
      other.stderr), other.stderr
  # The same commit elsewhere: the same steps, losses, fits and verdicts.
  elsewhere = tmp_path / "again"
  _study(elsewhere)
  for name in ("compare.json", "fits/fits.json"):
    assert (elsewhere / name).read_text() == (workdir / name).read_text(), name


def test_the_eta_waits_until_five_percent_of_the_plan_is_trained(capsys):
  """Early on the elapsed time is mostly start-up and tracing: no ETA from it."""
  from reproduce.miniature import stages
  grids = grid.make_grid(["nfnet_mini_f0"], [], [1.0, 9.0, 90.0],
                         {"nfnet": 0.4, "vit": 4e-3}, 1)
  progress = stages.Progress(grids, finetune_steps=0)

  def run_event(core_seconds):
    results = {"planned_core_hours": core_seconds / 3600, "epochs": 1.0, "steps": 10,
               "heldout_loss": 1.0, "heldout_top1": 0.5}
    return {"kind": "run", "name": "r", "results": results, "status": "1.0 s"}

  progress.show(run_event(1.0))  # 1 of 100 planned core-seconds
  assert "ETA" not in capsys.readouterr().out
  progress.show(run_event(9.0))  # 10 of 100
  assert "ETA" in capsys.readouterr().out


def test_errors_cross_the_worker_process_boundary():
  """A worker's PlanError or StudyError reaches the main process intact (pickled), so the
  study prints its one line instead of a broken-pool traceback."""
  import pickle
  from reproduce.planning.errors import PlanError
  error = pickle.loads(pickle.dumps(PlanError("budget_core_hours", "buys no step")))
  assert str(error) == "--budget_core_hours buys no step" and error.flag == "budget_core_hours"
  assert str(pickle.loads(pickle.dumps(grid.StudyError("x")))) == "x"


def test_jobs_start_longest_first_by_their_per_step_overhead_not_their_flops_alone():
  """The narrowest NFNet plans as few core-seconds as the smallest ViT, but its fixed cost
  per step (and its XLA compile) makes its job several times longer: it must not be the
  last job to start, alone on the machine at the end."""
  grids = {g.model: g for g in grid.make_grid(grid.DEFAULT_NFNETS, grid.DEFAULT_VITS,
                                               grid.DEFAULT_BUDGETS_CORE_SECONDS,
                                               grid.DEFAULT_LR_CENTRES, 3)}
  guess = {m: worker_pool.job_seconds_guess(g, grid.BATCH_SIZE) for m, g in grids.items()}
  narrow, wide = grids["nfnet_mini_f0w25"], grids["nfnet_mini_f0w75"]
  assert narrow.planned_core_seconds() == grids["vit_mini_pico"].planned_core_seconds()
  assert guess["nfnet_mini_f0w25"] > 3 * guess["vit_mini_pico"]
  stretch = {g.model: (guess[g.model] - worker_pool._COMPILE_SECONDS["nfnet"])
             / g.planned_core_seconds() for g in (narrow, wide)}
  assert 2.5 < stretch["nfnet_mini_f0w25"] < 3.2 and 1.1 < stretch["nfnet_mini_f0w75"] < 1.5


def test_the_studys_band_reaches_its_grid(tmp_path, monkeypatch):
  """``--band`` (``StudySpec.band``) is the band the grid is made with."""
  from reproduce.miniature import stages

  class Planned(Exception):
    pass

  def make_grid(*args):
    raise Planned(args[-1])

  monkeypatch.setattr(stages.grid_lib, "make_grid", make_grid)
  spec = stages.StudySpec(str(tmp_path), grid.DEFAULT_NFNETS, grid.DEFAULT_VITS, (1.0, 2.0),
                          grid.DEFAULT_LR_CENTRES, 3, 32, 0, 0, 0, None, 0, dataset="digits",
                          transfer_dataset="digits", band=4)
  with pytest.raises(Planned, match="^4$"):
    stages.run_study(spec)
