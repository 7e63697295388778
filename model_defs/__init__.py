"""Keras 3 builders for the NFNet, ViT and hybrid ConvNet-ViT families, with exact analytic counts.

Public API:
  build(name, num_classes=1000, include_top=True, **overrides) -> keras.Model
  names(family=None, mini=None) -> list[str]
  stats(name, resolution=None, num_classes=1000, include_top=True, **overrides) -> ModelStats
  (num_classes=0 or include_top=False: no classifier; the model outputs pooled features)
  get_spec(name) -> ModelSpec
  has_position_grid(name) -> bool  (ViTs and hybrids: built for one input size)
"""

from model_defs.registry import (ModelSpec, UnknownModelError, build, get_spec, has_position_grid,
                                 names, stats)
from model_defs.stats import ModelStats

# Importing the family modules registers their variants.
from model_defs import nfnet_variants as _nfnet  # noqa: F401,E402
from model_defs import vit as _vit  # noqa: F401,E402
from model_defs import hybrid as _hybrid  # noqa: F401,E402

__all__ = ["build", "names", "stats", "get_spec", "has_position_grid", "ModelSpec", "ModelStats",
           "UnknownModelError"]
