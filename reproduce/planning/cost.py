"""What training a model costs: FLOPs per image, default resolution, steps of an epoch budget.

The one planning module that reads ``model_defs``. It imports ``model_defs`` on first use,
not at import time: ``model_defs`` imports Keras and so TensorFlow, and the mains check their
flags (and the analysis package reads ``hardware``) before paying for that.
"""

from __future__ import annotations

from reproduce.core import published
from reproduce.planning.errors import PlanError

# Training step ~ forward + backward (backward ~ 2 x forward): the usual 3x convention
# (Kaplan et al. 2020; Hoffmann et al. 2022). Overridable per plan.
TRAIN_FLOPS_PER_FORWARD = 3.0


def _model_defs():
  import model_defs  # pylint: disable=g-import-not-at-top  (Keras: see core/cli.py)
  return model_defs


def model_spec(model: str):
  """``model_defs.get_spec(model)``; unknown names raise ``PlanError`` naming --model."""
  model_defs = _model_defs()
  try:
    return model_defs.get_spec(model)
  except model_defs.UnknownModelError as e:
    raise PlanError("model", f": {e}") from None


def model_stats(model: str, resolution: int | None = None, num_classes: int = 1000):
  """``model_defs.stats`` (``.params``, ``.flops``); unknown names raise ``PlanError``."""
  model_spec(model)
  return _model_defs().stats(model, resolution=resolution, num_classes=num_classes)


def registered_params(model: str) -> int | None:
  """Parameters of ``model`` with a 1000-class head; None when it is not registered."""
  model_defs = _model_defs()
  try:
    return model_defs.stats(model, num_classes=1000).params
  except model_defs.UnknownModelError:
    return None


def default_resolution(model: str) -> int:
  """Pre-training resolution: 224 px for the full NFNets (the paper), else the spec's."""
  spec = model_spec(model)
  if spec.family == "nfnet" and not spec.mini:
    return published.PAPER_PRETRAIN_RESOLUTION
  return spec.train_resolution


def train_flops_per_image(model: str, resolution: int | None = None, num_classes: int = 1000,
                          multiplier: float = TRAIN_FLOPS_PER_FORWARD) -> int:
  """Training FLOPs per image = ``multiplier`` x forward FLOPs at ``resolution``."""
  resolution = default_resolution(model) if resolution is None else resolution
  forward = model_stats(model, resolution, num_classes).flops
  return int(round(multiplier * forward))


def steps_from_epochs(epochs: float, dataset_size: int, batch_size: int) -> int:
  """Whole steps of ``batch_size`` closest to ``epochs`` passes over ``dataset_size`` images."""
  return int(round(epochs * dataset_size / batch_size))
