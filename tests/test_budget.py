"""Tests for reproduce.planning: hardware, accounting, calibration, LR rule, plans, allocation."""

import math
import subprocess
import sys

import pytest

import model_defs
from model_defs import registry
from model_defs.stats import ModelStats
import tiny_models
from reproduce.core import published
from reproduce import planning
from reproduce.planning import plan_tables

HAS_NFNET = "nfnet_f7plus" in model_defs.names()
needs_nfnet = pytest.mark.skipif(not HAS_NFNET, reason="NFNet registry not available yet")

# Fake specs so the arithmetic is tested without the real families (names unique to this file).
_FAKES = {
    # name: (GMACs at 224 px, params, mini)
    "budget_test_small": (9.5, 70e6, False),
    "budget_test_large": (100.0, 830e6, False),
    "budget_test_mini": (0.002, 5e3, True),
}


def _counter(config, resolution, num_classes, name=None, **overrides):
  macs = int(config["gmacs"] * 1e9 * (resolution / 224) ** 2)
  return ModelStats(name, resolution, num_classes, int(config["params"]), macs)


@pytest.fixture(scope="module", autouse=True)
def fake_models():
  for name, (gmacs, params, mini) in _FAKES.items():
    tiny_models.register(registry.ModelSpec(
        name, "nfnet", dict(gmacs=gmacs, params=params), tiny_models.tiny_conv_builder, _counter,
        train_resolution=32 if mini else 192, test_resolution=32 if mini else 256,
        source="test fake", mini=mini))
  yield
  for name in _FAKES:
    tiny_models.unregister(name)


COMMON = dict(dataset_size=1_000_000, hardware="tpu_v4", batch_size=1000, mfu=0.5)


def test_hardware_table():
  for name in ("tpu_v2", "tpu_v3", "tpu_v4", "tpu_v5e", "tpu_v5p", "tpu_v6e", "gpu_a100",
               "gpu_h100", "gpu_h200", "cpu"):
    entry = planning.get_hardware(name)
    assert entry.core and entry.source and entry.cores_per_device >= 1
  # Footnote 1: a v4 core has roughly double a v3 core's theoretical FLOPs.
  ratio = planning.peak_flops_per_core("tpu_v4") / planning.peak_flops_per_core("tpu_v3")
  assert 1.8 < ratio < 2.5
  with pytest.raises(planning.PlanError, match=r"^--hardware=tpu_v9 is unknown; known: .*tpu_v4"):
    planning.get_hardware("tpu_v9")


def test_cost_is_three_forward_passes_at_the_calibrated_rate():
  plan = planning.plan_from_epochs("budget_test_small", 2.0, **COMMON)
  forward = model_defs.stats("budget_test_small", 224).flops
  # Full-scale NFNets pre-train at the paper's 224 px, not their ImageNet train resolution.
  assert plan.resolution == 224 and plan.train_flops_per_image == 3 * forward
  assert plan.steps == 2000 and plan.images == 2_000_000 and plan.epochs == 2.0
  expected = plan.images * 3 * forward / (0.5 * 137.5e12) / 3600
  assert plan.core_hours == pytest.approx(expected, rel=1e-12)
  assert plan.wall_clock_hours == pytest.approx(plan.core_hours / plan.num_cores)
  assert plan.num_cores == 2  # one v4 replica = one chip = two TensorCores
  d = plan.to_dict()
  for key in ("model", "hardware", "num_cores", "core_hours", "epochs", "images", "steps",
              "batch_size", "base_lr", "warmup_steps", "decay", "mfu", "dataset_size",
              "resolution", "train_flops_per_image", "images_per_second_per_core"):
    assert key in d
  assert d["decay"] == "cosine"


def test_implied_mfu_reproduces_its_anchor_exactly():
  mfu = planning.implied_mfu("budget_test_large", 8, 4_000_000_000, 110e3, "tpu_v4", 224)
  plan = planning.plan_from_epochs("budget_test_large", 8, dataset_size=4_000_000_000,
                                 resolution=224, mfu=mfu)
  assert plan.core_hours == pytest.approx(110e3, rel=1e-12)


