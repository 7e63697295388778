"""Scaling fits: known laws recovered, frontier/LR extraction, errors, TensorBoard output."""

import dataclasses
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reproduce.analysis import figures
from reproduce.analysis import fits as fits_lib
from reproduce.analysis import frontier
from reproduce.analysis import outputs
from reproduce.analysis import runs
from reproduce.analysis.runs import Point, ScalingError
from reproduce.core import fileio
from reproduce.core import results
from reproduce.planning.hardware import compute_unit

import synthetic_runs

# Small grid: 4 sizes x 4 budgets x 3 LRs = 48 runs.
SMALL_MODELS = {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(4)}
SMALL_EPOCHS = (0.5, 1.0, 2.0, 4.0)


def _law_data(n, b=0.15, a=4.0, e=0.0, noise=0.0, seed=0):
  rng = np.random.default_rng(seed)
  compute = np.geomspace(1.0, 1e4, n)
  loss = (e + a * compute ** -b) * np.exp(noise * rng.normal(size=n))
  return compute, loss


def _point(name, compute, loss, model="m", epochs=None, lr=1.0, params=1e6, family="nfnet",
           top1=0.5, unit="CPU core hours"):
  # Default epochs = compute, so points are distinct runs, not one LR sweep.
  return Point(run=f"/runs/{name}", name=name, model=model, family=family, params=params,
               flops_per_image=2 * params, epochs=compute if epochs is None else epochs,
               base_lr=lr, compute=compute,
               compute_unit=unit, compute_kind="planned", heldout_loss=loss,
               heldout_top1=top1, batch_size=16, resolution=32, dataset="d")


# ----------------------------------------------------------------------------------------
# Known laws.


def test_noiseless_power_law_exact():
  compute, loss = _law_data(12, b=0.15, a=4.0)
  fit = fits_lib.fit_power_law(compute, loss, bootstrap=0)
  assert fit["b"] == pytest.approx(0.15, abs=1e-3)
  assert fit["a"] == pytest.approx(4.0, rel=1e-3)
  assert fit["rmse_log"] < 1e-9


def test_noiseless_irreducible_law_exact():
  compute, loss = _law_data(15, b=0.3, a=5.0, e=1.5)
  fit = fits_lib.fit_power_law(compute, loss, irreducible=True, bootstrap=0)
  assert fit["form"] == "L = E + a*C^-b"
  assert fit["b"] == pytest.approx(0.3, abs=1e-3)
  assert fit["E"] == pytest.approx(1.5, abs=1e-3)
  assert fit["a"] == pytest.approx(5.0, rel=1e-3)


def test_noisy_exponent_within_ci_and_ci_shrinks_with_points():
  # A 95% CI misses the truth in ~1 of 20 draws, so check coverage over 20 noise draws.
  widths = {}
  for n in (10, 80):
    covered, widths[n] = 0, []
    for draw in range(20):
      compute, loss = _law_data(n, b=0.15, noise=0.03, seed=100 * n + draw)
      fit = fits_lib.fit_power_law(compute, loss, bootstrap=200, seed=draw)
      lo, hi = fit["ci"]["b"]
      assert lo < fit["b"] < hi
      covered += lo <= 0.15 <= hi
      widths[n].append(hi - lo)
    assert covered >= 16, (n, covered)
  assert np.mean(widths[80]) < 0.5 * np.mean(widths[10])


def test_irreducible_fit_ci_covers_truth():
  compute, loss = _law_data(30, b=0.3, a=5.0, e=1.5, noise=0.005, seed=4)
  fit = fits_lib.fit_power_law(compute, loss, irreducible=True, bootstrap=100, seed=0)
  assert fit["ci"]["b"][0] <= 0.3 <= fit["ci"]["b"][1]
  assert fit["ci"]["E"][0] <= 1.5 <= fit["ci"]["E"][1]


