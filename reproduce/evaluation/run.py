"""The evaluation of one model on several datasets and resolutions (``reproduce.evaluate``)."""

from __future__ import annotations

import math

import tensorflow as tf

from reproduce.core import fileio
from reproduce.core import published
from reproduce.evaluation import datasets as datasets_lib
from reproduce.evaluation import outputs
from reproduce.evaluation import runner
from reproduce.evaluation import specs
from reproduce.train import model_loading
from reproduce.train import rundir


def _destination(loaded, output: str | None):
  """(the directory of results.json and PNGs, as a ``RunDirectory``; TensorBoard log
  directory)."""
  if output:
    directory = rundir.RunDirectory(output)
    return directory, directory.tensorboard_dir
  if loaded.source != "run":
    raise specs.EvaluationError("--output is required for converted weights")
  directory = rundir.RunDirectory(loaded.path)
  if directory.results() is None:
    raise specs.EvaluationError(f"run {loaded.path} has no results.json yet (unfinished): "
                                "pass --output")
  return directory, fileio.join(directory.tensorboard_dir, "eval")


def expected_top1_line(loaded, entry: dict) -> str:
  """The published ImageNet top-1 of the model beside the measured one (NFNets F0-F6: the
  released DeepMind weights, [N] Table 3 at each variant's test resolution)."""
  measured, count = entry.get("top1"), int(entry.get("examples") or 0)
  where = "".join(f", {k} {entry[k]}" for k in ("resolution", "crop") if entry.get(k))
  shown = (f"{100 * measured:.2f}% on {count} images{where}" if measured is not None
           else "nothing measured")
  key = f"{loaded.name}.imagenet_top1"
  try:
    row = published.get(key)
  except KeyError:
    return (f"  expected top-1: none recorded for {loaded.name} (core/published.py); "
            f"measured {shown}")
  spread = (f" (+-{200 * math.sqrt(max(measured * (1 - measured), 1e-4) / count):.1f} "
            f"points at 2 s.e.)") if measured is not None and count else ""
  return (f"  expected top-1 {row.value:g}% ({row.source}: {row.convention}) vs measured "
          f"{shown}{spread}")


def run(weights: str, datasets, resolutions=(), crop: str | None = None, batch_size: int = 64,
        data_dir: str | None = None, ema: str = "auto", output: str | None = None,
        max_examples: int | None = None, class_map: str | None = None,
        manual_dir: str | None = None, say=print) -> dict:
  """Everything ``main`` does, callable from Python; returns the results record."""
  names, resolutions = specs.check_usage(weights, datasets, resolutions, batch_size, max_examples)
  if crop is not None:
    specs.check_crop(crop)
  sources = [datasets_lib.open_source(n, data_dir, manual_dir) for n in names]  # bad data: before weights
  try:
    loaded = model_loading.load(weights, ema)
  except model_loading.ModelLoadError as e:  # the weights named by --weights: bad input
    raise specs.EvaluationError(str(e)) from None
  crop = crop or loaded.crop  # None: the crop its weights are scored with
  directory, logdir = _destination(loaded, output)
  mapping = datasets_lib.read_class_map(class_map) if class_map else None
  sets = [datasets_lib.open_set(n, loaded.num_classes, data_dir, mapping, source)
          for n, source in zip(names, sources)]
  entries = {}
  writer = tf.summary.create_file_writer(logdir)
  for resolution in resolutions or [loaded.resolution]:
    model = model_loading.at_resolution(loaded, resolution)
    for eval_set in sets:
      result = runner.evaluate_set(model, eval_set, resolution=resolution, crop=crop,
                                   batch_size=batch_size, max_examples=max_examples,
                                   input_range=loaded.input_range)
      entry = dict(result.entry, weights=loaded.weights)
      png = outputs.reliability_png(result.reliability, eval_set.name, entry)
      fileio.write_bytes(fileio.join(
          directory.path, outputs.file_stem(eval_set.name, resolution) + ".png"), png)
      outputs.write_tensorboard(writer, eval_set.name, entry, png)
      entries.setdefault(eval_set.name, {})[resolution] = entry
      say(outputs.summary_line(eval_set.name, entry))
      if eval_set.name == "imagenet2012":
        say(expected_top1_line(loaded, entry))
  writer.close()
  base = {"model": loaded.name, "weights": loaded.info()}
  return directory.add_eval(entries, base)
