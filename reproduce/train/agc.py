"""Adaptive gradient clipping (AGC, Brock et al. 2021): the arithmetic, per tensor and for
many small tensors at once.

A unit is one output unit of a parameter (the last axis of rank >= 2 tensors; a scalar or
vector is one unit). A unit's gradient G_i is rescaled to ``lambda * max(||W_i||, eps)``
when its norm exceeds that. ``optim.with_agc`` applies it inside the optimizer.
"""

from __future__ import annotations

from keras import ops


def unitwise_sum_of_squares(x):
  """Sum of squares per output unit over the fan-in axes (official NFNet convention).

  Scalars and vectors are treated as one unit (shape ``()``); tensors of rank >= 2
  (IO dense, HWIO conv kernels) reduce every axis but the last and keep dims so the
  result broadcasts against ``x``.
  """
  rank = len(x.shape)
  axes = tuple(range(rank)) if rank <= 1 else tuple(range(rank - 1))
  return ops.sum(ops.square(x), axis=axes, keepdims=rank > 1)


def num_units(shape) -> int:
  """Number of AGC units of a parameter of ``shape``."""
  return 1 if len(shape) <= 1 else int(shape[-1])


def clip_with_statistics(grad, param, clipping: float, eps: float):
  """Adaptive gradient clipping of one gradient tensor, with its statistics.

  Args:
    grad: gradient tensor.
    param: the parameter tensor of the same shape.
    clipping: lambda, the maximal allowed ratio ||G_i|| / max(||W_i||, eps).
    eps: the floor on the parameter norm.

  Returns:
    (clipped grad, squared norm of ``grad`` before clipping (float32 scalar), per-unit mask
    of the units kept as they are).
  """
  grad_sq = unitwise_sum_of_squares(grad)
  factor, keep = _clip_factor(grad_sq, unitwise_sum_of_squares(param), clipping, eps)
  return grad * ops.cast(factor, grad.dtype), _float32_sum(grad_sq), keep


def clip_segments(grad, param, segment_ids, num_segments: int, clipping: float, eps: float):
  """AGC of many one-unit tensors concatenated into flat ``grad``/``param`` vectors (unit
  ``segment_ids[k]`` holds element k): the same per-unit formula as ``clip_with_statistics``
  in a fixed number of ops, whatever the number of tensors. Returns (clipped flat grad,
  squared norm of ``grad``, number of clipped units)."""
  def segment_sums(x):
    return ops.segment_sum(ops.square(x), segment_ids, num_segments=num_segments)
  grad_sq = segment_sums(grad)
  factor, keep = _clip_factor(grad_sq, segment_sums(param), clipping, eps)
  clipped_grad = grad * ops.cast(ops.take(factor, segment_ids), grad.dtype)
  return clipped_grad, _float32_sum(grad_sq), clipped_units(keep)


def clipped_units(keep):
  """How many units were clipped (float32), from the mask of the units kept."""
  return ops.sum(ops.where(keep, 0.0, 1.0))


def _clip_factor(grad_sq, param_sq, clipping, eps):
  """(per-unit factor on the gradient, per-unit mask of the units kept as they are)."""
  grad_norm = ops.sqrt(grad_sq)
  max_norm = ops.maximum(ops.sqrt(param_sq), eps) * clipping
  keep = ops.less(grad_norm, max_norm)
  # 1e-6 as in the official code: avoids 0/0 for units whose gradient is zero. A factor
  # per unit means one full-size multiply (G * 1 == G exactly), not a multiply and a select.
  return ops.where(keep, 1.0, max_norm / ops.maximum(grad_norm, 1e-6)), keep


def squared_norm(x):
  """Sum of squares of all of ``x`` (float32 scalar)."""
  return _float32_sum(ops.square(x))


def _float32_sum(x):  # explicit axes: no Rank/Range ops for axis=None
  return ops.cast(ops.sum(x, axis=tuple(range(len(x.shape)))), "float32")
