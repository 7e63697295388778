"""NFNet building blocks written with ``keras.layers`` / ``keras.ops`` only.

Everything here runs unchanged on the TensorFlow and JAX backends.

Layers:
  ScaledWSConv2D     convolution with Scaled Weight Standardisation (grouped or dense).
  GammaActivation    activation multiplied by its signal-preserving gain gamma.
  SqueezeExcite      SE gate used by NFNet blocks, output ``2 * sigmoid(...) * h``.
(Stochastic depth, shared with the ViTs, is ``model_defs.common.StochasticDepth``.)

Two deliberate, documented differences from timm's ``dm_nfnet_*`` models exist; both
default to the official DeepMind JAX code and can be switched to timm's semantics:
  * GELU: the official code uses ``jax.nn.gelu`` (tanh approximation); timm uses the
    exact erf GELU. ``GammaActivation(..., gelu_approximate=False)`` selects exact.
    Both use the same gamma 1.7015043497085571 (computed for the tanh form).
  * Weight-standardisation epsilon: the official code computes
    ``(w - mean) * gain * rsqrt(max(fan_in * var, 1e-4))`` (``ws_eps_mode='official'``);
    timm computes ``(w - mean) * gain * rsqrt(var + 1e-5) / sqrt(fan_in)``
    (``ws_eps_mode='timm'``). They differ when ``var`` is not far above ``eps``.

Grouped convolutions keep one kernel of HWIO shape ``(kh, kw, in/groups, out)``. How
it is executed is a per-device choice that never changes the weights:
  * ``'split'``: slice input and kernel per group, run dense convs, concatenate. On CPU
    this is 2-4x faster in training (TensorFlow has no CPU gradient kernel for grouped
    convs and falls back to a slow path; BENCHMARKS.md, run G2).
  * ``'native'``: one grouped ``keras.ops.conv`` call (fast on GPU/TPU).
  * ``'auto'`` (default): ``'split'`` unless a GPU or TPU is visible.
Set it with ``set_grouped_conv_impl`` before the model is first called (it is read
when the forward pass is traced).
"""

from __future__ import annotations

import contextlib
import math

import keras
from keras import ops

from model_defs.common import conv_output_size
from model_defs.common import gelu

GROUPED_CONV_IMPLS = ("auto", "split", "native")
WS_EPS_MODES = ("official", "timm")

# Default epsilon of each weight-standardisation mode (official base.py; timm NfCfg.std_conv_eps).
WS_DEFAULT_EPS = {"official": 1e-4, "timm": 1e-5}

# gamma = 1 / std(act(z)) for z ~ N(0, 1), from the official nfnets/base.py
# (GELU's constant was computed for the tanh-approximated GELU).
ACTIVATION_GAMMAS = {
    "identity": 1.0,
    "celu": 1.270926833152771,
    "elu": 1.2716004848480225,
    "gelu": 1.7015043497085571,
    "leaky_relu": 1.70590341091156,
    "log_sigmoid": 1.9193484783172607,
    "relu": 1.7139588594436646,
    "relu6": 1.7131484746932983,
    "selu": 1.0008515119552612,
    "sigmoid": 4.803835391998291,
    "silu": 1.7881293296813965,
    "softsign": 2.338853120803833,
    "softplus": 1.9203323125839233,
    "tanh": 1.5939117670059204,
}

_grouped_conv_impl = "auto"


def set_grouped_conv_impl(impl: str) -> None:
  """Sets how grouped convolutions run: 'auto', 'split' or 'native'.

  Args:
    impl: 'split' (per-group dense convs + concat, fast on CPU), 'native' (one grouped
      conv, fast on GPU/TPU) or 'auto' (split unless a GPU/TPU is visible).
  """
  global _grouped_conv_impl
  if impl not in GROUPED_CONV_IMPLS:
    raise ValueError(f"grouped conv impl must be one of {GROUPED_CONV_IMPLS}, got {impl!r}")
  _grouped_conv_impl = impl


def get_grouped_conv_impl() -> str:
  """The module-level setting ('auto', 'split' or 'native')."""
  return _grouped_conv_impl


