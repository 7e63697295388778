"""Where the study keeps its runs, and whether a finished run there is the one asked for.

``<workdir>/runs/<name>``: a pre-training run; ``<workdir>/finetune/<name>``: its transfer
fine-tune. Each is a ``rundir.RunDirectory``; a finished one is reused, after
``check_reusable`` has made sure it is not another study's run under the same name.
"""

from __future__ import annotations

from reproduce.core import fileio
from reproduce.miniature import grid as grid_lib

RUNS_DIR = "runs"
FINETUNE_DIR = "finetune"

# What makes a finished run the one asked for: a workdir holding another study's runs under
# the same names (another --dataset, --seed, --batch_size, ...) must not be reused silently.
REUSE_CONFIG_KEYS = ("model", "dataset", "seed", "data_seed", "batch_size", "base_lr",
                     "budget_core_hours", "epochs", "label_smoothing", "resolution")


def run_dir(workdir: str, name: str) -> str:
  return fileio.join(workdir, RUNS_DIR, name)


def finetune_dir(workdir: str, name: str) -> str:
  return fileio.join(workdir, FINETUNE_DIR, name)


def check_reusable(path: str, done: dict, config, plan) -> None:
  """``StudyError`` naming ``path`` when its finished run is not the run ``config`` and
  ``plan`` describe (another study's run in the same workdir)."""
  recorded = done.get("config") or {}
  differ = [key for key in REUSE_CONFIG_KEYS if recorded.get(key) != config.get(key)]
  if done.get("steps") not in (None, plan.steps):
    differ.append(f"steps {done.get('steps')} != {plan.steps}")
  if differ:
    raise grid_lib.StudyError(
        f"{path} holds another run ({', '.join(differ)} differ): use another --workdir "
        f"or delete it")
