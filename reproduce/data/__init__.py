"""Input data: sources (tfds, ImageFolder, TFRecords, embedded digits), epoch-exact order,
stateless preprocessing and augmentation, and the per-host ``tf.data`` pipelines.

The public API is re-exported here; the training package uses only these names.
"""

from reproduce.data.pipeline import (AUGMENT_DEFAULTS, MEAN_RGB, STDDEV_RGB, DataError,
                                     DataSource, describe, eval_crop_padding, eval_image,
                                     example_order, heldout_dataset, load_source, mix_batch,
                                     train_dataset, train_image)

__all__ = ["AUGMENT_DEFAULTS", "MEAN_RGB", "STDDEV_RGB", "DataError", "DataSource", "describe",
           "eval_crop_padding", "eval_image", "example_order", "heldout_dataset", "load_source",
           "mix_batch", "train_dataset", "train_image"]
