"""The NFNet ImageNet-from-scratch recipe (Brock et al. 2021, section 6.1 and A.1), per variant.

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_imagenet.py:nfnet_f3 ...

The variant (the ``:NAME`` argument, default nfnet_f0) picks its row of the variant table
(``model_defs.get_spec(name)``): train and test resolution, dropout and RandAugment level
(F0 '405', F1-F2 '410', F3+ '415'). Name the variant there, not with --config.model alone,
which would keep the other variant's resolutions, dropout and augmentation.

Data as in the released code: all 1,281,167 training images, evaluated on the official 50k
validation split at the variant's test resolution with the NFNet crop; a minival carved from
train (its last 10k images, NFNet's tuning split) only when asked:
--config.heldout_split=None (then ``heldout_size`` sets its size).

Batch 4096, 360 epochs, SGD Nesterov 0.9, LR 0.1 x B/256 = 1.6 with a 5-epoch linear warm-up
then cosine, coupled weight decay 2e-5, AGC 0.01, label smoothing 0.1, EMA 0.99999 with
warm-up, stochastic depth 0.25 for every variant, MixUp (alpha 0.2) / CutMix + RandAugment
with 4 layers.
"""

from ml_collections import config_dict

from reproduce.configs import pretrain_jft
from reproduce.core import cli
from reproduce.core import published

IMAGENET_TRAIN_SIZE = 1_281_167
STOCHDEPTH_RATE = 0.25  # [N] A.1: every variant, from scratch on ImageNet
DEFAULT_MODEL = "nfnet_f0"


def randaugment_spec(layers: int, magnitude: int) -> str:
  """The released code's RA_level string: '405' = 4 layers at magnitude 5."""
  return f"{int(layers)}{int(magnitude):02d}"


def get_config(model: str = ""):
  cli.import_tensorflow()  # model_defs builds on Keras; keep TensorFlow's notices quiet
  import model_defs  # pylint: disable=g-import-not-at-top  (Keras: see core/cli.py)
  spec = model_defs.get_spec(model or DEFAULT_MODEL)
  if spec.family != "nfnet":
    raise ValueError(f"pretrain_imagenet is the NFNet recipe; {spec.name} is a {spec.family}")
  row = spec.config
  config = pretrain_jft.get_config()
  config.model = spec.name
  config.dataset = "imagenet2012"
  config.heldout_split = "validation"   # the official 50k validation set
  config.heldout_size = config_dict.placeholder(int)
  config.resolution = int(spec.train_resolution)
  config.eval_resolution = int(spec.test_resolution)
  config.model_overrides = config_dict.ConfigDict(dict(
      dropout_rate=float(row["dropout_rate"]), stochdepth_rate=STOCHDEPTH_RATE))
  config.augment = config_dict.ConfigDict(dict(
      randaugment=randaugment_spec(row["randaugment_layers"], row["randaugment_magnitude"]),
      mixup_alpha=0.2, cutmix_alpha=1.0))
  config.epochs = 360.0
  config.batch_size = 4096
  config.base_lr = published.nfnet_batch_scaled_lr(0.1, config.batch_size)
  config.warmup_steps = round(5 * IMAGENET_TRAIN_SIZE / config.batch_size)
  config.weight_decay = 2e-5
  config.label_smoothing = 0.1
  config.loss = "softmax"
  config.ema_decay = 0.99999
  config.eval_every_steps = 5_000
  return config
