"""What the checkpoint converters share: their error type and their torch file I/O.

``torch`` is imported only inside ``load_torch_state_dict``, and timm/torchvision never:
importing torchvision after TensorFlow crashes the process on some machines.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

# Keys under which training scripts nest the weights in a saved checkpoint (timm's
# train.py, torchvision references, DeiT); the first one present is used.
STATE_DICT_WRAPPERS = ("state_dict", "model", "state_dict_ema")


class ConversionError(ValueError):
  """Raised when a checkpoint does not match the Keras model exactly."""


def to_numpy(value: Any, dtype: Any = np.float32) -> np.ndarray:
  """A torch tensor (without importing torch) or array-like as a NumPy array.

  ``dtype=None`` keeps the value's own dtype; bfloat16 tensors become float32 since
  NumPy has no bfloat16.
  """
  if hasattr(value, "detach"):  # a torch.Tensor
    value = value.detach().cpu()
    if str(value.dtype) == "torch.bfloat16":
      value = value.float()
    value = value.numpy()
  return np.asarray(value, dtype=dtype)


def load_torch_state_dict(path: str) -> dict[str, np.ndarray]:
  """Reads a PyTorch ``.pth``/``.bin`` state dict as {name: float32 array} (needs ``torch``).

  The file may hold the state dict itself or a training checkpoint that nests it under
  one of ``STATE_DICT_WRAPPERS``. ``weights_only=True``: nothing but tensors and
  containers is unpickled.

  Raises:
    ConversionError: if the file holds no mapping of parameter names.
  """
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    raise ConversionError(f"reading {path} needs PyTorch (pip install torch)") from None

  checkpoint = torch.load(path, map_location="cpu", weights_only=True)
  for wrapper in STATE_DICT_WRAPPERS:
    if isinstance(checkpoint, Mapping) and isinstance(checkpoint.get(wrapper), Mapping):
      checkpoint = checkpoint[wrapper]
      break
  if not isinstance(checkpoint, Mapping):
    raise ConversionError(f"{path} holds a {type(checkpoint).__name__}, not a state dict")
  return {key: to_numpy(value) for key, value in checkpoint.items()}


def match_to_model(model, sources, kind: str) -> dict[str, np.ndarray]:
  """Checks a converted checkpoint against ``model`` and returns {variable path: array}.

  Args:
    model: the Keras model the checkpoint is meant for.
    sources: (checkpoint name, Keras variable path or None when the name is not
      recognised, array already in Keras layout) for every checkpoint parameter.
    kind: what the checkpoint is, for the message ('timm', 'DeepMind', ...).

  Raises:
    ConversionError: whose first line names the first missing, unexpected or mis-shaped
      parameter (what a command prints); further lines list every problem.
  """
  targets = {v.path: tuple(v.shape) for v in model.weights}
  converted, unexpected = {}, []
  for name, path, value in sources:
    if path is None or path not in targets:
      unexpected.append(name if path is None else f"{name} (-> {path})")
    else:
      converted[path] = (name, value)
  missing = sorted(set(targets) - set(converted))
  misshaped = sorted(f"{name} {tuple(value.shape)} -> {path} {targets[path]}"
                     for path, (name, value) in converted.items()
                     if tuple(value.shape) != targets[path])
  problems = ([f"missing parameter {p!r} (no {kind} source)" for p in missing]
              + [f"unexpected parameter {n!r}" for n in sorted(unexpected)]
              + [f"mis-shaped parameter {m} (in Keras layout)" for m in misshaped])
  if problems:
    more = f" ({len(problems) - 1} more below)" if len(problems) > 1 else ""
    raise ConversionError(f"cannot load the {kind} checkpoint into {model.name!r}: "
                          f"{problems[0]}{more}\n  " + "\n  ".join(problems))
  return {path: value for path, (_, value) in converted.items()}


def assign_all(model, arrays) -> None:
  """Assigns {variable path: array} to every variable of ``model`` (after all checks)."""
  for variable in model.weights:
    variable.assign(np.asarray(arrays[variable.path]).astype(variable.dtype))
