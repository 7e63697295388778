"""Miniature pre-training of the mini ViTs on their own family's recipe (CPU).

  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini_vit.py \
      --model_dir=/tmp/mini_vit --config.model=vit_mini_s

The paper compares NFNets with ViTs trained by their authors' recipes ([P] section 3, citing
Zhai et al. 2022 and Alabdulmohsin et al. 2023), so the study trains each family on its own:
NFNets on pretrain_mini.py (SGD + AGC), ViTs here. The ViT recipe, scaled down:

- AdamW (Adam b1 0.9, b2 0.999, eps 1e-8) with decoupled weight decay, no AGC. big_vision
  trained ViT-g/G with Adafactor (b2 clipped at 0.999, [Z]); its plain-ViT ImageNet
  baselines use Adam(W) with the same b2 (Beyer et al. 2022). At this scale Adafactor's
  factored second moment saves nothing, so AdamW is the simpler faithful choice.
- Decay 0.1 in Keras' convention (w -= lr * 0.1 * w): at LR 1e-3 that is 1e-4 per step,
  big_vision's ViT baseline (lr 1e-3, wd 1e-4 scaled by the schedule); no decay on biases,
  LayerNorm scales or gains.
- Gradient clipping at global norm 1.0 ([Z] App. C, grad_clip_norm 1.0).
- Base LR: the planner's mini rule (``planning.MINI_LR['vit']``, 4e-3: where the study's
  sweeps on digits find the mini ViTs' optimum; big_vision's ViT baselines use 1e-3 at batch
  4096); linear warm-up then cosine (the planner's warm-up length), as for the NFNets.
- XLA (``jit_compile``): the mini ViTs' train step runs 1.9x faster on CPU with it
  (vit_mini_ti, batch 16: 14.5 -> 7.7 ms a step, for 2.7 s more compilation per run;
  BENCHMARKS.md). Not for the NFNets: XLA's CPU convolutions are slower than oneDNN's.
- No dropout or stochastic depth (the mini ViTs' defaults are 0); the mini NFNets' loss
  (softmax, label smoothing 0.1), so the only difference between the families' runs is
  the optimizer recipe and the held-out losses compare.

Everything else (digits at 32 px, budget, execution) is pretrain_mini.py's. The held-out
crop is the data source's: digits is not cropped (padding 0), so the NFNet and ViT
evaluation crops give the same image here.
"""

from reproduce.configs import pretrain_mini


def get_config():
  config = pretrain_mini.get_config()
  config.update(
      model="vit_mini_ti", optimizer="adamw", adam_b1=0.9, adam_b2=0.999,
      adam_eps=1e-8, weight_decay=0.1, grad_clip_norm=1.0, jit_compile=True)
  return config
