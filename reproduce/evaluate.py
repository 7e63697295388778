r"""Evaluation: ``python -m reproduce.evaluate``.

  python -m reproduce.evaluate --weights=DIR --datasets=imagenet2012,imagenet2012_real \
      [--resolution=256[,288]] [--crop=nfnet|vit] [--batch_size=64] [--data_dir=DIR] \
      [--manual_dir=DIR] [--ema=auto|true|false] [--output=DIR] [--max_examples=N] \
      [--class_map=FILE]

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

from reproduce.core import cli
from reproduce.evaluation import specs

_WEIGHTS = flags.DEFINE_string("weights", None, "Run directory or converted-weights directory.")
_DATASETS = flags.DEFINE_list("datasets", ["imagenet2012"], specs.SPEC_HELP)
_RESOLUTION = flags.DEFINE_list("resolution", [], "Resolution(s); default: the model's own.")
_CROP = flags.DEFINE_enum("crop", None, list(specs.CROPS), "Eval crop protocol (default: the "
                          "weights': 'vit' for converted ViTs, a run's config.eval_crop, else "
                          "'nfnet').")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Images per inference batch.")
_DATA_DIR = flags.DEFINE_string("data_dir", None, "tfds data_dir.")
_MANUAL_DIR = flags.DEFINE_string("manual_dir", None, "tfds manual_dir: ImageNet's train and val "
                                  "tars, to prepare imagenet2012 on first use.")
_EMA = flags.DEFINE_enum("ema", "auto", ["auto", "true", "false"],
                         "EMA weights: auto (when present), true (required), false (raw).")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (default: the run directory).")
_MAX_EXAMPLES = flags.DEFINE_integer("max_examples", None, "Score the first N images only.")
_CLASS_MAP = flags.DEFINE_string("class_map", None,
                                 "JSON {class name: model class index} for tfds:/imagefolder:.")


def main(argv):
  cli.refuse_stray_arguments(argv)
  with cli.errors_as_one_line():
    specs.check_usage(_WEIGHTS.value, _DATASETS.value, _RESOLUTION.value, _BATCH_SIZE.value,
                      _MAX_EXAMPLES.value)
  cli.start_tensorflow()
  from reproduce.evaluation import run as run_lib  # after flags: see core/cli.py
  with cli.errors_as_one_line():
    run_lib.run(_WEIGHTS.value, _DATASETS.value, resolutions=_RESOLUTION.value,
                crop=_CROP.value, batch_size=_BATCH_SIZE.value, data_dir=_DATA_DIR.value,
                ema=_EMA.value, output=_OUTPUT.value, max_examples=_MAX_EXAMPLES.value,
                class_map=_CLASS_MAP.value, manual_dir=_MANUAL_DIR.value,
                say=lambda line: print(line, flush=True))


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
