"""Edge rounds of the miniature study (``reproduce.miniature.edges``): where a budget's best
size is the edge of the sizes it trained, the ladder's next size trains there, its sweeps
centred by the model's earlier runs, which are read and never retrained."""

import os
import types

import pytest

from reproduce.analysis.runs import Point
from reproduce.miniature import accounting
from reproduce.miniature import edges
from reproduce.miniature import grid
from reproduce.miniature import model_runs

LADDERS = {"nfnet": ("a", "b", "c", "d"), "vit": ("p", "q", "r")}
BUDGETS = (1.0, 2.0, 4.0)


def _point(model, budget, loss, family="nfnet", lr=0.1, seed=None):
  return Point(run=f"runs/{model}_{budget}_{lr}_{seed}", name=f"{model}_{budget}_{lr}_{seed}",
               model=model, family=family, params=1.0, flops_per_image=1.0, epochs=1.0,
               base_lr=lr, compute=budget / 3600, compute_unit="core hours",
               compute_kind="planned", heldout_loss=loss, heldout_top1=0.5,
               budget=budget / 3600, seed=seed)


def test_the_next_size_beyond_a_lower_or_upper_edge_optimum_and_none_when_interior():
  points = [_point("b", 1.0, 1.0), _point("c", 1.0, 1.1), _point("d", 1.0, 1.2),  # lower edge
            _point("a", 2.0, 1.0), _point("b", 2.0, 0.9), _point("c", 2.0, 0.95),  # interior
            _point("a", 4.0, 1.0), _point("b", 4.0, 0.95), _point("c", 4.0, 0.9)]  # upper edge
  assert edges.edge_sizes(points, LADDERS, BUDGETS) == {"a": [1.0], "d": [4.0]}


def test_no_size_beyond_the_ladders_end_and_the_best_lr_of_a_size_counts():
  points = [_point("b", 4.0, 1.0), _point("c", 4.0, 1.1), _point("d", 4.0, 1.3),
            _point("d", 4.0, 0.8, lr=0.2)]  # d's best LR makes it the best size: the top end
  assert edges.edge_sizes(points, LADDERS, BUDGETS) == {}
  points = [_point("a", 1.0, 0.8), _point("b", 1.0, 1.0), _point("c", 1.0, 1.1)]
  assert edges.edge_sizes(points, LADDERS, BUDGETS) == {}


def test_a_size_tried_there_before_is_not_tried_again():
  """The next size diverged (or bought no step) at that budget: no finished run, but the
  same LRs would give the same again; the rounds stop there."""
  points = [_point("b", 1.0, 1.0), _point("c", 1.0, 1.1), _point("d", 1.0, 1.2)]
  assert edges.edge_sizes(points, LADDERS, BUDGETS, tried={("a", 1.0)}) == {}
  assert edges.edge_sizes(points, LADDERS, BUDGETS, tried={("a", 2.0)}) == {"a": [1.0]}


def test_seeds_are_averaged_before_the_best_size_is_chosen():
  """One lucky seed of the smallest size does not make it the optimum: the geometric mean of
  b's seeds (sqrt(0.7 * 1.4) = 0.99) loses to c's 0.98, an interior optimum."""
  points = [_point("b", 4.0, 0.7, seed=0), _point("b", 4.0, 1.4, seed=1),
            _point("c", 4.0, 0.98), _point("d", 4.0, 1.1)]
  assert edges.edge_sizes(points, LADDERS, BUDGETS) == {}
  points[1] = _point("b", 4.0, 0.8, seed=1)
  assert edges.edge_sizes(points, LADDERS, BUDGETS) == {"a": [4.0]}


def test_each_family_on_its_own_ladder():
  points = [_point("b", 1.0, 1.0), _point("c", 1.0, 1.1), _point("d", 1.0, 1.2),
            _point("q", 1.0, 1.0, "vit"), _point("r", 1.0, 0.9, "vit"),
            _point("x", 1.0, 0.1, "hybrid")]  # a family without a ladder adds nothing
  assert edges.edge_sizes(points, LADDERS, BUDGETS) == {"a": [1.0]}
  assert edges.edge_sizes(points, dict(LADDERS, vit=("p", "q", "r", "s")), BUDGETS) == {
      "a": [1.0], "s": [1.0]}


