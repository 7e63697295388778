"""Fit scaling laws over finished runs and write them to TensorBoard.

  python -m reproduce.fit_scaling --runs='runs/*' --logdir=tb/scaling \
      [--compute=planned|measured] [--bootstrap=200] [--irreducible]

Writes fits.json, points.csv and TensorBoard figures/scalars/hparams/text under --logdir
(docs/scaling.md). Bad input (no runs, missing results.json, too few points) prints one line
on stderr and exits 2.
"""

from __future__ import annotations

from absl import app
from absl import flags

from reproduce.core import cli
from reproduce.core import formatting

_RUNS = flags.DEFINE_string("runs", None, "Glob(s), comma-separated, of run dirs or "
                            "results.json files (local or gs://).")
_LOGDIR = flags.DEFINE_string("logdir", None, "Output dir for TensorBoard, fits.json and "
                              "points.csv.")
_COMPUTE = flags.DEFINE_enum("compute", "planned", ["planned", "measured"],
                             "Compute of each run: the plan's core hours or the measured ones.")
_BOOTSTRAP = flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples for confidence "
                                  "intervals.")
_SEED = flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
_IRREDUCIBLE = flags.DEFINE_bool("irreducible", False, "Fit L = E + a*C^-b instead of "
                                 "L = a*C^-b.")


def _family_lines(family: str, entry: dict) -> list[str]:
  """One family's own fits: the loss law, optimal size/epochs, the optimal-LR trend."""
  law = entry.get("fit")
  lines = [f"{family}: {entry['n_runs']} runs, frontier {len(entry['frontier'])} points"
           + (f"; L = {law['a']:.4g} * C^-{law['b']:.4g} (b CI "
              f"{formatting.interval(law['ci']['b'])})" if law else "")]
  opt = entry.get("optimal_scaling")
  if opt:
    ratio = opt["ratio"]["value"]
    parts = [f"{part} ~ C^{opt[part]['exponent']:.3g} "
             f"(CI {formatting.interval(opt[part]['ci']['exponent'])})"
             for part in ("size", "epochs")]
    lines.append(f"{family}: optimal {', '.join(parts)}, ratio "
                 f"{'n/a' if ratio is None else f'{ratio:.3g}'} "
                 f"(CI {formatting.interval(opt['ratio']['ci'])}); size = {opt['size_axis']}, "
                 f"iso-compute vertices of {opt['n']} of {opt['n_budgets']} budgets")
  floor = entry.get("floor")
  if floor:
    lines.append(f"{family}: floor diagnostic E = {floor['E']:.4g} of L = E + a*C^-b, "
                 f"E / top-budget loss {floor['E_over_top_loss']:.2f}")
  trend = entry.get("lr_trend")
  if trend:
    lines.append(f"{family}: optimal LR ~ epochs^{trend['pooled_slope']:.3g} "
                 f"(CI {formatting.interval(trend.get('ci'))}, "
                 f"{len(entry['optimal_lr'])} LR sweeps)")
  return lines


def summary_lines(fits: dict) -> list[str]:
  """A short human summary of ``fits``: the pooled law, then each family's own fits."""
  law = fits["loss_vs_compute"]
  e_text = f"{law['E']:.4g} + " if law["form"].startswith("L = E") else ""
  lines = [f"{fits['n_runs']} runs, compute in {fits['compute_kind']} {fits['compute_unit']}; "
           f"pooled frontier {len(fits['frontier'])} points",
           f"loss: L = {e_text}{law['a']:.4g} * C^-{law['b']:.4g}  "
           f"(pooled over families; b CI {formatting.interval(law['ci']['b'])}, "
           f"rmse(log L) {law['rmse_log']:.3g})"]
  for family, entry in sorted(fits.get("per_family", {}).items()):
    lines += _family_lines(family, entry)
  for name, note in fits.get("notes", {}).items():
    lines.append(f"skipped {name}: {note}")
  return lines


def main(argv):
  cli.refuse_stray_arguments(argv)
  for flag in (_RUNS, _LOGDIR):
    if not flag.value:
      cli.fail(f"--{flag.name} is required")
  if _BOOTSTRAP.value < 0:
    cli.fail(f"--bootstrap={_BOOTSTRAP.value}: expected a count >= 0")
  cli.start_tensorflow()
  # pylint: disable=g-import-not-at-top  (after flags: see core/cli.py)
  from reproduce.analysis import fits as fits_lib
  from reproduce.analysis import outputs
  from reproduce.analysis import runs
  from reproduce.analysis import tensorboard
  with cli.errors_as_one_line():
    points = runs.load_points(_RUNS.value, _COMPUTE.value)
    fits = fits_lib.fit_all(points, irreducible=_IRREDUCIBLE.value, bootstrap=_BOOTSTRAP.value,
                            seed=_SEED.value)
  files = outputs.write_fit_files(_LOGDIR.value, points, fits)
  tensorboard.write_fits(_LOGDIR.value, points, fits)
  print("\n".join(summary_lines(fits)))
  print(f"wrote {', '.join(files)} and TensorBoard runs under {_LOGDIR.value}")


if __name__ == "__main__":
  app.run(main, flags_parser=cli.parse_flags)
