"""Miniature pre-training on the embedded 'digits' dataset (CPU: 18 core-seconds of training steps).

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py \
      --model_dir=/tmp/mini_f0 --config.model=nfnet_mini_f1 --config.budget_core_hours=0.02

The recipe is the JFT one (pretrain_jft.py) scaled down: SGD Nesterov 0.9, AGC
0.01, coupled weight decay, label smoothing 0.1, cosine schedule; the budget
planner (reproduce.planning) turns the core-hour budget into steps, and gives mini models
their family's measured LR (planning.MINI_LR: 0.4 here, not the TPU rule's 0.006 at batch 16).
"""

from reproduce.configs import base


def get_config():
  config = base.get_config()
  config.update(
      # The embedded digits (1437 train images, 10 classes) at 32 px on one CPU core.
      model="nfnet_mini_f0", dataset="digits", resolution=32, hardware="cpu",
      budget_core_hours=0.005, batch_size=16,
      # Host round trips and checkpoints often enough for runs of seconds; little disk.
      steps_per_execution=4, log_every_steps=20, checkpoint_every_steps=100,
      checkpoint_every_secs=60.0, keep_checkpoints=2,
      # Exact resume after a kill (docs/pretrain.md, "Determinism").
      deterministic=True)
  return config
