r"""Evaluation: ``python -m reproduce.evaluate``.

  python -m reproduce.evaluate --weights=DIR --datasets=imagenet2012,imagenet2012_real \
      [--resolution=256[,288]] [--crop=nfnet|vit] [--batch_size=64] [--data_dir=DIR] \
      [--ema=auto|true|false] [--output=DIR] [--max_examples=N] [--class_map=FILE]

--weights is a pre-training / fine-tuning run directory (reproduce.train) or a
converted-weights directory (reproduce.convert). Top-1, top-5, NLL and ECE (15 bins) of
every dataset at every resolution (default: the model's own) go to results.json (an
``eval`` section: the run's own results.json for a run directory, else OUTPUT/results.json),
TensorBoard (scalars and the reliability diagram) and a reliability PNG beside results.json.
See docs/evaluate.md. Bad input prints one line and exits 2.
"""

from __future__ import annotations

from absl import app
from absl import flags
from absl import logging

from reproduce.core import cli
from reproduce.evaluation import specs

_WEIGHTS = flags.DEFINE_string("weights", None, "Run directory or converted-weights directory.")
_DATASETS = flags.DEFINE_list("datasets", ["imagenet2012"], specs.SPEC_HELP)
_RESOLUTION = flags.DEFINE_list("resolution", [], "Resolution(s); default: the model's own.")
_CROP = flags.DEFINE_enum("crop", "nfnet", list(specs.CROPS), "Eval crop protocol.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per inference batch.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir.")
_EMA = flags.DEFINE_enum("ema", "auto", ["auto", "true", "false"],
                         "EMA weights: auto (when present), true (required), false (raw).")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (default: the run directory).")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Score the first N images only.")
_CLASS_MAP = flags.DEFINE_string("class_map", None,
                                 "JSON {class name: model class index} for tfds:/imagefolder:.")


def check_usage(weights, datasets, resolutions, batch_size, max_examples):
  """Checks that need no TensorFlow; returns (dataset specs, resolutions)."""
  if not weights:
    raise specs.EvaluationError("--weights is required (a run or converted-weights directory)")
  names = [specs.check_dataset(d) for d in datasets or [] if d.strip()]
  if not names:
    raise specs.EvaluationError(f"--datasets is empty: {specs.SPEC_HELP}")
  if batch_size < 1:
    raise specs.EvaluationError(f"--batch_size={batch_size} must be >= 1")
  if max_examples is not None and max_examples < 1:
    raise specs.EvaluationError(f"--max_examples={max_examples} must be >= 1")
  return names, specs.parse_resolutions(resolutions)


def _destination(loaded, output: str | None) -> tuple[str, str]:
  """(directory of results.json and PNGs, TensorBoard log directory)."""
  from reproduce.core import fileio  # pylint: disable=g-import-not-at-top
  from reproduce.evaluation import outputs  # pylint: disable=g-import-not-at-top
  if output:
    return output, fileio.join(output, "tensorboard")
  if loaded.source != "run":
    raise specs.EvaluationError("--output is required for converted weights")
  if not fileio.exists(outputs.results_path(loaded.path)):
    raise specs.EvaluationError(f"run {loaded.path} has no results.json yet (unfinished): "
                                "pass --output")
  return loaded.path, fileio.join(loaded.path, "tensorboard", "eval")


def run(weights: str, datasets, resolutions=(), crop: str = "nfnet", batch_size: int = 64,
        data_dir: str | None = None, ema: str = "auto", output: str | None = None,
        max_examples: int | None = None, class_map: str | None = None, say=print) -> dict:
  """Everything ``main`` does, callable from Python; returns the results record."""
  names, resolutions = check_usage(weights, datasets, resolutions, batch_size, max_examples)
  specs.check_crop(crop)
  cli.import_tensorflow()
  from reproduce.core import fileio  # pylint: disable=g-import-not-at-top
  from reproduce.evaluation import datasets as datasets_lib  # pylint: disable=g-import-not-at-top
  from reproduce.evaluation import models  # pylint: disable=g-import-not-at-top
  from reproduce.evaluation import outputs  # pylint: disable=g-import-not-at-top
  from reproduce.evaluation import runner  # pylint: disable=g-import-not-at-top
  loaded = models.load(weights, ema)
  directory, logdir = _destination(loaded, output)
  mapping = datasets_lib.read_class_map(class_map) if class_map else None
  sets = [datasets_lib.open_set(n, loaded.num_classes, data_dir, mapping) for n in names]
  entries = {}
  writer = cli.import_tensorflow().summary.create_file_writer(logdir)
  for resolution in resolutions or [loaded.resolution]:
    model = models.at_resolution(loaded, resolution)
    for eval_set in sets:
      result = runner.evaluate_set(model, eval_set, resolution=resolution, crop=crop,
                                   batch_size=batch_size, max_examples=max_examples)
      entry = dict(result.entry, weights=loaded.weights)
      png = outputs.reliability_png(result.reliability, eval_set.name, entry)
      fileio.write_bytes(fileio.join(
          directory, outputs.file_stem(eval_set.name, resolution) + ".png"), png)
      outputs.write_tensorboard(writer, eval_set.name, entry, png)
      entries.setdefault(eval_set.name, {})[resolution] = entry
      say(outputs.summary_line(eval_set.name, entry))
  writer.close()
  base = {"model": loaded.name, "weights": loaded.info()}
  return outputs.merge_results(outputs.results_path(directory), entries, base)


def main(argv):
  if len(argv) > 1:
    cli.fail(f"unexpected arguments: {' '.join(argv[1:])}")
  try:
    check_usage(_WEIGHTS.value, _DATASETS.value, _RESOLUTION.value, _BATCH_SIZE.value,
                _MAX_EXAMPLES.value)
  except specs.EvaluationError as e:
    cli.fail(cli.first_line(e))
  if not flags.FLAGS["verbosity"].present:
    # tfds logs INFO lines ("Constructing tf.data.Dataset ...") under app.run; errors and
    # results must be the only output.
    logging.set_verbosity(logging.WARNING)
  cli.start_tensorflow()
  import model_defs  # pylint: disable=g-import-not-at-top
  try:
    run(_WEIGHTS.value, _DATASETS.value, _RESOLUTION.value, _CROP.value, _BATCH_SIZE.value,
        _DATA_DIR.value, _EMA.value, _OUTPUT.value, _MAX_EXAMPLES.value, _CLASS_MAP.value,
        say=lambda line: print(line, flush=True))
  except (specs.EvaluationError, model_defs.UnknownModelError) as e:
    cli.fail(cli.first_line(e))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