def test_an_edge_at_the_largest_budget_trains_its_seeds_from_the_prior_runs():
  points = [_point("b", 1.0, 1.0), _point("c", 1.0, 1.1), _point("d", 1.0, 1.2),
            _point("b", 4.0, 1.0), _point("c", 4.0, 1.1), _point("d", 4.0, 1.2)]
  finished = {"a": ["a_2_lr0.1"], "b": ["b_1_lr0.1"]}
  grids = edges.edge_grids(points, LADDERS, BUDGETS, finished, (), {"nfnet": 0.4, "vit": 4e-3},
                           3, 2)
  assert grids == [grid.ModelGrid("a", "nfnet", (1.0,), 0.4, 3, 4.0, 2,
                                  prior_runs=("a_2_lr0.1",))]
  assert grids[0].planned_runs() == 3 + 2


def test_a_job_of_an_edge_round_centres_on_its_prior_runs_and_trains_only_its_budgets():
  """The prior runs enter every LR prediction; only the round's budgets are trained and
  fine-tuned."""
  job = object.__new__(model_runs.ModelRuns)
  job.grid = grid.ModelGrid("a", "nfnet", (2.0,), 0.4, 3, 4.0, 2, prior_runs=("a_1",))
  job.settings = types.SimpleNamespace(finetune_steps=4)
  seen, trained, finetuned = [], [], []
  job._prior_results = lambda: [{"base_lr": 0.3, "heldout_loss": 1.0, "_name": "a_1"}]
  job._lr_at = lambda done, budget, default: seen.append([r["_name"] for r in done]) or 0.5
  job.sweep = lambda budget, centre: trained.append((budget, centre)) or [
      {"base_lr": centre, "heldout_loss": 0.9, "_name": f"a_{budget}"}]
  job.pretrain = lambda budget, lr, seed: trained.append((budget, lr, seed)) or {
      "base_lr": lr, "heldout_loss": 0.8, "_name": f"a_{budget}_{seed}"}
  job._transfer_source = lambda: None
  job.finetune = lambda name, run, source: finetuned.append(name)
  job.run_all()
  assert seen == [["a_1"], ["a_1", "a_2.0"]]
  assert trained == [(2.0, 0.5), (4.0, 0.5, 0), (4.0, 0.5, 1)]
  assert finetuned == ["a_2.0", "a_4.0_0", "a_4.0_1"]


def test_a_models_traces_add_up_over_its_jobs():
  clock = types.SimpleNamespace(phases={}, cores=2)
  jobs = [dict(model="a", traces=1, cost={}), dict(model="a", traces=1, cost={}),
          dict(model="b", traces=1, cost={})]
  assert accounting.breakdown_from(clock, jobs, wall=1.0)["traces"] == {"a": 2, "b": 1}


def _spec(tmp_path, rounds):
  from reproduce.miniature import stages
  return stages.StudySpec(str(tmp_path), ("a", "b", "c", "d"), ("p", "q", "r"), BUDGETS,
                          {"nfnet": 0.4, "vit": 4e-3, "hybrid": 1e-2}, 3, 32, 0, 0, 0, None,
                          0, edge_rounds=rounds)


def test_a_round_reads_the_finished_runs_and_prints_what_it_adds(tmp_path, monkeypatch,
                                                                 capsys):
  from reproduce.miniature import stages
  read = []
  points = [_point("b", 1.0, 1.0), _point("c", 1.0, 1.1), _point("d", 1.0, 1.2),
            _point("q", 2.0, 1.0, "vit"), _point("r", 2.0, 1.1, "vit")]
  monkeypatch.setattr(stages.runs, "load_points",
                      lambda dirs, compute: read.extend(dirs) or points)
  costs = [dict(model="b", runs=["b_1"]), dict(model="a", runs=["a_2"]),
           dict(model="a", runs=["a_4"])]
  tried = [grid.ModelGrid("p", "vit", (2.0,), 4e-3, 3, None)]  # p at 2 gave no run
  more = stages.edge_round(_spec(tmp_path, 2), costs, tried, 1)
  assert [os.path.basename(d) for d in read] == ["a_2", "a_4", "b_1"]
  assert more == [grid.ModelGrid("a", "nfnet", (1.0,), 0.4, 3, None, grid.TOP_SEEDS,
                                 prior_runs=("a_2", "a_4"))]
  out = capsys.readouterr().out
  assert "edge round 1 of 2: the next size" in out and "(centred by its earlier runs)" in out
  assert stages.edge_round(_spec(tmp_path, 2), costs, tried + more, 2) == []
  assert "edge round 2 of 2: none to add" in capsys.readouterr().out


