"""Tests for `python -m reproduce.plan`: output formats and one-line flag errors (exit 2)."""

import json
import subprocess
import sys

import pytest

import model_defs
from model_defs import registry
from model_defs.stats import ModelStats
from tiny_models import tiny_conv_builder
from reproduce import plan

HAS_NFNET = "nfnet_f7plus" in model_defs.names()


def _counter(config, resolution, num_classes, name=None, **overrides):
  return ModelStats(name, resolution, num_classes, 5000, int(2e6 * (resolution / 32) ** 2))


@pytest.fixture(scope="module", autouse=True)
def fake_mini():
  registry.register(registry.ModelSpec("plan_cli_test_mini", "nfnet", {}, tiny_conv_builder,
                                       _counter,
                                       train_resolution=16, test_resolution=16,
                                       source="test fake", mini=True))
  yield
  registry.unregister("plan_cli_test_mini")


def run_in_process(capsys, *args):
  """Runs the CLI's parse + main here (no TF start-up); returns (exit code, stdout, stderr)."""
  code = 0
  try:
    plan.main(plan._parse_flags(["plan", *args]))
  except SystemExit as e:
    code = e.code
  out, err = capsys.readouterr()
  return code, out, err


MINI = ["--model=plan_cli_test_mini", "--dataset_size=1000", "--hardware=cpu",
        "--batch_size=8", "--num_classes=10"]


@pytest.mark.parametrize("args, flag", [
    (["--model=plan_cli_test_mini", "--budget_core_hours=-3"], "--budget_core_hours"),
    (["--model=plan_cli_test_mini", "--budget_core_hours=0"], "--budget_core_hours"),
    (MINI + ["--budget_core_hours=1e-12", "--mfu=0.3"], "--budget_core_hours"),
    (["--model=plan_cli_test_mini", "--epochs=1", "--hardware=tpu_v9"], "--hardware"),
    (["--model=no_such_model", "--epochs=1"], "--model"),
    (["--model=plan_cli_test_mini", "--epochs=1", "--batch_size=10", "--num_replicas=3"],
     "--batch_size"),
    (["--model=plan_cli_test_mini", "--epochs=1", "--budget_core_hours=3"],
     "--budget_core_hours"),
    (["--model=plan_cli_test_mini"], "--budget_core_hours"),
    (["--model=plan_cli_test_mini", "--epochs=abc"], "--epochs"),
    (MINI + ["--epochs=1", "--format=xml"], "--format"),
])
def test_bad_input_is_one_line_naming_the_flag(capsys, args, flag):
  code, out, err = run_in_process(capsys, *args)
  assert code == 2 and out == ""
  lines = err.strip().splitlines()
  assert len(lines) == 1 and flag in lines[0], err
  assert "Traceback" not in err


def test_measured_plan_json(capsys):
  code, out, _ = run_in_process(capsys, *MINI, "--epochs=2", "--measure", "--measure_steps=2",
                                "--measure_batch_size=4", "--lr_grid=2", "--format=json")
  assert code == 0
  result = json.loads(out)
  assert result["throughput_source"] == "measured" and result["steps"] == 250
  m = result["measurement"]
  assert len(m["step_seconds"]) == 2 and 0 < m["min"] <= m["median"] <= m["max"]
  assert result["images_per_second_per_core"] == m["median"]
  assert result["lr_grid"] == [result["base_lr"], result["base_lr"] / 2]


def test_table_output(capsys):
  code, out, _ = run_in_process(capsys, *MINI, "--budget_core_hours=0.01", "--mfu=0.3")
  assert code == 0 and "core hours" in out and "plan_cli_test_mini" in out


def _cli(*args):
  return subprocess.run([sys.executable, "-m", "reproduce.plan", *args], capture_output=True,
                        text=True, timeout=300)


def test_subprocess_bad_budget_exits_2_with_one_line():
  result = _cli("--model=nfnet_f0", "--budget_core_hours=-3")
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr.strip() == "error: --budget_core_hours must be > 0, got -3"


@pytest.mark.skipif(not HAS_NFNET, reason="NFNet registry not available yet")
def test_subprocess_paper_anchor_json():
  result = _cli("--model=nfnet_f7plus", "--epochs=8", "--dataset_size=4e9", "--hardware=tpu_v4",
                "--format=json")
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out["core_hours"] == pytest.approx(110e3, rel=0.05)
  assert out["steps"] * out["batch_size"] == out["images"] == 32_000_000_000
  assert 0 <= out["warmup_steps"] <= out["steps"] and out["decay"] == "cosine"


def test_sweep_json(capsys):
  code, out, _ = run_in_process(capsys, "--sweep", "--models=plan_cli_test_mini", "--mfu=0.3",
                                "--dataset_size=1000", "--batch_size=8", "--hardware=cpu",
                                "--format=json")
  assert code == 0
  cells = json.loads(out)["sweep"]
  assert [round(c["epochs"], 2) for c in cells] == [0.25, 0.5, 1, 2, 4, 8]
  assert all(c["core_hours"] > 0 for c in cells)


@pytest.mark.skipif(not HAS_NFNET, reason="NFNet registry not available yet")
def test_allocate_and_sweep_tables_for_the_paper_grid(capsys):
  code, out, _ = run_in_process(capsys, "--allocate", "--budget_core_hours=110000",
                                "--format=json")
  assert code == 0
  rows = json.loads(out)["allocation"]
  assert rows[0]["recommended"] and rows[0]["model"] == "nfnet_f7plus"
  code, out, _ = run_in_process(capsys, "--sweep")
  assert code == 0 and "nfnet_f7plus" in out and "110k" in out