def test_bootstrap_is_deterministic_per_seed():
  compute, loss = _law_data(10, noise=0.05, seed=3)
  first = fits_lib.fit_power_law(compute, loss, bootstrap=50, seed=7)
  again = fits_lib.fit_power_law(compute, loss, bootstrap=50, seed=7)
  other = fits_lib.fit_power_law(compute, loss, bootstrap=50, seed=8)
  assert first["ci"] == again["ci"]
  assert first["ci"]["b"] != other["ci"]["b"]


def test_fit_exponent_recovers_slope():
  x = np.geomspace(1, 100, 6)
  fit = fits_lib.fit_exponent(x, 3.0 * x ** 0.5, bootstrap=20)
  assert fit["exponent"] == pytest.approx(0.5, abs=1e-9)
  assert fit["k"] == pytest.approx(3.0)


def test_fit_all_recovers_synthetic_study():
  records = synthetic_runs.synthetic_records(noise=0.0, b=0.1,
                                             models={f"nfnet_mini_s{i}": 1e5 * 2.0 ** i
                                                     for i in range(7)})
  points = [_from_record(i, r) for i, r in enumerate(records)]
  fits = fits_lib.fit_all(points, bootstrap=50)
  assert fits["loss_vs_compute"]["b"] == pytest.approx(0.1, abs=1e-3)
  nfnet = fits["per_family"]["nfnet"]
  assert nfnet["fit"]["b"] == pytest.approx(0.1, abs=1e-3)
  opt = nfnet["optimal_scaling"]
  assert opt["size_axis"] == fits["size_axis"] == "flops_per_image"
  assert opt["size"]["exponent"] > 0 and opt["epochs"]["exponent"] > 0
  assert 0.8 < opt["ratio"]["value"] < 1.25  # the generator's truth is 1
  assert nfnet["lr_trend"]["pooled_slope"] == pytest.approx(-0.25)  # LR grid follows e^-0.25
  assert nfnet["lr_trend"]["ci"][0] < -0.25 < nfnet["lr_trend"]["ci"][1]
  assert fits["notes"] == {}
  json.loads(fileio.dumps(fits))  # JSON-ready


def _from_record(i, r):
  return Point(run=f"r{i}", name=f"r{i}", model=r["model"], family=r["family"],
               params=r["params"], flops_per_image=r["flops_per_image"], epochs=r["epochs"],
               base_lr=r["base_lr"], compute=r["planned_core_hours"],
               compute_unit=compute_unit(r["hardware"]), compute_kind="planned",
               heldout_loss=r["heldout_loss"], heldout_top1=r["heldout_top1"],
               batch_size=r["batch_size"], resolution=r["resolution"], dataset=r["dataset"])


# ----------------------------------------------------------------------------------------
# Frontier and LR sweeps.


def test_frontier_is_the_best_run_of_each_nominal_budget():
  points = [_point("a", 1, 5.0), _point("b", 2, 4.0), _point("c", 3, 4.5),  # c: beaten by d
            _point("d", 3, 3.9), _point("e", 10, 3.0), _point("f", 20, 3.2)]  # f: worse, kept
  assert [p.name for p in frontier.frontier(points)] == ["a", "b", "d", "e", "f"]
  # Runs share a budget by config.budget_core_hours, not by compute.
  planned = [dataclasses.replace(p, budget=1.0 if p.compute < 5 else 2.0) for p in points]
  assert [p.name for p in frontier.frontier(planned)] == ["d", "e"]


def test_best_lr_points_reduce_each_sweep():
  points = [_point("lr1", 1, 3.0, lr=1.0), _point("lr2", 1, 2.5, lr=2.0),
            _point("lr4", 1, 2.8, lr=4.0), _point("other", 2, 2.9, epochs=2.0)]
  assert sorted(p.name for p in frontier.best_lr_points(points)) == ["lr2", "other"]