@pytest.mark.parametrize("rounds, found, jobs", [(0, [["x"]], 1), (3, [["x"], []], 2),
                                                 (2, [["x"], ["y"], ["z"]], 3)])
def test_rounds_run_until_none_is_found_or_they_are_spent(tmp_path, monkeypatch, rounds,
                                                          found, jobs):
  """The same pool trains each round's grids after the first stage's."""
  from reproduce.miniature import stages
  submitted, found = [], list(found)
  monkeypatch.setattr(stages.data, "load_source", lambda *a, **k: types.SimpleNamespace(
      name="d", train_size=1, heldout_size=1, num_classes=10))
  monkeypatch.setattr(stages, "check_models", lambda *a: [])
  monkeypatch.setattr(stages.grid_lib, "make_grid", lambda *a: [])
  seen_tried = []
  monkeypatch.setattr(stages, "edge_round", lambda spec, costs, tried, n: seen_tried.append(
      list(tried)) or found.pop(0))
  monkeypatch.setattr(stages, "run_jobs", lambda pool, grids, *a, **k: submitted.append(
      grids) or [])
  class Fitted(Exception):
    pass

  def fit_and_compare(*args):
    raise Fitted

  monkeypatch.setattr(stages, "fit_and_compare", fit_and_compare)
  monkeypatch.setattr(stages.Progress, "add", lambda self, grids: None)
  with pytest.raises(Fitted):
    stages.run_study(_spec(tmp_path, rounds))
  assert submitted == [[], ["x"], ["y"]][:jobs]
  # Each round knows every grid trained before it, so it never tries a pair twice.
  assert seen_tried == [[], ["x"], ["x", "y"]][:min(rounds, len(seen_tried))]


def test_the_prior_runs_are_read_from_their_directories(tmp_path):
  """A prior run that never finished (no results.json) is left out."""
  import json
  from reproduce.miniature import run_paths
  job = object.__new__(model_runs.ModelRuns)
  job.settings = types.SimpleNamespace(workdir=str(tmp_path))
  job.grid = grid.ModelGrid("a", "nfnet", (4.0,), 0.4, 3, None, 2,
                            prior_runs=("a_2_x", "a_1_lost", "a_2_y"))
  for name, lr in (("a_2_x", 0.2), ("a_2_y", 0.4)):
    path = run_paths.run_dir(str(tmp_path), name)
    os.makedirs(path)
    with open(os.path.join(path, "results.json"), "w") as f:
      json.dump({"base_lr": lr}, f)
  assert [(r["_name"], r["base_lr"]) for r in job._prior_results()] == [("a_2_x", 0.2),
                                                                        ("a_2_y", 0.4)]


def test_a_round_counts_in_the_progress_total_and_plan():
  from reproduce.miniature import stages
  first = [grid.ModelGrid("a", "nfnet", (1.0, 2.0), 0.4, 3, 4.0, 2)]
  progress = stages.Progress(first, finetune_steps=4)
  assert (progress.total, progress.planned) == (6 + 2 + 2 + 2, 9.0 + 8.0)
  progress.add([grid.ModelGrid("b", "nfnet", (2.0,), 0.4, 3, None, 2, prior_runs=("b_1",))])
  assert (progress.total, progress.planned) == (12 + 3 + 1, 17.0 + 6.0)


def test_a_study_of_one_budget_sweeps_it_and_has_no_largest_budget():
  assert grid.model_grid("a", "nfnet", (2.0,), (2.0,), 0.4, 3, 2).trained_budgets() == (2.0,)
  assert grid.model_grid("a", "nfnet", (2.0,), (2.0,), 0.4, 3, 2).top_budget is None
  assert grid.model_grid("a", "nfnet", (2.0,), (1.0, 2.0), 0.4, 3, 2).top_budget == 2.0
