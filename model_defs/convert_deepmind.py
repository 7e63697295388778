"""Loads DeepMind's released NFNet weights (``F0_haiku.npz`` ... ``F6_haiku.npz``).

Despite their ``.npz`` name the files are pickles (the released ``nfnets/utils.py``
reads them with ``dill.load``) of a Haiku parameter tree {module: {parameter: array}}.
Unpickling runs whatever code the file names, so ``load_haiku_file`` uses an unpickler
that builds only plain containers and NumPy arrays and rejects everything else before it
runs; dill is not needed.

Module names of the released ``nfnets/nfnet.py`` and ``base.py`` (Haiku names the
blocks ``nf_block``, ``nf_block_1``, ... in creation order, and the unnamed
``hk.Linear`` layers ``linear``, ``linear_1``):

  NFNet/~/stem_conv{0..3}                       stem_conv{1..4}
  NFNet/~/nf_block[_i]                          (global block i) skip_gain
  NFNet/~/nf_block[_i]/~/conv0, conv1, conv1b, conv2   conv1, conv2, conv2b, conv3
  NFNet/~/nf_block[_i]/~/conv_shortcut           shortcut_conv
  NFNet/~/nf_block[_i]/~/squeeze_excite/~/linear, linear_1   se/fc1, se/fc2
  NFNet/~/final_conv                            final_conv
  NFNet/~/linear                                classifier

Parameters: ``WSConv2D`` has ``w`` (HWIO, grouped: in = C / groups), ``gain`` (out,) and
``bias``; ``hk.Linear`` has ``w`` [in, out] and ``b``; each block has a scalar
``skip_gain``. These are the Keras layouts already, so nothing is transposed.
"""

from __future__ import annotations

import pickle
import re
from typing import Any, Mapping

import numpy as np

from model_defs.convert_common import ConversionError, assign_all, match_to_model, to_numpy

# Globals a parameter pickle may name: NumPy's array reconstruction (numpy 1 and 2 paths)
# and the bytes codec that protocol-2 pickles use for the array buffers.
_ARRAY_GLOBALS = {
    (module, name)
    for module in ("numpy.core.multiarray", "numpy._core.multiarray")
    for name in ("_reconstruct", "scalar")
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}
# Haiku's immutable parameter mappings, rebuilt as dicts (their pickles carry a plain
# mapping); plain Python containers.
_MAPPING_GLOBALS = {
    ("haiku._src.data_structures", "frozendict"), ("haiku._src.data_structures", "FlatMapping"),
    ("haiku._src.data_structures", "FlatMap"), ("collections", "OrderedDict"),
    ("builtins", "dict"),
}
_CONTAINER_GLOBALS = {("builtins", "list"), ("builtins", "tuple")}

_CONV_PARAM = {"w": "kernel", "gain": "gain", "bias": "bias"}
_LINEAR_PARAM = {"w": "kernel", "b": "bias"}
_BLOCK_CONV = {"conv0": "conv1", "conv1": "conv2", "conv1b": "conv2b", "conv2": "conv3",
               "conv_shortcut": "shortcut_conv"}
_SE_LINEAR = {"linear": "fc1", "linear_1": "fc2"}


def _as_dict(*args, **kwargs) -> dict:
  """Stands in for Haiku's mappings: accepts only what ``dict`` accepts."""
  return dict(*args, **kwargs)


class _ParamsUnpickler(pickle.Unpickler):
  """An unpickler that resolves only array and container globals."""

  def find_class(self, module: str, name: str):
    if (module, name) in _ARRAY_GLOBALS | _CONTAINER_GLOBALS:
      return super().find_class(module, name)
    if (module, name) in _MAPPING_GLOBALS:
      return _as_dict
    raise pickle.UnpicklingError(
        f"refusing to unpickle {module}.{name}: a parameter file may hold only "
        f"dicts and NumPy arrays")

  def persistent_load(self, pid):
    raise pickle.UnpicklingError("refusing persistent references in a parameter file")


def load_haiku_file(path: str) -> dict[str, dict[str, np.ndarray]]:
  """Reads a DeepMind Haiku parameter pickle as {module: {parameter: float32 array}}.

  Raises:
    ConversionError: if the file names any global other than arrays and containers (its
      code is not run), is not a pickle, or does not hold a two-level tree of arrays.
  """
  with open(path, "rb") as file:
    try:
      tree = _ParamsUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            ImportError, IndexError, KeyError) as e:
      raise ConversionError(f"{path} is not a safe Haiku parameter pickle: {e}") from None
  return _check_tree(tree, path)