def test_optimal_lr_and_trend():
  points = []
  for epochs, best in ((0.5, 1.6), (1.0, 0.8), (2.0, 0.4)):
    for lr in (0.2, 0.4, 0.8, 1.6, 3.2):
      loss = 2.0 + (np.log2(lr) - np.log2(best)) ** 2
      points.append(_point(f"e{epochs}_lr{lr}", epochs, loss, epochs=epochs, lr=lr))
  points.append(_point("edge_lo", 9.0, 2.0, model="n", epochs=4.0, lr=0.1))
  points.append(_point("edge_hi", 9.0, 2.5, model="n", epochs=4.0, lr=0.2))
  sweeps = frontier.optimal_lr(points)
  by_key = {(s["model"], s["epochs"]): s for s in sweeps}
  assert [by_key[("m", e)]["best_lr"] for e in (0.5, 1.0, 2.0)] == [1.6, 0.8, 0.4]
  assert by_key[("m", 1.0)]["refined_lr"] == pytest.approx(0.8)
  assert not by_key[("m", 1.0)]["at_edge"]
  assert by_key[("n", 4.0)]["at_edge"] and by_key[("n", 4.0)]["best_lr"] == 0.1
  trend = frontier.lr_trend(sweeps)
  assert trend["per_model"]["m"]["slope"] == pytest.approx(-1.0)
  assert "n" not in trend["per_model"]  # one budget: no trend
  assert trend["pooled_slope"] == pytest.approx(-1.0)
  assert trend["small_epochs_lr"]["m"] == 1.6 and trend["n_edge"] == 1


def test_lr_vertex_resolves_between_grid_points():
  # A parabola in log LR with its minimum at 1.0 on a sqrt(2) grid: the vertex is exact,
  # not the grid's nearest point; an optimum at the grid's end is an edge.
  grid = 0.5 * np.sqrt(2.0) ** np.arange(5)
  vertex, interior = frontier.local_vertex(np.log(grid), (np.log(grid) - np.log(1.0)) ** 2)
  assert interior and np.exp(vertex) == pytest.approx(1.0)
  vertex, interior = frontier.local_vertex(np.log(grid), -np.log(grid))
  assert not interior and np.exp(vertex) == pytest.approx(grid[-1])


# ----------------------------------------------------------------------------------------
# Loading and error messages.


def _write_run(directory, name, record):
  run = os.path.join(directory, name)
  os.makedirs(run, exist_ok=True)
  with open(os.path.join(run, "results.json"), "w") as f:
    json.dump(record, f)
  return run


def test_load_points_from_dirs_and_files(tmp_path):
  records = synthetic_runs.synthetic_records(models=SMALL_MODELS, epochs=SMALL_EPOCHS)
  synthetic_runs.write_records(str(tmp_path), records)
  by_dir = runs.load_points(str(tmp_path / "*"))
  by_file = runs.load_points([str(tmp_path / "*" / "results.json")])
  assert len(by_dir) == len(by_file) == len(records)
  assert by_dir[0].compute_unit == "CPU core hours"
  measured = runs.load_points(str(tmp_path / "*"), compute="measured")
  assert measured[0].compute == pytest.approx(1.1 * by_dir[0].compute)
  assert len({p.name for p in by_dir}) == len(by_dir)


def test_empty_glob_names_the_pattern(tmp_path):
  pattern = str(tmp_path / "nothing_here_*")
  with pytest.raises(ScalingError, match="nothing_here_"):
    runs.load_points(pattern)


def test_run_without_results_is_named(tmp_path):
  records = synthetic_runs.synthetic_records(models={"m_a": 1e5}, epochs=(1.0,))
  synthetic_runs.write_records(str(tmp_path), records)
  os.makedirs(tmp_path / "crashed_run")
  with pytest.raises(ScalingError, match="crashed_run") as info:
    runs.load_points(str(tmp_path / "*"))
  assert "\n" not in str(info.value)


