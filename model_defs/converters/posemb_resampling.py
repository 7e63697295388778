"""Learned ViT position embeddings: resampling to another patch grid, class-row split.

Hand-written in NumPy on purpose: it must reproduce timm's resize, PyTorch's
``F.interpolate(..., align_corners=False)``, whose bicubic kernel is Keys' cubic with
a = -0.75. ``tf.image.resize``, ``jax.image.resize`` and ``keras.ops.image.resize`` use
a = -0.5 (``jax.image.resize`` also antialiases when shrinking), so they give other
tables; NumPy also keeps the result identical on every Keras backend.
"""

from __future__ import annotations

import math

import numpy as np

from model_defs.converters.common import ConversionError, to_numpy

RESAMPLE_METHODS = ("bilinear", "bicubic")


def square_grid_side(n: int, shape, what: str) -> int:
  """The side of a square grid of ``n`` patch tokens; ValueError if there is none."""
  side = int(round(math.sqrt(n)))
  if side * side != n:
    raise ValueError(f"{what} position embedding of shape {tuple(shape)} has {n} patch "
                     f"tokens, which is not a square grid")
  return side


def _cubic(t: np.ndarray, a: float = -0.75) -> np.ndarray:
  # Keys cubic convolution kernel; a = -0.75 as PyTorch's bicubic (which timm uses).
  t = np.abs(t)
  return np.where(t <= 1, ((a + 2) * t - (a + 3)) * t * t + 1,
                  np.where(t < 2, (((t - 5) * t + 8) * t - 4) * a, 0.0))


def _interp_matrix(n_in: int, n_out: int, method: str) -> np.ndarray:
  """(n_out, n_in) 1-D resampling matrix, half-pixel centres, edge-clamped (align_corners=False)."""
  m = np.zeros((n_out, n_in), np.float64)
  scale = n_in / n_out
  for o in range(n_out):
    src = (o + 0.5) * scale - 0.5
    if method == "bilinear":
      src = max(src, 0.0)
      i0 = int(math.floor(src))
      frac = src - i0
      m[o, min(i0, n_in - 1)] += 1.0 - frac
      m[o, min(i0 + 1, n_in - 1)] += frac
    else:
      i0 = int(math.floor(src))
      frac = src - i0
      for k in range(-1, 3):
        m[o, min(max(i0 + k, 0), n_in - 1)] += _cubic(np.float64(k - frac))
  return m


def resample_posemb(posemb, new_grid, *, num_prefix_tokens: int = 0,
                    method: str = "bicubic") -> np.ndarray:
  """Resamples a learned position embedding to a new patch grid by 2-D interpolation.

  Args:
    posemb: (1, P + H*W, D) or (P + H*W, D) array; the first ``num_prefix_tokens``
      rows (P, e.g. a timm class-token row) are kept unchanged, the rest must be a
      square H x W grid (row-major, as the patch tokens).
    new_grid: the new grid side (int) or (height, width).
    num_prefix_tokens: rows before the grid that are not interpolated.
    method: 'bicubic' (PyTorch/timm kernel, a=-0.75) or 'bilinear', both with
      half-pixel centres (align_corners=False) and clamped edges, no antialiasing.

  Returns:
    float32 array (1, P + new_h*new_w, D).

  Raises:
    ValueError: for a non-square source grid, a bad shape or method.
  """
  pe = to_numpy(posemb, dtype=None)
  shape = pe.shape
  if pe.ndim == 2:
    pe = pe[None]
  if pe.ndim != 3 or pe.shape[0] != 1:
    raise ValueError(f"position embedding must be (1, tokens, width) or (tokens, width), "
                     f"got shape {shape}")
  if method not in RESAMPLE_METHODS:
    raise ValueError(f"method must be one of {RESAMPLE_METHODS}, got {method!r}")
  if not 0 <= num_prefix_tokens < pe.shape[1]:
    raise ValueError(f"num_prefix_tokens={num_prefix_tokens} does not fit a position "
                     f"embedding of shape {shape}")
  prefix, grid = pe[:, :num_prefix_tokens], pe[0, num_prefix_tokens:]
  side = square_grid_side(grid.shape[0], shape, "source")
  new_h, new_w = (new_grid, new_grid) if np.ndim(new_grid) == 0 else tuple(new_grid)
  new_h, new_w = int(new_h), int(new_w)
  if new_h < 1 or new_w < 1:
    raise ValueError(f"new grid must be positive, got {new_grid!r}")
  grid = grid.reshape(side, side, -1).astype(np.float64)
  if (new_h, new_w) != (side, side):
    grid = np.einsum("ij,jkd,lk->ild", _interp_matrix(side, new_h, method), grid,
                     _interp_matrix(side, new_w, method))
  out = grid.reshape(1, new_h * new_w, -1).astype(np.float32)
  return np.concatenate([prefix.astype(np.float32), out], axis=1)


def split_posemb_class_row(pe: np.ndarray, key: str,
                           kind: str) -> tuple[np.ndarray | None, np.ndarray]:
  """Splits a checkpoint's (1, [1 +] N, D) table into (class-token row or None, patch rows).

  ``key`` and ``kind`` name the checkpoint entry in errors. N must be a square grid.
  """
  if pe.ndim == 2:
    pe = pe[None]
  if pe.ndim != 3 or pe.shape[0] != 1:
    raise ConversionError(f"{kind} key {key!r} has shape {pe.shape}, expected (1, tokens, width)")
  t = pe.shape[1]
  if int(round(math.sqrt(t))) ** 2 == t:
    return None, pe
  if t > 1 and int(round(math.sqrt(t - 1))) ** 2 == t - 1:
    return pe[:, :1], pe[:, 1:]
  raise ConversionError(f"{kind} key {key!r} has shape {pe.shape}: neither {t} nor {t - 1} "
                        f"tokens form a square patch grid")
