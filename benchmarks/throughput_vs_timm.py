"""Training throughput of this kit against timm in the same run, with MFU and the planner.

For each pair (kit model, timm counterpart of the same architecture) it builds the engine's
own train step (``reproduce.train.throughput.engine_step``: model, recipe optimizer, loss,
XLA and precision as the config says) and timm's (``peers.peer_step``), each in its own worker
process (in one process torch's OpenMP threads and TensorFlow's pool spin against each other
on 2 cores: timm measured up to 100x slower), warms both up, then steps them alternately,
so that load from other processes hits both alike.
Prints images/s (median of the timed steps), kit/timm ratio, MFU of each side (training
FLOPs from ``model_defs.stats`` x 3 over the peak of a large TensorFlow matmul measured in
the same run) and the planner's predicted images/s for the same model on this machine.

  PYTHONPATH=$PWD python benchmarks/throughput_vs_timm.py                 # float32, defaults
  PYTHONPATH=$PWD python benchmarks/throughput_vs_timm.py --precision=bfloat16
  PYTHONPATH=$PWD python benchmarks/throughput_vs_timm.py --pairs=nfnet_mini_f0 --steps=2 --dry

A script, not a test: BENCHMARKS.md has the figures and what each setting changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from absl import app
from absl import flags

from reproduce.core import cli
from reproduce.core import cpu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # pylint: disable=g-import-not-at-top,wrong-import-position

_PAIRS = flags.DEFINE_list("pairs", list(peers.DEFAULT_PAIRS), "kit models, each against timm")
_BATCH = flags.DEFINE_integer("batch", 16, "batch size, both sides")
_RESOLUTION = flags.DEFINE_integer("resolution", 128, "full models' resolution (minis: their own)")
_STEPS = flags.DEFINE_integer("steps", 6, "timed steps per side")
_WARMUP = flags.DEFINE_integer("warmup", 2, "untimed steps per side (tracing, allocation)")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                               "float32 both sides, or bf16 (kit mixed_bfloat16, timm autocast)")
_JIT = flags.DEFINE_enum("jit_compile", "auto", ["auto", "true", "false"],
                         "kit XLA: auto = as the kit's config trains the model (minis: the "
                         "study's family config; full-size: base config, off)")
_GROUPED = flags.DEFINE_enum("grouped_impl", None, ["auto", "split", "native"],
                             "NFNet grouped convs (None: the model's default)")
_THREADS = flags.DEFINE_integer("threads", 0, "threads per side: torch's, TF's intra- and inter-op "
                                "pools (0: each framework's default, all cores)")
_DRY = flags.DEFINE_bool("dry", False, "one step each, no planner/MFU peak: checks it runs")
_WORKER = flags.DEFINE_string("worker", None, "internal: serve one SIDE:MODEL's steps on stdin")


def _kit_config(model: str) -> dict:
  config = peers.kit_config(model)
  if _PRECISION.value == "bfloat16":
    config["dtype_policy"] = "mixed_bfloat16"
  if _JIT.value != "auto":
    config["jit_compile"] = _JIT.value == "true"
  if _GROUPED.value and peers.family(model) == "nfnet":
    config["model_overrides"] = {"grouped_impl": _GROUPED.value}
  return config


def _peak_flops(precision: str) -> float:
  """Best rate of a 2048^3 TensorFlow matmul in ``precision`` (the MFU denominator)."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  size, best = 2048, float("inf")
  dtype = tf.bfloat16 if precision == "bfloat16" else tf.float32
  a = tf.cast(tf.random.normal((size, size)), dtype)
  b = tf.cast(tf.random.normal((size, size)), dtype)
  tf.linalg.matmul(a, b).numpy()
  for _ in range(5):
    start = time.perf_counter()
    tf.linalg.matmul(a, b).numpy()
    best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def _build_side(side: str, model: str):
  """(step callable, parameter count) of one side, built in this (worker) process."""
  import model_defs  # pylint: disable=g-import-not-at-top
  spec = model_defs.get_spec(model)
  resolution = spec.train_resolution if spec.mini else _RESOLUTION.value
  if side == "kit":
    from reproduce.train import throughput  # pylint: disable=g-import-not-at-top
    step = throughput.engine_step(model, _BATCH.value, resolution, total_steps=1000,
                                  config=_kit_config(model))
    return step, model_defs.stats(model, resolution).params
  net = peers.peer_model(model, dict(spec.config), resolution)
  return peers.peer_step(net, model, _BATCH.value, resolution, _PRECISION.value), \
      peers.param_count(net)


