"""``load_source``: a dataset spec to a ``DataSource``.

Specs:
  ``digits``                 scikit-learn digits through the kit's TFDS builder (offline).
  ``fashion_mnist``          Fashion-MNIST at 32 px through the kit's TFDS builder (from Debian's
                             dataset-fashion-mnist package or tfds; the study's default).
  ``tfds:NAME`` or ``NAME``  a prepared TFDS dataset (``imagenet2012`` prepares from manual tars).
  ``imagefolder:/root``      ``root/[train/]<class>/<image>`` files.
  ``tfrecord:/path/glob*``   TFRecords of ``tf.train.Example`` with ``image`` (encoded) + ``label``.
  ``arrayrecord:/path/glob*`` the same Examples in ArrayRecord files (scales: no record
                             read at start-up).

Every source is random access: a train example is addressed by its index ``0..train_size-1``.
"""

from __future__ import annotations

import dataclasses
import re

from reproduce.data.datasource import DataError, DataSource
from reproduce.data.imagefolder_source import load_imagefolder
from reproduce.data.order import SHARD_WINDOW
from reproduce.data.record_index import GLOB_KINDS
from reproduce.data.tfds_source import (load_digits, load_fashion_mnist, load_tfds,
                                        load_tfds_split, load_tfds_with_heldout_split,
                                        tfds_split_names)
from reproduce.data.tfrecord_source import load_record_glob

_TFDS_NAME = re.compile(r"[a-z][a-z0-9_]*(/[\w.-]+)?(:[\d.*]+)?")
_SPEC_HELP = ("use digits, fashion_mnist, tfds:NAME, imagefolder:DIR, tfrecord:GLOB or "
              "arrayrecord:GLOB")
_SPLIT = re.compile(r"[A-Za-z][\w.%:\[\]-]*")
HELDOUT, TRAIN = "heldout", "train"


def load_source(dataset: str, data_dir: str | None = None, manual_dir: str | None = None,
                heldout_size: int | None = None, seed: int = 0, *,
                skip_corrupt: bool = True, heldout_split: str | None = None,
                order: str = "auto", shard_window: int = SHARD_WINDOW) -> DataSource:
  """Opens a dataset and carves the held-out set from its train split (or reads it from
  ``heldout_split``).

  Args:
    dataset: ``digits``, ``fashion_mnist``, ``tfds:NAME`` / ``NAME``, ``imagefolder:/root``, ``tfrecord:/glob``,
      ``arrayrecord:/glob``.
    data_dir: TFDS data directory (digits default: ``~/.cache/nfnet_vit_scaling/...``).
    manual_dir: directory holding manually downloaded archives (imagenet2012 tars).
    heldout_size: examples held out; default 20% for digits, 2048 (of the test split) for
      fashion_mnist, 10k for imagenet2012, 130k for
      multi-label data, else 10% (at most 10k).
    seed: shuffles class-ordered sources (ImageFolder) before the held-out split is taken.
    skip_corrupt: ImageFolder only: drop unreadable images with a warning (else DataError).
    heldout_split: TFDS only: the held-out set is this whole split (e.g. ImageNet's official
      50k 'validation') and training uses the whole train split; None carves it from train.
    order: the train stream's order: "global" (one permutation of all train examples per
      epoch), "shards" (per-host shard order, memory per host independent of the dataset
      size; not for ImageFolder) or "auto" (shards above ``SHARD_ORDER_FROM`` train
      examples). See docs/data.md.
    shard_window: shards a host reads at a time in the shard order.

  Returns:
    The DataSource.

  Raises:
    DataError: unknown spec, missing or empty data, bad held-out size.
  """
  spec = dataset.strip()
  if not spec:
    raise DataError(f"--dataset is empty: {_SPEC_HELP}")
  kind, _, rest = spec.partition(":")
  ordering = (order, shard_window)
  if heldout_split:
    return _with_heldout_split(spec, kind, rest, data_dir, manual_dir, heldout_size,
                               heldout_split, ordering)
  if spec == "digits":
    return load_digits(data_dir, heldout_size, *ordering)
  if spec == "fashion_mnist":
    return load_fashion_mnist(data_dir, heldout_size, *ordering)
  if kind == "imagefolder" and rest:
    if order == "shards":
      raise DataError(f"{spec}: order='shards' needs record files (TFDS, tfrecord:, "
                      f"arrayrecord:); an ImageFolder is read in the global order")
    return load_imagefolder(spec, rest, heldout_size, seed, skip_corrupt)
  if kind in GLOB_KINDS and rest:
    return load_record_glob(spec, kind, rest, heldout_size, *ordering)
  if kind == "tfds" and rest:
    return load_tfds(spec, rest, data_dir, manual_dir, heldout_size, *ordering)
  if _TFDS_NAME.fullmatch(spec):
    return load_tfds(spec, spec, data_dir, manual_dir, heldout_size, *ordering)
  raise DataError(f"unknown dataset spec {dataset!r}: {_SPEC_HELP}")


