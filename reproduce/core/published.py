"""Every published number the kit checks itself against, each with its source.

This is the single source of truth for paper numbers: tests, the budget planner's
calibration anchor and ``reproduce.compare`` all read them from here.

Source keys (full references in docs/published.md):
  P  = Smith, Brock, Berrada, De 2023, arXiv:2310.16764 ("ConvNets Match ViTs at Scale")
  N  = Brock, De, Smith, Simonyan 2021, arXiv:2102.06171 (NFNets), Table 3 / Table 5
  C  = DeepMind official NFNet code (deepmind-research/nfnets, base.py)
  Z  = Zhai, Kolesnikov, Houlsby, Beyer 2022, arXiv:2106.04560 (Scaling ViTs), Table 2
  S  = Alabdulmohsin et al. 2023, arXiv:2305.13035 (SoViT), Table 1 / Section 5
  V  = Dosovitskiy et al. 2021, arXiv:2010.11929 (ViT), Table 1
  X  = Xiao et al. 2021, arXiv:2106.14881 ("Early Convolutions Help Transformers See Better"),
       Table 1 (right: the ViT_C models)
  D  = derived by this kit from the architecture definition in N and C (not printed in a paper)
"""

from __future__ import annotations

import dataclasses
import difflib


# The paper's pre-training recipe constants ([P] Section 2): every module reads them here.
PAPER_BATCH_SIZE = 4096
PAPER_PRETRAIN_RESOLUTION = 224
# The NFNet code's LR unit: a configured LR is per 256 examples and always multiplied by
# batch / 256 (experiment.py ``lr_scale_by_bs``; [N] A.1: 0.1 x 4096 / 256 = 1.6).
NFNET_LR_BATCH_UNIT = 256


def nfnet_batch_scaled_lr(lr_per_unit: float, batch_size: int) -> float:
  """The NFNet code's batch-scaling rule, written once: ``lr x batch / 256``."""
  return float(lr_per_unit) * int(batch_size) / NFNET_LR_BATCH_UNIT


@dataclasses.dataclass(frozen=True)
class Published:
  """One published number.

  Attributes:
    key: unique id, ``"<model>.<quantity>"`` (e.g. ``"nfnet_f0.params"``); a suffix on the
      model part (``vit_gigantic14_map``, ``nfnet_f7plus_ra``) tells apart two numbers of
      one model's quantity.
    model: kit model name, or a paper model label when the kit has no exact twin.
    quantity: what is measured (``params``, ``gmacs``, ``gflops``, ``imagenet_top1``,
      ``pretrain_core_hours``, ...).
    value: the number, in ``unit``.
    unit: e.g. ``"M params"``, ``"GMACs"``, ``"GFLOPs"``, ``"%"``, ``"TPU-v4 core hours"``.
    convention: how it is counted (resolution, MAC vs FLOP, head, ...).
    source: source key and location.
    tolerance: the absolute difference at which a reproduction of it still passes.
    model_overrides: ``model_defs.stats`` overrides that give the configuration the number
      was counted for, as (key, value) pairs: e.g. Zhai et al.'s class-token body without a
      classifier (``pool_type="token"``, ``include_top=False``) or the NFNet paper's F4+
      (``bottleneck_rounding="unrounded"``). Without them: a 1000-class head.
  """
  key: str
  model: str
  quantity: str
  value: float
  unit: str
  convention: str
  source: str
  tolerance: float
  model_overrides: tuple = ()


