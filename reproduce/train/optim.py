"""Optimisation pieces of the NFNet recipe: AGC, coupled weight decay, EMA.

Why these are hand-written rather than Keras options: Keras has no AGC, and its gradient
clipping (``clipnorm``/``global_clipnorm``) acts per tensor or globally, not per unit; its
``weight_decay`` is decoupled (applied to the weights, outside momentum) while NFNets add
``wd * W`` to the clipped gradient (coupled, inside momentum); and its ``use_ema`` has no
``(1 + t) / (10 + t)`` warm-up. The LR schedule: ``lr_schedule.py``.

The NFNet update for one parameter W with (cross-replica reduced) gradient G is

  G <- AGC(G, W)            unit-wise adaptive gradient clipping, lambda = 0.01
  G <- G + wd * W           coupled weight decay, AFTER clipping (official order)
  W <- SGD-Nesterov(W, G)   momentum 0.9
  EMA <- d_t * EMA + (1 - d_t) * W,  d_t = min(d, (1 + t) / (10 + t))   (optional)

All four run per variable after Keras has all-reduced (summed) the per-replica gradients
(TensorFlow: ``_distributed_tf_update_step``), so clipping sees the same gradient on one
device as on N replicas; clipping in the train step would clip partial per-replica
gradients (see docs/pretrain.md). What the variables share (learning rate, EMA decay) is
computed once per step, and the statistics are written by one sum per step.

Exclusions (defaults, all configurable):

* AGC: the final classifier's weight (kernel). The engine passes it explicitly
  (found structurally, see ``classifier_kernels``); ``exclude`` regexes on the
  variable path add more.
* Weight decay: every variable with fewer than two dimensions (biases, WS gains,
  SkipInit gains, LayerNorm scales/offsets) and any variable whose last path
  component matches ``NO_DECAY_NAME_PATTERN`` (gain / bias / skip_gain / scale /
  beta / gamma), whatever its shape.
"""

from __future__ import annotations

import re
from typing import Callable, Iterable

import keras
from keras import ops
import numpy as np
import tensorflow as tf

from reproduce.train import agc

# Name rule for variables that never get weight decay, whatever their shape.
NO_DECAY_NAME_PATTERN = r"(^|[_/])(gain|gains|bias|biases|skip_gain|skipinit_gain|scale|beta|gamma)$"

VariableRule = Callable[[keras.Variable], bool]


def default_no_decay(variable) -> bool:
  """True for variables that get no weight decay (biases, gains, skip gains)."""
  if len(variable.shape) <= 1:
    return True
  last = _path(variable).split("/")[-1].split(":")[0]
  return re.search(NO_DECAY_NAME_PATTERN, last) is not None


def _path(variable) -> str:
  return str(getattr(variable, "path", None) or getattr(variable, "name", ""))


def _matcher(rules) -> VariableRule:
  """A predicate from None, a callable, a regex string, or a sequence of them."""
  if rules is None:
    return lambda v: False
  if callable(rules):
    return rules
  if isinstance(rules, str):
    rules = [rules]
  predicates = []
  for rule in rules:
    if callable(rule):
      predicates.append(rule)
    else:
      pattern = re.compile(rule)
      predicates.append(lambda v, p=pattern: p.search(_path(v)) is not None)
  return lambda v: any(p(v) for p in predicates)


def classifier_kernels(model: keras.Model, num_classes: int | None = None) -> list:
  """The final classifier's weight(s) of ``model``, found structurally.

  The last trainable rank-2 variable whose output size is ``num_classes`` (the
  model's output width when None). Returns [] if there is none.
  """
  if num_classes is None:
    num_classes = int(model.outputs[0].shape[-1]) if getattr(model, "outputs", None) else None
  for variable in reversed(model.trainable_variables):
    if len(variable.shape) == 2 and (num_classes is None or int(variable.shape[-1]) == num_classes):
      return [variable]
  return []


