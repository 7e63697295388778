"""The NFNet ImageNet-from-scratch recipe (Brock et al. 2021, section 6.1 and A.1).

Batch 4096, 360 epochs, SGD Nesterov 0.9, LR 0.1 x B/256 = 1.6 with a 5-epoch
linear warm-up then cosine, coupled weight decay 2e-5, AGC 0.01, label
smoothing 0.1, EMA 0.99999 with warm-up, bf16 on TPU, MixUp/CutMix +
RandAugment (per-variant magnitude; see reproduce.data for the augment names).
"""

from ml_collections import config_dict

from reproduce.configs import pretrain_jft

IMAGENET_TRAIN_SIZE = 1_281_167


def get_config():
  config = pretrain_jft.get_config()
  config.dataset = "imagenet2012"
  config.heldout_size = 50_000          # the validation split
  config.resolution = 192               # F0's train resolution; set per variant
  config.epochs = 360.0
  config.batch_size = 4096
  config.base_lr = 0.1 * config.batch_size / 256
  config.warmup_steps = round(5 * IMAGENET_TRAIN_SIZE / config.batch_size)
  config.weight_decay = 2e-5
  config.label_smoothing = 0.1
  config.loss = "softmax"
  config.ema_decay = 0.99999
  # MixUp (alpha 0.2) / CutMix + RandAugment 4 layers (F0 magnitude 5; '410' for F1, '415' F3+).
  config.augment = config_dict.ConfigDict(dict(randaugment="405", mixup_alpha=0.2,
                                               cutmix_alpha=1.0))
  config.eval_every_steps = 5_000
  return config
