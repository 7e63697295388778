"""A tiny Keras model builder for tests that register fake ModelSpecs."""

import keras


def tiny_conv_builder(config, num_classes, name=None, **overrides):
  """conv -> global pool -> dense: builds in milliseconds at any resolution."""
  inputs = keras.Input((None, None, 3))
  x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  return keras.Model(inputs, keras.layers.Dense(num_classes)(x), name=name)
