"""Models for inference, from a training run directory or a converted-weights directory.

  run directory       ``model_dir`` of ``reproduce.train``, read through
                      ``rundir.RunDirectory``: the model is rebuilt as the engine builds it
                      (``builders.build_model``) and the latest checkpoint restored with its
                      optimizer, whose EMA weights are used when it keeps them.
  converted weights   ``model.json`` + ``model.weights.h5`` written by ``reproduce.convert``
                      (read by ``model_defs.weights_file``).

``ema``: "auto" takes EMA weights when the source has them; "true" requires them; "false"
requires raw weights (a converted directory holds one set, its model.json says which).
A ViT or hybrid evaluated at another resolution gets its position embedding resampled. Each model
carries its ``input_range`` (the pixel range its weights expect): a run's
``config.input_range`` (None: ImageNet mean/std), a converted directory's model.json field;
and its ``crop`` (evaluate's default): a run's ``config.eval_crop`` (None: 'nfnet'), the
family's for converted weights (``weights_file.source_eval_crop``: 'vit' for ViTs and hybrids).
"""

from __future__ import annotations

import dataclasses
import re

import keras
import tensorflow as tf

import model_defs
from model_defs import converters
from model_defs import weights_file
from reproduce.core import cli
from reproduce.core import fileio
from reproduce import data
from reproduce.train import checkpoints
from reproduce.train import lr_schedule
from reproduce.train import optim
from reproduce.train import rundir
from reproduce.train import builders

EMA_CHOICES = ("auto", "true", "false")
# Checkpoint keys of the model's trainable variables (tracked through the optimizer).
_TRAINABLE_KEY = re.compile(r"^optimizer/_trainable_variables/(\d+)/")


class ModelLoadError(rundir.EngineError):
  """The weights cannot be found, read or matched; one line."""


@dataclasses.dataclass
class LoadedModel:
  """A model with what is needed to evaluate it at any resolution."""
  model: keras.Model
  name: str
  num_classes: int
  overrides: dict             # build options apart from image_size
  resolution: int             # the resolution it was trained / converted at
  weights: str                # "ema" or "raw"
  source: str                 # "run" or "converted"
  path: str
  input_range: str = data.DEFAULT_INPUT_RANGE  # data.INPUT_RANGES: what the weights expect
  origin: str = ""            # converted weights: model.json's source (e.g. deepmind:F0_haiku.npz)
  crop: str = "nfnet"         # the eval crop its weights are scored with (evaluate's default)

  def info(self) -> dict:
    return {"model": self.name, "num_classes": self.num_classes,
            "train_resolution": self.resolution, "weights": self.weights,
            "source": self.source, "path": self.path, "input_range": self.input_range}


def choose_weights(ema: str, available: set[str], path: str) -> str:
  """"ema" or "raw": the set of ``available`` ones that ``ema`` (auto/true/false) picks."""
  if ema not in EMA_CHOICES:
    raise ModelLoadError(f"--ema={ema!r}: use one of {list(EMA_CHOICES)}")
  wanted = {"auto": "ema" if "ema" in available else "raw", "true": "ema", "false": "raw"}[ema]
  if wanted not in available:
    raise ModelLoadError(f"--ema={ema} but {path} has no {wanted.upper()} weights")
  return wanted


def checkpoint_classes(checkpoint_path: str) -> int:
  """Output classes of a run's checkpoint: the width of its last rank-2 trainable variable
  (the classifier, as ``optim.classifier_kernels`` finds it)."""
  shapes = tf.train.load_checkpoint(checkpoint_path).get_variable_to_shape_map()
  kernels = sorted((int(m.group(1)), shape) for key, shape in shapes.items()
                   if (m := _TRAINABLE_KEY.match(key)) and len(shape) == 2)
  if not kernels:
    raise ModelLoadError(f"checkpoint {checkpoint_path} holds no classifier weights")
  return int(kernels[-1][1][-1])