class _AGCMixin:
  """Adds AGC, coupled weight decay, EMA and clip statistics to the wrapped update.

  Mixed in front of a Keras optimizer class by ``with_agc``; do not use alone.
  """

  def _agc_setup(self, clipping, eps, exclude, exclude_variables, weight_decay,
                 no_decay, ema_decay):
    if getattr(self, "weight_decay", None):
      raise ValueError(
          "pass weight decay to with_agc(weight_decay=...) (coupled, after clipping), "
          "not to the wrapped Keras optimizer (decoupled)")
    self.agc_clipping = float(clipping)
    self.agc_eps = float(eps)
    self._agc_exclude = _matcher(exclude)
    self._agc_exclude_ids = {id(v) for v in (exclude_variables or [])}
    self._agc_exclude_paths = {_path(v) for v in (exclude_variables or [])}
    self.coupled_weight_decay = float(weight_decay or 0.0)
    self._no_decay = _matcher(default_no_decay if no_decay is None else no_decay)
    self.ema_decay = None if not ema_decay else float(ema_decay)

  def build(self, variables):
    super().build(variables)
    self.agc_clip_flags = []
    self.decay_flags = []
    self.agc_units = []
    for v in variables:
      excluded = (id(v) in self._agc_exclude_ids or _path(v) in self._agc_exclude_paths
                  or self._agc_exclude(v))
      self.agc_clip_flags.append(self.agc_clipping > 0 and not excluded)
      self.decay_flags.append(self.coupled_weight_decay > 0 and not self._no_decay(v))
      self.agc_units.append(agc.num_units(v.shape))
    # The last update's statistics, summed over the variables and written once per step:
    # reading them after apply_gradients gives that step's values on every replica. They
    # live in the first of one scalar per variable, the checkpoint layout of earlier versions
    # (Keras tracks optimizer variables by position: fewer would misplace an older EMA).
    count = max(len(variables), 1)
    self._agc_clipped_units = [self.add_variable(shape=(), dtype="float32",
                                                 name=f"agc_clipped_{i}") for i in range(count)][0]
    self._agc_grad_sq_norm = [self.add_variable(shape=(), dtype="float32",
                                                name=f"grad_sq_norm_{i}") for i in range(count)][0]
    self.ema_variables = []
    if self.ema_decay:
      self.ema_variables = self.add_optimizer_variables(variables, "ema")
      for ema, v in zip(self.ema_variables, variables):
        ema.assign(v)  # the EMA starts at the initial weights

  def _step_scalars(self, learning_rate) -> dict:
    """What every variable's update shares, computed once per step (not per variable)."""
    scalars = {"learning_rate": ops.cast(learning_rate, "float32")}
    if self.ema_decay:
      # iterations is incremented after all updates, so t = 0 on the first step.
      t = ops.cast(self.iterations, "float32")
      scalars["ema_decay"] = ops.minimum(self.ema_decay, (1.0 + t) / (10.0 + t))
    return scalars

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    # Per replica, before the variables' updates: their shared scalars, once per step.
    super()._backend_update_step(grads, trainable_variables, self._step_scalars(learning_rate))

  def _distributed_tf_update_step(self, distribution, grads_and_vars, scalars):
    """TensorFlow backend, cross-replica, gradients all-reduced: every variable's update
    (clip-eligible scalars and vectors as one group), then each statistic written by one
    sum per device (not one assignment per variable). ``scalars``: ``_step_scalars``."""
    per_device = {}  # device -> ([squared norms], [clipped units]) of its updates

    def record(device, sq_norm, clipped_units):
      sq_norms, clipped = per_device.setdefault(device, ([], []))
      sq_norms.append(sq_norm)
      if clipped_units is not None:
        clipped.append(clipped_units)

    grouped = [(g, v) for g, v in grads_and_vars if self._in_vector_group(v)]
    for grad, var in grads_and_vars:
      if not self._in_vector_group(var):
        distribution.extended.update(
            var, lambda v, g, c: record(v.device, *self._agc_update(v, g, c)),
            args=(grad, scalars), group=False)
    if grouped:
      grads, variables = zip(*grouped)
      distribution.extended.update(
          variables[0], lambda v, gs, c: record(v.device, *self._vector_group_update(
              gs, variables, c)), args=(grads, scalars), group=False)
    for which, statistic in enumerate((self._agc_grad_sq_norm, self._agc_clipped_units)):
      def assign_sum(variable, which=which):
        values = _on_device(per_device, variable.device)[which]
        if values:
          variable.assign(ops.cast(_add_all(values), variable.dtype))
      distribution.extended.update(statistic.value, assign_sum, group=False)

  def _in_vector_group(self, variable) -> bool:
    """Clipped together by ``agc.clip_segments``: clip-eligible float32 scalars and vectors
    (an NFNet's gains, biases and skip gains, most of its variables): a fixed number of
    ops instead of ~15 per variable."""
    return (len(variable.shape) <= 1 and variable.dtype == "float32"
            and self.agc_clip_flags[self._get_variable_index(variable)])

  def _vector_group_update(self, grads, variables, scalars):
    """``_agc_update`` of the vector group (on one device); returns its statistics."""
    sizes = [int(np.prod(v.shape)) for v in variables]
    segment_ids = np.repeat(np.arange(len(sizes)), sizes).astype("int32")
    flat = lambda x: x if len(x.shape) == 1 else ops.reshape(x, (-1,))
    clipped_grad, sq_norm, clipped_units = agc.clip_segments(
        ops.concatenate([flat(ops.cast(g, "float32")) for g in grads]),
        ops.concatenate([flat(v) for v in variables]), segment_ids, len(sizes),
        self.agc_clipping, self.agc_eps)
    parts = ops.split(clipped_grad, np.cumsum(sizes)[:-1].tolist()) if len(sizes) > 1 else [
        clipped_grad]
    for part, variable in zip(parts, variables):
      self._apply_update(ops.reshape(part, variable.shape) if len(variable.shape) != 1 else part,
                         variable, scalars)
    return sq_norm, clipped_units

  def update_step(self, gradient, variable, learning_rate):
    """Keras' per-variable hook (other backends; ``learning_rate``: ``_step_scalars``, as
    ``_backend_update_step`` passes it): the same update, without statistics."""
    if not isinstance(learning_rate, dict):
      learning_rate = self._step_scalars(learning_rate)
    self._agc_update(variable, gradient, learning_rate)

  def _agc_update(self, variable, gradient, scalars):
    """AGC and ``_apply_update`` of one variable; returns the gradient's squared norm
    (before clipping) and its clipped units (None: not clipped)."""
    gradient = ops.cast(gradient, variable.dtype)
    if self.agc_clip_flags[self._get_variable_index(variable)]:
      gradient, sq_norm, keep = agc.clip_with_statistics(gradient, variable, self.agc_clipping,
                                                         self.agc_eps)
      clipped_units = agc.clipped_units(keep)
    else:
      sq_norm, clipped_units = agc.squared_norm(gradient), None
    self._apply_update(gradient, variable, scalars)
    return sq_norm, clipped_units

  def _apply_update(self, gradient, variable, scalars):
    """Coupled decay, the wrapped optimizer's update and the EMA of one (clipped) gradient."""
    index = self._get_variable_index(variable)
    if self.decay_flags[index]:
      gradient = gradient + ops.cast(self.coupled_weight_decay, variable.dtype) * variable
    learning_rate = _as(scalars["learning_rate"], variable.dtype)
    if (isinstance(self, keras.optimizers.SGD) and self.momentum
        and keras.backend.backend() == "tensorflow"):
      self._sgd_momentum_update(gradient, variable, learning_rate, index)
    else:
      super().update_step(gradient, variable, learning_rate)
    if self.ema_decay:
      decay = _as(scalars["ema_decay"], variable.dtype)
      ema = self.ema_variables[index]
      self.assign(ema, decay * ema + (1.0 - decay) * variable)

  def _sgd_momentum_update(self, gradient, variable, learning_rate, index):
    """Keras SGD's momentum update (``m <- momentum * m - lr * G``; Nesterov:
    ``W <- W + momentum * m - lr * G``) as TensorFlow's one fused kernel of that formula
    (the 8 ops of Keras' ``update_step`` per variable become one)."""
    tf.raw_ops.ResourceApplyKerasMomentum(
        var=_handle(variable), accum=_handle(self.momentums[index]), lr=learning_rate,
        grad=gradient, momentum=ops.cast(self.momentum, variable.dtype),
        use_nesterov=bool(self.nesterov))

  def agc_statistics(self) -> dict:
    """The last update's global gradient norm (before clipping) and clip fraction.

    ``agc_clip_fraction`` is the fraction of clip-eligible units whose gradient
    was clipped. Call after ``apply_gradients`` (in the same replica context).
    """
    grad_norm = ops.sqrt(self._agc_grad_sq_norm.value)
    total = float(sum(u for u, f in zip(self.agc_units, self.agc_clip_flags) if f))
    fraction = (self._agc_clipped_units.value / total if total > 0
                else ops.convert_to_tensor(0.0, "float32"))
    return {"grad_norm": grad_norm, "agc_clip_fraction": fraction}

  def get_config(self):
    config = super().get_config()
    config.update(agc_clipping=self.agc_clipping, agc_eps=self.agc_eps,
                  coupled_weight_decay=self.coupled_weight_decay, ema_decay=self.ema_decay)
    return config


