"""Ours vs published: ``python -m reproduce.compare``.

  python -m reproduce.compare --runs='runs/*' [--fits=fits/fits.json] [--logdir=DIR] \
      [--json_out=compare.json] [--compute=planned|measured] [--model_stats=false]

Prints the PASS / FAIL / UNDECIDED table (reproduce.analysis.versus_published; docs/scaling.md),
writes it to TensorBoard text and JSON, and exits 1 only when a counted row FAILs (an
UNDECIDED row, or nothing to compare, is not a failure), 2 on bad input.
"""

from __future__ import annotations

from absl import app
from absl import flags

from reproduce.core import cli

_RUNS = flags.DEFINE_string("runs", None, "Glob(s), comma-separated, of run dirs or "
                            "results.json files.")
_FITS = flags.DEFINE_string("fits", None, "fits.json from fit_scaling (default: fit --runs here).")
_LOGDIR = flags.DEFINE_string("logdir", None, "Write the table to TensorBoard text in "
                              "LOGDIR/compare.")
_JSON_OUT = flags.DEFINE_string("json_out", None, "Write rows, notes and verdict to this JSON "
                                "file.")
_COMPUTE = flags.DEFINE_enum("compute", "planned", ["planned", "measured"],
                             "Compute of each run when fitting here: planned or measured "
                             "core hours.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples when fitting here.")
_MODEL_STATS = flags.DEFINE_bool("model_stats", True,
                                 "Compare analytic model sizes with published tables.")


def main(argv):
  cli.refuse_stray_arguments(argv)
  if _BOOTSTRAP.value < 0:
    cli.fail(f"--bootstrap={_BOOTSTRAP.value}: expected a count >= 0")
  cli.start_tensorflow()
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  from reproduce.analysis import versus_published
  from reproduce.analysis import outputs
  from reproduce.analysis import tensorboard
  with cli.errors_as_one_line():
    result = versus_published.run(runs_glob=_RUNS.value, fits_path=_FITS.value,
                                  compute=_COMPUTE.value, bootstrap=_BOOTSTRAP.value,
                                  model_stats=_MODEL_STATS.value)
  print(versus_published.format_table(result))
  if _LOGDIR.value:
    tensorboard.write_compare(_LOGDIR.value, result)
  if _JSON_OUT.value:
    outputs.write_compare_json(_JSON_OUT.value, result)
  raise SystemExit(0 if result["passed"] else 1)


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
