"""What a run trains: its model and its optimizer, built from the config and the plan.

``build_model`` and ``build_optimizer`` are the defaults of ``loop.train``; a fine-tuning
script passes its own (pre-trained weights, another optimizer).
"""

from __future__ import annotations

import keras
import tensorflow as tf

import model_defs
from reproduce.train import optim
from reproduce.train import rundir


def build_model(config: dict, plan, num_classes: int) -> keras.Model:
  """The model of ``plan.model`` with ``config['model_overrides']``, built at the plan's size."""
  overrides = dict(config.get("model_overrides") or {})
  resolution = int(plan.resolution)
  if model_defs.has_position_grid(plan.model):
    check_position_grid_eval_resolution(config, plan)
    overrides.setdefault("image_size", resolution)  # the position-embedding grid
  model = model_defs.build(plan.model, num_classes=num_classes, **overrides)
  if not model.built:
    model(tf.zeros((1, resolution, resolution, 3)), training=False)
  return model


OPTIMIZERS = ("sgd_agc", "adamw")


def check_position_grid_eval_resolution(config: dict, plan) -> None:
  """A ViT (or hybrid ViT) is built for one input size (its position-embedding grid): the
  held-out set is evaluated at the training resolution, as its authors' evaluators do."""
  requested = config["eval_resolution"]
  if requested and int(requested) != int(plan.resolution):
    raise rundir.EngineError(
        f"config.eval_resolution={requested} but {plan.model} is built for "
        f"{int(plan.resolution)} px inputs (its position-embedding grid); ViTs and hybrids evaluate the "
        f"held-out set at their training resolution: set --config.eval_resolution=None")


def build_optimizer(config: dict, schedule, model: keras.Model, num_classes: int):
  """The optimizer ``config['optimizer']`` names, built for the model's trainable variables.

  'sgd_agc' (NFNet recipe): SGD Nesterov + AGC (classifier kernel excluded) + coupled weight
  decay + optional EMA. 'adamw' (ViT recipe): ``optim.adamw``, no AGC.
  """
  name = config["optimizer"]
  if name == "sgd_agc":
    optimizer = optim.nfnet_sgd(
        schedule, momentum=float(config["momentum"]), nesterov=bool(config["nesterov"]),
        clipping=float(config["agc_clipping"] or 0.0), eps=float(config["agc_eps"]),
        exclude=list(config["agc_exclude"] or []),
        exclude_variables=optim.classifier_kernels(model, num_classes),
        weight_decay=float(config["weight_decay"] or 0.0), ema_decay=config["ema_decay"])
  elif name == "adamw":
    if config["ema_decay"]:
      raise rundir.EngineError("config.ema_decay is implemented for optimizer='sgd_agc' only")
    optimizer = optim.adamw(
        schedule, model.trainable_variables, weight_decay=float(config["weight_decay"] or 0.0),
        beta_1=float(config["adam_b1"]), beta_2=float(config["adam_b2"]),
        epsilon=float(config["adam_eps"]), global_clipnorm=config["grad_clip_norm"])
  else:
    raise rundir.EngineError(f"config.optimizer={name!r} is unknown; use one of {OPTIMIZERS}")
  optimizer.build(model.trainable_variables)
  return optimizer
