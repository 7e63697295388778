"""The layers of the Keras ViT (``model_defs.vit``), with ``keras.layers`` / ``keras.ops`` only.

  posemb_sincos_2d       fixed 2-D sin-cos position table (big_vision)
  AddPositionEmbedding   adds a learned or fixed position table
  PrependToken           prepends a learned token (class token, MAP probe)
  Attention              multi-head attention with one fused q/k/v kernel
  Gelu, TakeToken, MeanTokens
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from model_defs.common import gelu


def posemb_sincos_2d(h: int, w: int, width: int, temperature: float = 10_000.0) -> np.ndarray:
  """Fixed 2-D sin-cos position embedding, (1, h*w, width), as big_vision (MoCo v3 logic)."""
  if width % 4:
    raise ValueError(f"sincos2d needs width % 4 == 0, got {width}")
  y, x = np.mgrid[:h, :w]
  omega = np.arange(width // 4) / max(width // 4 - 1, 1)
  omega = 1.0 / temperature**omega
  y = np.einsum("m,d->md", y.reshape(-1).astype(np.float64), omega)
  x = np.einsum("m,d->md", x.reshape(-1).astype(np.float64), omega)
  pe = np.concatenate([np.sin(x), np.cos(x), np.sin(y), np.cos(y)], axis=1)
  return pe[None].astype(np.float32)


@keras.saving.register_keras_serializable(package="vit")
class AddPositionEmbedding(layers.Layer):
  """Adds a learned (``pos_embedding`` weight) or fixed sin-cos position embedding."""

  def __init__(self, grid: int, kind: str = "learn", **kwargs):
    super().__init__(**kwargs)
    self.grid = int(grid)
    self.kind = kind

  def build(self, input_shape):
    width = int(input_shape[-1])
    if self.kind == "learn":
      self.pos_embedding = self.add_weight(
          name="pos_embedding", shape=(1, self.grid * self.grid, width),
          initializer=keras.initializers.RandomNormal(stddev=1.0 / math.sqrt(width)))
    else:
      # A constant, not a weight: nothing to train, save or count.
      self._sincos = posemb_sincos_2d(self.grid, self.grid, width)

  def call(self, x):
    if self.kind == "learn":
      return x + ops.cast(self.pos_embedding, x.dtype)
    return x + ops.cast(ops.convert_to_tensor(self._sincos), x.dtype)

  def get_config(self):
    return {**super().get_config(), "grid": self.grid, "kind": self.kind}


@keras.saving.register_keras_serializable(package="vit")
class PrependToken(layers.Layer):
  """Prepends one learned token (the class token ``cls`` or a MAP ``probe``).

  With ``replace=True`` the output is the token alone, tiled over the batch (the MAP query).
  """

  def __init__(self, initializer="zeros", replace: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.initializer = keras.initializers.get(initializer)
    self.replace = replace

  def build(self, input_shape):
    self.token = self.add_weight(name="token", shape=(1, 1, int(input_shape[-1])),
                                 initializer=self.initializer)

  def call(self, x):
    tok = ops.tile(ops.cast(self.token, x.dtype), [ops.shape(x)[0], 1, 1])
    return tok if self.replace else ops.concatenate([tok, x], axis=1)

  def get_config(self):
    return {**super().get_config(), "replace": self.replace,
            "initializer": keras.initializers.serialize(self.initializer)}


@keras.saving.register_keras_serializable(package="vit")
class Attention(layers.Layer):
  """Multi-head dot-product attention with one fused q/k/v projection.

  Weights: ``qkv_kernel`` (D, 3D) with columns [q | k | v], each head-major
  (head h owns columns h*hd:(h+1)*hd), optional ``qkv_bias`` (3D,),
  ``out_kernel`` (D, D) and ``out_bias`` (D,). This is timm's fused ``qkv``
  transposed, and flax's (D, H, hd) query/key/value kernels reshaped and
  concatenated. Called with one input it is self-attention; called as
  ``(query, context)`` the queries come from ``query`` and keys/values from
  ``context`` (MAP pooling).

  ``fused=True`` computes softmax(q k^T / sqrt(hd)) v with ``keras.ops.dot_product_attention``
  (on the JAX backend a GPU may run it as cuDNN flash attention) instead of the explicit
  matmul, softmax, matmul; same weights, same result up to float rounding.
  """

  def __init__(self, num_heads: int, use_qkv_bias: bool = True, fused: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.num_heads = int(num_heads)
    self.use_qkv_bias = bool(use_qkv_bias)
    self.fused = bool(fused)

  def build(self, input_shape):
    if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
      input_shape = input_shape[0]
    d = int(input_shape[-1])
    self.width = d
    # Xavier-uniform per projection as flax's (D, H, hd) kernels: fan_in = fan_out = D.
    lim = math.sqrt(3.0 / d)
    init = keras.initializers.RandomUniform(-lim, lim)
    self.qkv_kernel = self.add_weight(name="qkv_kernel", shape=(d, 3 * d), initializer=init)
    if self.use_qkv_bias:
      self.qkv_bias = self.add_weight(name="qkv_bias", shape=(3 * d,), initializer="zeros")
    self.out_kernel = self.add_weight(name="out_kernel", shape=(d, d), initializer=init)
    self.out_bias = self.add_weight(name="out_bias", shape=(d,), initializer="zeros")

  def _split_heads(self, t):
    b, n = ops.shape(t)[0], ops.shape(t)[1]
    return ops.reshape(t, (b, n, self.num_heads, self.width // self.num_heads))  # (B, N, H, hd)

  def _attend(self, q, k, v, scale):
    """(B, Nq, H, hd) heads of softmax(q k^T * scale) v."""
    if self.fused:
      return ops.dot_product_attention(q, k, v, scale=scale)
    q, k, v = (ops.transpose(t, (0, 2, 1, 3)) for t in (q, k, v))  # (B, H, N, hd)
    logits = ops.matmul(q * scale, ops.transpose(k, (0, 1, 3, 2)))  # (B, H, Nq, Nk)
    probs = ops.softmax(logits, axis=-1)
    return ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))

  def call(self, inputs):
    d = self.width
    kernel = ops.cast(self.qkv_kernel, self.compute_dtype)
    bias = ops.cast(self.qkv_bias, self.compute_dtype) if self.use_qkv_bias else None
    if isinstance(inputs, (list, tuple)):
      query, context = inputs
      q = ops.matmul(query, kernel[:, :d])
      kv = ops.matmul(context, kernel[:, d:])
      if bias is not None:
        q, kv = q + bias[:d], kv + bias[d:]
      k, v = ops.split(kv, 2, axis=-1)
    else:
      qkv = ops.matmul(inputs, kernel)
      if bias is not None:
        qkv = qkv + bias
      # One split, not three slices: each slice's gradient writes a zero tensor of all of qkv
      # (5% of a ViT-B/16 CPU step); a split's gradient is one concat.
      q, k, v = ops.split(qkv, 3, axis=-1)
    q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)
    out = self._attend(q, k, v, 1.0 / math.sqrt(d // self.num_heads))  # (B, Nq, H, hd)
    out = ops.reshape(out, (ops.shape(out)[0], ops.shape(out)[1], d))
    return ops.matmul(out, ops.cast(self.out_kernel, out.dtype)) + ops.cast(self.out_bias,
                                                                             out.dtype)

  def compute_output_shape(self, input_shape):
    if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
      return tuple(input_shape[0])
    return tuple(input_shape)

  def get_config(self):
    return {**super().get_config(), "num_heads": self.num_heads,
            "use_qkv_bias": self.use_qkv_bias, "fused": self.fused}


@keras.saving.register_keras_serializable(package="vit")
class Gelu(layers.Layer):
  """GELU; ``approximate=False`` is timm's erf form, True is flax's tanh form."""

  def __init__(self, approximate: bool = False, **kwargs):
    super().__init__(**kwargs)
    self.approximate = bool(approximate)

  def call(self, x):
    return gelu(x, self.approximate)

  def get_config(self):
    return {**super().get_config(), "approximate": self.approximate}


@keras.saving.register_keras_serializable(package="vit")
class TakeToken(layers.Layer):
  """Selects token 0 (class token / MAP output) of a (B, N, D) sequence."""

  def call(self, x):
    return x[:, 0]


@keras.saving.register_keras_serializable(package="vit")
class MeanTokens(layers.Layer):
  """Global average over the token axis."""

  def call(self, x):
    return ops.mean(x, axis=1)