def _nfnet_rows() -> list[Published]:
  # (variant, params M, GMACs at test res, test res, ImageNet top-1 no extra data)
  table = [
      ("f0", 71.5, 12.38, 256, 83.6), ("f1", 132.6, 35.54, 320, 84.7),
      ("f2", 193.8, 62.59, 352, 85.1), ("f3", 254.9, 114.76, 416, 85.7),
      ("f4", 316.1, 215.24, 512, 85.9), ("f5", 377.2, 289.76, 544, 86.0),
      ("f6", 438.4, 377.28, 576, 86.5),
  ]
  rows = []
  for variant, params, gmacs, res, top1 in table:
    model = f"nfnet_{variant}"
    rows += [
        Published(f"{model}.params", model, "params", params, "M params",
                  "1000-class head", "N Table 3", 0.05),
        Published(f"{model}.gmacs", model, "gmacs", gmacs, "GMACs",
                  f"per image at {res} px; the paper's 'GFLOPs' column counts multiply-adds",
                  "N Table 3", 0.005),
        Published(f"{model}.imagenet_top1", model, "imagenet_top1", top1, "%",
                  "ImageNet from scratch, no extra data" + (", with SAM" if variant == "f6" else "")
                  + f"; the released weights at {res} px, resize_crop_32 (nfnet crop)",
                  "N Table 3", 0.3),
    ]
  # Sizes not printed in N but derived from the official code's structure (C).
  for variant, params in (("f7", 499.5), ("f3plus", 423.4), ("f7plus", 829.6)):
    model = f"nfnet_{variant}"
    rows.append(Published(f"{model}.params", model, "params", params, "M params",
                          "1000-class head; widths [384,768,2048,2048] for '+'",
                          "D from C base.py nfnet_params", 0.05))
  # F4+ (N Table 5, whole units): counted exactly (527.03M, 367.41 GMACs) only when the
  # 384-wide stage 1 keeps its 192-channel bottleneck in one group; the released code's
  # rounding to 128 gives 524.95M / 333.39 (docs/nfnet.md).
  unrounded = (("bottleneck_rounding", "unrounded"),)
  rows += [
      Published("nfnet_f4plus.params", "nfnet_f4plus", "params", 527.0, "M params",
                "1000-class head; stage-1 bottleneck unrounded (192 channels, one group)",
                "N Table 5", 0.5, unrounded),
      Published("nfnet_f4plus.gmacs", "nfnet_f4plus", "gmacs", 367.0, "GMACs",
                "per image at 512 px (F4's test resolution); the paper's 'GFLOPs' count "
                "multiply-adds; stage-1 bottleneck unrounded", "N Table 5", 0.5, unrounded),
  ]
  return rows


def _figure1_vit_rows() -> list[Published]:
  """Figure 1's ViTs: ImageNet top-1 (to 0.3 points) and pre-training core hours (to 10%)."""
  v4, v3 = "TPU-v4 core hours", "TPU-v3 core hours"
  # (model, top-1 %, its source, TPU-v4 hours, TPU-v3 hours as the text puts them,
  #  TPU-v3 hours, what the TPU-v3 number counts, its source)
  table = [
      ("vit_giant14", 90.2, "P Figure 1; S Table 1", 120e3, "210k", 210e3,
       "16B examples seen", "P Section 3; S Section 5"),
      ("vit_gigantic14", 90.45, "P Figure 1; Z Table 1", 280e3, ">500k", 500e3,
       "a lower bound ('over')", "P Section 3"),
      ("vit_so400m14", 90.3, "P Figure 1; S Table 1", 130e3, "230k", 230e3,
       "40B examples seen", "P Section 3; S Section 5"),
  ]
  rows = []
  for model, top1, top1_source, v4_hours, v3_text, v3_hours, v3_counts, v3_source in table:
    rows += [
        Published(f"{model}.imagenet_top1", model, "imagenet_top1", top1, "%",
                  "JFT-3B pre-train, fine-tuned at 518 px", top1_source, 0.3),
        Published(f"{model}.pretrain_core_hours", model, "pretrain_core_hours", v4_hours, v4,
                  f"authors' TPU-v4 estimate of the {v3_text} TPU-v3 core-hour run",
                  "P Section 3", v4_hours / 10),
        Published(f"{model}.pretrain_core_hours_v3", model, "pretrain_core_hours_v3", v3_hours,
                  v3, v3_counts, v3_source, v3_hours / 10),
    ]
  return rows


