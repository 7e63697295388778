"""Tests for reproduce.budget: accounting, calibration, LR rule, plans, allocation."""

import math

import pytest

import model_defs
from model_defs import registry
from model_defs.stats import ModelStats
from tiny_models import tiny_conv_builder
from reproduce.core import published
from reproduce.planning import budget

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
    registry.register(registry.ModelSpec(
        name, "nfnet", dict(gmacs=gmacs, params=params), tiny_conv_builder, _counter,
        train_resolution=32 if mini else 192, test_resolution=32 if mini else 256,
        source="test fake", mini=mini))
  yield
  for name in _FAKES:
    registry.unregister(name)


COMMON = dict(dataset_size=1_000_000, hardware="tpu_v4", batch_size=1000, mfu=0.5)


def test_hardware_table():
  for name in ("tpu_v2", "tpu_v3", "tpu_v4", "tpu_v5e", "tpu_v5p", "tpu_v6e", "gpu_a100",
               "gpu_h100", "gpu_h200", "cpu"):
    entry = budget.get_hardware(name)
    assert entry.core and entry.source and entry.cores_per_device >= 1
  # Footnote 1: a v4 core has roughly double a v3 core's theoretical FLOPs.
  ratio = budget.peak_flops_per_core("tpu_v4") / budget.peak_flops_per_core("tpu_v3")
  assert 1.8 < ratio < 2.5
  with pytest.raises(budget.PlanError, match=r"^--hardware=tpu_v9 is unknown; known: .*tpu_v4"):
    budget.get_hardware("tpu_v9")


def test_cost_is_three_forward_passes_at_the_calibrated_rate():
  plan = budget.plan_from_epochs("budget_test_small", 2.0, **COMMON)
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
  mfu = budget.implied_mfu("budget_test_large", 8, 4_000_000_000, 110e3, "tpu_v4", 224)
  plan = budget.plan_from_epochs("budget_test_large", 8, dataset_size=4_000_000_000,
                                 resolution=224, mfu=mfu)
  assert plan.core_hours == pytest.approx(110e3, rel=1e-12)


@pytest.mark.parametrize("core_hours", [0.37, 12.0, 999.99, 4321.5])
def test_budget_epochs_round_trip_is_exact(core_hours):
  plan = budget.plan_from_budget("budget_test_large", core_hours, **COMMON)
  assert budget.plan_from_epochs("budget_test_large", plan.epochs, **COMMON) == plan
  assert budget.plan_from_budget("budget_test_large", plan.core_hours, **COMMON) == plan
  # The last step lands on the budget: never over it, and within one step of it.
  one_step = budget.plan_from_epochs("budget_test_large", 1000 / 1e6, **COMMON).core_hours
  assert plan.core_hours <= core_hours < plan.core_hours + one_step
  assert plan.images == plan.steps * plan.batch_size


@pytest.mark.parametrize("steps", [1, 2, 19, 20, 21, 1000, 99_999, 100_001, 10**7])
def test_warmup_never_exceeds_steps(steps):
  warmup = budget.default_warmup_steps(steps)
  assert 0 <= warmup <= steps and warmup <= budget.WARMUP_CAP_STEPS
  plan = budget.plan_from_epochs("budget_test_small", steps * 1000 / 1e6, **COMMON)
  assert plan.steps == steps and plan.warmup_steps == warmup
  with pytest.raises(budget.PlanError, match="^--warmup_steps"):
    budget.plan_from_epochs("budget_test_small", 0.001, warmup_steps=2, **COMMON)


def test_lr_rule():
  grid_4096 = {1.6 / 2 ** k for k in range(8)}
  epochs = [0.1, 0.25, 0.5, 0.75, 1, 2, 3, 4, 8, 16, 64]
  sizes = [0.0, 0.3, 0.7, 1.0]
  for size in sizes:
    assert budget.lr_rule(0.25, size) == pytest.approx(1.6)
    assert budget.lr_rule(0.5, size) == pytest.approx(1.6)
    values = [budget.lr_rule(e, size) for e in epochs]
    assert all(a >= b for a, b in zip(values, values[1:]))  # falls monotonically with epochs
    assert all(any(math.isclose(v, g) for g in grid_4096) for v in values)
  for e in epochs:
    values = [budget.lr_rule(e, s) for s in sizes]
    assert all(a >= b for a, b in zip(values, values[1:]))  # ... and with model size
  assert budget.lr_rule(8, 1.0) < budget.lr_rule(8, 0.0)   # faster for big models
  assert budget.lr_rule(0.25, 0.0, batch_size=256) == pytest.approx(0.1)  # 0.1 x B / 256
  assert budget.lr_grid(1.6, 1) == [1.6]
  assert budget.lr_grid(1.6, 2) == [1.6, 0.8]
  assert budget.lr_grid(0.4, 3) == [0.8, 0.4, 0.2]
  assert budget.lr_grid(0.4, 4) == [0.8, 0.4, 0.2, 0.1]


