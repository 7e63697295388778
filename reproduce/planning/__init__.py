"""Compute budgets: hardware table, MFU calibration, the LR rule, ``Plan`` and allocation.

Pure arithmetic over ``model_defs`` counts and ``reproduce.core.published``. Importing this
package imports no TensorFlow and nothing from ``train``, ``data`` or ``analysis``;
``model_defs`` (and so TensorFlow) is imported when a model is first looked up.

Modules, one job each:
  errors       PlanError (one line, names the --flag) and the positive-number check
  hardware     accelerator table, peak FLOP/s per core, core-hour unit names
  cost         FLOPs per image, default resolution, steps of an epoch budget (reads model_defs)
  mfu          MFU calibrated on the paper's 110k-core-hour F7+ run
  lr           the LR rule, LR grids, default warm-up
  run_plan     Plan and plan_from_budget / plan_from_epochs / plan_from_config
  allocation   Figure-2 sweeps and the rule-of-thumb allocation of a budget
  plan_tables  the text tables ``python -m reproduce.plan`` prints
"""

from reproduce.planning.allocation import (FAMILIES, FIGURE2_EPOCHS, FIGURE2_MODELS, Allocation,
                                           allocate, epochs_exponent, family_models,
                                           reference_train_flops, sweep)
from reproduce.planning.cost import (TRAIN_FLOPS_PER_FORWARD, default_resolution, model_spec,
                                     model_stats, steps_from_epochs, train_flops_per_image)
from reproduce.planning.errors import PlanError, positive
from reproduce.planning.hardware import (HARDWARE, PAPER_HARDWARE, Hardware, compute_unit,
                                         get_hardware, measured_cpu_peak_flops,
                                         peak_flops_per_core)
from reproduce.planning.lr import (MINI_LR, WARMUP_CAP_STEPS, WARMUP_FRACTION, base_lr,
                                   default_warmup_steps, lr_grid, lr_rule, mini_lr,
                                   model_size_fraction)
from reproduce.planning.mfu import (anchor, anchor_mfu, calibration, calibration_note,
                                    hardware_mfu, implied_mfu)
from reproduce.planning.run_plan import (DECAY, Plan, plan_from_budget, plan_from_config,
                                         plan_from_epochs)

__all__ = [
    "Allocation", "DECAY", "FAMILIES", "FIGURE2_EPOCHS", "FIGURE2_MODELS", "HARDWARE", "Hardware",
    "MINI_LR", "PAPER_HARDWARE", "Plan", "PlanError", "TRAIN_FLOPS_PER_FORWARD", "WARMUP_CAP_STEPS",
    "WARMUP_FRACTION", "allocate", "anchor", "anchor_mfu", "base_lr", "calibration", "calibration_note",
    "compute_unit",
    "default_resolution", "default_warmup_steps", "epochs_exponent", "family_models",
    "get_hardware", "hardware_mfu", "implied_mfu", "lr_grid", "lr_rule",
    "measured_cpu_peak_flops", "mini_lr", "model_size_fraction", "model_spec", "model_stats",
    "peak_flops_per_core", "plan_from_budget", "plan_from_config", "plan_from_epochs",
    "positive", "reference_train_flops", "steps_from_epochs", "sweep", "train_flops_per_image",
]