def _on_device(per_device: dict, device: str):
  """``per_device``'s entry for ``device`` (the only one under the default strategy)."""
  if device not in per_device and len(per_device) == 1:
    return next(iter(per_device.values()))
  return per_device[device]


def _add_all(tensors):  # two ops for the whole list, not a chain of pairwise adds
  return tensors[0] if len(tensors) == 1 else ops.sum(ops.stack(tensors), axis=0)


def _as(scalar, dtype):
  """``scalar`` in ``dtype``; no cast op when it already is."""
  same = keras.backend.standardize_dtype(scalar.dtype) == keras.backend.standardize_dtype(dtype)
  return scalar if same else ops.cast(scalar, dtype)


_AGC_CLASSES: dict[type, type] = {}


def _agc_class(base: type) -> type:
  if issubclass(base, _AGCMixin):
    return base
  if base not in _AGC_CLASSES:
    _AGC_CLASSES[base] = type(f"AGC{base.__name__}", (_AGCMixin, base), {})
  return _AGC_CLASSES[base]


def with_agc(optimizer, clipping: float = 0.01, eps: float = 1e-3,
             exclude=None, exclude_variables: Iterable | None = None,
             weight_decay: float = 0.0, no_decay=None, ema_decay: float | None = None,
             **optimizer_kwargs):
  """Wraps any Keras optimizer with AGC, coupled weight decay and EMA.

  Args:
    optimizer: a Keras optimizer class (built with ``optimizer_kwargs``) or an
      unbuilt instance (converted in place and returned).
    clipping: AGC lambda; 0 disables clipping.
    eps: AGC floor on the unit-wise parameter norm.
    exclude: variables not to clip: regex (searched in ``variable.path``),
      callable ``(variable) -> bool``, or a sequence of them.
    exclude_variables: explicit variables not to clip (the classifier kernel).
    weight_decay: coupled L2 coefficient added to the clipped gradient.
    no_decay: rule for variables without decay; default ``default_no_decay``.
    ema_decay: EMA decay d (warm-up ``min(d, (1+t)/(10+t))``); None disables.
    **optimizer_kwargs: passed to the optimizer class.

  Returns:
    The wrapped optimizer instance.
  """
  if isinstance(optimizer, type):
    instance = _agc_class(optimizer)(**optimizer_kwargs)
  else:
    if optimizer_kwargs:
      raise ValueError("optimizer_kwargs only apply when an optimizer class is given")
    if optimizer.built:
      raise ValueError("with_agc needs an optimizer that is not built yet")
    instance = optimizer
    instance.__class__ = _agc_class(type(optimizer))
  instance._agc_setup(clipping, eps, exclude, exclude_variables, weight_decay, no_decay,
                      ema_decay)
  return instance