@pytest.mark.parametrize("core_hours", [0.37, 12.0, 999.99, 4321.5])
def test_budget_epochs_round_trip_is_exact(core_hours):
  plan = planning.plan_from_budget("budget_test_large", core_hours, **COMMON)
  assert planning.plan_from_epochs("budget_test_large", plan.epochs, **COMMON) == plan
  assert planning.plan_from_budget("budget_test_large", plan.core_hours, **COMMON) == plan
  # The last step lands on the budget: never over it, and within one step of it.
  one_step = planning.plan_from_epochs("budget_test_large", 1000 / 1e6, **COMMON).core_hours
  assert plan.core_hours <= core_hours < plan.core_hours + one_step
  assert plan.images == plan.steps * plan.batch_size


@pytest.mark.parametrize("steps", [1, 2, 19, 20, 21, 1000, 99_999, 100_001, 10**7])
def test_warmup_never_exceeds_steps(steps):
  warmup = planning.default_warmup_steps(steps)
  assert 0 <= warmup <= steps and warmup <= planning.WARMUP_CAP_STEPS
  plan = planning.plan_from_epochs("budget_test_small", steps * 1000 / 1e6, **COMMON)
  assert plan.steps == steps and plan.warmup_steps == warmup
  with pytest.raises(planning.PlanError, match="^--warmup_steps"):
    planning.plan_from_epochs("budget_test_small", 0.001, warmup_steps=2, **COMMON)


def test_mini_models_get_their_familys_measured_lr_not_the_scaled_tpu_rule():
  """A mini run's LR is its family's measured one (the study's sweeps: NFNet minis ~0.4 with
  SGD + AGC, ViT minis ~4e-3 with AdamW, hybrid minis ~1e-2 on the ViTs' recipe), whatever
  its batch and epochs; full-scale models keep the paper's rule, linear in the batch."""
  assert planning.MINI_LR == {"nfnet": 0.4, "vit": 4e-3, "hybrid": 1e-2}
  assert planning.base_lr("hybrid_mini_mu", 0.5, 32) == 1e-2
  for batch, epochs in ((16, 0.25), (32, 2.0), (4096, 8.0)):
    assert planning.base_lr("budget_test_mini", epochs, batch) == 0.4
    assert planning.base_lr("budget_test_small", epochs, batch) == pytest.approx(
        planning.lr_rule(epochs, planning.model_size_fraction("budget_test_small"), batch))
  assert planning.base_lr("budget_test_small", 0.25, 16) == pytest.approx(1.6 * 16 / 4096)
  plan = planning.plan_from_epochs("budget_test_mini", 2, dataset_size=1437, hardware="cpu",
                                   batch_size=16, mfu=0.1)
  assert plan.base_lr == 0.4
  if "vit_mini_ti" in model_defs.names():
    assert planning.base_lr("vit_mini_ti", 2, 16) == 4e-3


def test_lr_rule():
  grid_4096 = {1.6 / 2 ** k for k in range(8)}
  epochs = [0.1, 0.25, 0.5, 0.75, 1, 2, 3, 4, 8, 16, 64]
  sizes = [0.0, 0.3, 0.7, 1.0]
  for size in sizes:
    assert planning.lr_rule(0.25, size) == pytest.approx(1.6)
    assert planning.lr_rule(0.5, size) == pytest.approx(1.6)
    values = [planning.lr_rule(e, size) for e in epochs]
    assert all(a >= b for a, b in zip(values, values[1:]))  # falls monotonically with epochs
    assert all(any(math.isclose(v, g) for g in grid_4096) for v in values)
  for e in epochs:
    values = [planning.lr_rule(e, s) for s in sizes]
    assert all(a >= b for a, b in zip(values, values[1:]))  # ... and with model size
  assert planning.lr_rule(8, 1.0) < planning.lr_rule(8, 0.0)   # faster for big models
  assert planning.lr_rule(0.25, 0.0, batch_size=256) == pytest.approx(0.1)  # 0.1 x B / 256
  assert planning.lr_grid(1.6, 1) == [1.6]
  assert planning.lr_grid(1.6, 2) == [1.6, 0.8]
  assert planning.lr_grid(0.4, 3) == [0.8, 0.4, 0.2]
  assert planning.lr_grid(0.4, 4) == [0.8, 0.4, 0.2, 0.1]