def _serve(side: str, model: str) -> None:
  """Worker: build one side, say 'ready PARAMS', then run one step per line read."""
  if _THREADS.value and side == "peer":
    import torch  # pylint: disable=g-import-not-at-top
    torch.set_num_threads(_THREADS.value)
  elif _THREADS.value:  # both pools: with intra-op 1 alone, inter-op still runs 2 ops at once
    import tensorflow as tf  # pylint: disable=g-import-not-at-top
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  step, params = _build_side(side, model)
  # The MFU denominator, measured by the kit's process (its threads, the load of the moment).
  peak = _peak_flops(_PRECISION.value) if side == "kit" and not _DRY.value else 0.0
  print(f"ready {params} {peak}", flush=True)
  for _ in sys.stdin:
    print(step(), flush=True)


class _Worker:
  """One side in its own process (TensorFlow's and torch's thread pools never share one)."""

  def __init__(self, side: str, model: str):
    flags_passed = [a for a in sys.argv[1:] if not a.startswith("--pairs")]
    self.process = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), f"--worker={side}:{model}", *flags_passed],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    _, params, peak = self._reply().split()
    self.params, self.peak = int(params), float(peak)

  def _reply(self) -> str:
    line = self.process.stdout.readline()
    if not line:
      raise RuntimeError(f"worker {self.process.args[2]} died")
    return line

  def step(self) -> float:
    self.process.stdin.write("step\n")
    self.process.stdin.flush()
    return float(self._reply())

  def close(self) -> None:
    self.process.stdin.close()
    self.process.wait()


def _measure_pair(model: str) -> dict:
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce import planning  # pylint: disable=g-import-not-at-top
  from reproduce.configs import base  # pylint: disable=g-import-not-at-top
  spec = model_defs.get_spec(model)
  resolution = spec.train_resolution if spec.mini else _RESOLUTION.value
  batch, warmup, steps = _BATCH.value, _WARMUP.value, _STEPS.value
  if _DRY.value:
    warmup, steps = 1, 1
  kit, peer = _Worker("kit", model), _Worker("peer", model)
  try:
    kit_s, peer_s = peers.interleaved(kit.step, peer.step, warmup, steps)
  finally:
    kit.close()
    peer.close()
  row = dict(model=model, resolution=resolution, kit_params=kit.params, peer_params=peer.params,
             peer_name=peers.TIMM_NAMES[model] or f"timm {peers.family(model)} (same row)",
             kit=batch / kit_s, peer=batch / peer_s, peak=kit.peak,
             xla=bool(_kit_config(model).get("jit_compile", base.get_config().jit_compile)))
  if kit.peak:
    peak = kit.peak
    flops = planning.train_flops_per_image(model, resolution)
    row.update(kit_mfu=row["kit"] * flops / peak, peer_mfu=row["peer"] * flops / peak)
    row["planned"] = planning.plan_from_epochs(
        model, 1.0, dataset_size=1_281_167, hardware="cpu", batch_size=batch,
        resolution=resolution).images_per_second_per_core
  return row


def _print_row(row: dict) -> None:
  line = (f"{row['model']:>14} vs {row['peer_name']:<34} {row['resolution']:>4}px "
          f"params {row['kit_params'] / 1e6:7.2f}M/{row['peer_params'] / 1e6:7.2f}M  "
          f"kit{' (XLA)' if row['xla'] else ''} {row['kit']:8.2f}  timm {row['peer']:8.2f} img/s  ratio {row['kit'] / row['peer']:.2f}")
  if "kit_mfu" in row:
    line += (f"  MFU kit {row['kit_mfu']:.1%} timm {row['peer_mfu']:.1%} (peak "
             f"{row['peak'] / 1e9:.0f} GFLOP/s)  planner "
             f"{row['planned']:.2f} img/s (measured/planned {row['kit'] / row['planned']:.2f})")
  print(line, flush=True)


def main(argv):
  cli.refuse_stray_arguments(argv)
  if _WORKER.value:
    side, model = _WORKER.value.split(":")
    if side == "peer":
      import timm  # pylint: disable=g-import-not-at-top,unused-import
      # timm (torchvision) before model_defs' Keras imports TensorFlow: else a segfault.
      _serve(side, model)
      return
    cli.import_tensorflow()
    _serve(side, model)
    return
  pairs_error = peers.pairs_error(_PAIRS.value)
  if pairs_error:
    cli.fail(pairs_error)
  print(f"cpu: {cpu.describe()}", flush=True)
  print(f"load {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; batch {_BATCH.value}; "
        f"{_PRECISION.value}; kit jit {_JIT.value}; threads {_THREADS.value or 'all'}; peak: "
        f"{_PRECISION.value} 2048^3 TF matmul" + ("; dry run" if _DRY.value else ""), flush=True)
  for model in _PAIRS.value:
    _print_row(_measure_pair(model))
  print(f"load {os.getloadavg()[0]:.2f} at the end", flush=True)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
