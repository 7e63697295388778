"""Scaffolding shared by the model families: output sizes, overrides, stochastic depth.

  conv_output_size     spatial size after a convolution or pooling window
  resolve_config       merge build/count overrides into a variant config and validate it
  stochdepth_rates     per-block drop rates, growing linearly with depth
  StochasticDepth      per-example residual-branch drop (NFNet: not rescaled; ViT: rescaled)
  gelu                 GELU (erf or tanh form) with a closed-form gradient, in float32
  elementwise_compiler within it, ``gelu`` runs through a compiler an engine chose
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Any, Callable, Collection, Mapping

import keras
from keras import ops

# Options every family validates as probabilities in [0, 1).
RATE_OPTIONS = ("dropout_rate", "stochdepth_rate")


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_TANH_CUBIC = 0.044715  # the tanh form's cubic coefficient (Hendrycks & Gimpel)
# Set by ``elementwise_compiler`` while a training engine traces its step; per thread (and
# task), as a strategy may trace its replicas' steps in threads of their own.
_elementwise_compiler = contextvars.ContextVar("elementwise_compiler", default=None)


@contextlib.contextmanager
def elementwise_compiler(compiler: Callable | None):
  """Within it, ``gelu`` runs as ``compiler(fn)(x)`` (None: as it is).

  Why: run op by op, a GELU is a pass over the activations per elementwise op, forward and
  backward; a compiler can make it one kernel each way. The model code stays
  backend-neutral: the engine, which knows its backend, device and whether its step is
  compiled whole, chooses (``reproduce.train.steps.activation_compiler``).
  """
  token = _elementwise_compiler.set(compiler)
  try:
    yield
  finally:
    _elementwise_compiler.reset(token)


def gelu(x, approximate: bool, scale: float = 1.0):
  """``scale * GELU(x)``: exact (``x * Phi(x)``, timm's) or the tanh form (flax's, NFNets').

  Why not ``keras.ops.gelu``: TensorFlow composes it from about eight elementwise ops, and
  autodiff adds twice as many (a ``Pow`` and its gradient among them); in bfloat16 on a CPU
  the transcendentals run through slow scalar conversions. Here the forward pass is a few
  ops on float32 whatever the input's dtype (the tanh form as ``x * sigmoid(2 z)``, equal
  to ``0.5 x (1 + tanh z)``), and the gradient is the closed form from the saved sigmoid or
  normal CDF: 1.3x (float32) to 2x (bfloat16) faster, forward and backward, on a 2-core
  Xeon (BENCHMARKS.md). The same function up to float rounding.
  """
  shape = _gelu_tanh_parts if approximate else _gelu_erf_parts

  @ops.custom_gradient
  def scaled_gelu(x32):
    gate, slope = shape(x32)

    def grad(*args, upstream=None):
      upstream = args[0] if upstream is None else upstream
      return upstream * (scale * (gate + x32 * slope()))

    return (scale * x32) * gate, grad

  def scaled_gelu_as_input(x):
    return ops.cast(scaled_gelu(ops.cast(x, "float32")), x.dtype)

  compiler = _elementwise_compiler.get()
  return scaled_gelu_as_input(x) if compiler is None else compiler(scaled_gelu_as_input)(x)


def _gelu_tanh_parts(x):
  """(gate, derivative of the gate): GELU = x * gate with gate = sigmoid(2 z(x))."""
  gate = ops.sigmoid((2.0 * _SQRT_2_OVER_PI) * (x + _TANH_CUBIC * x * ops.square(x)))
  return gate, lambda: gate * (1.0 - gate) * ((2.0 * _SQRT_2_OVER_PI) * (
      1.0 + (3.0 * _TANH_CUBIC) * ops.square(x)))


def _gelu_erf_parts(x):
  """(gate, derivative of the gate): GELU = x * Phi(x), Phi' the normal density."""
  cdf = 0.5 * (1.0 + ops.erf(x * (1.0 / math.sqrt(2.0))))
  return cdf, lambda: ops.exp(-0.5 * ops.square(x)) * (1.0 / math.sqrt(2.0 * math.pi))


