"""The paper's ImageNet fine-tune ([P] §3), with the values it leaves open taken from the
NFNet paper's JFT-300M -> ImageNet fine-tune ([N] A.5).

  python -m reproduce.finetune --config=reproduce/configs/finetune_imagenet.py \
      --model_dir=gs://.../ft_f7plus --init=gs://.../pretrain_f7plus
  python -m reproduce.finetune --config=reproduce/configs/finetune_imagenet.py:f7plus_ra ...

The plain config is the recipe of every Figure 1 curve (no repeated augmentation); the
``f7plus_ra`` setting is the single "F7+ with RA" point (multiplicity 4, the same compute).

``provenance`` marks every value the config sets: "stated [P] ..." (the 2023 paper, with the
place that says it) or "assumed: ..." (the NFNet paper's fine-tune or the NFNet code, not
confirmed for the 2023 runs, or our own choice). tests/test_finetune_recipe.py fails on a value
without one. docs/finetune.md gives the reasoning; ../shared/reference/paper_facts.md §3 and
§8 the sources. The model comes from --init (``model`` empty); ``model_overrides`` use the
rate names both families share (dropout_rate, stochdepth_rate).
"""

from ml_collections import config_dict

from reproduce.configs import finetune_base
from reproduce.core import published

STATED = "stated [P] §3"
NFNET_FINETUNE = "assumed: [N] A.5 (JFT-300M -> ImageNet fine-tune)"
VARIANTS = ("", "f7plus_ra")
BATCH_SIZE = 2048  # [N] A.5
LR = 0.1           # [N] A.5 "LR 0.1" at batch 2048; read here as the peak (see provenance)


def _provenance() -> dict:
  peak_if_scaled = published.nfnet_batch_scaled_lr(LR, BATCH_SIZE)
  return dict(
      dataset="stated [P] §3: fine-tuned on ImageNet",
      heldout_split="assumed: the official ImageNet validation set (the NFNet code's TEST)",
      epochs=STATED + ": 50 epochs (with RA the same compute: footnote 4)",
      resolution=STATED + ": train at 384", eval_resolution=STATED + ": evaluate at 480",
      sam=STATED + ": SAM (Foret et al.); the form 'per_replica' is the SAM authors' code's "
          "(google-research/sam: ascent per replica, sync_perturbations=False); [N] A.4's "
          "20%-of-batch form is 'fractional'",
      sam_rho=NFNET_FINETUNE + ": rho 0.05",
      sam_ascent_fraction="assumed: [N] A.4 (20% of each replica's batch); used only by "
                          "sam='fractional'",
      augment_multiplicity="stated [P] Figure 1 caption: every curve but 'F7+ with RA' is "
                           "fine-tuned without repeated augmentation (multiplicity 1)",
      model_overrides=STATED + ": stochastic depth and dropout; rates " + NFNET_FINETUNE
                      + " (dropout 0.25, stochastic depth 0.1)",
      batch_size=NFNET_FINETUNE + ": batch 2048",
      base_lr=(f"assumed: [N] A.5 'LR 0.1' at batch {BATCH_SIZE}, unit ambiguous. Read here as "
               f"the peak LR (base_lr is the peak in this kit: no batch scaling). The NFNet "
               f"code's reading (lr x batch/256, core.published.nfnet_batch_scaled_lr) would "
               f"give a peak of {peak_if_scaled:g}"),
      warmup_steps=NFNET_FINETUNE + ": linear warm-up over 5,000 steps, then cosine",
      weight_decay=NFNET_FINETUNE + ": 1e-5",
      ema_decay="assumed: [N] A.5 'same EMA with decay warm-up' as its ResNet fine-tunes "
                "(0.9999)",
      momentum="assumed: [N] A.1 (SGD Nesterov 0.9)",
      nesterov="assumed: [N] A.1 (SGD Nesterov 0.9)",
      agc_clipping="assumed: [N] A.1 (AGC 0.01 for batch 1024-4096)",
      label_smoothing="assumed: [N] A.1 ImageNet default 0.1; its use in fine-tuning is not "
                      "stated",
      augment="assumed: crops and flips only, as [N]'s JFT runs",
      head_init="assumed: neither paper says how the new head is initialised; 'model' is the "
                "builder's from-scratch init (NFNet: the NFNet code's fc_init N(0, 0.01); "
                "ViT: big_vision's zero head)",
      eval_crop="assumed: [N] A.1 / the NFNet code's resize_crop_32 (resize to res+32, "
                "centre crop), for the NFNets the paper fine-tunes",
      hardware="stated [P] §3: TPU-v4 (fine-tuning cost in TPU-v4 core hours)",
      eval_every_steps="assumed: our choice (evaluation cadence; no effect on the result)",
      deterministic="assumed: our choice (speed over bit-exact resume at this scale)",
  )


def get_config(variant: str = ""):
  """The Figure 1 fine-tune; ``variant='f7plus_ra'``: the "F7+ with RA" point."""
  if variant not in VARIANTS:
    raise ValueError(f"finetune_imagenet variant {variant!r}: use one of {VARIANTS}")
  config = finetune_base.get_config()
  config.model = ""
  config.update(
      dataset="imagenet2012", heldout_split="validation", eval_crop="nfnet", hardware="tpu_v4",
      epochs=50.0, resolution=384, eval_resolution=480,
      sam="per_replica", sam_rho=0.05, sam_ascent_fraction=0.2, augment_multiplicity=1,
      batch_size=BATCH_SIZE, base_lr=LR, warmup_steps=5000, momentum=0.9, nesterov=True,
      agc_clipping=0.01, weight_decay=1e-5, label_smoothing=0.1, ema_decay=0.9999,
      head_init="model", eval_every_steps=5000, deterministic=False)
  config.model_overrides = config_dict.ConfigDict(dict(dropout_rate=0.25, stochdepth_rate=0.1))
  config.augment = config_dict.ConfigDict(dict(randaugment=None, mixup_alpha=0.0,
                                               cutmix_alpha=0.0))
  provenance = _provenance()
  if variant == "f7plus_ra":
    config.augment_multiplicity = 4
    provenance["augment_multiplicity"] = (
        "stated [P] Figure 1 caption and footnote 4: the 'F7+ with RA' point (90.4% vs "
        "90.3%), multiplicity 4 with the number of passes reduced so the compute is constant")
  config.provenance = config_dict.ConfigDict(provenance)
  return config
