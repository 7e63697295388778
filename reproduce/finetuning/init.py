"""The starting point of a fine-tune: every weight but the classifier from ``--init``.

``--init`` is a pre-training ``model_dir`` (the latest checkpoint; EMA weights when the run
keeps them) or a converted-weights directory (``model.json`` + ``model.weights.h5``); both
are read by ``reproduce.train.model_loading.load``. The source is brought to the fine-tune
resolution first (NFNets take any input size; a ViT's position embedding is resampled,
``model_loading.at_resolution``). The fine-tune model gets a fresh head for its own classes.

A run of the same model and classes can instead be restored straight into the model being
trained (``run_initialiser``: the study's fine-tunes, which reuse one traced program).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np
import tensorflow as tf

from model_defs import weights_file
from reproduce.core import fileio
from reproduce.core.errors import UserError
from reproduce.train import model_loading
from reproduce.train import optim
from reproduce.train import rundir
from reproduce.train import builders

HEAD_INITS = ("zeros", "model")


class FinetuneError(UserError, ValueError):
  """A fine-tune that cannot start from its --init; one line."""


@dataclasses.dataclass
class Initialisation:
  """The non-head weights of the source, at the fine-tune resolution, plus its provenance."""
  path: str
  kind: str                   # "run" or "converted"
  model: str
  weights: str                # "ema" or "raw"
  source_classes: int
  source_resolution: int
  arrays: list                # (path, array) of every copied variable, in model order
  pretrain: dict              # the init run's compute (core hours), when it has results.json
  input_range: str = "imagenet"  # the pixel range the source's weights expect

  def info(self) -> dict:
    return {"path": self.path, "kind": self.kind, "model": self.model, "weights": self.weights,
            "source_classes": self.source_classes,
            "source_resolution": self.source_resolution, "input_range": self.input_range}


def input_range(init: Initialisation, configured: str | None) -> str:
  """The fine-tune's input range: the source's (its model.json or run config). A config that
  names another is refused: the body's weights were trained on the source's range."""
  if configured and configured != init.input_range:
    raise FinetuneError(f"config.input_range={configured!r} but --init={init.path} expects "
                        f"{init.input_range!r} pixels; leave config.input_range unset")
  return init.input_range


def head_variables(model: keras.Model, num_classes: int) -> list:
  """The classifier's kernel and bias (found structurally, as the optimizer finds it)."""
  kernels = optim.classifier_kernels(model, num_classes)
  if not kernels:
    raise FinetuneError(f"{model.name} has no classifier of width {num_classes}")
  layer_path = kernels[0].path.rsplit("/", 1)[0]
  return [v for v in model.weights if v.path.rsplit("/", 1)[0] == layer_path]


def body_variables(model: keras.Model, num_classes: int) -> list:
  """Every weight of ``model`` but its head and its random-seed states."""
  head = {id(v) for v in head_variables(model, num_classes)}
  return [v for v in model.weights if id(v) not in head and "seed_generator" not in v.path]


def pretrain_compute(path: str, kind: str) -> dict:
  """The init run's compute fields from its results.json (empty when there is none)."""
  record = rundir.RunDirectory(path).results() if kind == "run" else None
  if record is None:
    return {}
  return {key: record.get(key) for key in ("planned_core_hours", "measured_core_hours",
                                            "training_core_hours", "hardware", "model",
                                            "heldout_top1")}


def source_model(path: str) -> str:
  """The model name of a run or converted-weights directory (without loading weights)."""
  path = fileio.expand(path).rstrip("/")
  run_directory = rundir.RunDirectory(path)
  converted = fileio.join(path, weights_file.CONFIG_FILE)
  descriptions = [run_directory.config()] if run_directory.is_run() else []
  if fileio.exists(converted):
    descriptions.append(fileio.read_json(converted))
  for description in descriptions:
    model = (description or {}).get("model")
    if model:
      return str(model)
  raise FinetuneError(f"--init={path} is neither a run directory ({rundir.CONFIG_FILE}) nor "
                      f"a converted-weights directory ({weights_file.CONFIG_FILE})")


def load_init(path: str, resolution: int, ema: str = "auto") -> Initialisation:
  """Reads ``path`` and returns its non-head weights for ``resolution`` inputs."""
  try:
    loaded = model_loading.load(path, ema)
  except model_loading.ModelLoadError as e:
    raise FinetuneError(str(e).replace("--weights=", "--init=")) from None
  model = model_loading.at_resolution(loaded, int(resolution))
  arrays = [(v.path, np.asarray(v.numpy())) for v in body_variables(model, loaded.num_classes)]
  return Initialisation(loaded.path, loaded.source, loaded.name, loaded.weights,
                        loaded.num_classes, loaded.resolution, arrays,
                        pretrain_compute(loaded.path, loaded.source), loaded.input_range)


def transfer(init: Initialisation, model: keras.Model, num_classes: int,
             head_init: str = "model") -> None:
  """Copies the source's body into ``model`` (same order and shapes) and sets its head."""
  targets = body_variables(model, num_classes)
  if len(targets) != len(init.arrays):
    raise FinetuneError(f"--init={init.path} holds {len(init.arrays)} body weights but "
                        f"{model.name} has {len(targets)}: not the same architecture")
  for variable, (source_path, array) in zip(targets, init.arrays):
    if tuple(variable.shape) != array.shape:
      raise FinetuneError(f"--init={init.path}: {source_path} has shape {array.shape}, "
                          f"{variable.path} needs {tuple(variable.shape)}")
    variable.assign(array)
  set_head(model, num_classes, head_init)


def set_head(model: keras.Model, num_classes: int, head_init: str) -> None:
  """'model': the head keeps the builder's weights; 'zeros': a zero classifier, which starts
  from the uniform prediction."""
  if head_init not in HEAD_INITS:
    raise FinetuneError(f"config.head_init={head_init!r}: use one of {HEAD_INITS}")
  if head_init == "zeros":
    for variable in head_variables(model, num_classes):
      variable.assign(np.zeros(variable.shape, variable.dtype))


def restore_run_body(model: keras.Model, num_classes: int, checkpoint: str,
                     head_init: str = "model") -> None:
  """``model`` gets the raw weights of a run's ``checkpoint`` (the same model and classes)
  but its head, which keeps its own weights, then ``head_init``."""
  head = head_variables(model, num_classes)
  own_head = [v.numpy() for v in head]
  tf.train.Checkpoint(model=model).restore(checkpoint).expect_partial()
  for variable, value in zip(head, own_head):
    variable.assign(value)
  set_head(model, num_classes, head_init)


def initialiser(init: Initialisation, head_init: str = "model"):
  """``loop.train``'s initialise: ``(model, num_classes)`` gets ``init``'s body and a head."""

  def initialise(model: keras.Model, num_classes: int) -> None:
    transfer(init, model, num_classes, head_init)

  return initialise


def run_initialiser(run_dir: str, head_init: str = "model"):
  """``loop.train``'s initialise from a run of the same model and classes: its latest
  checkpoint's raw weights restored into the model being trained (no second model built),
  with a fresh head."""
  checkpoint = rundir.RunDirectory(run_dir).latest_checkpoint()

  def initialise(model: keras.Model, num_classes: int) -> None:
    restore_run_body(model, num_classes, checkpoint, head_init)

  return initialise


def model_fn(init: Initialisation, head_init: str = "model"):
  """A model_fn: the engine's model, initialised from ``init``."""

  def build(config: dict, plan, num_classes: int) -> keras.Model:
    model = builders.build_model(config, plan, num_classes)
    initialiser(init, head_init)(model, num_classes)
    return model

  return build
