"""Writes a randomised timm NFNet's state dict, inputs and logits to an .npz file.

Run as a separate process (``python tests/nfnet_timm_reference.py OUT_DIR --configs f0 mini_f0``
writes ``OUT_DIR/f0.npz`` and ``OUT_DIR/mini_f0.npz``): importing
timm/torchvision after TensorFlow crashes this machine, so the Keras side of the
equivalence test only ever reads the .npz.

Every parameter, including the zero-initialised skip gains, is given a non-zero random
value so that the comparison exercises all of them.
"""

from __future__ import annotations

import argparse
import dataclasses
import os

import numpy as np
import torch
from timm.models import nfnet as timm_nfnet

# Mini NFNet-F0 in timm's terms: the dm_nfnet_f0 config with every width / 8.
MINI_F0_OVERRIDES = dict(channels=(32, 64, 192, 192), stem_chs=16, group_size=16, num_features=384)


def make_model(config: str, num_classes: int) -> torch.nn.Module:
  """timm ``dm_nfnet_f0`` ('f0') or its width/8 counterpart ('mini_f0')."""
  cfg = timm_nfnet.model_cfgs["dm_nfnet_f0"]
  if config == "mini_f0":
    cfg = dataclasses.replace(cfg, **MINI_F0_OVERRIDES)
  elif config != "f0":
    raise ValueError(f"unknown config {config!r}")
  return timm_nfnet.NormFreeNet(cfg, num_classes=num_classes)


@torch.no_grad()
def randomise(model: torch.nn.Module, generator: torch.Generator) -> None:
  """Gives gains, biases and skip gains random non-zero values (weights keep their init)."""
  for name, param in model.named_parameters():
    if name.endswith("skipinit_gain"):
      param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    elif name.endswith(".gain"):
      param.copy_(0.5 + torch.rand(param.shape, generator=generator))
    elif name.endswith(".bias"):
      param.copy_(0.1 * torch.randn(param.shape, generator=generator))


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__)
  parser.add_argument("out_dir")
  parser.add_argument("--configs", nargs="+", default=["f0"], choices=("f0", "mini_f0"))
  parser.add_argument("--resolution", type=int, default=64)
  parser.add_argument("--batch", type=int, default=2)
  parser.add_argument("--num_classes", type=int, default=10)
  parser.add_argument("--seed", type=int, default=0)
  args = parser.parse_args()

  for config in args.configs:
    torch.manual_seed(args.seed)
    generator = torch.Generator().manual_seed(args.seed)
    model = make_model(config, args.num_classes).eval()
    randomise(model, generator)
    images = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=generator)
    with torch.no_grad():
      logits = model(images)
    arrays = {f"state_dict/{k}": v.numpy() for k, v in model.state_dict().items()}
    np.savez(os.path.join(args.out_dir, f"{config}.npz"),
             images_nhwc=images.permute(0, 2, 3, 1).numpy(), logits=logits.numpy(), **arrays)

if __name__ == "__main__":
  main()
