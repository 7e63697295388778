"""Tiny Keras models registered as ModelSpecs for tests, and the registry edits tests make.

  spec = register_tiny_model("my_test_model")                  # nfnet family, mini, 16 px
  register_tiny_model("big_fake", config=dict(gmacs=9.5, params=70e6), counter=my_counter,
                      train_resolution=192, test_resolution=256, mini=False)
  register(dataclasses.replace(model_defs.get_spec("nfnet_f0"), name="f0_variant"))
  ...
  unregister("my_test_model")

Both builders have exact analytic counters, so ``model_defs.stats`` (and the engine's
results.json) work for them like for a real model.
"""

from __future__ import annotations

from typing import Callable, Mapping

import keras

from model_defs import registry
from model_defs.stats import ModelStats


def tiny_conv_builder(config, num_classes, name=None, **overrides):
  """conv -> global pool -> dense: builds in milliseconds at any resolution."""
  inputs = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name=name)


def tiny_conv_counter(config, resolution, num_classes, name=None, **overrides) -> ModelStats:
  """Exact params and MACs of ``tiny_conv_builder``."""
  params = 3 * 3 * 3 * 4 + 4 + 4 * num_classes + num_classes
  macs = resolution * resolution * 27 * 4 + 4 * num_classes
  return ModelStats(name, resolution, num_classes, params, macs)


def dropout_conv_builder(config, num_classes, name=None, dropout=0.25, **overrides):
  """A strided conv net with dropout (exercises Keras SeedGenerator state in checkpoints)."""
  inputs = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(8, 3, strides=2, padding="same", name="stem")(inputs)
  x = keras.layers.Activation("relu")(x)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dense(8, name="hidden")(x)
  if dropout:
    x = keras.layers.Dropout(dropout)(x)
  outputs = keras.layers.Dense(num_classes, name="head")(x)
  return keras.Model(inputs, outputs, name=name)


def dropout_conv_counter(config, resolution, num_classes, name=None, **overrides) -> ModelStats:
  """Exact params and MACs of ``dropout_conv_builder``."""
  params = 3 * 3 * 3 * 8 + 8 + 8 * 8 + 8 + 8 * num_classes + num_classes
  stem = -(-resolution // 2)
  macs = stem * stem * 27 * 8 + 8 * 8 + 8 * num_classes
  return ModelStats(name, resolution, num_classes, params, macs)


def register(spec: registry.ModelSpec) -> registry.ModelSpec:
  """Adds one test spec as its family module would (a spec of that name is replaced)."""
  registry.register_family(spec.family, [spec])
  return spec


def unregister(name: str) -> None:
  """Removes a test model; the kit never removes its own, so the registry offers no way to."""
  registry._REGISTRY.pop(name, None)  # pylint: disable=protected-access


def register_tiny_model(name: str, *, family: str = "nfnet", config: Mapping | None = None,
                        builder: Callable = tiny_conv_builder, counter: Callable | None = None,
                        train_resolution: int = 16, test_resolution: int | None = None,
                        mini: bool = True) -> registry.ModelSpec:
  """Registers (or re-registers) a test model ``name``; returns its spec.

  ``counter`` defaults to the exact counter of the two builders above. Remove it with
  ``unregister(name)``.
  """
  if counter is None:
    counter = dropout_conv_counter if builder is dropout_conv_builder else tiny_conv_counter
  unregister(name)  # a second registration replaces the first, even of another family
  return register(registry.ModelSpec(
      name=name, family=family, config=dict(config or {}), builder=builder, counter=counter,
      train_resolution=train_resolution, test_resolution=test_resolution or train_resolution,
      source="test fake", mini=mini))
