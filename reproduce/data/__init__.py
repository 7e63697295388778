"""Input data: sources (tfds, ImageFolder, TFRecords, ArrayRecords, embedded digits),
epoch-exact order, stateless preprocessing and augmentation, and the per-host ``tf.data``
pipelines.

Modules: ``sources`` (``load_source``) over ``tfds_source``, ``tfrecord_source``,
``imagefolder_source`` and ``record_index``; ``datasource`` (``DataSource``, held-out rule);
``augment_defaults``; ``order``; ``preprocess``; ``randaugment``; ``mixing``; ``pipelines``;
``imagenet_subsets`` (the 200 classes of ImageNet-A and -R); ``digits`` and ``fashion_mnist``
(TFDS builders over ``kit_builders``). The public API is re-exported here; the training and
evaluation packages use only these names.
"""

from reproduce.data.augment_defaults import AUGMENT_DEFAULTS
from reproduce.data.datasource import DataError, DataSource, describe
from reproduce.data.imagenet_subsets import subset_indices
from reproduce.data.mixing import mix_batch
from reproduce.data.order import SHARD_ORDER_FROM, SHARD_WINDOW, example_order
from reproduce.data.pipelines import heldout_dataset, train_dataset
from reproduce.data.preprocess import (DEFAULT_INPUT_RANGE, EVAL_CROPS, INPUT_RANGES, MEAN_RGB,
                                       STDDEV_RGB, check_input_range, eval_crop_padding,
                                       eval_image, eval_pixels, normalise, train_image)
from reproduce.data.record_index import write_record_counts
from reproduce.data.sources import load_eval_source, load_source, split_spec
from reproduce.data.tfds_source import load_tfds_split

__all__ = ["AUGMENT_DEFAULTS", "DEFAULT_INPUT_RANGE", "EVAL_CROPS", "INPUT_RANGES", "MEAN_RGB",
           "SHARD_ORDER_FROM", "SHARD_WINDOW", "STDDEV_RGB", "DataError", "DataSource",
           "check_input_range", "describe", "eval_crop_padding", "eval_image", "eval_pixels",
           "example_order", "normalise", "heldout_dataset", "load_eval_source", "load_source",
           "load_tfds_split", "mix_batch", "split_spec", "subset_indices", "train_dataset",
           "train_image", "write_record_counts"]
