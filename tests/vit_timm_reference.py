"""Writes timm ViT reference outputs for tests/test_vit_equivalence.py.

Run in its own process (``python tests/vit_timm_reference.py OUT_DIR``): importing
timm/torchvision after TensorFlow crashes on the CI machine, so the TF test process
never imports them. For each model, OUT_DIR/<name>.npz holds the randomised state
dict ('sd/<key>'), the input images (NHWC, 'images') and the logits ('logits');
OUT_DIR/interp.npz holds PyTorch's bicubic/bilinear resizes of a random grid.
"""

import os
import sys

import numpy as np
import timm
import torch
import torch.nn.functional as F

# name, timm model, timm kwargs, image size
MODELS = (
    ("vit_tiny_token", "vit_tiny_patch16_224", {}, 224),
    ("vit_base_token", "vit_base_patch16_224", {}, 224),
    ("vit_tiny_map", "vit_tiny_patch16_224", dict(global_pool="map", class_token=False), 224),
)


def randomise(model: torch.nn.Module, gen: torch.Generator) -> None:
  """Makes every parameter non-trivial (no zero biases, unit norms or zero head)."""
  with torch.no_grad():
    for name, p in model.named_parameters():
      noise = torch.randn(p.shape, generator=gen)
      if "norm" in name and name.endswith("weight"):
        p.copy_(1.0 + 0.1 * noise)
      else:
        p.add_(0.02 * noise)


def main(out_dir: str) -> None:
  torch.set_num_threads(2)
  gen = torch.Generator().manual_seed(0)
  for name, arch, kwargs, size in MODELS:
    model = timm.create_model(arch, pretrained=False, num_classes=1000, **kwargs).eval()
    randomise(model, gen)
    images = torch.randn((2, 3, size, size), generator=gen)
    with torch.no_grad():
      logits = model(images)
    arrays = {f"sd/{k}": v.numpy() for k, v in model.state_dict().items()}
    np.savez(os.path.join(out_dir, f"{name}.npz"), images=images.permute(0, 2, 3, 1).numpy(),
             logits=logits.numpy(), **arrays)
  grid = torch.randn((1, 8, 14, 14), generator=gen)
  interp = {"grid": grid.permute(0, 2, 3, 1).numpy()}
  for method in ("bicubic", "bilinear"):
    for side in (24, 10):
      r = F.interpolate(grid, size=(side, side), mode=method, align_corners=False)
      interp[f"{method}_{side}"] = r.permute(0, 2, 3, 1).numpy()
  np.savez(os.path.join(out_dir, "interp.npz"), **interp)


if __name__ == "__main__":
  main(sys.argv[1])
