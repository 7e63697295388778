"""Miniature pre-training on the embedded 'digits' dataset (CPU, ~10-30 s).

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py \
      --model_dir=/tmp/mini_f0 --config.model=nfnet_mini_f1 --config.budget_core_hours=0.02

The recipe is the JFT one (pretrain_jft.py) scaled down: SGD Nesterov 0.9, AGC
0.01, coupled weight decay, label smoothing 0.1, cosine schedule; the budget
planner (reproduce/planning) turns the core-hour budget into steps and LR.
"""

from ml_collections import config_dict


def get_config():
  config = config_dict.ConfigDict()
  # What to train.
  config.model = "nfnet_mini_f0"
  config.model_overrides = config_dict.ConfigDict()  # e.g. drop_rate for a ViT/NFNet builder
  config.dataset = "digits"
  config.heldout_size = config_dict.placeholder(int)   # data module default
  config.dataset_size = config_dict.placeholder(int)   # default: the source's train size
  config.resolution = 32
  # How long: set exactly one of these (budget wins if both are set).
  config.hardware = "cpu"
  config.budget_core_hours = 0.005
  config.epochs = config_dict.placeholder(float)
  config.mfu = config_dict.placeholder(float)
  config.images_per_second_per_core = config_dict.placeholder(float)
  # Optimiser (NFNet recipe).
  config.batch_size = 16
  config.base_lr = config_dict.placeholder(float)      # default: planning.lr_rule
  config.warmup_steps = config_dict.placeholder(int)   # default: planning.default_warmup_steps
  config.momentum = 0.9
  config.nesterov = True
  config.agc_clipping = 0.01
  config.agc_eps = 1e-3
  config.agc_exclude = ()                              # regexes; the classifier is always excluded
  config.weight_decay = 1e-6
  config.label_smoothing = 0.1
  config.loss = "softmax"
  config.ema_decay = config_dict.placeholder(float)
  # Overrides of data.AUGMENT_DEFAULTS; empty = the dataset's defaults (crops, flips).
  config.augment = config_dict.ConfigDict()
  config.seed = 0
  # Execution.
  config.steps_per_execution = 4
  config.log_every_steps = 20
  config.eval_every_steps = 0                          # 0: evaluate at the end only
  config.eval_batch_size = config_dict.placeholder(int)
  config.checkpoint_every_steps = 100
  config.checkpoint_every_secs = 60.0
  config.keep_checkpoints = 2
  config.divergence_factor = 10.0
  config.dtype_policy = config_dict.placeholder(str)   # default: strategy.policy_for
  config.jit_compile = False
  config.deterministic = True
  return config
