"""The learning-rate rules (base LR from epochs and model size; mini models: their family's
measured LR), LR grids and warm-up length. docs/budget.md, "Learning rate", says which applies."""

from __future__ import annotations

import math

from reproduce.core import published
from reproduce.planning import cost
from reproduce.planning.errors import PlanError

LR_AT_PAPER_BATCH = published.value("claim.optimal_lr_small_epochs")  # 1.6 at batch 4096
LR_FLAT_UNTIL_EPOCHS = 0.5      # Figure 3: alpha ~ 1.6 for small epoch budgets
LR_SLOPE_SMALL_MODEL = 0.25     # log2 LR drop per doubling of epochs, F0 (-> 0.8 at 8 epochs)
LR_SLOPE_LARGE_MODEL = 0.5      # same for F7+ (-> 0.4 at 8 epochs): big models fall faster

# Mini models (CPU scale, digits): the LR their own family's mini recipe was measured to learn
# at, not the paper's rule scaled to a small batch (1.6 x 16 / 4096 = 0.006, chance after a
# mini budget). The study's LR sweeps (batch 16-32) find the optimum of the NFNet minis (SGD +
# AGC, configs/pretrain_mini.py) in 0.2-0.8 and of the ViT minis (AdamW,
# configs/pretrain_mini_vit.py) near 4e-3; the study centres its sweeps on these values. The
# mini hybrids train on the ViTs' recipe; a pilot study's sweeps at 0.5-2 core-s found their
# optimum at the top of 4e-3-1.6e-2, so their sweeps start at 1e-2 (docs/hybrids.md).
MINI_LR = {"nfnet": 0.4, "vit": 4e-3, "hybrid": 1e-2}

# Warm-up default: NFNet JFT-300M runs used a 5,000-step linear warm-up ([N] A.5); short
# runs get a fixed fraction of their steps instead so warm-up never dominates.
WARMUP_FRACTION = 0.05
WARMUP_CAP_STEPS = 5000


def lr_rule(epochs: float, size_fraction: float,
            batch_size: int = published.PAPER_BATCH_SIZE) -> float:
  """Base LR on the factor-2 grid for an epoch budget and a relative model size.

  ``log2(lr / 1.6) = -slope x max(0, log2(epochs / 0.5))``, slope interpolating linearly from
  0.25 (``size_fraction`` 0, F0) to 0.5 (``size_fraction`` 1, F7+); the exponent is rounded
  to the nearest integer (halves up) so the LR at batch 4096 is in {1.6, 0.8, 0.4, ...}, then
  scaled linearly with batch size (1.6 x B / 4096 = 0.1 x B / 256 at the small-budget end).
  Monotone non-increasing in both epochs and size.
  """
  size_fraction = min(max(float(size_fraction), 0.0), 1.0)
  slope = LR_SLOPE_SMALL_MODEL + (LR_SLOPE_LARGE_MODEL - LR_SLOPE_SMALL_MODEL) * size_fraction
  drop = slope * max(0.0, math.log2(epochs / LR_FLAT_UNTIL_EPOCHS))
  halvings = math.floor(drop + 0.5)
  # The paper's LR at its batch, per batch unit, through the one batch-scaling rule (every
  # factor a power of two: the same bits as scaling from batch 4096 directly).
  per_unit = (LR_AT_PAPER_BATCH * 2.0 ** -halvings * published.NFNET_LR_BATCH_UNIT
              / published.PAPER_BATCH_SIZE)
  return published.nfnet_batch_scaled_lr(per_unit, batch_size)


def model_size_fraction(model: str) -> float:
  """Where ``model`` sits between F0 (0) and F7+ (1) in log parameter count, clipped to [0, 1].

  Full-scale models are placed between the published F0 and F7+ sizes; mini models between
  ``nfnet_mini_f0`` and ``nfnet_mini_f7plus`` (0 when those are not registered).
  """
  spec = cost.model_spec(model)
  params = cost.model_stats(model).params
  if spec.mini:
    small = cost.registered_params("nfnet_mini_f0")
    large = cost.registered_params("nfnet_mini_f7plus")
    if small is None or large is None:
      return 0.0
  else:
    small = published.value("nfnet_f0.params") * 1e6
    large = published.value("nfnet_f7plus.params") * 1e6
  fraction = math.log(params / small) / math.log(large / small)
  return min(max(fraction, 0.0), 1.0)


def mini_lr(model: str) -> float | None:
  """``MINI_LR`` of a mini model's family; None for full-scale models (and unknown families)."""
  spec = cost.model_spec(model)
  return MINI_LR.get(spec.family) if spec.mini else None


def base_lr(model: str, epochs: float, batch_size: int = published.PAPER_BATCH_SIZE) -> float:
  """The base LR of ``model`` trained for ``epochs``: ``mini_lr`` for a mini model (measured
  for its family's mini recipe), else the paper's rule (``lr_rule``)."""
  measured = mini_lr(model)
  if measured is not None:
    return measured
  return lr_rule(epochs, model_size_fraction(model), batch_size)


def lr_grid(base: float, n: int) -> list[float]:
  """``n`` factor-2 neighbours of ``base`` for a sweep, largest first.

  Candidates are taken in the order base, base/2, 2 base, base/4, 4 base, ...: smaller first,
  because the optimum falls with epochs and size ([P]: "tune within 2 trials").
  """
  if n < 1:
    raise PlanError("lr_grid", f"must be >= 1, got {n}")
  exponents = [0]
  k = 1
  while len(exponents) < n:
    exponents.append(-k)
    if len(exponents) < n:
      exponents.append(k)
    k += 1
  return sorted((base * 2.0 ** e for e in exponents), reverse=True)


def default_warmup_steps(steps: int, fraction: float = WARMUP_FRACTION,
                         cap: int = WARMUP_CAP_STEPS) -> int:
  """Linear warm-up length: ``round(fraction x steps)``, at most ``cap``, never > steps."""
  return max(0, min(int(cap), int(round(fraction * steps)), int(steps)))