def _with_heldout_split(spec: str, kind: str, rest: str, data_dir, manual_dir,
                        heldout_size: int | None, heldout_split: str,
                        ordering: tuple[str, int]) -> DataSource:
  """A TFDS source whose held-out set is a whole split of its own."""
  if heldout_size is not None:
    raise DataError(f"{spec}: set heldout_size or heldout_split={heldout_split!r}, not both")
  if kind == "tfds" and rest:
    return load_tfds_with_heldout_split(spec, rest, data_dir, manual_dir, heldout_split,
                                        *ordering)
  if _TFDS_NAME.fullmatch(spec) and spec not in ("digits", "fashion_mnist"):
    return load_tfds_with_heldout_split(spec, spec, data_dir, manual_dir, heldout_split,
                                        *ordering)
  raise DataError(f"heldout_split={heldout_split!r} needs a TFDS dataset (tfds:NAME), "
                  f"not {spec!r}")


def split_spec(spec: str) -> tuple[str, str | None]:
  """(dataset spec, split or None) of ``SPEC[@SPLIT]``."""
  base, at, split = spec.strip().rpartition("@")
  if at and base and _SPLIT.fullmatch(split):
    return base, split
  return spec.strip(), None


def load_eval_source(spec: str, data_dir: str | None = None,
                     manual_dir: str | None = None) -> DataSource:
  """A source whose held-out set is the set ``SPEC[@SPLIT]`` names for scoring
  (``reproduce.evaluate``; docs/data.md, "Evaluating"):

  - ``SPEC@heldout``: ``SPEC``'s held-out set exactly as pre-training carves it (``digits``:
    the last 20%, the set a mini run's held-out loss and top-1 are measured on).
  - ``SPEC@train``: ``SPEC``'s train examples (held-out ones excluded).
  - ``SPEC@SPLIT`` with a TFDS ``SPEC`` (``tfds:NAME``, ``NAME``; ``digits`` is
    ``tfds:sklearn_digits``): that whole TFDS split.
  - no split: ``imagefolder:DIR`` scores every image under DIR; ``tfds:NAME`` its
    'validation', else 'test' split, else its held-out set; any other spec its held-out set.
  """
  spec, split = split_spec(spec)
  kind, _, rest = spec.partition(":")
  tfds_name = (rest if kind == "tfds" and rest else spec if _TFDS_NAME.fullmatch(spec)
               else None)
  if tfds_name in ("digits", "sklearn_digits"):
    spec, tfds_name = "digits", "sklearn_digits"
  if split is None and kind == "imagefolder" and rest:
    source = load_source(spec, data_dir, manual_dir)
    everything = range(source.train_size + source.heldout_size)
    return dataclasses.replace(source, heldout_records=everything,
                               heldout_size=len(everything))
  if split is None and kind == "tfds" and spec != "digits":
    names = tfds_split_names(spec, tfds_name, data_dir, manual_dir)
    split = next((s for s in ("validation", "test") if s in names), HELDOUT)
  if split in (None, HELDOUT):
    return load_source(spec, data_dir, manual_dir)
  if split == TRAIN:
    source = load_source(spec, data_dir, manual_dir)
    return dataclasses.replace(source, heldout_records=source.train_records,
                               heldout_size=source.train_size)
  if tfds_name is None:
    raise DataError(f"{spec}@{split}: only TFDS datasets have named splits; use "
                    f"{spec}@{HELDOUT} or {spec}@{TRAIN}")
  return load_tfds_split(f"{spec}@{split}", tfds_name, data_dir, manual_dir, split)