@pytest.mark.parametrize("call, flag", [
    (lambda: planning.plan_from_budget("budget_test_small", -3, **COMMON), "budget_core_hours"),
    (lambda: planning.plan_from_budget("budget_test_small", 0, **COMMON), "budget_core_hours"),
    (lambda: planning.plan_from_budget("budget_test_small", 1e-9, **COMMON), "budget_core_hours"),
    (lambda: planning.plan_from_epochs("budget_test_small", 0, **COMMON), "epochs"),
    (lambda: planning.plan_from_epochs("budget_test_small", 1e-9, **COMMON), "epochs"),
    (lambda: planning.plan_from_epochs("no_such_model", 1, **COMMON), "model"),
    (lambda: planning.plan_from_epochs("budget_test_small", 1, hardware="tpu_v9",
                                     dataset_size=10), "hardware"),
    (lambda: planning.plan_from_epochs("budget_test_small", 1, batch_size=10, num_replicas=3,
                                     dataset_size=100, mfu=0.5), "batch_size"),
    (lambda: planning.plan_from_epochs("budget_test_small", 1, dataset_size=-5, mfu=0.5),
     "dataset_size"),
])
def test_errors_name_the_flag_in_one_line(call, flag):
  with pytest.raises(planning.PlanError) as info:
    call()
  message = str(info.value)
  assert message.startswith(f"--{flag}") and "\n" not in message
  assert info.value.flag == flag and isinstance(info.value, ValueError)


def test_sweep_and_allocation():
  plans = planning.sweep(["budget_test_small", "budget_test_large"], [0.5, 1, 2], **COMMON)
  assert [(p.model, p.epochs) for p in plans] == [
      (m, e) for m in ("budget_test_small", "budget_test_large") for e in (0.5, 1.0, 2.0)]
  # Reference: 1 epoch of the small model is the target at its own 1-epoch cost.
  ref = planning.plan_from_epochs("budget_test_small", 1, **COMMON)
  small = planning.allocate(ref.core_hours, ["budget_test_small", "budget_test_large"],
                          reference_flops=ref.total_train_flops, **COMMON)
  assert small[0].recommended and small[0].model == "budget_test_small"
  assert small[0].target_epochs == pytest.approx(1.0)
  # 100x the compute: target epochs 10x; the large model (~10x per epoch) now wins.
  big = planning.allocate(100 * ref.core_hours, ["budget_test_small", "budget_test_large"],
                        reference_flops=ref.total_train_flops, **COMMON)
  assert big[0].model == "budget_test_large" and big[0].target_epochs == pytest.approx(10.0)
  assert sum(a.recommended for a in big) == 1


def test_measured_throughput_on_cpu():
  # The engine's own train step (reproduce.train.throughput, from the train branch) timed on a
  # real registered mini model (the smallest mini ViT traces in seconds), then planned with.
  from reproduce.train import throughput
  result = throughput.measure("vit_mini_ti", batch_size=4, resolution=32, steps=3,
                              num_classes=10, warmup_steps=1, hardware="cpu")
  assert len(result.step_seconds) == 3 and result.cores == 1
  assert 0 < result.min <= result.median <= result.max
  plan = planning.plan_from_epochs("vit_mini_ti", 2, dataset_size=100, hardware="cpu",
                                   batch_size=4, resolution=32, num_classes=10,
                                   images_per_second_per_core=result.median)
  assert plan.throughput_source == "measured"
  assert plan.images_per_second_per_core == result.median
  assert plan.core_hours == pytest.approx(plan.images / result.median / 3600)
  assert 0 < plan.mfu and planning.measured_cpu_peak_flops() > 1e9