def _check_tree(tree: Any, path: str) -> dict[str, dict[str, np.ndarray]]:
  if not isinstance(tree, Mapping):
    raise ConversionError(f"{path} holds a {type(tree).__name__}, not a Haiku parameter tree")
  params = {}
  for module, values in tree.items():
    if not isinstance(module, str) or not isinstance(values, Mapping):
      raise ConversionError(f"{path}: module {module!r} is not a name -> {{parameter: array}} "
                            f"entry of a Haiku parameter tree")
    for name, value in values.items():
      if not isinstance(value, (np.ndarray, np.generic)):
        raise ConversionError(f"{path}: {module}/{name} is a {type(value).__name__}, "
                              f"not an array")
    params[module] = {str(name): to_numpy(value) for name, value in values.items()}
  return params


def _block_names(model) -> list[str]:
  """The Keras NFNet's block layer names in network order (Haiku's creation order)."""
  pattern = re.compile(r"stage(\d+)_block(\d+)")
  names = [layer.name for layer in model.layers if pattern.fullmatch(layer.name)]
  return sorted(names, key=lambda n: tuple(int(i) for i in pattern.fullmatch(n).groups()))


def deepmind_key_to_keras_path(module: str, param: str, blocks: list[str]) -> str | None:
  """The Keras variable path of one Haiku parameter (None if not recognised).

  ``blocks`` is ``_block_names(model)``: Haiku numbers blocks globally, Keras per stage.
  """
  rest = re.sub(r"^NFNet/~/", "", module)
  match = re.fullmatch(r"stem_conv(\d)", rest)
  if match and param in _CONV_PARAM:
    return f"stem_conv{int(match[1]) + 1}/{_CONV_PARAM[param]}"
  if rest in ("final_conv",) and param in _CONV_PARAM:
    return f"final_conv/{_CONV_PARAM[param]}"
  if rest == "linear" and param in _LINEAR_PARAM:
    return f"classifier/{_LINEAR_PARAM[param]}"
  match = re.fullmatch(r"nf_block(?:_(\d+))?(?:/~/(.+))?", rest)
  if not match or int(match[1] or 0) >= len(blocks):
    return None
  block, inner = blocks[int(match[1] or 0)], match[2]
  if inner is None:
    return f"{block}/skip_gain" if param == "skip_gain" else None
  if inner in _BLOCK_CONV and param in _CONV_PARAM:
    return f"{block}/{_BLOCK_CONV[inner]}/{_CONV_PARAM[param]}"
  se = re.fullmatch(r"squeeze_excite/~/(linear(?:_1)?)", inner)
  if se and param in _LINEAR_PARAM:
    return f"{block}/se/{_SE_LINEAR[se[1]]}/{_LINEAR_PARAM[param]}"
  return None


def convert_deepmind_params(model, params: Mapping[str, Mapping[str, Any]]) -> dict:
  """Maps a Haiku NFNet tree onto ``model``'s variables (no assignment).

  Raises:
    ConversionError: naming the first missing, unexpected or mis-shaped parameter.
  """
  blocks = _block_names(model)
  sources = [(f"{module}/{param}", deepmind_key_to_keras_path(module, param, blocks),
              to_numpy(value))
             for module, values in params.items() for param, value in values.items()]
  return match_to_model(model, sources, "DeepMind")


def load_deepmind_params(model, params_or_path) -> Any:
  """Loads a Haiku NFNet tree (or the path of a released file) into ``model``; returns it.

  Build the model with the official numerics (the default: tanh GELU, the official WS
  epsilon), which are the ones the released weights were trained with.
  """
  params = (load_haiku_file(params_or_path) if isinstance(params_or_path, str)
            else params_or_path)
  assign_all(model, convert_deepmind_params(model, params))
  return model


def head_classes(params: Mapping[str, Mapping[str, Any]]) -> int:
  """The number of classes of a Haiku NFNet tree (its ``NFNet/~/linear`` output size)."""
  try:
    return int(np.shape(params["NFNet/~/linear"]["w"])[-1])
  except (KeyError, IndexError):
    raise ConversionError("missing parameter 'NFNet/~/linear/w' (the classifier) in the "
                          "DeepMind checkpoint") from None
