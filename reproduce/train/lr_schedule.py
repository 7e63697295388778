"""The learning-rate schedule of a plan: linear warm-up, then cosine decay (Keras'
``CosineDecay``), held in variables so one traced train step serves every plan."""

from __future__ import annotations

import keras


def _cosine_arguments(base_lr: float, total_steps: int, warmup_steps: int, end_lr: float):
  """``CosineDecay``'s arguments for ``PlanSchedule`` (checked)."""
  if total_steps < 1:
    raise ValueError(f"total_steps must be >= 1, got {total_steps}")
  if not 0 <= warmup_steps <= total_steps:
    raise ValueError(f"warmup_steps must lie in [0, total_steps], got {warmup_steps}")
  base_lr = float(base_lr)
  return dict(decay_steps=max(int(total_steps) - int(warmup_steps), 1),
              alpha=float(end_lr) / base_lr if base_lr else 0.0, warmup_target=base_lr,
              warmup_steps=int(warmup_steps))


class PlanSchedule(keras.optimizers.schedules.CosineDecay):
  """A plan's linear warm-up to ``base_lr``, then cosine decay to ``end_lr``, in variables.

  Keras' ``CosineDecay`` with a warm-up target: ``lr(s) = base_lr * s / warmup_steps`` for
  ``s < warmup_steps`` (the official NFNet warm-up), then
  ``end_lr + (base_lr - end_lr) * 0.5 * (1 + cos(pi * (s - warmup) / (total - warmup)))``,
  held at ``end_lr`` past ``total_steps``. ``s`` is the optimizer's iteration count before
  the update.

  ``set(plan)`` moves the schedule to another plan without changing the program that reads
  it, so one traced train step serves every budget and LR of a model (the study's workers;
  ``loop.Program``).
  """

  def __init__(self, plan, end_lr: float = 0.0):
    self._end_lr = float(end_lr)
    self._values = {key: keras.Variable(float(value), dtype="float32", trainable=False,
                                        name=key)
                    for key, value in self._arguments(plan).items()}
    super().__init__(initial_learning_rate=0.0, **self._values)

  def _arguments(self, plan) -> dict:
    if getattr(plan, "decay", "cosine") not in ("cosine", None):
      raise ValueError(f"unsupported decay {plan.decay!r}; only 'cosine' is implemented")
    warmup = min(int(plan.warmup_steps), int(plan.steps))
    return _cosine_arguments(plan.base_lr, int(plan.steps), warmup, self._end_lr)

  def set(self, plan) -> None:
    """Takes ``plan``'s base LR, steps and warm-up (``schedule_from_plan``'s rules)."""
    for key, value in self._arguments(plan).items():
      self._values[key].assign(float(value))


def schedule_from_plan(plan, end_lr: float = 0.0) -> PlanSchedule:
  """The warm-up + cosine schedule of a ``planning`` Plan (``PlanSchedule``)."""
  return PlanSchedule(plan, end_lr)