def nfnet_sgd(learning_rate, momentum: float = 0.9, nesterov: bool = True, **agc_kwargs):
  """The NFNet optimizer: SGD with Nesterov momentum wrapped with AGC."""
  return with_agc(keras.optimizers.SGD, learning_rate=learning_rate, momentum=momentum,
                  nesterov=nesterov, **agc_kwargs)


def _handle(variable):
  return (variable.value if isinstance(variable, keras.Variable) else variable).handle


@keras.saving.register_keras_serializable(package="reproduce")
class FusedAdamW(keras.optimizers.AdamW):
  """Keras AdamW whose per-variable Adam update is, on TensorFlow, TF's one fused kernel of
  the same formula (``ResourceApplyAdam``: ``m += (g - m)(1 - b1)``, ``v += (g^2 - v)(1 -
  b2)``, ``w -= lr sqrt(1 - b2^t) / (1 - b1^t) * m / (sqrt(v) + eps)``, as Keras' own
  ``update_step``). Why: Keras' update is a dozen elementwise ops per variable, each a pass
  over the weights: a quarter of a ViT-B/16 CPU step (BENCHMARKS.md). The decoupled weight
  decay stays Keras' own; amsgrad and other backends use Keras' update unchanged.
  """

  def update_step(self, gradient, variable, learning_rate):
    if keras.backend.backend() != "tensorflow" or self.amsgrad:
      return super().update_step(gradient, variable, learning_rate)
    dtype = variable.dtype
    step = ops.cast(self.iterations + 1, dtype)
    beta_1, beta_2 = ops.cast(self.beta_1, dtype), ops.cast(self.beta_2, dtype)
    index = self._get_variable_index(variable)
    tf.raw_ops.ResourceApplyAdam(
        var=_handle(variable), m=_handle(self._momentums[index]),
        v=_handle(self._velocities[index]), beta1_power=ops.power(beta_1, step),
        beta2_power=ops.power(beta_2, step), lr=ops.cast(learning_rate, dtype), beta1=beta_1,
        beta2=beta_2, epsilon=ops.cast(self.epsilon, dtype), grad=ops.cast(gradient, dtype))
    return None