@pytest.mark.parametrize("call, flag", [
    (lambda: budget.plan_from_budget("budget_test_small", -3, **COMMON), "budget_core_hours"),
    (lambda: budget.plan_from_budget("budget_test_small", 0, **COMMON), "budget_core_hours"),
    (lambda: budget.plan_from_budget("budget_test_small", 1e-9, **COMMON), "budget_core_hours"),
    (lambda: budget.plan_from_epochs("budget_test_small", 0, **COMMON), "epochs"),
    (lambda: budget.plan_from_epochs("budget_test_small", 1e-9, **COMMON), "epochs"),
    (lambda: budget.plan_from_epochs("no_such_model", 1, **COMMON), "model"),
    (lambda: budget.plan_from_epochs("budget_test_small", 1, hardware="tpu_v9",
                                     dataset_size=10), "hardware"),
    (lambda: budget.plan_from_epochs("budget_test_small", 1, batch_size=10, num_replicas=3,
                                     dataset_size=100, mfu=0.5), "batch_size"),
    (lambda: budget.plan_from_epochs("budget_test_small", 1, dataset_size=-5, mfu=0.5),
     "dataset_size"),
])
def test_errors_name_the_flag_in_one_line(call, flag):
  with pytest.raises(budget.PlanError) as info:
    call()
  message = str(info.value)
  assert message.startswith(f"--{flag}") and "\n" not in message
  assert info.value.flag == flag and isinstance(info.value, ValueError)


def test_sweep_and_allocation():
  plans = budget.sweep(["budget_test_small", "budget_test_large"], [0.5, 1, 2], **COMMON)
  assert [(p.model, p.epochs) for p in plans] == [
      (m, e) for m in ("budget_test_small", "budget_test_large") for e in (0.5, 1.0, 2.0)]
  # Reference: 1 epoch of the small model is the target at its own 1-epoch cost.
  ref = budget.plan_from_epochs("budget_test_small", 1, **COMMON)
  small = budget.allocate(ref.core_hours, ["budget_test_small", "budget_test_large"],
                          reference_flops=ref.total_train_flops, **COMMON)
  assert small[0].recommended and small[0].model == "budget_test_small"
  assert small[0].target_epochs == pytest.approx(1.0)
  # 100x the compute: target epochs 10x; the large model (~10x per epoch) now wins.
  big = budget.allocate(100 * ref.core_hours, ["budget_test_small", "budget_test_large"],
                        reference_flops=ref.total_train_flops, **COMMON)
  assert big[0].model == "budget_test_large" and big[0].target_epochs == pytest.approx(10.0)
  assert sum(a.recommended for a in big) == 1


def test_measured_throughput_on_cpu():
  # A real registered mini model (the smallest mini ViT traces in seconds).
  result = budget.measure_throughput("vit_mini_ti", batch_size=4, resolution=32, steps=3,
                                     num_classes=10, warmup_steps=1, hardware="cpu")
  assert len(result.step_seconds) == 3 and result.cores == 1
  assert 0 < result.min <= result.median <= result.max
  plan = budget.plan_from_epochs("vit_mini_ti", 2, dataset_size=100, hardware="cpu",
                                 batch_size=4, resolution=32, num_classes=10,
                                 images_per_second_per_core=result.median)
  assert plan.throughput_source == "measured"
  assert plan.images_per_second_per_core == result.median
  assert plan.core_hours == pytest.approx(plan.images / result.median / 3600)
  assert 0 < plan.mfu and budget.measured_cpu_peak_flops() > 1e9


# ---- The paper's numbers (need model_defs' NFNet registry). ----


@needs_nfnet
def test_paper_anchor_f7plus_is_110k_v4_core_hours():
  anchor = published.value("nfnet_f7plus.pretrain_core_hours")
  plan = budget.plan_from_epochs("nfnet_f7plus", published.value("nfnet_f7plus.pretrain_epochs"),
                                 hardware="tpu_v4", batch_size=4096)
  assert plan.resolution == 224 and plan.dataset_size == 4_000_000_000
  assert plan.core_hours == pytest.approx(anchor, rel=1e-9)
  assert 0.3 < budget.anchor_mfu() < 0.4 and plan.mfu == budget.anchor_mfu()
  check = budget.calibration()
  assert check["v3_predicted_core_hours"] == pytest.approx(check["v3_published_core_hours"],
                                                           rel=0.1)


@needs_nfnet
def test_paper_figure2_grid_spans_0p4k_to_110k():
  plans = budget.sweep()
  cells = [(m, e) for m in budget.FIGURE2_MODELS for e in budget.FIGURE2_EPOCHS]
  hours = {cell: p.core_hours for cell, p in zip(cells, plans)}
  assert len(hours) == 36
  assert 300 <= hours[("nfnet_f0", 0.25)] <= 500
  assert min(hours.values()) == hours[("nfnet_f0", 0.25)]
  assert max(hours.values()) == pytest.approx(110e3, rel=0.05)
  assert budget.allocate(110e3)[0].model == "nfnet_f7plus"
  assert budget.allocate(400)[0].model == "nfnet_f0"