def test_compute_unit_names_come_from_the_hardware_table():
  assert planning.compute_unit("tpu_v4") == "TPU-v4 core hours"
  assert planning.compute_unit("cpu") == "CPU core hours"
  assert planning.compute_unit("gpu_a100") == "A100 GPU core hours"
  assert planning.compute_unit("tpu_v9") == "tpu_v9 core hours"  # unknown: its own name
  names = {planning.compute_unit(h) for h in planning.HARDWARE}
  assert len(names) == len(planning.HARDWARE)  # never two kinds on one axis


def test_importing_planning_imports_no_tensorflow():
  # The mains check flags and the analysis package reads the hardware table without paying
  # for (or hearing from) TensorFlow; model_defs is imported on the first model lookup.
  code = ("import sys; from reproduce import planning; planning.compute_unit('cpu'); "
          "planning.get_hardware('tpu_v4'); "
          "print(sorted(m for m in ('tensorflow', 'keras', 'model_defs') if m in sys.modules))")
  result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
  assert result.returncode == 0 and result.stdout.strip() == "[]", result.stderr


def test_report_tables():
  plan = planning.plan_from_epochs("budget_test_small", 2.0, **COMMON)
  table = plan_tables.plan_table(plan, [0.8, 0.4])
  assert "budget_test_small" in table and "2,000 x batch 1000" in table
  assert table.splitlines()[-1].split() == ["LR", "grid", "0.8,", "0.4"]
  plans = planning.sweep(["budget_test_small", "budget_test_large"], [1, 2], **COMMON)
  lines = plan_tables.sweep_table(["budget_test_small", "budget_test_large"], [1, 2], plans)
  rows = [line.split() for line in lines.splitlines()]
  assert rows[0] == ["model", "1", "ep", "2", "ep"]
  assert rows[1] == ["budget_test_small", plan_tables.format_core_hours(plans[0].core_hours),
                     plan_tables.format_core_hours(plans[1].core_hours)]
  assert plan_tables.format_core_hours(110e3) == "110k"
  assert plan_tables.format_core_hours(324.4) == "324"
  ref = planning.plan_from_epochs("budget_test_small", 1, **COMMON)
  allocations = planning.allocate(ref.core_hours, ["budget_test_small", "budget_test_large"],
                                  reference_flops=ref.total_train_flops, **COMMON)
  rows = plan_tables.allocation_table(allocations).splitlines()
  assert rows[1].split()[:2] == ["*", "budget_test_small"] and not rows[2].startswith("*")


# ---- The paper's numbers (need model_defs' NFNet registry). ----


@needs_nfnet
def test_paper_anchor_f7plus_is_110k_v4_core_hours():
  anchor = published.value("nfnet_f7plus.pretrain_core_hours")
  plan = planning.plan_from_epochs("nfnet_f7plus", published.value("nfnet_f7plus.pretrain_epochs"),
                                 hardware="tpu_v4", batch_size=4096)
  assert plan.resolution == 224 and plan.dataset_size == 4_000_000_000
  assert plan.core_hours == pytest.approx(anchor, rel=1e-9)
  assert 0.3 < planning.anchor_mfu() < 0.4 and plan.mfu == planning.anchor_mfu()
  check = planning.calibration()
  assert check["v3_predicted_core_hours"] == pytest.approx(check["v3_published_core_hours"],
                                                           rel=0.1)


@needs_nfnet
def test_paper_figure2_grid_spans_0p4k_to_110k():
  plans = planning.sweep()
  cells = [(m, e) for m in planning.FIGURE2_MODELS for e in planning.FIGURE2_EPOCHS]
  hours = {cell: p.core_hours for cell, p in zip(cells, plans)}
  assert len(hours) == 36
  assert 300 <= hours[("nfnet_f0", 0.25)] <= 500
  assert min(hours.values()) == hours[("nfnet_f0", 0.25)]
  assert max(hours.values()) == pytest.approx(110e3, rel=0.05)
  assert planning.allocate(110e3)[0].model == "nfnet_f7plus"
  assert planning.allocate(400)[0].model == "nfnet_f0"
  table = plan_tables.sweep_table(planning.FIGURE2_MODELS, planning.FIGURE2_EPOCHS, plans)
  assert table.splitlines()[-2].split()[0] == "nfnet_f7plus" and "110k" in table
