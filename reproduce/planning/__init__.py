"""Compute budgets: hardware table, MFU calibration, the LR rule, ``Plan`` and allocation.

Pure arithmetic over ``model_defs.stats`` and ``reproduce.core.published``; imports no
TensorFlow and nothing from ``train``, ``data`` or ``analysis``.
"""

# Stand-in on the `train` branch only: the `planning` branch's package API (names re-exported
# here); at the merge this file is replaced by that branch's __init__.py.
from reproduce.planning.budget import (PlanError, default_resolution, get_hardware,  # noqa: E402
                                       plan_from_config)
from reproduce.planning.budget import _positive as positive  # noqa: E402
