"""The paper's ImageNet fine-tune ([P] §3), with the values it leaves open taken from the
NFNet paper's JFT-300M -> ImageNet fine-tune ([N] A.5).

  python -m reproduce.finetune --config=reproduce/configs/finetune_imagenet.py \
      --model_dir=gs://.../ft_f7plus --init=gs://.../pretrain_f7plus

``provenance`` marks every recipe value: "stated [P] §3" (the 2023 paper), "assumed: [N] ..."
(the NFNet paper's fine-tune, not confirmed for the 2023 runs), or "assumed" (our choice).
docs/finetune.md gives the reasoning; ../shared/reference/paper_facts.md §3 the sources.
The model comes from --init (``model`` empty); ``model_overrides`` use the rate names both
families share (dropout_rate, stochdepth_rate).
"""

from ml_collections import config_dict

from reproduce.configs import base

STATED = "stated [P] §3"
NFNET_FINETUNE = "assumed: [N] A.5 (JFT-300M -> ImageNet fine-tune)"


def add_finetune_keys(config: config_dict.ConfigDict) -> config_dict.ConfigDict:
  """The fine-tune's own keys (defaults as reproduce.finetuning.recipe.DEFAULTS)."""
  config.init = ""                     # the source run / converted weights; or --init
  config.head_init = "model"           # 'model': the builder's init; 'zeros': a zero classifier
  config.sam = "none"                  # 'none', 'standard' (Foret et al.), 'fractional' ([N] A.4)
  config.sam_rho = 0.05
  config.sam_ascent_fraction = 0.2     # 'fractional': share of each replica's batch
  config.augment_multiplicity = 1      # repeated augmentation; 1 = off
  return config


def get_config():
  config = add_finetune_keys(base.get_config())
  config.model = ""
  config.update(
      dataset="imagenet2012", heldout_split="validation", eval_crop="nfnet", hardware="tpu_v4",
      epochs=50.0, resolution=384, eval_resolution=480,
      sam="standard", sam_rho=0.05, augment_multiplicity=4,
      batch_size=2048, base_lr=0.1, warmup_steps=5000, momentum=0.9, nesterov=True,
      agc_clipping=0.01, weight_decay=1e-5, label_smoothing=0.1, ema_decay=0.9999,
      head_init="model", eval_every_steps=5000, deterministic=False)
  config.model_overrides = config_dict.ConfigDict(dict(dropout_rate=0.25, stochdepth_rate=0.1))
  config.augment = config_dict.ConfigDict(dict(randaugment=None, mixup_alpha=0.0,
                                               cutmix_alpha=0.0))
  config.provenance = config_dict.ConfigDict(dict(
      epochs=STATED + ": 50 epochs (compute of 50 epochs; 12.5 passes with multiplicity 4)",
      sam=STATED + ": SAM (Foret et al.); the form is assumed ('standard')",
      model_overrides=STATED + ": stochastic depth and dropout; rates " + NFNET_FINETUNE,
      resolution=STATED + ": train at 384", eval_resolution=STATED + ": evaluate at 480",
      augment_multiplicity=STATED + ", footnote 4: multiplicity 4, compute kept constant",
      batch_size=NFNET_FINETUNE, base_lr=NFNET_FINETUNE, warmup_steps=NFNET_FINETUNE,
      sam_rho=NFNET_FINETUNE, weight_decay=NFNET_FINETUNE,
      ema_decay="assumed: [N] 'same EMA with decay warm-up' as its ResNet fine-tunes (0.9999)",
      momentum="assumed: [N] A.1 (SGD Nesterov 0.9)", agc_clipping="assumed: [N] A.1 (AGC 0.01)",
      label_smoothing="assumed: [N] A.1 ImageNet default",
      augment="assumed: crops and flips only, as [N]'s JFT runs",
      head_init="stated: a fresh head initialised as the NFNet code does (nfnet.py fc_init "
                "default N(0, 0.01), model_defs' NFNet head); ViTs: big_vision's zero head",
      eval_crop="assumed: [N] A.1 (resize to res+32, centre crop)",
      heldout_split="assumed: the official ImageNet validation set"))
  return config
