"""``python -m model_defs.summary``: params and compute of every registered model.

Analytic only (``model_defs.stats``); nothing is built. GMACs and GFLOPs (= 2 x MACs) are
per image for one forward pass; the NFNet paper's "GFLOPs" column counts MACs.
"""

from __future__ import annotations

import sys

import model_defs


def summary_rows(num_classes: int = 1000) -> list[dict]:
  """One dict per registered model with params and compute at train and test resolution."""
  rows = []
  for name in model_defs.names():
    spec = model_defs.get_spec(name)
    train = model_defs.stats(name, spec.train_resolution, num_classes)
    test = model_defs.stats(name, spec.test_resolution, num_classes)
    rows.append(dict(model=name, family=spec.family, mini=spec.mini, params=train.params,
                     train_resolution=spec.train_resolution, train_gmacs=train.gmacs,
                     train_gflops=train.gflops, test_resolution=spec.test_resolution,
                     test_gmacs=test.gmacs, test_gflops=test.gflops))
  return rows


def format_table(rows: list[dict]) -> str:
  """A fixed-width text table of ``summary_rows``."""
  header = (f"{'model':<22} {'family':<6} {'params(M)':>10} {'train px':>8} {'GMACs':>10} "
            f"{'GFLOPs':>10} {'test px':>8} {'GMACs':>10} {'GFLOPs':>10}")
  lines = [header, "-" * len(header)]
  for r in rows:
    lines.append(
        f"{r['model']:<22} {r['family']:<6} {r['params'] / 1e6:>10.2f} {r['train_resolution']:>8} "
        f"{r['train_gmacs']:>10.4g} {r['train_gflops']:>10.4g} {r['test_resolution']:>8} "
        f"{r['test_gmacs']:>10.4g} {r['test_gflops']:>10.4g}")
  lines.append("Per image, one forward pass, 1000 classes. GFLOPs = 2 x GMACs; "
               "the NFNet paper's 'GFLOPs' are MACs.")
  return "\n".join(lines)


def main(argv=None) -> int:
  del argv
  print(format_table(summary_rows()))
  return 0


if __name__ == "__main__":
  sys.exit(main(sys.argv))