def adamw(learning_rate, variables, weight_decay: float = 0.0, no_decay=None,
          **adam_kwargs) -> keras.optimizers.AdamW:
  """The ViT recipe's optimizer: AdamW (decoupled decay ``w -= lr * weight_decay * w``),
  Keras' formula with TensorFlow's fused update (``FusedAdamW``).

  Variables matching ``no_decay`` (default ``default_no_decay``: biases, gains, LayerNorm
  scales) get no decay, as in big_vision and timm; call before ``build``.
  """
  optimizer = FusedAdamW(learning_rate=learning_rate, weight_decay=float(weight_decay),
                         **adam_kwargs)
  rule = _matcher(default_no_decay if no_decay is None else no_decay)
  optimizer.exclude_from_weight_decay(var_list=[v for v in variables if rule(v)])
  return optimizer


def restart_ema(optimizer) -> None:
  """The EMA, when the optimizer keeps one, restarts at the current weights (after a
  fine-tune has put the pre-trained weights in)."""
  for ema, variable in zip(getattr(optimizer, "ema_variables", None) or [],
                           optimizer._trainable_variables):
    ema.assign(variable)


class swap_in_ema:
  """Context manager: the model's trainable weights hold the EMA while inside.

  No-op when the optimizer keeps no EMA. Call in cross-replica context (eagerly).
  """

  def __init__(self, optimizer):
    self.optimizer = optimizer
    self.active = bool(getattr(optimizer, "ema_variables", None))
    self._saved = []

  def __enter__(self):
    if self.active:
      variables = self.optimizer._trainable_variables
      self._saved = [ops.convert_to_tensor(v) * 1 for v in variables]
      for v, ema in zip(variables, self.optimizer.ema_variables):
        v.assign(ema)
    return self

  def __exit__(self, *exc):
    if self.active:
      for v, saved in zip(self.optimizer._trainable_variables, self._saved):
        v.assign(saved)
      self._saved = []
    return False
