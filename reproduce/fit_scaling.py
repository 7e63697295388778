"""Fit scaling laws over finished runs and write them to TensorBoard.

  python -m reproduce.fit_scaling --runs='runs/*' --logdir=tb/scaling \
      [--compute=planned|measured] [--bootstrap=200] [--irreducible]

Writes fits.json, points.csv and TensorBoard figures/scalars/hparams/text under --logdir
(docs/scaling.md). Bad input (no runs, missing results.json, too few points) prints one line
on stderr and exits 2.
"""

from __future__ import annotations

import sys

from absl import app
from absl import flags

from reproduce.analysis import scaling

FLAGS = flags.FLAGS
flags.DEFINE_string("runs", None, "Glob(s), comma-separated, of run dirs or results.json files "
                    "(local or gs://).", required=True)
flags.DEFINE_string("logdir", None, "Output dir for TensorBoard, fits.json and points.csv.",
                    required=True)
flags.DEFINE_enum("compute", "planned", ["planned", "measured"],
                  "Compute of each run: the plan's core hours or the measured ones.")
flags.DEFINE_integer("bootstrap", 200, "Bootstrap resamples for confidence intervals.")
flags.DEFINE_integer("seed", 0, "Bootstrap seed.")
flags.DEFINE_bool("irreducible", False, "Fit L = E + a*C^-b instead of L = a*C^-b.")
flags.DEFINE_enum("optimal", "frontier", ["frontier", "bucket"],
                  "Which runs are 'optimal at compute C' for the size/epochs laws.")


def summary_lines(fits: dict) -> list[str]:
  """A short human summary of ``fits``."""
  law = fits["loss_vs_compute"]

  def ci(pair):
    return "CI n/a" if pair[0] is None else f"CI [{pair[0]:.4g}, {pair[1]:.4g}]"

  e_text = f"{law['E']:.4g} + " if law["form"].startswith("L = E") else ""
  lines = [f"{fits['n_runs']} runs, compute in {fits['compute_kind']} {fits['compute_unit']}; "
           f"frontier {len(fits['frontier'])} points",
           f"loss: L = {e_text}{law['a']:.4g} * C^-{law['b']:.4g}  (b {ci(law['ci']['b'])}, "
           f"rmse(log L) {law['rmse_log']:.3g})"]
  opt = fits.get("optimal_scaling")
  if opt:
    ratio = opt["ratio"]["value"]
    lines.append(f"optimal params ~ C^{opt['params']['exponent']:.3g} "
                 f"({ci(opt['params']['ci']['exponent'])}), epochs ~ "
                 f"C^{opt['epochs']['exponent']:.3g} ({ci(opt['epochs']['ci']['exponent'])}), "
                 f"ratio {'n/a' if ratio is None else f'{ratio:.3g}'}")
  if fits.get("lr_trend"):
    lines.append(f"optimal LR ~ epochs^{fits['lr_trend']['pooled_slope']:.3g} "
                 f"({len(fits['optimal_lr'])} LR sweeps)")
  for name, note in fits.get("notes", {}).items():
    lines.append(f"skipped {name}: {note}")
  return lines


def main(argv):
  del argv
  try:
    points = scaling.load_points(FLAGS.runs, FLAGS.compute)
    fits = scaling.fit_all(points, irreducible=FLAGS.irreducible, bootstrap=FLAGS.bootstrap,
                           seed=FLAGS.seed, optimal=FLAGS.optimal)
  except scaling.ScalingError as e:
    print(f"fit_scaling: {e}", file=sys.stderr)
    sys.exit(2)
  written = scaling.write_tensorboard(FLAGS.logdir, points, fits)
  print("\n".join(summary_lines(fits)))
  print(f"wrote {', '.join(written['files'])} and TensorBoard runs under {FLAGS.logdir}")


if __name__ == "__main__":
  app.run(main)
