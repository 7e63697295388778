"""The study's grid: default models and budgets, run names, per-run configs and plans."""

from __future__ import annotations

from typing import Mapping

# Compute-matched pairs: per-image MACs at 32 px are 3.4M / 3.2M and 6.2M / 6.6M.
DEFAULT_NFNETS = ("nfnet_mini_f0", "nfnet_mini_f1")
DEFAULT_VITS = ("vit_mini_ti", "vit_mini_s")
DEFAULT_BUDGETS_CORE_SECONDS = (3.0, 6.0, 12.0, 24.0)
RESOLUTION = 32
# Steps of every run's fine-tune (configs/finetune_mini.py at 48 px, batch 16, without the
# regularisers: see ``finetune_config``): the same small compute for every run, about 3 min
# for the default 16 runs on 2 cores (mostly NFNet tracing).
DEFAULT_FINETUNE_STEPS = 64
# The ImageNet recipe's regularisers, off for a 64-step fine-tune on 1,437 images: measured on
# vit_mini_ti (24 core-s) at 64 steps, held-out top-1 0.54 with them (SAM, repeated
# augmentation x4, dropout 0.25, stochastic depth 0.1) and 0.80 without; nfnet_mini_f0 0.50
# and 0.54. Both families are fine-tuned the same way.
STUDY_FINETUNE = dict(sam="none", augment_multiplicity=1)
STUDY_FINETUNE_OVERRIDES = dict(dropout_rate=0.0, stochdepth_rate=0.0)


class StudyError(ValueError):
  """A bad flag value; one line naming the flag."""


def parse_budgets(values) -> list[float]:
  """Sorted unique positive budgets in core-seconds (``--budgets_core_seconds``)."""
  try:
    budgets = sorted({float(v) for v in values})
  except ValueError:
    raise StudyError(f"--budgets_core_seconds must be numbers, got {','.join(values)}") from None
  if not budgets or budgets[0] <= 0:
    raise StudyError("--budgets_core_seconds must be positive numbers")
  return budgets


def run_name(model: str, budget_core_seconds: float) -> str:
  return f"{model}__{budget_core_seconds:g}cs"


def family_config(model: str):
  """The config of ``model``'s family: pretrain_mini (NFNets: SGD + AGC, the planner's LR
  rule) or pretrain_mini_vit (ViTs: AdamW, base LR 1e-3)."""
  import model_defs  # pylint: disable=g-import-not-at-top
  from reproduce.configs import pretrain_mini  # pylint: disable=g-import-not-at-top
  from reproduce.configs import pretrain_mini_vit  # pylint: disable=g-import-not-at-top
  family = model_defs.get_spec(model).family
  return (pretrain_mini_vit if family == "vit" else pretrain_mini).get_config()


def study_config(model: str, budget_core_seconds: float, images_per_second_per_core: float,
                 batch_size: int, base_lr, seed: int):
  """The config of one run of the study: its family's recipe (``family_config``).

  ``base_lr``: None keeps the family config's LR; a number applies to every model; a
  mapping ``{family: lr}`` sets it per family (a family it omits keeps its config's).
  """
  import model_defs  # pylint: disable=g-import-not-at-top
  config = family_config(model)
  config.model = model
  config.resolution = RESOLUTION
  config.budget_core_hours = budget_core_seconds / 3600.0
  config.images_per_second_per_core = float(images_per_second_per_core)
  config.batch_size = int(batch_size)
  if isinstance(base_lr, Mapping):
    base_lr = base_lr.get(model_defs.get_spec(model).family)
  if base_lr is not None:
    config.base_lr = float(base_lr)
  config.seed = int(seed)
  config.log_every_steps = 10 ** 9  # the study prints its own progress line per run
  return config


def plan_runs(models, budgets, rates, source, batch_size, base_lr, seed):
  """(name, config, plan) of every feasible run; budgets below one step are skipped."""
  # Imported here: planning imports model_defs, hence TensorFlow, which the study's main
  # starts only after its flags are validated.
  from reproduce import planning  # pylint: disable=g-import-not-at-top
  runs, skipped = [], []
  for model in models:
    for budget in budgets:
      config = study_config(model, budget, rates[model], batch_size, base_lr, seed)
      try:
        plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                         num_classes=source.num_classes)
      except planning.PlanError as e:
        skipped.append(f"{run_name(model, budget)}: {e}")
        continue
      runs.append((run_name(model, budget), config, plan))
  return runs, skipped


def finetune_config(model: str, steps: int, dataset_size: int, seed: int,
                    images_per_second_per_core: float):
  """configs/finetune_mini.py for ``model``, set to run exactly ``steps`` steps, without its
  regularisers (``STUDY_FINETUNE``).

  ``images_per_second_per_core`` is the pre-training rate; the plan's core hours scale it by
  the pixel ratio (the fine-tune's measured core hours are what results.json reports).
  """
  from reproduce.configs import finetune_mini  # pylint: disable=g-import-not-at-top
  config = finetune_mini.get_config()
  config.model = model
  config.update(STUDY_FINETUNE)
  config.model_overrides.update(STUDY_FINETUNE_OVERRIDES)
  config.epochs = steps * int(config.batch_size) / dataset_size  # the planner rounds to steps
  config.warmup_steps = min(int(config.warmup_steps), max(steps // 4, 1))
  config.images_per_second_per_core = (float(images_per_second_per_core)
                                       * (RESOLUTION / int(config.resolution)) ** 2)
  config.seed = int(seed)
  config.log_every_steps = 10 ** 9  # the study prints its own line per fine-tune
  return config


def plan_finetunes(runs, steps: int, rates, source, seed: int):
  """(name, config, plan) of the fine-tune of every planned run (``plan_runs``' names)."""
  from reproduce import planning  # pylint: disable=g-import-not-at-top
  finetunes = []
  for name, pretrain_config, _ in runs:
    model = pretrain_config.model
    config = finetune_config(model, steps, source.train_size, seed, rates[model])
    plan = planning.plan_from_config(config, dataset_size=source.train_size,
                                     num_classes=source.num_classes)
    finetunes.append((name, config, plan))
  return finetunes
