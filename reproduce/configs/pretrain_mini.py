"""Miniature pre-training on the embedded 'digits' dataset (CPU, ~10-30 s).

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py \
      --model_dir=/tmp/mini_f0 --config.model=nfnet_mini_f1 --config.budget_core_hours=0.02

The recipe is the JFT one (pretrain_jft.py) scaled down: SGD Nesterov 0.9, AGC
0.01, coupled weight decay, label smoothing 0.1, cosine schedule; the budget
planner (reproduce.planning) turns the core-hour budget into steps and LR.
"""

from reproduce.configs import base


def get_config():
  config = base.get_config()
  config.model = "nfnet_mini_f0"
  config.dataset = "digits"
  config.resolution = 32
  config.hardware = "cpu"
  config.budget_core_hours = 0.005
  config.batch_size = 16
  config.steps_per_execution = 4
  config.log_every_steps = 20
  config.checkpoint_every_steps = 100
  config.checkpoint_every_secs = 60.0
  config.keep_checkpoints = 2
  config.deterministic = True
  return config
