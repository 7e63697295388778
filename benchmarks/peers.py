"""The timm side of the benchmarks: the same architectures and train step in PyTorch.

``peer_model`` builds timm's counterpart of a kit model (``dm_nfnet_f0``,
``vit_base_patch16_224``, or a timm ``NormFreeNet`` / ``VisionTransformer`` configured to a
mini model's table row); ``peer_step`` returns a callable running one training step
(forward, backward, the recipe's optimizer update) on a fixed random batch. Shared by
``throughput_vs_timm.py`` (CPU) and ``gpu_vs_timm.py`` (CUDA, no TensorFlow there).
"""

from __future__ import annotations

import dataclasses
import statistics
import time

# kit model -> timm model name; None: configured from the kit's table row (mini models).
TIMM_NAMES = {"nfnet_f0": "dm_nfnet_f0", "vit_b16": "vit_base_patch16_224",
              "nfnet_mini_f0": None, "vit_mini_s": None}
DEFAULT_PAIRS = tuple(TIMM_NAMES)
# Each side's recipe optimizer (the kit's config key 'optimizer').
OPTIMIZERS = {"nfnet": "sgd_agc", "vit": "adamw"}


def pairs_error(models: list[str]) -> str | None:
  """The one-line complaint about a ``--pairs`` value with a model that has no timm
  counterpart; None when every model has one."""
  unknown = [m for m in models if m not in TIMM_NAMES]
  if not unknown:
    return None
  return (f"--pairs: no timm counterpart for {', '.join(unknown)}; known: "
          f"{', '.join(TIMM_NAMES)}")


def family(model: str) -> str:
  return "nfnet" if model.startswith("nfnet") else "vit"


def kit_config(model: str) -> dict:
  """The kit side's config overrides: the family's recipe optimizer, and XLA as the kit
  trains ``model`` (minis: the study's family config, on for the ViTs; else the base, off)."""
  config = {"optimizer": OPTIMIZERS[family(model)]}
  import model_defs  # pylint: disable=g-import-not-at-top
  if model_defs.get_spec(model).mini:
    from reproduce.miniature import grid  # pylint: disable=g-import-not-at-top
    config["jit_compile"] = bool(grid.family_config(model).jit_compile)
  return config


def _mini_nfnet(row: dict, num_classes: int):
  from timm.models import nfnet  # pylint: disable=g-import-not-at-top
  base = nfnet.model_cfgs["dm_nfnet_f0"]
  cfg = dataclasses.replace(
      base, depths=tuple(row["depths"]), channels=tuple(row["widths"]),
      stem_chs=row["widths"][0] // 2, group_size=row["group_width"],
      num_features=int(row["widths"][-1] * row["final_conv_multiplier"]))
  return nfnet.NormFreeNet(cfg, num_classes=num_classes, drop_rate=row["dropout_rate"],
                           drop_path_rate=row["stochdepth_rate"])


def _mini_vit(row: dict, num_classes: int):
  from timm.models import vision_transformer as vt  # pylint: disable=g-import-not-at-top
  return vt.VisionTransformer(
      img_size=row["image_size"], patch_size=row["patch_size"], embed_dim=row["width"],
      depth=row["depth"], num_heads=row["num_heads"], mlp_ratio=row["mlp_dim"] / row["width"],
      num_classes=num_classes, global_pool="avg", class_token=False, fc_norm=False)


def peer_model(model: str, row: dict, resolution: int, num_classes: int = 1000):
  """timm's counterpart of kit ``model`` (``row``: its model_defs table row)."""
  import timm  # pylint: disable=g-import-not-at-top
  name = TIMM_NAMES[model]
  if name is None:
    build = _mini_nfnet if family(model) == "nfnet" else _mini_vit
    return build(row, num_classes)
  if family(model) == "vit":
    return timm.create_model(name, num_classes=num_classes, img_size=resolution)
  return timm.create_model(name, num_classes=num_classes, drop_rate=row["dropout_rate"],
                           drop_path_rate=row["stochdepth_rate"])


def peer_step(net, model: str, batch_size: int, resolution: int, precision: str,
              device: str = "cpu", num_classes: int = 1000, seed: int = 0,
              use_agc: bool = True):
  """One train step of ``net`` on a fixed random batch, as a callable returning the loss.

  The kit's recipes: NFNet SGD Nesterov (momentum 0.9, weight decay 1e-6) after adaptive
  gradient clipping (0.01, the classifier excluded); ViT AdamW; label smoothing 0.1.
  ``precision`` 'bfloat16' runs forward and loss under autocast (the kit's mixed_bfloat16);
  ``use_agc`` False leaves the clipping out (the GPU pairs, whose kit side has none).
  """
  import torch  # pylint: disable=g-import-not-at-top
  from timm.utils import agc  # pylint: disable=g-import-not-at-top
  torch.manual_seed(seed)
  net = net.to(device).train()
  images = torch.randn(batch_size, 3, resolution, resolution, device=device)
  labels = torch.randint(0, num_classes, (batch_size,), device=device)
  loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
  if family(model) == "nfnet":
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True,
                                weight_decay=1e-6)
    clipped = [p for n, p in net.named_parameters() if use_agc and not n.startswith("head")]
  else:
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1e-4)
    clipped = None
  autocast_type = device.split(":")[0]

  def step() -> float:
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast(autocast_type, dtype=torch.bfloat16,
                        enabled=precision == "bfloat16"):
      loss = loss_fn(net(images), labels)
    loss.backward()
    if clipped:
      agc.adaptive_clip_grad(clipped, 0.01, 1e-3)
    optimizer.step()
    return float(loss.item())  # a host value: the step has finished

  return step


def param_count(net) -> int:
  return sum(p.numel() for p in net.parameters())


def interleaved(kit_step, peer_step, warmup: int, steps: int) -> tuple[float, float]:
  """Median seconds per step of each side, timed alternately after the warm-ups.

  Alternating step by step (and who goes first) spreads load from other processes over
  both sides alike.
  """
  for _ in range(warmup):
    kit_step()
    peer_step()
  kit, peer = [], []
  for i in range(steps):
    order = ((kit, kit_step), (peer, peer_step))
    for seconds, step in (order if i % 2 == 0 else order[::-1]):
      start = time.perf_counter()
      step()
      seconds.append(time.perf_counter() - start)
  return statistics.median(kit), statistics.median(peer)
