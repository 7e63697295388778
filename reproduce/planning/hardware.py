"""How each hardware's core hours are named: the unit of compute on plots and in fits.json.

Compute in different units is never fitted or plotted on one axis.
"""

from __future__ import annotations

# Display name of each hardware key of the planner's table (``--hardware``).
DISPLAY_NAMES = {"tpu_v2": "TPU-v2", "tpu_v3": "TPU-v3", "tpu_v4": "TPU-v4", "tpu_v5e": "TPU-v5e",
                 "tpu_v5p": "TPU-v5p", "tpu_v6e": "TPU-v6e", "gpu_a100": "A100 GPU",
                 "gpu_h100": "H100 GPU", "gpu_h200": "H200 GPU", "cpu": "CPU"}


def compute_unit(hardware: str | None) -> str:
  """The unit name of core hours on ``hardware`` (e.g. ``"TPU-v4 core hours"``).

  An unknown name is used as it is (``"foo"`` -> ``"foo core hours"``).
  """
  name = DISPLAY_NAMES.get(str(hardware), str(hardware))
  return f"{name} core hours"
