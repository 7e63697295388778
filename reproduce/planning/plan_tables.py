"""Text tables of plans, sweeps and allocations (what ``python -m reproduce.plan`` prints)."""

from __future__ import annotations

from typing import Sequence

from reproduce.planning.allocation import Allocation
from reproduce.planning.run_plan import Plan


def format_core_hours(hours: float) -> str:
  """Three significant digits, thousands as ``k`` (``110k``, ``2.59k``, ``324``)."""
  if hours >= 1e3:
    return f"{hours / 1e3:.3g}k"
  return f"{hours:.3g}"


def plan_table(plan: Plan, lr_candidates: Sequence[float] | None = None) -> str:
  """One ``name  value`` row per fact of ``plan`` (and the LR grid, when given)."""
  rows = [
      ("model", f"{plan.model} ({plan.params / 1e6:.1f}M params, {plan.resolution} px)"),
      ("hardware", f"{plan.hardware} x {plan.num_cores} cores, {plan.num_replicas} replicas"),
      ("core hours", f"{plan.core_hours:,.6g}  (wall clock {plan.wall_clock_hours:,.6g} h)"),
      ("epochs", f"{plan.epochs:.6g} of {plan.dataset_size:,} images"),
      ("steps", f"{plan.steps:,} x batch {plan.batch_size} = {plan.images:,} images"),
      ("base LR", f"{plan.base_lr:g} ({plan.decay}, {plan.warmup_steps:,} warm-up steps)"),
      ("train FLOPs/image", f"{plan.train_flops_per_image:.4g} "
                            f"({plan.train_flops_multiplier:g} x forward)"),
      ("images/s/core", f"{plan.images_per_second_per_core:.4g} ({plan.throughput_source}, "
                        f"MFU {plan.mfu:.3f} of {plan.peak_flops_per_core / 1e12:.4g} TFLOP/s)"),
      ("throughput from", plan.throughput_note or plan.throughput_source),
  ]
  if lr_candidates:
    rows.append(("LR grid", ", ".join(f"{lr:g}" for lr in lr_candidates)))
  width = max(len(k) for k, _ in rows)
  return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)


def measurement_line(measured) -> str:
  """One line summarising a measured throughput (``reproduce.train.throughput.Throughput``)."""
  return (f"measured  {measured.steps} steps of batch {measured.batch_size}: images/s/core "
          f"min {measured.min:.4g}, median {measured.median:.4g}, max {measured.max:.4g}")


def sweep_table(models: Sequence[str], epochs_grid: Sequence[float], plans: Sequence[Plan]) -> str:
  """Core hours per (model, epochs) cell; ``plans`` in ``allocation.sweep``'s order."""
  cells = [(m, e) for m in models for e in epochs_grid]
  by_cell = dict(zip(cells, plans))
  header = ["model"] + [f"{e:g} ep" for e in epochs_grid]
  lines = [header]
  for m in models:
    lines.append([m] + [format_core_hours(by_cell[(m, e)].core_hours) for e in epochs_grid])
  widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
  text = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in
                    enumerate(zip(row, widths))) for row in lines]
  hardware = plans[0].hardware
  return "\n".join(text + [f"({hardware} core hours; base LR per cell in --format=json)"])


def allocation_table(allocations: Sequence[Allocation]) -> str:
  """One row per model, nearest the rule of thumb first; ``*`` marks the recommended one."""
  lines = [("", "model", "epochs", "target", "core hours", "base LR")]
  for a in allocations:
    lines.append(("*" if a.recommended else "", a.model, f"{a.epochs:.3g}",
                  f"{a.target_epochs:.3g}", format_core_hours(a.core_hours),
                  f"{a.plan.base_lr:g}"))
  widths = [max(len(r[i]) for r in lines) for i in range(len(lines[0]))]
  return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in lines)