@contextlib.contextmanager
def grouped_conv_impl(impl: str):
  """Context manager that temporarily sets the grouped-conv implementation."""
  previous = _grouped_conv_impl
  set_grouped_conv_impl(impl)
  try:
    yield
  finally:
    set_grouped_conv_impl(previous)


def accelerator_available() -> bool:
  """True when the Keras backend sees a GPU or TPU."""
  try:
    devices = keras.distribution.list_devices()
  except Exception:  # Backends without distribution support: assume CPU.
    return False
  return any(not str(d).lower().startswith("cpu") for d in devices)


def resolve_grouped_conv_impl(impl: str | None = None) -> str:
  """Turns a setting (None = the module-level one) into 'split' or 'native'."""
  impl = _grouped_conv_impl if impl is None else impl
  if impl not in GROUPED_CONV_IMPLS:
    raise ValueError(f"grouped conv impl must be one of {GROUPED_CONV_IMPLS}, got {impl!r}")
  if impl == "auto":
    return "native" if accelerator_available() else "split"
  return impl


def _activation_fn(name: str, gelu_approximate: bool):
  """The plain (unscaled) activation function called ``name``."""
  functions = {
      "identity": lambda x: x,
      "celu": ops.celu,
      "elu": ops.elu,
      "gelu": lambda x: gelu(x, gelu_approximate),
      # jax.nn.leaky_relu's slope; keras' default (0.2) would break the gamma.
      "leaky_relu": lambda x: ops.leaky_relu(x, negative_slope=0.01),
      "log_sigmoid": ops.log_sigmoid,
      "relu": ops.relu,
      "relu6": ops.relu6,
      "selu": ops.selu,
      "sigmoid": ops.sigmoid,
      "silu": ops.silu,
      "softsign": ops.softsign,
      "softplus": ops.softplus,
      "tanh": ops.tanh,
  }
  if name not in functions:
    raise ValueError(f"unknown activation {name!r}; known: {sorted(functions)}")
  return functions[name]


@keras.saving.register_keras_serializable(package="nfnet")
class GammaActivation(keras.layers.Layer):
  """``gamma * act(x)``, with gamma chosen so that act(N(0,1)) has unit variance.

  Args:
    activation: a key of ``ACTIVATION_GAMMAS``.
    gelu_approximate: for 'gelu' only: True = tanh approximation (official JAX code),
      False = exact erf GELU (timm). The gamma is the official one in both cases.
  """

  def __init__(self, activation: str = "gelu", gelu_approximate: bool = True, **kwargs):
    super().__init__(**kwargs)
    if activation not in ACTIVATION_GAMMAS:
      raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTIVATION_GAMMAS)}")
    self.activation = activation
    self.gelu_approximate = bool(gelu_approximate)
    self.gamma = ACTIVATION_GAMMAS[activation]
    self._fn = _activation_fn(activation, self.gelu_approximate)

  def call(self, x):
    if self.activation == "gelu":  # gamma folded into the GELU's own pass
      return gelu(x, self.gelu_approximate, self.gamma)
    return self._fn(x) * ops.cast(self.gamma, x.dtype)

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "activation": self.activation,
            "gelu_approximate": self.gelu_approximate}


def kernel_moments(kernel):
  """(centred kernel, variance) per output channel of an HWIO kernel, in float32.

  Shared by every weight-standardised conv (NFNet's and BiT's). The centred kernel is computed
  once, for the variance (ops.var's own formula) and the output: fewer ops per step, forward
  and backward, than ops.var next to ops.mean.
  """
  w = ops.cast(kernel, "float32")  # float32 under mixed precision: the variance is tiny
  centered = w - ops.mean(w, axis=(0, 1, 2), keepdims=True)
  return centered, ops.mean(ops.square(centered), axis=(0, 1, 2), keepdims=True)


