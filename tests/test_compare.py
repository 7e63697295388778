"""reproduce.compare: rows, PASS/FAIL, notes, TensorBoard/JSON output, exit codes."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from reproduce.analysis import fits as fits_lib
from reproduce.analysis import outputs
from reproduce.analysis import runs
from reproduce.analysis import versus_published
from reproduce.core import fileio
from reproduce.core import published

import analysis_helpers as helpers
import synthetic_runs

MODELS = {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  base = tmp_path_factory.mktemp("compare")
  synthetic_runs.write_records(str(base / "runs"), helpers.verdict_records(noise=0.005))
  points = runs.load_points(str(base / "runs" / "*"))
  return base, points, fits_lib.fit_all(points, bootstrap=50)


def _finetune_run(directory, name, model, top1):
  record = synthetic_runs.synthetic_records(models={model: 1e6}, epochs=(8.0,), lr_factors=(1.0,),
                                            hardware="tpu_v4")[0]
  record["finetune_top1"] = top1
  run = directory / name
  run.mkdir(parents=True)
  (run / "results.json").write_text(json.dumps(record))


def test_row_pass_fail_and_difference():
  entry = published.get("nfnet_f7plus.imagenet_top1")
  inside = versus_published._row(entry, "finetune", entry.value + 0.9 * entry.tolerance)
  outside = versus_published._row(entry, "finetune", entry.value - 1.1 * entry.tolerance)
  assert inside.status == "PASS" and outside.status == "FAIL"
  assert outside.difference == pytest.approx(-1.1 * entry.tolerance)
  assert versus_published._row(entry, "finetune", float("nan")).status == "UNDECIDED"


def test_claims_on_synthetic_study_pass(study):
  _, points, fits = study
  result = versus_published.compare(points, fits, model_stats=False)
  keys = {r["key"] for r in result["rows"]}
  assert keys == {"claim.nfnet.loss_vs_compute_slope_sign",
                  "claim.nfnet.optimal_size_exponent_sign",
                  "claim.nfnet.optimal_epochs_exponent_sign",
                  "claim.nfnet.size_vs_epochs_exponent_ratio",
                  "claim.nfnet.optimal_lr_vs_epochs_sign"}
  assert result["verdict"] == "PASS" and result["n_undecided"] == 0, (
      versus_published.format_table(result))
  # CPU core hours are never compared with the paper's TPU-v4 core hours.
  assert any("not TPU-v4 core hours" in n for n in result["notes"])


def test_flat_study_fails_claims(study):
  _, points, fits = study
  flat = json.loads(fileio.dumps(fits))
  nfnet = flat["per_family"]["nfnet"]
  nfnet["fit"].update(b=-0.01, ci=dict(a=[1, 2], b=[-0.02, -0.005], E=[0, 0]))
  nfnet["lr_trend"].update(pooled_slope=0.0, ci=None)
  result = versus_published.compare(points, flat, model_stats=False)
  status = {r["key"]: r["status"] for r in result["rows"]}
  assert status["claim.nfnet.loss_vs_compute_slope_sign"] == "FAIL"  # rises, CI above 0
  assert status["claim.nfnet.optimal_lr_vs_epochs_sign"] == "UNDECIDED"  # no interval
  assert not result["passed"] and result["verdict"] == "FAIL"


def test_absolute_claims_only_in_tpu_v4_units(study):
  _, _, fits = study
  paper_units = json.loads(fileio.dumps(fits))
  paper_units["compute_unit"] = runs.PAPER_COMPUTE_UNIT
  nfnet = paper_units["per_family"]["nfnet"]
  nfnet["optimal"] = [dict(compute=1e3, epochs=0.5), dict(compute=4e3, epochs=1.0),
                      dict(compute=6e3, epochs=2.0), dict(compute=2e4, epochs=4.0)]
  for sweep in nfnet["optimal_lr"]:
    sweep["batch_size"] = versus_published.PAPER_BATCH_SIZE
  rows, _ = versus_published.claim_rows(paper_units)
  by_key = {r.key: r for r in rows}
  assert by_key["claim.nfnet.optimal_epochs_gt1_above_core_hours"].ours == 6e3
  assert by_key["claim.nfnet.optimal_epochs_gt1_above_core_hours"].status == "PASS"
  smallest = min(s["epochs"] for s in nfnet["optimal_lr"])
  expected = [s["refined_lr"] for s in nfnet["optimal_lr"] if s["epochs"] == smallest]
  assert by_key["claim.nfnet.optimal_lr_small_epochs"].ours == pytest.approx(
      float(np.exp(np.mean(np.log(expected)))))
  rows, notes = versus_published.claim_rows(fits)  # CPU core hours: no absolute rows
  assert not any(r.key.endswith("optimal_lr_small_epochs") for r in rows)
  assert any("not TPU-v4" in n for n in notes)


def test_finetune_rows(tmp_path):
  _finetune_run(tmp_path, "f7plus_good", "nfnet_f7plus", 0.902)
  _finetune_run(tmp_path, "vitg_bad", "vit_giant14", 0.85)
  _finetune_run(tmp_path, "unknown", "nfnet_mini_f0", 0.5)
  points = runs.load_points(str(tmp_path / "*"))
  rows, notes = versus_published.finetune_rows(points)
  status = {r.key: (r.status, r.ours) for r in rows}
  assert status["nfnet_f7plus.imagenet_top1"][0] == "PASS"
  assert status["nfnet_f7plus.imagenet_top1"][1] == pytest.approx(90.2)
  assert status["vit_giant14.imagenet_top1"][0] == "FAIL"
  assert any("nfnet_mini_f0" in n for n in notes)


def test_model_stats_rows_with_what_is_registered():
  import model_defs

  rows, notes = versus_published.model_stats_rows()
  registered = set(model_defs.names())
  assert all(r.model in registered for r in rows)
  stats_models = {e.model for e in published.ENTRIES
                  if e.quantity in versus_published.STATS_QUANTITIES}
  for model in stats_models - registered:
    assert any(n.startswith(model + ":") for n in notes), model


def _model_size_keys() -> set:
  """Keys of every published model-size number (params/GMACs/GFLOPs) of a registered model."""
  import model_defs

  registered = set(model_defs.names())
  return {e.key for e in published.ENTRIES
          if e.quantity in versus_published.STATS_QUANTITIES and e.model in registered}


def _assert_model_size_rows_all_pass(rows):
  size_rows = [r for r in rows if r["kind"] == "model_stats"]
  assert {r["key"] for r in size_rows} == _model_size_keys()
  assert [r["key"] for r in size_rows if r["status"] != "PASS"] == []
  # Every GMACs row is counted at its model's test resolution (NFNets: 256..576 px, not 224).
  gmacs = {r["key"] for r in size_rows if r["quantity"] == "gmacs"}
  assert gmacs == {e.key for e in published.entries(quantity="gmacs")}
  assert len([k for k in gmacs if k.startswith("nfnet_")]) == 8


def test_default_comparison_model_size_rows_pass():
  result = versus_published.compare()  # the defaults: model_stats on
  _assert_model_size_rows_all_pass(result["rows"])
  assert result["passed"], versus_published.format_table(result)


def test_model_stats_rows_logic(monkeypatch):
  import model_defs
  from model_defs.stats import ModelStats

  def fake_stats(name, resolution=None, num_classes=1000, **overrides):
    if name == "vit_b16":
      return ModelStats(name, resolution, num_classes, params=85_800_000, macs=17_550_000_000)
    if name == "vit_s16":
      raise RuntimeError("half-written counter")
    raise model_defs.UnknownModelError(name)

  monkeypatch.setattr(model_defs, "stats", fake_stats)
  rows, notes = versus_published.model_stats_rows()
  assert {r.key: r.status for r in rows} == {"vit_b16.params": "PASS", "vit_b16.gflops": "PASS"}
  assert any("vit_s16" in n and "half-written" in n for n in notes)
  assert any("nfnet_f0" in n and "not registered" in n for n in notes)


def test_outputs_table_json_and_tensorboard(study, tmp_path):
  from tensorboard.backend.event_processing import event_accumulator
  from reproduce.analysis import tensorboard as tb_writer

  _, points, fits = study
  result = versus_published.compare(points, fits, model_stats=False)
  table = versus_published.format_table(result)
  assert "claim.nfnet.size_vs_epochs_exponent_ratio" in table
  assert table.rstrip().endswith(f"-> {result['verdict']}")
  assert f"{result['n_undecided']} UNDECIDED" in table.splitlines()[-1]
  outputs.write_compare_json(str(tmp_path / "out.json"), result)
  assert json.loads((tmp_path / "out.json").read_text())["n_rows"] == result["n_rows"]
  tb_writer.write_compare(str(tmp_path / "tb"), result)
  acc = event_accumulator.EventAccumulator(str(tmp_path / "tb" / "compare"))
  acc.Reload()
  assert "compare/table" in acc.PluginTagToContent("text")
  assert not acc.Tags()["tensors"] or "compare/n_fail" not in acc.Tags()["tensors"]  # text only


def _main(*args):
  # TF_CPP_MIN_LOG_LEVEL=0 makes TensorFlow print its start-up notices, as it does on
  # AVX-512/AMX CPUs whatever the level; none of it may reach the user.
  return subprocess.run([sys.executable, "-m", "reproduce.compare", *args],
                        capture_output=True, text=True, timeout=180,
                        env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0"))


def test_cli_exit_codes(study, tmp_path):
  base, _, _ = study
  good = _main(f"--runs={base}/runs/*", "--bootstrap=30", f"--json_out={tmp_path}/good.json")
  assert good.returncode == 0, good.stdout + good.stderr[-1500:]
  written = json.loads((tmp_path / "good.json").read_text())
  assert written["passed"] is True
  _assert_model_size_rows_all_pass(written["rows"])

  _finetune_run(tmp_path / "bad", "vitg_bad", "vit_giant14", 0.80)
  bad = _main(f"--runs={tmp_path}/bad/*", "--model_stats=false",
              f"--json_out={tmp_path}/bad.json")
  assert bad.returncode == 1
  rows = json.loads((tmp_path / "bad.json").read_text())["rows"]
  assert [r["status"] for r in rows if r["key"] == "vit_giant14.imagenet_top1"] == ["FAIL"]
  assert "FAIL" in bad.stdout



def test_cli_bad_input_is_one_line_exit_2(tmp_path):
  empty = _main(f"--runs={tmp_path}/none_*")
  assert empty.returncode == 2
  assert empty.stderr.count("\n") == 1, empty.stderr
  assert empty.stderr.startswith("error: no runs match") and "none_" in empty.stderr
  flag = _main("--bootstrap=-3")
  assert (flag.returncode, flag.stderr) == (2, "error: --bootstrap=-3: expected a count >= 0\n")
