"""The paper's JFT-4B pre-training setting (Smith et al. 2023, section 2).

Known from the paper: batch 4096, 224 px training, SGD with momentum + AGC,
cosine decay, base LR tuned per epoch budget on a factor-2 grid (alpha ~ 1.6
for small budgets), 0.25-8 epochs, held-out set of 130k images. From the NFNet
JFT-300M recipe (Brock et al. 2021, A.5): Nesterov 0.9, AGC 0.01 (classifier
excluded), coupled weight decay 1e-6, no EMA, crops + flips only.

Held-out loss at 256 px (the paper: "224x224 train, 256x256 evaluation"), with the NFNet
evaluation crop (resize to 288, centre 256). ViTs and hybrid ViTs evaluate at their training resolution
(set --config.eval_resolution=None for them; docs/pretrain.md, "Recipes").

Regularisation, a documented choice: NO dropout and NO stochastic depth in pre-training.
The paper names both only for ImageNet fine-tuning (section 3); the NFNet JFT-300M recipe
(Brock et al. 2021, section 6.2 and A.5) drops augmentation beyond crops and flips and
uses weight decay 1e-6, because a dataset this large is not overfitted in a few epochs.
Left at the variant defaults, the model would silently train with dropout 0.2-0.5 and
stochastic depth 0.1. What the 2023 runs used is UNCONFIRMED.

UNCONFIRMED (see docs/pretrain.md): softmax vs sigmoid loss on JFT-4B (softmax
here, as the NFNet code default; sigmoid is the ViT/JFT choice), label
smoothing on JFT, warm-up length
(planning.default_warmup_steps: 5% capped at 5000 steps, the JFT-300M warm-up).

JFT-4B is not public: set config.dataset to your TFRecords, e.g.
  --config.dataset='tfrecord:gs://YOUR_BUCKET/jft4b/train-*'
"""

from ml_collections import config_dict

from reproduce.configs import base


def get_config():
  config = base.get_config()
  config.model = "nfnet_f0"
  # Pre-training without dropout or stochastic depth (see the module docstring).
  config.model_overrides = config_dict.ConfigDict(dict(dropout_rate=0.0, stochdepth_rate=0.0))
  config.dataset = "tfrecord:gs://YOUR_BUCKET/jft4b/train-*"  # placeholder: must be set
  config.heldout_size = 130_000
  config.dataset_size = config_dict.placeholder(int)  # set to the real image count
  config.resolution = 224
  config.eval_resolution = 256   # [P] section 2
  config.eval_crop = "nfnet"     # resize to (res + 32)^2, centre crop ([N] A.1)
  config.hardware = "tpu_v4"
  config.budget_core_hours = config_dict.placeholder(float)
  config.epochs = 1.0
  config.batch_size = 4096
  config.momentum = 0.9
  config.nesterov = True
  config.agc_clipping = 0.01
  config.weight_decay = 1e-6
  config.label_smoothing = 0.1   # UNCONFIRMED for JFT-4B
  config.loss = "softmax"        # UNCONFIRMED: 'sigmoid' is the other candidate
  config.ema_decay = config_dict.placeholder(float)  # no EMA in the JFT recipe
  config.steps_per_execution = 100
  config.log_every_steps = 100
  config.eval_every_steps = 20_000
  config.eval_batch_size = 4096
  config.checkpoint_every_steps = 5_000
  config.checkpoint_every_secs = 1800.0
  config.keep_checkpoints = 3
  config.deterministic = False
  return config
