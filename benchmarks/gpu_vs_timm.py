"""The throughput pairs on a GPU: the kit's Keras models on the JAX backend against timm on CUDA.

No TensorFlow: the kit side is ``model_defs`` (Keras 3 layers and ops only) trained by a
jitted JAX step (``stateless_call``, ``value_and_grad``, the Keras optimizer's
``stateless_apply``, buffers donated); the timm side is ``peers.peer_step`` on CUDA (cudnn
benchmark on, as timm's train.py). Both in bf16 (Keras mixed_bfloat16, torch autocast), the
same batch and resolution, timed interleaved (median of timed steps, each ending in a host
value). Both sides use plain SGD Nesterov (NFNet) or AdamW (ViT): no AGC on either, since the
kit's AGC optimizer lives in the TensorFlow engine. MFU is against a bf16 8192^3 matmul
measured with JAX in the same run.

  KERAS_BACKEND=jax PYTHONPATH=$PWD python benchmarks/gpu_vs_timm.py
"""

from __future__ import annotations

import os
import sys
import time

from absl import app
from absl import flags

from reproduce.core import cli  # absl and the kit's CLI helpers only: no TensorFlow

os.environ.setdefault("KERAS_BACKEND", "jax")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # pylint: disable=g-import-not-at-top,wrong-import-position

_PAIRS = flags.DEFINE_list("pairs", list(peers.DEFAULT_PAIRS), "kit models, each against timm")
_BATCH = flags.DEFINE_integer("batch", 128, "full models' batch size, both sides", lower_bound=1)
_RESOLUTION = flags.DEFINE_integer("resolution", 224, "full models' resolution (minis: their own)",
                                   lower_bound=1)
_MINI_BATCH = flags.DEFINE_integer("mini_batch", 256, "mini models' batch size, both sides",
                                   lower_bound=1)
_STEPS = flags.DEFINE_integer("steps", 10, "timed steps per side", lower_bound=1)
_WARMUP = flags.DEFINE_integer("warmup", 3, "untimed steps per side (compilation, allocation)",
                               lower_bound=0)
_DEVICE = flags.DEFINE_string("device", "cuda", "torch device; cpu: a quick check here")
_FUSED_ATTENTION = flags.DEFINE_bool(
    "fused_attention", False,
    "the kit's ViTs with fused attention (cuDNN flash attention on JAX)")


def _jax_peak(size: int) -> float:
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  a = jnp.ones((size, size), jnp.bfloat16)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  start = time.perf_counter()
  for _ in range(10):
    out = matmul(a)
  out.block_until_ready()
  return 10 * 2.0 * size ** 3 / (time.perf_counter() - start)


def kit_step(model: str, batch: int, resolution: int, num_classes: int = 1000,
             fused_attention: bool = False):
  """A jitted JAX train step of the kit's Keras ``model`` on a fixed random batch
  (``fused_attention``: the ViTs' attention as ``keras.ops.dot_product_attention``)."""
  import jax  # pylint: disable=g-import-not-at-top
  import keras  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import model_defs  # pylint: disable=g-import-not-at-top
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  fused = fused_attention and peers.family(model) == "vit"
  overrides = {"fused_attention": True} if fused else {}
  net = model_defs.build(model, num_classes=num_classes, **overrides)
  net.build((None, resolution, resolution, 3))
  if peers.family(model) == "nfnet":
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True)
  else:
    optimizer = keras.optimizers.AdamW(1e-3, weight_decay=1e-4)
  optimizer.build(net.trainable_variables)
  loss_fn = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)
  rng = np.random.default_rng(0)
  images = jax.numpy.asarray(rng.standard_normal((batch, resolution, resolution, 3)),
                             "bfloat16")
  labels = jax.numpy.asarray(np.eye(num_classes, dtype=np.float32)[
      rng.integers(0, num_classes, batch)])

  def loss_of(trainable, non_trainable, x, y):
    logits, non_trainable = net.stateless_call(trainable, non_trainable, x, training=True)
    return loss_fn(y, logits.astype("float32")), non_trainable

  grad_fn = jax.value_and_grad(loss_of, has_aux=True)

  @jax.jit
  def step(state, x, y):
    trainable, non_trainable, opt_vars = state
    (loss, non_trainable), grads = grad_fn(trainable, non_trainable, x, y)
    trainable, opt_vars = optimizer.stateless_apply(opt_vars, grads, trainable)
    return loss, (trainable, non_trainable, opt_vars)

  state = [([v.value for v in net.trainable_variables],
            [v.value for v in net.non_trainable_variables],
            [v.value for v in optimizer.variables])]
  step = jax.jit(step.__wrapped__, donate_argnums=0)

  def run() -> float:
    loss, state[0] = step(state[0], images, labels)
    return float(loss)

  return run, sum(int(np.prod(v.shape)) for v in net.trainable_variables)


def main(argv: list[str]) -> None:
  cli.refuse_stray_arguments(argv)
  pairs_error = peers.pairs_error(_PAIRS.value)
  if pairs_error:
    cli.fail(pairs_error)
  import jax  # pylint: disable=g-import-not-at-top
  import model_defs  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  torch.backends.cudnn.benchmark = True
  peak = _jax_peak(2048 if _DEVICE.value == "cpu" else 8192)
  print(f"{jax.devices()[0].device_kind}; jax {jax.__version__}; torch {torch.__version__}; "
        f"bf16 matmul peak {peak / 1e12:.0f} TFLOP/s", flush=True)
  for model in _PAIRS.value:
    spec = model_defs.get_spec(model)
    resolution = spec.train_resolution if spec.mini else _RESOLUTION.value
    batch = _MINI_BATCH.value if spec.mini else _BATCH.value
    start = time.perf_counter()
    run, kit_params = kit_step(model, batch, resolution, fused_attention=_FUSED_ATTENTION.value)
    net = peers.peer_model(model, dict(spec.config), resolution)
    peer = peers.peer_step(net, model, batch, resolution, "bfloat16", device=_DEVICE.value,
                           use_agc=False)
    kit_s, peer_s = peers.interleaved(run, peer, _WARMUP.value, _STEPS.value)
    flops = 3 * model_defs.stats(model, resolution).flops
    kit, timm_rate = batch / kit_s, batch / peer_s
    print(f"{model:>14} {resolution:>4}px batch {batch:>4} params {kit_params / 1e6:.2f}M/"
          f"{peers.param_count(net) / 1e6:.2f}M  kit(JAX) {kit:9.1f}  timm {timm_rate:9.1f} "
          f"img/s  ratio {kit / timm_rate:.2f}  MFU kit {kit * flops / peak:.1%} timm "
          f"{timm_rate * flops / peak:.1%}  ({time.perf_counter() - start:.0f} s)", flush=True)
    del net, peer, run
    if _DEVICE.value != "cpu":
      torch.cuda.empty_cache()


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
