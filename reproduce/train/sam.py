"""Sharpness-aware minimisation (SAM, Foret et al. 2021) as a train-step variant.

``sam_step_fn(rho, form, ascent_fraction)`` returns a ``step_fn`` for
``steps.make_train_chunk`` (and ``loop.train``). Every form takes one ascent step

  e = rho * g / ||g||          (||e|| = rho, along the normalised gradient)

then the gradient at ``w + e`` on the replica's whole batch, applied to ``w`` with the run's
optimizer (AGC, weight decay, EMA included). The forms differ in ``g``, and are named for
what they do:

* ``per_replica`` (the SAM authors' code, google-research/sam ``flax_training.py``: the
  ascent gradient of each replica's own batch, not all-reduced, ``sync_perturbations=False``
  by default; m-sharpness with m = the per-replica batch);
* ``fractional`` (the NFNet paper's cheaper variant, [N] A.4): the gradient of the first
  ``ascent_fraction`` (20% in [N]) of each replica's batch, not all-reduced;
* ``global``: the gradient of the whole global batch, all-reduced across replicas, so every
  replica perturbs identically (neither reference's; what this kit called "standard").
  ``standard`` is still read, as ``global``.

Both passes use the same random state: the ascent and the descent forward passes run
``model.stateless_call`` from the same dropout / stochastic-depth seeds (the SAM code uses one
``rng`` for both), so with the whole batch (per_replica, global) they drop the same units; the
seeds then advance once, as in a plain step. ``w`` itself is never overwritten, so "restore
w" cannot be missed and the replicas' weights stay identical. A SAM step costs
``1 + ascent share`` forward+backward passes (``step_cost``).
"""

from __future__ import annotations

from typing import Callable

import tensorflow as tf

FORMS = ("none", "per_replica", "fractional", "global")
ALIASES = {"standard": "global"}  # the name this kit used before the forms were named
SYNCHRONISED = {"per_replica": False, "fractional": False, "global": True}


def canonical(form: str | None) -> str:
  """The form's name in ``FORMS`` (None: 'none'; 'standard': 'global'); ValueError if unknown."""
  form = ALIASES.get(form or "none", form or "none")
  if form not in FORMS:
    raise ValueError(f"config.sam={form!r} is unknown; use one of {FORMS}")
  return form


def ascent_share(form: str, ascent_fraction: float) -> float:
  """The share of each replica's batch the ascent pass sees (1 unless ``fractional``)."""
  form = canonical(form)
  if form == "none":
    return 0.0
  return float(ascent_fraction) if form == "fractional" else 1.0


def step_cost(form: str, ascent_fraction: float) -> float:
  """Forward+backward passes per step, relative to a plain step."""
  return 1.0 + ascent_share(form, ascent_fraction)


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


def sam_step_fn(rho: float, form: str = "per_replica", ascent_fraction: float = 1.0) -> Callable:
  """``step_fn(model, optimizer, objective) -> update(images, labels) -> loss`` of SAM.

  ``objective(labels, logits, extra_losses)`` is the engine's per-replica loss (sum over the
  replica's examples / global batch). The returned loss is the SAM objective: the loss at
  ``w + e`` on the whole batch.
  """
  form = canonical(form)
  rho, share = float(rho), ascent_share(form, ascent_fraction)
  if form == "none" or rho <= 0 or not 0.0 < share <= 1.0:
    raise ValueError(f"SAM needs a form in {FORMS[1:]}, rho > 0 and 0 < ascent_fraction <= 1 "
                     f"(got {form!r}, rho={rho}, ascent_fraction={ascent_fraction})")

  def make(model, optimizer, objective):
    def loss_and_states(weights, states, images, labels):
      logits, new_states = model.stateless_call(weights, states, images, training=True)
      return objective(labels, logits, ()), new_states

    def update(images, labels):
      states = [v.value for v in model.non_trainable_variables]  # the seeds of both passes
      weights = [v.value for v in model.trainable_variables]
      count = tf.maximum(1, tf.cast(tf.cast(tf.shape(images)[0], tf.float32) * share,
                                    tf.int32))
      with tf.GradientTape() as tape:
        tape.watch(weights)
        value, _ = loss_and_states(weights, states, images[:count], labels[:count])
      grads = tape.gradient(value, weights)
      if SYNCHRONISED[form]:
        grads = _all_reduced(grads)
      perturbed = [w + e for w, e in zip(weights, ascent(grads, rho))]
      with tf.GradientTape() as tape:
        tape.watch(perturbed)
        value, new_states = loss_and_states(perturbed, states, images, labels)
      descent = tape.gradient(value, perturbed)
      for variable, state in zip(model.non_trainable_variables, new_states):
        variable.assign(state)  # dropout / stochastic-depth seeds advance as in a plain step
      optimizer.apply_gradients(zip(descent, model.trainable_variables))
      return value

    return update

  return make


def from_config(config: dict) -> Callable | None:
  """The ``step_fn`` of ``config['sam']`` (``FORMS``; 'standard' reads as 'global'), or None."""
  form = canonical(config["sam"])
  if form == "none":
    return None
  return sam_step_fn(float(config["sam_rho"]), form, float(config["sam_ascent_fraction"]))