def scaled_standardize(kernel, gain, fan_in: int, eps: float, mode: str):
  """``(kernel - mean) * scale(var) * gain`` per output channel of an HWIO kernel, in float32.

  ``scale`` is ``rsqrt(max(fan_in * var, eps))`` (mode 'official') or
  ``rsqrt(var + eps) / sqrt(fan_in)`` ('timm'). The gradient is the closed form (as a batch
  norm's, over the fan-in): ``gain * scale * (G - mean G - scale^2 * sum(G * c) * c)`` for the
  kernel (c the centred kernel; the last term only where the variance is not clamped by
  ``eps``) and ``scale * sum(G * c)`` for the gain. Why: autodiff of the mean, the variance
  and the scale writes about ten kernel-sized tensors per convolution per step, memory-bound
  work that took a third of an NFNet-F0 CPU step's elementwise time (BENCHMARKS.md); the
  closed form reads the upstream gradient and the centred kernel twice. The same values up
  to float rounding (``tests/test_nfnet.py`` checks both gradients against autodiff).
  """
  fan_in = float(fan_in)

  @ops.custom_gradient
  def standardize(w, g):
    centered, var = kernel_moments(w)
    if mode == "official":
      scale = ops.rsqrt(ops.maximum(var * fan_in, eps))
      varies = ops.cast(ops.greater_equal(var * fan_in, eps), "float32")
    else:
      scale = ops.rsqrt(var + eps) / math.sqrt(fan_in)
      varies = 1.0

    def grad(*args, upstream=None):
      upstream = args[0] if upstream is None else upstream
      axes = (0, 1, 2)
      projection = ops.sum(upstream * centered, axis=axes, keepdims=True)
      d_kernel = (g * scale) * (upstream - ops.mean(upstream, axis=axes, keepdims=True)
                                - (ops.square(scale) * projection * varies) * centered)
      return d_kernel, ops.reshape(scale * projection, ops.shape(g))

    # One full-size multiply: the per-channel factors are combined first.
    return centered * (scale * g), grad

  return standardize(ops.cast(kernel, "float32"), ops.cast(gain, "float32"))