def _headline_rows() -> list[Published]:
  v4 = "TPU-v4 core hours"
  return [
      # NFNet-F7+ pre-trained on JFT-4B, the paper's largest run (Figure 1).
      Published("nfnet_f7plus.pretrain_core_hours", "nfnet_f7plus", "pretrain_core_hours",
                110e3, v4, "8 epochs of JFT-4B at 224 px, batch 4096; estimated 'by eye' from steps/s",
                "P Section 3", 5.5e3),
      Published("nfnet_f7plus.pretrain_epochs", "nfnet_f7plus", "pretrain_epochs", 8, "epochs",
                "JFT-4B", "P Section 3", 0.0),
      Published("jft4b.dataset_size", "jft4b", "dataset_size", 4e9, "images",
                "'roughly 4 billion labelled images'", "P Section 1", 0.0),
      Published("nfnet_f7plus.finetune_core_hours", "nfnet_f7plus", "finetune_core_hours",
                1.6e3, v4, "50 epochs ImageNet fine-tune at 384 px", "P Section 3", 0.2e3),
      Published("nfnet_f7plus.pretrain_core_hours_v3", "nfnet_f7plus", "pretrain_core_hours_v3",
                250e3, "TPU-v3 core hours",
                "the text reads '250'; read as 250k (UNCONFIRMED)", "P Section 3", 25e3),
      Published("nfnet_f7plus.imagenet_top1", "nfnet_f7plus", "imagenet_top1", 90.3, "%",
                "JFT-4B pre-train, ImageNet fine-tune 384 px train / 480 px eval", "P Figure 1", 0.3),
      Published("nfnet_f7plus_ra.imagenet_top1", "nfnet_f7plus", "imagenet_top1_ra", 90.4, "%",
                "as above with repeated augmentation x4", "P Figure 1", 0.3),
      *_figure1_vit_rows(),
      Published("nfnet_f5_ra.imagenet_top1", "nfnet_f5", "imagenet_top1_ra", 86.8, "%",
                "ImageNet only, repeated augmentation", "P Section 3 citing Fort et al. 2021", 0.3),
  ]


# ViT sizes, each under the convention of the table that prints it (docs/published.md).
# Z Table 2: the body with a class token, no classifier. S Table 1 (MAP heads; its counting
# is not stated): the reading found to give both its G/14 and SoViT counts is a MAP head with
# a 1000-class classifier, in whole millions rounded down. ViT-H/14's 632M (N Table 5,
# V Table 1): the 1000-class class-token count.
_TOKEN_HEADLESS = (("pool_type", "token"), ("include_top", False))
_MAP_1000 = (("pool_type", "map"),)


def _vit_rows() -> list[Published]:
  token = "224 px, class-token body, no classifier"
  # (model, params M, tolerance = half the last printed digit, convention, source, overrides)
  params = [
      ("vit_ti16", 5.5, 0.05, token, "Z Table 2", _TOKEN_HEADLESS),
      ("vit_s16", 22.0, 0.5, token, "Z Table 2", _TOKEN_HEADLESS),
      ("vit_b16", 86.0, 0.5, token, "Z Table 2", _TOKEN_HEADLESS),
      ("vit_l16", 303.0, 0.5, token, "Z Table 2", _TOKEN_HEADLESS),
      ("vit_giant14", 1011.0, 0.5, token, "Z Table 2 (S Table 1 reprints it)",
       _TOKEN_HEADLESS),
      ("vit_gigantic14", 1843.0, 0.5, token, "Z Table 2", _TOKEN_HEADLESS),
      ("vit_h14", 632.0, 0.5, "224 px, class token, 1000-class classifier (headless: 630.8M)",
       "N Table 5; V Table 1", (("pool_type", "token"),)),
  ]
  rows = [Published(f"{model}.params", model, "params", value, "M params", convention, source,
                    tolerance, overrides)
          for model, value, tolerance, convention, source, overrides in params]
  # Rounded down: a count in [value, value + 1) reproduces the print.
  map_1000 = "224 px, MAP head, 1000-class classifier; whole millions, rounded down"
  rows += [
      Published("vit_gigantic14_map.params", "vit_gigantic14", "params", 1882.0, "M params",
                map_1000, "S Table 1", 1.0, _MAP_1000),
      Published("vit_so400m14.params", "vit_so400m14", "params", 428.0, "M params", map_1000,
                "S Table 1", 1.0, _MAP_1000),
  ]
  for model, gflops in (("vit_ti16", 2.5), ("vit_s16", 9.2), ("vit_b16", 35.1),
                        ("vit_l16", 122.9), ("vit_giant14", 533.1), ("vit_gigantic14", 965.3)):
    rows.append(Published(f"{model}.gflops", model, "gflops", gflops, "GFLOPs",
                          f"per image at {token}; Zhai et al. count FLOPs = 2 x MACs",
                          "Z Table 2", 0.02 * gflops, _TOKEN_HEADLESS))
  return rows