def test_missing_field_is_named(tmp_path):
  record = synthetic_runs.synthetic_records(models={"m_a": 1e5}, epochs=(1.0,),
                                            lr_factors=(1.0,))[0]
  del record["heldout_loss"]
  _write_run(str(tmp_path), "broken_run", record)
  with pytest.raises(ScalingError, match=r"broken_run.*heldout_loss"):
    runs.load_points(str(tmp_path / "*"))


def test_bad_values_and_schema_are_named(tmp_path):
  record = synthetic_runs.synthetic_records(models={"m_a": 1e5}, epochs=(1.0,),
                                            lr_factors=(1.0,))[0]
  _write_run(str(tmp_path), "wrong_schema", dict(record, schema="other/v9"))
  _write_run(str(tmp_path), "percent_top1", dict(record, heldout_top1=61.0))
  with pytest.raises(ScalingError) as info:
    runs.load_points(str(tmp_path / "*"))
  assert "wrong_schema" in str(info.value) and "percent_top1" in str(info.value)


def test_too_few_points_names_the_runs():
  points = [_point("only_run_a", 1, 3.0), _point("only_run_b", 2, 2.0)]
  with pytest.raises(ScalingError, match=r"at least 3 points.*only_run_a.*only_run_b"):
    fits_lib.fit_all(points)
  with pytest.raises(ScalingError, match="at least 4 points"):
    fits_lib.fit_power_law([1, 2, 3], [3, 2, 1.5], irreducible=True)


def test_mixed_compute_units_refused():
  points = [_point("cpu_run", 1, 3.0), _point("tpu_run", 2, 2.0, unit="TPU-v4 core hours"),
            _point("x", 3, 1.0)]
  with pytest.raises(ScalingError, match=r"mix compute units.*cpu_run.*tpu_run"):
    fits_lib.fit_all(points)


def test_missing_optional_analyses_become_notes():
  points = [_point(f"r{i}", 2.0 ** i, 3.0 * 2.0 ** (-0.1 * i), params=1e5 * 2 ** i)
            for i in range(5)]  # one LR per budget: no sweeps
  fits = fits_lib.fit_all(points, bootstrap=10)
  assert fits["per_family"]["nfnet"]["optimal_lr"] is None
  assert "per_family.nfnet.optimal_lr" in fits["notes"]
  assert "per_family.nfnet.lr_trend" in fits["notes"]