@keras.saving.register_keras_serializable(package="nfnet")
class ScaledWSConv2D(keras.layers.Layer):
  """2-D convolution with Scaled Weight Standardisation (Brock et al. 2021).

  The kernel is standardised per output channel over its fan-in (H x W x in/groups)
  and scaled by ``1/sqrt(fan_in)`` and a learnable gain, on every call.

  Weights: ``kernel`` (kh, kw, in/groups, out), VarianceScaling(1, fan_in, normal);
  ``gain`` (out,), init 1; ``bias`` (out,), init 0.

  Args:
    filters: output channels.
    kernel_size: square kernel size.
    strides: square stride.
    groups: number of groups; in and out channels must both be divisible by it.
    ws_eps_mode: 'official' (``rsqrt(max(fan_in*var, eps))``) or 'timm'
      (``rsqrt(var + eps) / sqrt(fan_in)``).
    ws_eps: epsilon; None = the mode's default (1e-4 official, 1e-5 timm).
    grouped_impl: None (module setting), 'auto', 'split' or 'native'.
    gain_init: initial value of the gain.
  """

  def __init__(self, filters: int, kernel_size: int = 1, strides: int = 1, groups: int = 1,
               ws_eps_mode: str = "official", ws_eps: float | None = None,
               grouped_impl: str | None = None, gain_init: float = 1.0, **kwargs):
    super().__init__(**kwargs)
    if ws_eps_mode not in WS_EPS_MODES:
      raise ValueError(f"ws_eps_mode must be one of {WS_EPS_MODES}, got {ws_eps_mode!r}")
    if grouped_impl is not None and grouped_impl not in GROUPED_CONV_IMPLS:
      raise ValueError(f"grouped_impl must be None or one of {GROUPED_CONV_IMPLS}")
    if filters % groups:
      raise ValueError(f"filters ({filters}) must be divisible by groups ({groups})")
    self.filters = int(filters)
    self.kernel_size = int(kernel_size)
    self.strides = int(strides)
    self.groups = int(groups)
    self.ws_eps_mode = ws_eps_mode
    self.ws_eps = WS_DEFAULT_EPS[ws_eps_mode] if ws_eps is None else float(ws_eps)
    self.grouped_impl = grouped_impl
    self.gain_init = float(gain_init)

  def build(self, input_shape):
    in_channels = int(input_shape[-1])
    if in_channels % self.groups:
      raise ValueError(f"input channels ({in_channels}) must be divisible by groups ({self.groups})")
    self.in_channels = in_channels
    k = self.kernel_size
    self.fan_in = k * k * (in_channels // self.groups)
    self.kernel = self.add_weight(
        name="kernel", shape=(k, k, in_channels // self.groups, self.filters),
        initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "untruncated_normal"),
        autocast=False)  # standardised in float32 from the float32 kernel, not a bf16 copy
    self.gain = self.add_weight(name="gain", shape=(self.filters,), autocast=False,
                                initializer=keras.initializers.Constant(self.gain_init))
    self.bias = self.add_weight(name="bias", shape=(self.filters,), initializer="zeros")

  def standardized_kernel(self):
    """The kernel actually convolved: standardised, fan-in scaled, times the gain."""
    return scaled_standardize(self.kernel, self.gain, self.fan_in, self.ws_eps, self.ws_eps_mode)

  def call(self, x):
    kernel = ops.cast(self.standardized_kernel(), x.dtype)
    if self.groups == 1 or resolve_grouped_conv_impl(self.grouped_impl) == "native":
      # keras.ops.conv infers feature groups from in_channels / kernel in-dim.
      y = ops.conv(x, kernel, strides=self.strides, padding="same")
    else:
      y = self._split_grouped_conv(x, kernel)
    return y + ops.cast(self.bias, x.dtype)

  def _split_grouped_conv(self, x, kernel):
    """Grouped conv as per-group dense convs (input group g -> output block g).

    ``ops.split`` rather than one slice per group: a slice's gradient writes a zero tensor
    of the whole input per group (13% of an NFNet-F0 CPU step), a split's is one concat.
    """
    x_groups = ops.split(x, self.groups, axis=-1)
    kernel_groups = ops.split(kernel, self.groups, axis=-1)
    outputs = [ops.conv(x_g, k_g, strides=self.strides, padding="same")
               for x_g, k_g in zip(x_groups, kernel_groups)]
    return ops.concatenate(outputs, axis=-1)

  def compute_output_shape(self, input_shape):
    height, width = (conv_output_size(size, self.kernel_size, self.strides)
                     for size in input_shape[1:3])
    return (input_shape[0], height, width, self.filters)

  def get_config(self):
    return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
            "strides": self.strides, "groups": self.groups, "ws_eps_mode": self.ws_eps_mode,
            "ws_eps": self.ws_eps, "grouped_impl": self.grouped_impl, "gain_init": self.gain_init}


@keras.saving.register_keras_serializable(package="nfnet")
class SqueezeExcite(keras.layers.Layer):
  """Squeeze-Excite as in the official NFNet code: ``2 * sigmoid(fc2(relu(fc1(mean(h))))) * h``.

  The factor 2 keeps the variance of ``h`` (E[sigmoid] = 0.5 at init). The hidden
  activation is a plain ReLU (the official ``SqueezeExcite`` default; the paper text
  says GELU).

  Args:
    hidden_ratio: hidden width as a fraction of the input channels (0.5 in NFNets).
  """

  def __init__(self, hidden_ratio: float = 0.5, **kwargs):
    super().__init__(**kwargs)
    self.hidden_ratio = float(hidden_ratio)

  def build(self, input_shape):
    channels = int(input_shape[-1])
    hidden = max(1, int(channels * self.hidden_ratio))
    # haiku.Linear's default init (truncated normal, std 1/sqrt(fan_in)).
    init = keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")
    self.fc1 = keras.layers.Dense(hidden, kernel_initializer=init, name="fc1")
    self.fc2 = keras.layers.Dense(channels, kernel_initializer=init, name="fc2")
    self.fc1.build((input_shape[0], channels))
    self.fc2.build((input_shape[0], hidden))

  def call(self, h):
    squeezed = ops.mean(h, axis=(1, 2))
    gate = ops.sigmoid(self.fc2(ops.relu(self.fc1(squeezed))))
    return 2.0 * gate[:, None, None, :] * h

  def compute_output_shape(self, input_shape):
    return input_shape

  def get_config(self):
    return {**super().get_config(), "hidden_ratio": self.hidden_ratio}