def _load_run(path: str, ema: str) -> LoadedModel:
  run_directory = rundir.RunDirectory(path)
  config, plan = run_directory.config(), run_directory.plan()
  directory = run_directory.checkpoint_dir
  latest = run_directory.latest_checkpoint()
  if not latest:
    raise ModelLoadError(f"run {path} has no checkpoint in {directory}")
  num_classes = checkpoint_classes(latest)
  model = builders.build_model(config, plan, num_classes)
  optimizer = builders.build_optimizer(config, lr_schedule.schedule_from_plan(plan), model, num_classes)
  checkpoints.RunCheckpoints(directory, model, optimizer, keep=1).restore()
  has_ema = bool(getattr(optimizer, "ema_variables", None))  # AdamW keeps none
  weights = choose_weights(ema, {"raw", "ema"} if has_ema else {"raw"}, path)
  if weights == "ema":
    with optim.swap_in_ema(optimizer):
      ema_weights = model.get_weights()
    model.set_weights(ema_weights)
  overrides = {k: v for k, v in dict(config.get("model_overrides") or {}).items()
               if k != "image_size"}
  return LoadedModel(model, plan.model, num_classes, overrides, int(plan.resolution), weights,
                     "run", path, data.check_input_range(config.get("input_range")),
                     crop=config.get("eval_crop") or "nfnet")


def _build(name: str, num_classes: int, overrides: dict, resolution: int) -> keras.Model:
  """``model_defs.build``, ViTs and hybrids (and fixed-size models) at ``resolution``, built."""
  overrides = dict(overrides)
  if model_defs.has_position_grid(name) or overrides.get("image_size"):
    overrides["image_size"] = int(resolution)
  model = model_defs.build(name, num_classes=num_classes, **overrides)
  model(tf.zeros((1, resolution, resolution, 3)), training=False)
  return model


def _load_converted(path: str, ema: str) -> LoadedModel:
  try:
    model, info = weights_file.load(path)
  except weights_file.WeightsFileError as e:
    raise ModelLoadError(cli.first_line(e)) from None
  weights = choose_weights(ema, {"ema" if info.get("ema") else "raw"}, path)
  overrides = dict(info.get("model_overrides") or {})
  return LoadedModel(model, info["model"], int(info["num_classes"]), overrides,
                     int(info["resolution"]), weights, "converted", path,
                     data.check_input_range(info["input_range"]), str(info["source"]),
                     weights_file.source_eval_crop(model_defs.get_spec(info["model"]).family))


def load(path: str, ema: str = "auto") -> LoadedModel:
  """The model of a run directory or converted-weights directory at its own resolution."""
  path = fileio.expand(path).rstrip("/")
  loader = (_load_run if rundir.RunDirectory(path).is_run() else
            _load_converted if fileio.exists(fileio.join(path, weights_file.CONFIG_FILE)) else None)
  if loader is not None:
    try:
      return loader(path, ema)
    except ModelLoadError:
      raise
    except (OSError, ValueError, AssertionError, tf.errors.OpError) as e:
      # Unreadable JSON, missing or mismatched weights: the files do not hold this model.
      raise ModelLoadError(f"cannot load --weights={path}: {cli.first_line(e)}") from None
  raise ModelLoadError(f"--weights={path} is neither a run directory ({rundir.CONFIG_FILE}) "
                       f"nor a converted-weights directory ({weights_file.CONFIG_FILE})")


def at_resolution(loaded: LoadedModel, resolution: int) -> keras.Model:
  """The model for ``resolution`` inputs: itself when its input size allows, else rebuilt
  there (ViT and hybrid position embeddings resampled, bicubic)."""
  height = loaded.model.inputs[0].shape[1] if loaded.model.inputs else None
  if height in (None, resolution):
    return loaded.model
  model = _build(loaded.name, loaded.num_classes, loaded.overrides, resolution)
  if model_defs.has_position_grid(loaded.name):
    converters.vit.load_weights_across_resolution(loaded.model, model)
  else:
    model.set_weights(loaded.model.get_weights())
  return model
