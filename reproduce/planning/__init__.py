"""Compute budgets: hardware table, MFU calibration, the LR rule, ``Plan`` and allocation.

Pure arithmetic over ``model_defs.stats`` and ``reproduce.core.published``; imports nothing
from ``train``, ``data`` or ``analysis``.
"""

from reproduce.planning.budget import PlanError, plan_from_config  # noqa: F401
