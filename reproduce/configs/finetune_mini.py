"""Miniature fine-tune on the embedded 'digits' at 48 px (the mini pre-training: 32 px).

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py --model_dir=/tmp/pt
  python -m reproduce.finetune --config=reproduce/configs/finetune_mini.py \
      --model_dir=/tmp/ft --init=/tmp/pt

The recipe of finetune_imagenet.py scaled down: SAM (standard), dropout and stochastic depth,
a fresh head, warm-up and cosine; small batches and a short run for one CPU core,
deterministic for exact resume. Two choices are measured for this scale, not the ImageNet
recipe's: peak LR 0.2 (half the mini NFNets' pre-training LR, planning.MINI_LR) and no
repeated augmentation. From the README's pre-training example (held-out top-1 0.689),
2 epochs at 48 px ended at top-1 0.761 (LR 0.2) and 0.756 (LR 0.1) with multiplicity 1, but
0.664 with multiplicity 2 and 0.60-0.65 with multiplicity 4 (LR 0.05-0.2): with 4 copies of
each image a batch of 16 holds 4 distinct digits, too few for 180 steps to learn from.
"""

from ml_collections import config_dict

from reproduce.configs import finetune_base


def get_config():
  config = finetune_base.get_config()
  config.model = ""
  config.update(
      dataset="digits", hardware="cpu", resolution=48, eval_resolution=48, epochs=2.0,
      batch_size=16, base_lr=0.2, warmup_steps=10, weight_decay=1e-5, ema_decay=None,
      sam="standard", sam_rho=0.05, augment_multiplicity=1,
      steps_per_execution=4, log_every_steps=20, checkpoint_every_steps=100,
      checkpoint_every_secs=60.0, keep_checkpoints=2, deterministic=True)
  config.model_overrides = config_dict.ConfigDict(dict(dropout_rate=0.25, stochdepth_rate=0.1))
  return config