def test_cli_error_is_one_line_exit_2_with_tensorflow_chatter_on(tmp_path):
  # TF_CPP_MIN_LOG_LEVEL=0 makes TensorFlow print its start-up notices, as it does on
  # AVX-512/AMX CPUs whatever the level; the user must still see only the error.
  result = subprocess.run(
      [sys.executable, "-m", "reproduce.fit_scaling", f"--runs={tmp_path}/none_*",
       f"--logdir={tmp_path}/tb"], capture_output=True, text=True, timeout=120,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0"))
  assert result.returncode == 2
  assert result.stderr.count("\n") == 1, result.stderr
  assert result.stderr.startswith("error: no runs match") and "none_" in result.stderr


def test_cli_flag_error_is_one_line_before_tensorflow(tmp_path):
  result = subprocess.run(
      [sys.executable, "-m", "reproduce.fit_scaling", f"--runs={tmp_path}/*",
       f"--logdir={tmp_path}/tb", "--bootstrap=-1"], capture_output=True, text=True,
      timeout=120, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0"))
  assert (result.returncode, result.stderr) == (
      2, "error: --bootstrap=-1: expected a count >= 0\n")


# ----------------------------------------------------------------------------------------
# TensorBoard output, read back with TensorBoard's own readers.


@pytest.fixture(scope="module")
def tb_logdir(tmp_path_factory):
  from reproduce.analysis import tensorboard as tb_writer

  base = tmp_path_factory.mktemp("scaling_tb")
  records = synthetic_runs.synthetic_records(models=SMALL_MODELS, epochs=SMALL_EPOCHS, noise=0.01)
  vit = synthetic_runs.synthetic_records(models={"vit_mini_a": 1.5e5, "vit_mini_b": 6e5},
                                         epochs=SMALL_EPOCHS, lr_factors=(1.0,), noise=0.01,
                                         seed=1)
  synthetic_runs.write_records(str(base / "runs"), records + vit)
  points = runs.load_points(str(base / "runs" / "*"))
  fits = fits_lib.fit_all(points, bootstrap=20)
  files = outputs.write_fit_files(str(base / "tb"), points, fits)
  written = tb_writer.write_fits(str(base / "tb"), points, fits)
  return str(base / "tb"), points, fits, dict(written, files=files)


def test_tensorboard_tags_load_with_event_multiplexer(tb_logdir):
  from tensorboard.backend.event_processing import event_multiplexer
  from reproduce.analysis import tensorboard as tb_writer

  logdir, points, fits, written = tb_logdir
  mux = event_multiplexer.EventMultiplexer(size_guidance={"tensors": 0})
  mux.AddRunsFromDirectory(logdir)
  mux.Reload()
  tb_runs = mux.Runs()
  assert "fits" in tb_runs and "hparams" in tb_runs
  assert len(written["hparams_sessions"]) == len(points)
  assert set(written["hparams_sessions"]) <= set(tb_runs)

  images = mux.PluginRunToTagToContent("images")["fits"]
  assert {tb_writer.IMAGE_PREFIX + name for name in figures.study_figures([], {})} <= set(images)
  assert set(tb_writer.TEXT_TAGS) <= set(mux.PluginRunToTagToContent("text")["fits"])
  scalars = mux.PluginRunToTagToContent("scalars")["fits"]
  for tag in ("loss_vs_compute/nfnet_mini_s0", "loss_vs_compute/vit_mini_a",
              "loss_vs_compute/frontier", "compute/at_index"):
    assert tag in scalars, tag
  # No one-point scalar charts: every scalar series of the fits run has several steps; the
  # fitted numbers are in the coefficients text.
  for tag in scalars:
    assert len(mux.Tensors("fits", tag)) >= 2, tag
  text = mux.Tensors("fits", "summary/coefficients")[0].tensor_proto.string_val[0].decode()
  assert f"{fits['per_family']['nfnet']['fit']['b']:.4g}" in text

  hparams = mux.PluginRunToTagToContent("hparams")
  assert "_hparams_/experiment" in hparams["hparams"]
  session = written["hparams_sessions"][0]
  assert "_hparams_/session_start_info" in hparams[session]
  assert {"heldout_loss", "heldout_top1", "core_hours"} <= set(
      mux.PluginRunToTagToContent("scalars")[session])


def test_logdir_files(tb_logdir):
  logdir, points, _, _ = tb_logdir
  fits = outputs.load_fits(os.path.join(logdir, "fits.json"))
  assert fits["schema"] == results.FITS_SCHEMA and fits["n_runs"] == len(points)
  assert set(fits["per_family"]) == {"nfnet", "vit"}
  with open(os.path.join(logdir, "points.csv")) as f:
    lines = f.read().splitlines()
  assert lines[0].split(",") == list(outputs.POINT_COLUMNS)
  assert len(lines) == len(points) + 1


def test_figure_one_shows_published_points_with_units():
  from reproduce.analysis import figures
  from reproduce.core import published

  rows = figures.published_figure1_points()
  assert [r["label"] for r in rows] == [label for _, label in figures.FIGURE1_PUBLISHED]
  f7 = next(r for r in rows if r["model"] == "nfnet_f7plus")
  assert f7["compute"] == published.value("nfnet_f7plus.pretrain_core_hours")
  assert f7["top1_error"] == pytest.approx(100 - published.value("nfnet_f7plus.imagenet_top1"))
  assert all(r["compute_unit"] == runs.PAPER_COMPUTE_UNIT for r in rows)
