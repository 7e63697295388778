"""Analytic parameter and compute counting.

Conventions (used by every family so numbers are never mixed):
  * ``macs``: multiply-accumulates of one forward pass on one image, counting
    convolutions, dense layers and (for ViTs) the attention matmuls. Elementwise
    ops, normalisation, activations and pooling are not counted.
  * ``flops`` = 2 x ``macs``.
The NFNet paper's "GFLOPs" column counts MACs; Zhai et al.'s ViT table counts FLOPs.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class ModelStats:
  """Parameter count and per-image forward compute of one model at one resolution."""

  name: str
  resolution: int
  num_classes: int
  params: int
  macs: int

  @property
  def flops(self) -> int:
    return 2 * self.macs

  @property
  def gmacs(self) -> float:
    return self.macs / 1e9

  @property
  def gflops(self) -> float:
    return self.flops / 1e9

  def to_dict(self) -> dict:
    return dict(name=self.name, resolution=self.resolution,
                num_classes=self.num_classes, params=self.params,
                macs=self.macs, flops=self.flops)


class Tally:
  """Accumulates parameters and MACs while walking an architecture description."""

  def __init__(self):
    self.params = 0
    self.macs = 0

  def add(self, params: int = 0, macs: int = 0) -> None:
    self.params += int(params)
    self.macs += int(macs)

  def conv(self, out_h: int, out_w: int, kernel: int, in_ch: int, out_ch: int,
           groups: int = 1, bias: bool = True, extra_params_per_out: int = 0) -> None:
    """A (grouped) convolution producing an ``out_h x out_w x out_ch`` map."""
    weights = kernel * kernel * (in_ch // groups) * out_ch
    self.add(params=weights + (out_ch if bias else 0) + extra_params_per_out * out_ch,
             macs=weights * out_h * out_w)

  def dense(self, in_features: int, out_features: int, bias: bool = True,
            tokens: int = 1) -> None:
    """A dense layer applied to ``tokens`` vectors."""
    weights = in_features * out_features
    self.add(params=weights + (out_features if bias else 0), macs=weights * tokens)

  def result(self, name: str, resolution: int, num_classes: int) -> ModelStats:
    return ModelStats(name=name, resolution=resolution, num_classes=num_classes,
                      params=self.params, macs=self.macs)
