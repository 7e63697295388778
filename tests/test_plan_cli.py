"""Tests for `python -m reproduce.plan`, run as a user runs it: in a subprocess.

Every run sets TF_CPP_MIN_LOG_LEVEL=0, which makes TensorFlow print its start-up notices on any
CPU (as it does on AVX-512/AMX CPUs whatever the level), so "one line on stderr" is tested
against the worst case. The planning arithmetic itself is tested in test_budget.py.
"""

import json
import os
import pathlib
import subprocess
import sys

import pytest

import model_defs

HAS_NFNET = "nfnet_f7plus" in model_defs.names()
REPO_ROOT = pathlib.Path(__file__).resolve().parents[1]

# A real registered mini model on the CPU, at a size that plans in milliseconds.
MINI = ["--model=nfnet_mini_f0", "--dataset_size=1000", "--hardware=cpu", "--batch_size=8",
        "--num_classes=10"]


def _cli(*args) -> subprocess.CompletedProcess:
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
  return subprocess.run([sys.executable, "-m", "reproduce.plan", *args], capture_output=True,
                        text=True, timeout=600, cwd=REPO_ROOT, env=env)


@pytest.mark.parametrize("args, flag", [
    (["--model=nfnet_mini_f0", "--budget_core_hours=0"], "--budget_core_hours"),
    (MINI + ["--budget_core_hours=1e-12", "--mfu=0.3"], "--budget_core_hours"),  # after TF
    (["--model=nfnet_mini_f0", "--epochs=1", "--hardware=tpu_v9"], "--hardware"),
    (["--model=no_such_model", "--epochs=1"], "--model"),  # looked up after TF's import
    (["--model=nfnet_mini_f0", "--epochs=1", "--batch_size=10", "--num_replicas=3"],
     "--batch_size"),
    (["--model=nfnet_mini_f0", "--epochs=1", "--budget_core_hours=3"], "--budget_core_hours"),
    (["--model=nfnet_mini_f0"], "--budget_core_hours"),
    (["--epochs=1"], "--model"),
    (["--model=nfnet_mini_f0", "--epochs=abc"], "--epochs"),
    (MINI + ["--epochs=1", "--format=xml"], "--format"),
    (["--sweep", "--allocate"], "--sweep"),
    (["--sweep", "--family=resnet"], "--family"),
    (["--sweep", "--sweep_epochs=1,two"], "--sweep_epochs"),
    (["--allocate"], "--budget_core_hours"),
    (MINI + ["--epochs=1", "--lr_grid=0"], "--lr_grid"),
    (MINI + ["--epochs=1", "--measure", "--measure_steps=0"], "--measure_steps"),
    (["--no_such_flag=1"], "no_such_flag"),
    (["--model=nfnet_mini_f0", "--epochs=1", "stray"], "stray"),
])
def test_bad_input_is_exactly_one_line_naming_the_flag(args, flag):
  result = _cli(*args)
  assert result.returncode == 2 and result.stdout == "", result
  lines = result.stderr.splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith("error: ") and flag in lines[0], result.stderr


def test_bad_budget_message():
  result = _cli("--model=nfnet_f0", "--budget_core_hours=-3")
  assert result.returncode == 2 and result.stdout == ""
  assert result.stderr == "error: --budget_core_hours must be > 0, got -3\n"


def test_help_lists_the_flags():
  result = _cli("--help")
  assert result.returncode == 0 and "--budget_core_hours" in result.stdout
  assert "python -m reproduce.plan --sweep" in result.stdout


def test_table_output():
  result = _cli(*MINI, "--budget_core_hours=0.01", "--mfu=0.3", "--lr_grid=2")
  assert result.returncode == 0, result.stderr
  lines = result.stdout.splitlines()
  assert lines[0].split()[:2] == ["model", "nfnet_mini_f0"]
  assert lines[1].split()[:2] == ["hardware", "cpu"] and "core hours" in lines[2]
  assert "(analytic, MFU 0.300" in result.stdout and lines[-1].startswith("LR grid")


def test_measured_plan_json():
  # Needs reproduce.train.throughput (the engine's own train step), from the train branch.
  result = _cli("--model=vit_mini_ti", "--dataset_size=1000", "--hardware=cpu",
                "--batch_size=8", "--num_classes=10", "--resolution=32", "--epochs=2",
                "--measure", "--measure_steps=2", "--measure_batch_size=4", "--lr_grid=2",
                "--format=json")
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out["throughput_source"] == "measured" and out["steps"] == 250
  m = out["measurement"]
  assert len(m["step_seconds"]) == 2 and 0 < m["min"] <= m["median"] <= m["max"]
  assert m["batch_size"] == 4 and m["model"] == "vit_mini_ti"
  assert out["images_per_second_per_core"] == m["median"]
  assert out["lr_grid"] == [out["base_lr"], out["base_lr"] / 2]


def test_sweep_json():
  result = _cli("--sweep", "--models=nfnet_mini_f0", "--mfu=0.3", "--dataset_size=1000",
                "--batch_size=8", "--hardware=cpu", "--format=json")
  assert result.returncode == 0, result.stderr
  cells = json.loads(result.stdout)["sweep"]
  assert [round(c["epochs"], 2) for c in cells] == [0.25, 0.5, 1, 2, 4, 8]
  assert all(c["core_hours"] > 0 and c["model"] == "nfnet_mini_f0" for c in cells)


@pytest.mark.skipif(not HAS_NFNET, reason="NFNet registry not available yet")
def test_paper_anchor_json():
  result = _cli("--model=nfnet_f7plus", "--epochs=8", "--dataset_size=4e9", "--hardware=tpu_v4",
                "--format=json")
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert out["core_hours"] == pytest.approx(110e3, rel=0.05)
  assert out["steps"] * out["batch_size"] == out["images"] == 32_000_000_000
  assert 0 <= out["warmup_steps"] <= out["steps"] and out["decay"] == "cosine"


@pytest.mark.skipif(not HAS_NFNET, reason="NFNet registry not available yet")
def test_allocate_and_sweep_tables_for_the_paper_grid():
  result = _cli("--allocate", "--budget_core_hours=110000", "--format=json")
  assert result.returncode == 0, result.stderr
  rows = json.loads(result.stdout)["allocation"]
  assert rows[0]["recommended"] and rows[0]["model"] == "nfnet_f7plus"
  result = _cli("--sweep")
  assert result.returncode == 0, result.stderr
  last_row = result.stdout.splitlines()[-2].split()
  assert last_row[0] == "nfnet_f7plus" and last_row[-1] == "110k"
