"""Accelerator kinds: peak FLOP/s per core, cores per device, and the name of their core hours.

Pure data and arithmetic: the analysis package imports ``compute_unit`` from here, so this
module imports neither ``model_defs`` nor TensorFlow at import time (the measured CPU peak
imports TensorFlow when first asked for).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time

from reproduce.core import cli
from reproduce.planning.errors import PlanError


@dataclasses.dataclass(frozen=True)
class Hardware:
  """One accelerator kind.

  Attributes:
    name: key used by ``--hardware``.
    display_name: how plots and fits.json name it ("TPU-v4" in "TPU-v4 core hours").
    peak_flops_per_core: theoretical dense bf16 FLOP/s of one core (None: measured, cpu).
    core: what one "core" is for core-hour accounting.
    cores_per_device: cores behind one framework device (= one replica): 2 for megacore
      TPUs (v4, v5p) whose two TensorCores TF/JAX expose as one device.
    mfu_scale: this hardware's utilisation relative to the calibrated TPU-v4 anchor.
    source: where the peak comes from, and notes.
    fixed_mfu: the MFU of a unit defined by FLOPs (``cpu_ref``) instead of the anchor's.
  """
  name: str
  display_name: str
  peak_flops_per_core: float | None
  core: str
  cores_per_device: int
  mfu_scale: float
  source: str
  fixed_mfu: float | None = None

  @property
  def mfu_calibrated(self) -> bool:
    """Whether the paper's anchor calibrates this kind's MFU (TPUs); else plans measure."""
    return self.name.startswith("tpu_")


# The accelerator of the paper's runs, whose core hours every published budget counts: the
# planner's default.
PAPER_HARDWARE = "tpu_v4"
_TC = "one TensorCore"
REFERENCE_CORE_FLOPS = 1e10  # training FLOP/s of one reference-CPU core (``cpu_ref``)
HARDWARE: dict[str, Hardware] = {h.name: h for h in (
    Hardware("tpu_v2", "TPU-v2", 45e12 / 2, _TC, 1, 1.0,
             "45 TFLOP/s bf16 per chip, 2 TensorCores per chip (Cloud TPU docs; Jouppi et al. "
             "CACM 2020)"),
    Hardware("tpu_v3", "TPU-v3", 123e12 / 2, _TC, 1, 1.0,
             "123 TFLOP/s bf16 per chip, 2 TensorCores per chip (Cloud TPU docs; Jouppi et al. "
             "ISCA 2023). The anchor MFU predicts ~246k v3 core hours for F7+ vs the paper's 250k"),
    Hardware("tpu_v4", "TPU-v4", 275e12 / 2, _TC, 2, 1.0,
             "275 TFLOP/s bf16 per chip, 2 TensorCores per chip (megacore: one device per chip) "
             "(Jouppi et al. ISCA 2023). 2.24x a v3 core: the paper's 'roughly double' "
             "(footnote 1). MFU calibration anchor"),
    Hardware("tpu_v5e", "TPU-v5e", 197e12, _TC, 1, 1.0,
             "197 TFLOP/s bf16 per chip, 1 TensorCore per chip (Cloud TPU v5e docs)"),
    Hardware("tpu_v5p", "TPU-v5p", 459e12 / 2, _TC, 2, 1.0,
             "459 TFLOP/s bf16 per chip, 2 TensorCores per chip (megacore) (Cloud TPU v5p docs)"),
    Hardware("tpu_v6e", "TPU-v6e", 918e12, _TC, 1, 1.0,
             "918 TFLOP/s bf16 per chip, 1 TensorCore per chip (Cloud TPU v6e Trillium docs)"),
    Hardware("gpu_a100", "A100 GPU", 312e12, "one GPU", 1, 1.0,
             "312 TFLOP/s dense bf16 (NVIDIA A100 datasheet; 624 is with sparsity)"),
    Hardware("gpu_h100", "H100 GPU", 989e12, "one GPU", 1, 1.0,
             "989 TFLOP/s dense bf16, SXM5 (NVIDIA H100 datasheet; 1979 is with sparsity; "
             "PCIe: 756)"),
    Hardware("gpu_h200", "H200 GPU", 989e12, "one GPU", 1, 1.0,
             "989 TFLOP/s dense bf16, SXM (NVIDIA H200 datasheet: same compute as H100 SXM)"),
    # A unit, not a machine: the study's budgets are FLOPs, and this names them in core
    # seconds (at MFU 1, one core-second is REFERENCE_CORE_FLOPS of training compute), as the
    # paper's TPU-v4 core hours are FLOPs at its calibrated MFU. Close to what a core of the
    # 2-core CI machines trains the mini NFNets at (docs/study.md).
    Hardware("cpu_ref", "reference-CPU", REFERENCE_CORE_FLOPS,
             "a nominal core doing 1e10 training FLOP/s (3x forward FLOPs), MFU 1", 1, 1.0,
             "the miniature study's compute unit: FLOPs / 1e10 = core-seconds; no measurement",
             fixed_mfu=1.0),
    Hardware("cpu", "CPU", None, "the host CPU as one TF device (all its threads)", 1, 1.0,
             "peak measured on the spot: best float32 1024^3 matmul rate, cached per process"),
)}


def get_hardware(name: str) -> Hardware:
  """The hardware entry ``name``; unknown names raise ``PlanError`` listing the known ones."""
  try:
    return HARDWARE[name]
  except KeyError:
    raise PlanError("hardware", f"={name} is unknown; known: "
                    f"{', '.join(HARDWARE)}") from None


def compute_unit(hardware: str | None) -> str:
  """The unit name of core hours on ``hardware`` (e.g. ``"TPU-v4 core hours"``).

  Compute in different units is never fitted or plotted on one axis; an unknown kind keeps
  its own name (``"<name> core hours"``).
  """
  entry = HARDWARE.get(str(hardware))
  name = entry.display_name if entry else str(hardware)
  return f"{name} core hours"


@functools.lru_cache(maxsize=None)
def measured_cpu_peak_flops(size: int = 1024, repeats: int = 8) -> float:
  """Peak float32 FLOP/s of this process's CPU device: the best of ``repeats`` matmuls."""
  tf = cli.import_tensorflow()  # only CPU plans pay for TensorFlow
  with tf.device("/CPU:0"):
    a = tf.random.normal((size, size), dtype=tf.float32)
    b = tf.random.normal((size, size), dtype=tf.float32)
    tf.linalg.matmul(a, b).numpy()  # warm-up: thread pool start, kernel selection
    best = math.inf
    for _ in range(repeats):
      start = time.perf_counter()
      tf.linalg.matmul(a, b).numpy()
      best = min(best, time.perf_counter() - start)
  return 2.0 * size ** 3 / best


def peak_flops_per_core(hardware: str) -> float:
  """Theoretical (or, for cpu, measured) peak FLOP/s of one core of ``hardware``."""
  entry = get_hardware(hardware)
  if entry.peak_flops_per_core is None:
    return measured_cpu_peak_flops()
  return entry.peak_flops_per_core