def _xiao_rows() -> list[Published]:
  """X Table 1 (right): ViT_C params (M) and "flops (B)", which pycls (their code) counts as
  multiply-adds; 224 px, class token, 1000-class classifier."""
  convention = "224 px, class token, 1000-class classifier"
  rows = []
  for model, params, gmacs in (("vit_c1gf", 4.6, 1.1), ("vit_c4gf", 17.8, 4.0),
                               ("vit_c18gf", 81.6, 17.7), ("vit_c36gf", 167.8, 35.0)):
    rows += [
        Published(f"{model}.params", model, "params", params, "M params", convention,
                  "X Table 1", 0.05, (("pool_type", "token"),)),
        Published(f"{model}.gmacs", model, "gmacs", gmacs, "GMACs",
                  f"per image at {convention}; the table's 'flops' count multiply-adds",
                  "X Table 1", 0.05, (("pool_type", "token"),)),
    ]
  return rows


def _claim_rows() -> list[Published]:
  return [
      Published("claim.optimal_lr_small_epochs", "nfnet", "optimal_lr_small_epochs", 1.6,
                "learning rate", "batch 4096, cosine decay; optimum at small epoch budgets",
                "P Section 2, Figure 3", 0.8),
      Published("claim.optimal_epochs_gt1_above_core_hours", "nfnet",
                "optimal_epochs_gt1_above_core_hours", 5e3, "TPU-v4 core hours",
                "optimal epoch budget exceeds 1 above roughly this compute", "P Section 2", 2.5e3),
      Published("claim.size_vs_epochs_exponent_ratio", "nfnet", "size_vs_epochs_exponent_ratio",
                1.0, "ratio", "scale model size and epochs at the same rate", "P Section 2", 0.5),
      # Qualitative claims as signs (-1 falls, +1 rises); a reproduction's sign counts only
      # when its confidence interval excludes zero (reproduce/compare.py).
      Published("claim.loss_vs_compute_slope_sign", "nfnet", "loss_vs_compute_slope_sign", -1.0,
                "sign", "held-out loss falls linearly with compute on log-log axes",
                "P Section 2, Figure 2", 0.0),
      Published("claim.finetune_error_vs_compute_slope_sign", "nfnet",
                "finetune_error_vs_compute_slope_sign", -1.0, "sign",
                "fine-tuned ImageNet top-1 error falls as pre-training compute grows",
                "P Section 3, Figure 1", 0.0),
      Published("claim.optimal_size_exponent_sign", "nfnet", "optimal_size_exponent_sign", 1.0,
                "sign", "the optimal model size increases with the compute budget",
                "P Section 2", 0.0),
      Published("claim.optimal_epochs_exponent_sign", "nfnet", "optimal_epochs_exponent_sign",
                1.0, "sign", "the optimal epoch budget increases with the compute budget",
                "P Section 2", 0.0),
      Published("claim.optimal_lr_vs_epochs_sign", "nfnet", "optimal_lr_vs_epochs_sign", -1.0,
                "sign", "the optimal learning rate falls as the epoch budget rises",
                "P Section 2, Figure 3", 0.0),
  ]


def _all_rows() -> list[Published]:
  return _nfnet_rows() + _vit_rows() + _xiao_rows() + _headline_rows() + _claim_rows()


ENTRIES: tuple[Published, ...] = tuple(_all_rows())
_BY_KEY = {e.key: e for e in ENTRIES}
assert len(_BY_KEY) == len(ENTRIES), "duplicate published key"


def get(key: str) -> Published:
  """The entry with ``key``; a KeyError names close keys."""
  try:
    return _BY_KEY[key]
  except KeyError:
    close = difflib.get_close_matches(key, list(_BY_KEY), n=5)
    raise KeyError(f"no published number {key!r}; close: {close}") from None


def value(key: str) -> float:
  return get(key).value


def entries(model: str | None = None, quantity: str | None = None) -> list[Published]:
  """Entries filtered by model and/or quantity."""
  return [e for e in ENTRIES
          if (model is None or e.model == model) and (quantity is None or e.quantity == quantity)]

