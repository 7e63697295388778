"""Compute budgets: hardware table, MFU calibration, the LR rule, ``Plan`` and allocation.

Pure arithmetic over ``model_defs.stats`` and ``reproduce.core.published``; imports no
TensorFlow and nothing from ``train``, ``data`` or ``analysis``.
"""
