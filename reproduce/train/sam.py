"""Sharpness-aware minimisation (SAM, Foret et al. 2021) as a train-step variant.

``sam_step_fn(rho, ascent_fraction, synchronised)`` returns a ``step_fn`` for
``steps.make_train_chunk`` (and ``loop.train``). Both forms take one ascent step

  e = rho * g / ||g||          (||e|| = rho, along the normalised gradient)

then the gradient at ``w + e`` and apply it to ``w`` with the run's optimizer (AGC, weight
decay, EMA included). The forms differ in ``g``:

* standard (``synchronised=True``, ``ascent_fraction=1``): the gradient of the whole global
  batch, all-reduced across replicas, so every replica perturbs identically;
* the NFNet paper's cheaper variant ([N] A.4): the gradient of the first
  ``ascent_fraction`` of each replica's own batch, not all-reduced (each replica ascends on
  its own data).

The perturbed forward pass is ``model.stateless_call`` at ``w + e``: ``w`` itself is never
overwritten, so "restore w" cannot be missed and the replicas' weights stay identical. A SAM
step costs ``1 + ascent_fraction`` forward+backward passes (``step_cost``).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

FORMS = ("none", "standard", "fractional")


def step_cost(form: str, ascent_fraction: float) -> float:
  """Forward+backward passes per step, relative to a plain step."""
  if form == "none":
    return 1.0
  return 1.0 + (1.0 if form == "standard" else float(ascent_fraction))


def ascent(grads, rho: float):
  """The SAM perturbation ``rho * g / ||g||`` (global L2 norm over all tensors)."""
  norm = tf.linalg.global_norm(grads)
  scale = rho / tf.maximum(norm, 1e-12)
  return [g * scale for g in grads]


def _all_reduced(grads):
  context = tf.distribute.get_replica_context()
  if context is None or context.num_replicas_in_sync == 1:
    return grads
  return context.all_reduce(tf.distribute.ReduceOp.SUM, grads)


def sam_step_fn(rho: float, ascent_fraction: float = 1.0, synchronised: bool = True) -> Callable:
  """``step_fn(model, optimizer, objective) -> update(images, labels) -> loss`` of SAM.

  ``objective(labels, logits, extra_losses)`` is the engine's per-replica loss (sum over the
  replica's examples / global batch). The returned loss is the SAM objective: the loss at
  ``w + e`` on the whole batch.
  """
  rho, ascent_fraction = float(rho), float(ascent_fraction)
  if rho <= 0 or not 0.0 < ascent_fraction <= 1.0:
    raise ValueError(f"SAM needs rho > 0 and 0 < ascent_fraction <= 1 (got rho={rho}, "
                     f"ascent_fraction={ascent_fraction})")

  def make(model, optimizer, objective):
    def ascent_gradient(images, labels):
      batch = tf.shape(images)[0]
      count = tf.maximum(1, tf.cast(tf.cast(batch, tf.float32) * ascent_fraction, tf.int32))
      with tf.GradientTape() as tape:
        logits = model(images[:count], training=True)
        value = objective(labels[:count], logits, model.losses)
      grads = tape.gradient(value, model.trainable_variables)
      if synchronised:
        return _all_reduced(grads)
      # Per replica and rescaled to a mean over its own sub-batch (the norm is what matters).
      return grads

    def update(images, labels):
      grads = ascent_gradient(images, labels)
      perturbed = [w + e for w, e in zip(model.trainable_variables, ascent(grads, rho))]
      non_trainable = [v.value for v in model.non_trainable_variables]
      with tf.GradientTape() as tape:
        tape.watch(perturbed)
        logits, new_states = model.stateless_call(perturbed, non_trainable, images,
                                                  training=True)
        value = objective(labels, logits, ())
      descent = tape.gradient(value, perturbed)
      for variable, state in zip(model.non_trainable_variables, new_states):
        variable.assign(state)  # dropout / stochastic-depth seeds advance as in a plain step
      optimizer.apply_gradients(zip(descent, model.trainable_variables))
      return value

    return update

  return make


def from_config(config: dict) -> Callable | None:
  """The ``step_fn`` of ``config['sam']`` ('none', 'standard', 'fractional'), or None."""
  form = config["sam"] or "none"
  if form not in FORMS:
    raise ValueError(f"config.sam={form!r} is unknown; use one of {FORMS}")
  if form == "none":
    return None
  fraction = 1.0 if form == "standard" else float(config["sam_ascent_fraction"])
  return sam_step_fn(float(config["sam_rho"]), fraction, synchronised=form == "standard")
