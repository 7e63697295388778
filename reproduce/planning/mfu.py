"""Model-FLOP utilisation (MFU) calibrated on the paper's anchor run, not typed in.

Anchor (read from ``reproduce.core.published``): NFNet-F7+, 224 px, 8 epochs of JFT-4B,
batch 4096, on TPU-v4 = 110k core hours. ``anchor_mfu`` is the utilisation at which the
core-hour accounting reproduces it exactly; every analytic plan uses it (times the
hardware's ``mfu_scale``). docs/budget.md has the worked numbers.

The anchor calibrates TPUs only. The paper times no ViT itself (its ViT core hours are the
authors' TPU-v3 -> v4 estimates), so ViT plans on TPU reuse the NFNet anchor, and say so
(``calibration_note``); CPU and GPU plans should be measured (``reproduce.train.budgeting``).
"""

from __future__ import annotations

import functools

from reproduce.core import published
from reproduce.planning import cost
from reproduce.planning.errors import PlanError
from reproduce.planning.hardware import PAPER_HARDWARE, get_hardware, peak_flops_per_core


def anchor() -> dict:
  """The paper's F7+ run that fixes the MFU."""
  return dict(
      model="nfnet_f7plus",
      core_hours=published.value("nfnet_f7plus.pretrain_core_hours"),
      epochs=published.value("nfnet_f7plus.pretrain_epochs"),
      dataset_size=int(published.value("jft4b.dataset_size")),
      hardware=PAPER_HARDWARE,
      resolution=published.PAPER_PRETRAIN_RESOLUTION,
      batch_size=published.PAPER_BATCH_SIZE,
  )


def _total_train_flops(model: str, epochs: float, dataset_size: int, resolution: int | None,
                       batch_size: int, num_classes: int, multiplier: float) -> float:
  """Training FLOPs of ``epochs``, images counted as a Plan counts them (whole steps)."""
  steps = cost.steps_from_epochs(epochs, dataset_size, batch_size)
  return steps * batch_size * cost.train_flops_per_image(model, resolution, num_classes,
                                                         multiplier)


def implied_mfu(model: str, epochs: float, dataset_size: int, core_hours: float,
                hardware: str, resolution: int | None = None,
                batch_size: int = published.PAPER_BATCH_SIZE, num_classes: int = 1000,
                multiplier: float = cost.TRAIN_FLOPS_PER_FORWARD) -> float:
  """The MFU at which ``epochs`` of ``model`` cost ``core_hours`` on ``hardware``.

  Images are counted exactly as a Plan counts them (whole steps of ``batch_size``), so a plan
  built with this MFU reproduces ``core_hours`` to float precision.
  """
  total = _total_train_flops(model, epochs, dataset_size, resolution, batch_size, num_classes,
                             multiplier)
  return total / (core_hours * 3600.0 * peak_flops_per_core(hardware))


@functools.lru_cache(maxsize=None)
def anchor_mfu() -> float:
  """MFU of TPU-v4 calibrated on the paper's F7+ run (110k core hours; about 0.35)."""
  a = anchor()
  try:
    return implied_mfu(a["model"], a["epochs"], a["dataset_size"], a["core_hours"],
                       a["hardware"], a["resolution"], a["batch_size"])
  except PlanError as e:
    raise PlanError("hardware", f"analytic MFU needs the calibration anchor {a['model']} "
                    "registered in model_defs; use --measure or --mfu") from e


def hardware_mfu(hardware: str) -> float:
  """Analytic MFU of ``hardware``: the calibrated v4 anchor times the entry's ``mfu_scale``
  (or the entry's ``fixed_mfu``, for a unit defined by FLOPs)."""
  entry = get_hardware(hardware)
  if entry.fixed_mfu is not None:
    return entry.fixed_mfu
  return anchor_mfu() * entry.mfu_scale


def calibration() -> dict:
  """The anchor, the implied MFU, and the TPU-v3 cross-check against the paper's 250k."""
  a = anchor()
  mfu = anchor_mfu()
  v3_published = published.value("nfnet_f7plus.pretrain_core_hours_v3")
  total = _total_train_flops(a["model"], a["epochs"], a["dataset_size"], a["resolution"],
                             a["batch_size"], 1000, cost.TRAIN_FLOPS_PER_FORWARD)
  v3_mfu = mfu * get_hardware("tpu_v3").mfu_scale
  return dict(
      anchor=a, mfu=mfu,
      v3_predicted_core_hours=total / (v3_mfu * peak_flops_per_core("tpu_v3")) / 3600.0,
      v3_published_core_hours=v3_published,
      v3_implied_mfu=implied_mfu(a["model"], a["epochs"], a["dataset_size"], v3_published,
                                 "tpu_v3", a["resolution"], a["batch_size"]),
  )


def calibration_note(hardware: str, family: str) -> str:
  """Which calibration an analytic plan of ``family`` on ``hardware`` rests on, in words."""
  entry = get_hardware(hardware)
  if entry.fixed_mfu is not None:
    return f"{entry.display_name} core hours are FLOPs: {entry.core}"
  a = anchor()
  note = (f"MFU {hardware_mfu(hardware):.3f} calibrated on the paper's {a['model']} run "
          f"({a['core_hours']:,.0f} {a['hardware']} core hours)")
  if not get_hardware(hardware).mfu_calibrated:
    return note + f"; not calibrated on {hardware}: an assumption, measure instead"
  if family != "nfnet":
    return note + (f"; reused for {family}: the paper has no measured {family} anchor (its "
                   "ViT core hours are the authors' TPU-v3 -> v4 estimates)")
  return note
