"""Distribution strategy selection and the matching precision policy.

``make_strategy('auto')`` picks, in order:
  1. ``TPUStrategy`` when a TPU is named (``tpu=`` argument, or the ``TPU_NAME``
     environment variable that Cloud TPU VMs and GKE set);
  2. ``MirroredStrategy`` over all local GPUs when there are two or more;
  3. ``OneDeviceStrategy`` on the single GPU, or on the CPU.

Failures are raised as ``StrategyError`` with a one-line message; the CLI
prints it and exits 2. Asking for a TPU without naming one fails at once,
before any connection is attempted.

TPU names follow TensorFlow's ``TPUClusterResolver``: the exact string
``'local'`` is the TPU attached to this VM (a single-host TPU VM); any other
name is a Cloud TPU that this one process drives over the network. On a
multi-host slice that is the single-client form: one process, on worker 0,
names the slice (run it with ``TPU_LOAD_LIBRARY=0`` so it leaves the local
chips to the slice's runtime; tpu_scripts/launch.sh does this). ``''`` is never
passed: TensorFlow would ask the Cloud TPU API for a name and fail.
"""

from __future__ import annotations

import os

import tensorflow as tf

from reproduce.core.errors import UserError

STRATEGY_KINDS = ("auto", "tpu", "mirrored", "one_device")
TPU_ENV_VARS = ("TPU_NAME",)


class StrategyError(UserError, RuntimeError):
  """A strategy could not be created; the message is one line."""


def configured_tpu(tpu: str | None = None) -> str | None:
  """The TPU name from the argument or the environment, else None."""
  if tpu:
    return tpu
  for name in TPU_ENV_VARS:
    if os.environ.get(name):
      return os.environ[name]
  return None


def _one_line(error: BaseException) -> str:
  text = str(error).strip().splitlines()
  return f"{type(error).__name__}: {text[0] if text else ''}"


def tpu_cluster_resolver(name: str) -> tf.distribute.cluster_resolver.TPUClusterResolver:
  """The resolver for ``name``: 'local' (the attached TPU) or a Cloud TPU name, as given."""
  return tf.distribute.cluster_resolver.TPUClusterResolver(tpu=name)


def _tpu_strategy(tpu: str | None) -> tf.distribute.Strategy:
  name = configured_tpu(tpu)
  if not name:
    raise StrategyError(
        "no TPU named: pass --tpu=NAME (or --tpu=local on a TPU VM) or set TPU_NAME")
  try:
    resolver = tpu_cluster_resolver(name)
    # TensorFlow's sequence; connecting is a no-op for 'local' (its master is '').
    tf.config.experimental_connect_to_cluster(resolver)
    tf.tpu.experimental.initialize_tpu_system(resolver)
    return tf.distribute.TPUStrategy(resolver)
  except Exception as e:  # resolver/initialisation errors come in many types
    raise StrategyError(f"cannot use TPU {name!r}: {_one_line(e)}") from None


def make_strategy(kind: str = "auto", tpu: str | None = None) -> tf.distribute.Strategy:
  """Creates the distribution strategy.

  Args:
    kind: 'auto', 'tpu', 'mirrored' or 'one_device'.
    tpu: TPU name or 'local' (TPU VM); also read from TPU_NAME when None.

  Returns:
    A ``tf.distribute.Strategy``.

  Raises:
    StrategyError: unknown kind, no TPU named, or the TPU cannot be reached.
  """
  if kind not in STRATEGY_KINDS:
    raise StrategyError(f"unknown strategy {kind!r}; choose one of {', '.join(STRATEGY_KINDS)}")
  if kind == "tpu" or (kind == "auto" and configured_tpu(tpu)):
    return _tpu_strategy(tpu)
  gpus = tf.config.list_logical_devices("GPU")
  if kind == "mirrored" or (kind == "auto" and len(gpus) > 1):
    # Mirrored over all local devices of one kind: GPUs, else logical CPUs.
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=devices)
  device = gpus[0].name if gpus else "/cpu:0"
  return tf.distribute.OneDeviceStrategy(device)


def is_tpu(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, (tf.distribute.TPUStrategy, tf.distribute.experimental.TPUStrategy))


def is_mirrored(strategy: tf.distribute.Strategy) -> bool:
  return isinstance(strategy, tf.distribute.MirroredStrategy)


def policy_for(strategy: tf.distribute.Strategy) -> str:
  """Keras dtype policy: bf16 activations on TPU (as NFNets), float32 elsewhere.

  GPUs stay in float32: float16 would need loss scaling, and bf16 is only a
  win on recent GPUs; set ``config.dtype_policy`` to override.
  """
  return "mixed_bfloat16" if is_tpu(strategy) else "float32"


def supports_jit(strategy: tf.distribute.Strategy) -> bool:
  """XLA inside the train step: off under Mirrored (fails on logical CPUs)."""
  return not is_mirrored(strategy)


def jit_within_step(strategy: tf.distribute.Strategy) -> bool:
  """Whether the step may hold XLA-compiled functions: not under Mirrored
  (``supports_jit``), and on TPUs the whole step is compiled anyway."""
  return supports_jit(strategy) and not is_tpu(strategy)


def on_gpu(strategy: tf.distribute.Strategy) -> bool:
  """Whether the strategy's replicas run on GPUs."""
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # the default strategy: TensorFlow's own placement, a GPU if any
    return bool(tf.config.list_logical_devices("GPU"))
  return any("GPU" in device.upper() for device in devices)
