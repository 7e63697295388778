"""Where the engine's train step spends its time: seconds per op type and the costliest ops.

  PYTHONPATH=$PWD python benchmarks/op_profile.py --model=nfnet_f0 --threads=1
  PYTHONPATH=$PWD python benchmarks/op_profile.py --model=nfnet_f0 --precision=bfloat16
  PYTHONPATH=$PWD python benchmarks/op_profile.py --model=vit_mini_s --jit_compile=false

Builds the step ``throughput_vs_timm.py`` times (``reproduce.train.throughput.engine_step``,
the family's recipe optimizer, a fixed random batch), warms it up, times it, then records
``--steps`` more steps with ``tf.profiler`` and sums the duration of every TensorFlow op
executed, by op type and by op (``trace_ops.op_seconds``).

This is how the per-group slices of the NFNets' split grouped convolutions were found (13% of
an NFNet-F0 CPU step in ``StridedSliceGrad``; BENCHMARKS.md, run J). Under XLA the step is one
compiled cluster, so the table shows little; profile with ``--jit_compile=false``.
A script, not a test.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags

from reproduce.core import cli
from reproduce.core import cpu

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import peers  # pylint: disable=g-import-not-at-top,wrong-import-position
import trace_ops  # pylint: disable=g-import-not-at-top,wrong-import-position

_MODEL = flags.DEFINE_string("model", "nfnet_f0", "kit model")
_RESOLUTION = flags.DEFINE_integer("resolution", 128, "full models' resolution (minis: their own)")
_BATCH = flags.DEFINE_integer("batch", 16, "batch size")
_STEPS = flags.DEFINE_integer("steps", 2, "profiled steps (also the number timed before)")
_WARMUP = flags.DEFINE_integer("warmup", 2, "untimed steps first (tracing, allocation)")
_THREADS = flags.DEFINE_integer("threads", 0, "TF intra- and inter-op threads (0: TF's default, "
                                "all cores)")
_JIT = flags.DEFINE_enum("jit_compile", "false", ["true", "false"], "kit XLA")
_PRECISION = flags.DEFINE_enum("precision", "float32", ["float32", "bfloat16"],
                               "float32, or the kit's mixed_bfloat16 policy")
_TOP = flags.DEFINE_integer("top", 25, "rows of each table")


def _step():
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce.train import throughput  # pylint: disable=g-import-not-at-top
  spec = model_defs.get_spec(_MODEL.value)
  resolution = spec.train_resolution if spec.mini else _RESOLUTION.value
  config = dict(peers.kit_config(_MODEL.value), jit_compile=_JIT.value == "true")
  if _PRECISION.value == "bfloat16":
    config["dtype_policy"] = "mixed_bfloat16"
  return throughput.engine_step(_MODEL.value, _BATCH.value, resolution, total_steps=1000,
                                config=config), resolution


def main(argv):
  cli.refuse_stray_arguments(argv)
  tf = cli.import_tensorflow()
  import model_defs  # pylint: disable=g-import-not-at-top
  if _MODEL.value not in model_defs.names():
    cli.fail(f"--model: unknown model {_MODEL.value!r}; known: {', '.join(model_defs.names())}")
  for name, value, least in (("steps", _STEPS.value, 1), ("batch", _BATCH.value, 1),
                             ("resolution", _RESOLUTION.value, 1), ("warmup", _WARMUP.value, 0),
                             ("threads", _THREADS.value, 0), ("top", _TOP.value, 1)):
    if value < least:
      cli.fail(f"--{name}: expected an integer >= {least}, got {value}")
  if _THREADS.value:
    tf.config.threading.set_intra_op_parallelism_threads(_THREADS.value)
    tf.config.threading.set_inter_op_parallelism_threads(_THREADS.value)
  step, resolution = _step()
  for _ in range(_WARMUP.value):
    step()
  seconds = []
  for _ in range(_STEPS.value):
    start = time.perf_counter()
    step()
    seconds.append(time.perf_counter() - start)
  step_s = statistics.median(seconds)
  with tempfile.TemporaryDirectory() as logdir:
    tf.profiler.experimental.start(logdir)
    for _ in range(_STEPS.value):
      step()
    tf.profiler.experimental.stop()
    by_type, count, by_op = trace_ops.op_seconds(logdir, _STEPS.value)
  print(f"cpu: {cpu.describe()}")
  print(f"{_MODEL.value} {resolution}px batch {_BATCH.value} {_PRECISION.value} threads "
        f"{_THREADS.value or 'all'} XLA {_JIT.value}: step {step_s * 1e3:.1f} ms ({_BATCH.value / step_s:.2f} img/s); "
        f"op time {sum(by_type.values()) * 1e3:.1f} ms per profiled step (profiling adds a "
        f"little; % step below is of the timed step)")
  print(f"{'ms/step':>9} {'% step':>7} {'ops/step':>8}  op type")
  for op_type, s in by_type.most_common(_TOP.value):
    print(f"{s * 1e3:9.2f} {s / step_s:7.1%} {count[op_type]:8.0f}  {op_type}")
  print(f"{'ms/step':>9}  costliest ops")
  for name, s in by_op.most_common(_TOP.value):
    print(f"{s * 1e3:9.2f}  {name}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
