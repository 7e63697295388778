"""The model registry behind ``model_defs.build``, ``names`` and ``stats``.

Each family module (``nfnet_variants.py``, ``vit.py``, ``hybrid.py``) registers one
``ModelSpec`` per variant at import time with ``register_family``, which tolerates a module
reload. The spec's ``config`` is that variant's row of the family's table, and its two
functions build the Keras model or count it.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Callable, Iterable, Mapping

from model_defs.stats import ModelStats


class UnknownModelError(ValueError):
  """Raised for a model name that is not registered."""


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  name: str
  family: str                     # 'nfnet', 'vit' or 'hybrid'
  config: Mapping[str, Any]       # the variant's architecture row
  builder: Callable[..., Any]     # builder(config, num_classes, name=..., **overrides) -> keras.Model
  counter: Callable[..., ModelStats]  # counter(config, resolution, num_classes, name=..., **overrides)
  train_resolution: int
  test_resolution: int
  source: str                     # where the variant's numbers come from
  mini: bool = False              # scaled-down CPU variant
  description: str = ""


_REGISTRY: dict[str, ModelSpec] = {}
# Families that are ViTs (a hybrid is a ViT on a conv stem): built for one input size (the
# position-embedding grid); converted weights take the AugReg input range and the ViT crop.
VIT_FAMILIES = ("vit", "hybrid")


def has_position_grid(name: str) -> bool:
  """Whether ``name`` is built for one input size (its ``image_size`` override sets the
  position-embedding grid), as every ViT and hybrid ViT is."""
  return get_spec(name).family in VIT_FAMILIES


def register_family(family: str, specs: Iterable[ModelSpec]) -> None:
  """Registers a family module's variants; safe to run again when the module is reloaded.

  A name already registered by the same family is replaced in place (so the registry
  points at the reloaded module's builder and counter, and ``names()`` keeps its order);
  a name taken by another family still raises ValueError.
  """
  for spec in specs:
    if spec.family != family:
      raise ValueError(f"model {spec.name!r} is of family {spec.family!r}, not {family!r}")
    previous = _REGISTRY.get(spec.name)
    if previous is not None and previous.family != family:
      raise ValueError(f"model {spec.name!r} is already registered by family {previous.family!r}")
    _REGISTRY[spec.name] = spec


def get_spec(name: str) -> ModelSpec:
  """The registered spec of ``name``; unknown names raise ``UnknownModelError``."""
  try:
    return _REGISTRY[name]
  except KeyError:
    close = difflib.get_close_matches(str(name), list(_REGISTRY), n=3)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise UnknownModelError(
        f"unknown model {name!r}.{hint} Known models: {', '.join(sorted(_REGISTRY))}"
    ) from None


def names(family: str | None = None, mini: bool | None = None) -> list[str]:
  """Registered model names, optionally filtered by family and by mini/full scale."""
  return [n for n, s in _REGISTRY.items()
          if (family is None or s.family == family) and (mini is None or s.mini == mini)]


def _classes(num_classes: int, include_top: bool) -> int:
  """The classifier's outputs; 0 (headless) when ``include_top`` is False."""
  if not include_top:
    return 0
  if int(num_classes) < 0:
    raise ValueError(f"num_classes must be >= 0 (0 = no classifier), got {num_classes!r}")
  return int(num_classes)


def build(name: str, num_classes: int = 1000, include_top: bool = True, **overrides):
  """Builds the Keras model ``name`` (channels-last, any input resolution).

  ``num_classes=0`` or ``include_top=False`` (keras.applications' spelling, which a
  published entry's ``model_overrides`` can carry) leaves the classifier out: the model
  outputs pooled features.
  """
  spec = get_spec(name)
  return spec.builder(spec.config, _classes(num_classes, include_top), name=name, **overrides)


def stats(name: str, resolution: int | None = None, num_classes: int = 1000,
          include_top: bool = True, **overrides) -> ModelStats:
  """Analytic params and forward MACs/FLOPs per image, without building the model.

  ``resolution`` defaults to the variant's training resolution. ``num_classes=0`` or
  ``include_top=False`` counts the network without its classifier (as ``build``).
  """
  spec = get_spec(name)
  resolution = spec.train_resolution if resolution is None else int(resolution)
  if resolution < 1:
    raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
  return spec.counter(spec.config, resolution, _classes(num_classes, include_top), name=name,
                      **overrides)