def conv_output_size(size: int | None, kernel: int, stride: int,
                     padding: str = "same") -> int | None:
  """Spatial output size of a convolution or pooling window (None stays None)."""
  if size is None:  # a symbolic (any-resolution) Keras shape
    return None
  if padding == "same":
    return math.ceil(size / stride)
  if padding == "valid":
    return (size - kernel) // stride + 1
  raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")


def resolve_config(config: Mapping[str, Any], overrides: Mapping[str, Any], *,
                   family: str, allowed: Collection[str],
                   normalise: Callable[[dict[str, Any]], None],
                   none_overrides: Collection[str] = ()) -> dict[str, Any]:
  """Merges ``overrides`` into a copy of ``config`` and validates the result.

  An override of None keeps the config's value, except for the keys in
  ``none_overrides`` (options whose None means "off"). ``normalise(cfg)`` applies the
  family's own rules in place (and raises ValueError); the rates are checked last.

  Raises:
    ValueError: for an unknown override or an invalid option value.
  """
  unknown = sorted(set(overrides) - set(allowed))
  if unknown:
    raise ValueError(f"unknown {family} override(s) {unknown}; allowed: {list(allowed)}")
  cfg = dict(config)
  cfg.update({k: v for k, v in overrides.items() if v is not None or k in none_overrides})
  normalise(cfg)
  for key in RATE_OPTIONS:
    if not 0.0 <= float(cfg[key]) < 1.0:
      raise ValueError(f"{key} must be in [0, 1), got {cfg[key]!r}")
  return cfg


def stochdepth_rates(rate: float, num_blocks: int, *, last_block_gets_rate: bool) -> list[float]:
  """Drop rate of each residual block, ``rate * i / denominator`` for block i = 0, 1, ...

  The first block is never dropped. The official NFNet code divides by the number of
  blocks (the last block stays below ``rate``); timm/big_vision ViTs use
  ``linspace(0, rate, num_blocks)``, so the last block gets ``rate`` exactly.
  """
  denominator = max(num_blocks - 1, 1) if last_block_gets_rate else num_blocks
  return [rate * i / denominator for i in range(num_blocks)]


# Registered under its original package name so that saved models keep loading.
@keras.saving.register_keras_serializable(package="nfnet")
class StochasticDepth(keras.layers.Layer):
  """Drops the whole residual branch of each example with probability ``rate``.

  ``scale_by_keep=False`` is the official NFNet ``StochDepth``: kept examples are not
  rescaled by ``1/(1-rate)``. ``scale_by_keep=True`` is timm/big_vision's DropPath used by
  the ViTs. Identity at inference. Works on inputs of any rank (one draw per example).
  """

  def __init__(self, rate: float = 0.0, seed: int | None = None, scale_by_keep: bool = False,
               **kwargs):
    super().__init__(**kwargs)
    if not 0.0 <= rate < 1.0:
      raise ValueError(f"stochastic depth rate must be in [0, 1), got {rate!r}")
    self.rate = float(rate)
    self.seed = seed
    self.scale_by_keep = bool(scale_by_keep)
    self.seed_generator = keras.random.SeedGenerator(seed)

  def call(self, x, training=None):
    if not training or self.rate == 0.0:
      return x
    keep = 1.0 - self.rate
    shape = (ops.shape(x)[0],) + (1,) * (len(x.shape) - 1)
    keep_mask = ops.floor(keep + keras.random.uniform(shape, seed=self.seed_generator,
                                                      dtype=x.dtype))
    return x * keep_mask / keep if self.scale_by_keep else x * keep_mask

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "rate": self.rate, "seed": self.seed,
            "scale_by_keep": self.scale_by_keep}
