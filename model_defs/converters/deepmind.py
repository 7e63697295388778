"""Loads DeepMind's released NFNet weights (``F0_haiku.npz`` ... ``F6_haiku.npz``).

Despite their ``.npz`` name the files are pickles (the released ``nfnets/utils.py``
reads them with ``dill.load``) of a Haiku parameter tree {module: {parameter: array}}.
Unpickling runs whatever code the file names, so ``load_haiku_file`` uses an unpickler
that builds only plain containers and NumPy arrays and rejects everything else before it
runs; dill is not needed. It also bounds memory: the file may be at most ``MAX_FILE_BYTES``
and every array at most ``MAX_ARRAY_BYTES`` (shape x itemsize checked before numpy
allocates it), ``numpy.ndarray`` is only the subtype argument of ``_reconstruct`` (never
callable: a bare ``ndarray(shape)`` would allocate any size from a few bytes), and object
dtypes are refused. Arrays keep their stored dtype until the shapes have been checked
against the model (``convert_deepmind_params``); only then are they converted.
``release_note`` compares a file's MD5 with the released files' (``RELEASED_MD5``).

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

import hashlib
import os
import pickle
import re
from typing import Any, Mapping

import numpy as np

from model_defs.converters.common import ConversionError, assign_all, match_to_model, to_numpy

# Globals a parameter pickle may name: NumPy's array reconstruction (numpy 1 and 2 paths)
# and the bytes codec that protocol-2 pickles use for the array buffers.
_MULTIARRAY = ("numpy.core.multiarray", "numpy._core.multiarray")
_ARRAY_GLOBALS = ({(m, "_reconstruct") for m in _MULTIARRAY} | {(m, "scalar") for m in _MULTIARRAY}
                  | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")})
# The released F6 (the largest, 438M parameters in float32) is about 1.8 GB; its largest
# tensor is a few MB.
MAX_FILE_BYTES = 4 << 30
MAX_ARRAY_BYTES = 1 << 30
# MD5 of the released files (https://storage.googleapis.com/dm-nfnets/F{0..6}_haiku.npz,
# linked from the NFNet README). The NFNet README lists no checksums; these are the ones the JAX
# port ethanluoyc/jam verifies its downloads against (src/jam/models/nfnet/checkpoints.py,
# commit ad08f7b, "ckpt_md5"). Not hashed here: this kit has no copy of the files.
RELEASED_MD5: dict[str, str] = {
    "F0_haiku.npz": "0a41039da1cb43adf47f1b7d86ddfe0f",
    "F1_haiku.npz": "c9126bbfaf855f9ddb7ff3b902558781",
    "F2_haiku.npz": "7a018d8d1498020e2f5a8719a1e7f53f",
    "F3_haiku.npz": "d8e1e78d26db659c486150dbaccbe78a",
    "F4_haiku.npz": "f5974a7e3388aa81b91a9f1403e759a4",
    "F5_haiku.npz": "8639e925de951030651ac775b9f915c3",
    "F6_haiku.npz": "b16cca40ac1ecec2bd5e3273866da0c1",
}
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


class _NdarrayToken:
  """What ``numpy.ndarray`` unpickles to: accepted only as ``_reconstruct``'s subtype."""

  def __repr__(self):
    return "numpy.ndarray (subtype argument only)"


_NDARRAY = _NdarrayToken()


def _check_dtype(dtype) -> np.dtype:
  dtype = np.dtype(dtype)
  if dtype.hasobject:
    raise pickle.UnpicklingError(f"refusing an array of Python objects (dtype {dtype})")
  return dtype


class _BoundedArray(np.ndarray):
  """The array ``_reconstruct`` builds: its ``__setstate__`` (pickle's BUILD) checks the
  dtype and shape x itemsize against ``MAX_ARRAY_BYTES`` before numpy allocates."""

  max_bytes = MAX_ARRAY_BYTES

  def __setstate__(self, state):
    if not isinstance(state, tuple) or len(state) != 5:
      raise pickle.UnpicklingError("malformed array state in a parameter file")
    shape, dtype = state[1], _check_dtype(state[2])
    if not all(isinstance(n, int) and n >= 0 for n in shape):
      raise pickle.UnpicklingError(f"malformed array shape {shape!r}")
    nbytes = int(np.prod([int(n) for n in shape], dtype=object)) * dtype.itemsize
    if nbytes > self.max_bytes:
      raise pickle.UnpicklingError(f"refusing an array of shape {tuple(shape)} ({nbytes} "
                                   f"bytes > {self.max_bytes}) in a parameter file")
    super().__setstate__(state)


def _reconstruct(subtype, shape, typecode):
  """numpy's ``_reconstruct`` for plain arrays only: an empty array that BUILD fills."""
  if subtype is not _NDARRAY or tuple(shape) != (0,):
    raise pickle.UnpicklingError("refusing an array reconstruction other than numpy's own")
  _check_dtype(typecode)
  return np.ndarray.__new__(_BoundedArray, (0,), np.uint8)


class _ParamsUnpickler(pickle.Unpickler):
  """An unpickler that resolves only array and container globals."""

  def find_class(self, module: str, name: str):
    if (module, name) in _ARRAY_GLOBALS:
      if name in ("ndarray", "_reconstruct", "dtype"):
        return {"ndarray": _NDARRAY, "_reconstruct": _reconstruct, "dtype": _dtype}[name]
      found = super().find_class(module, name)  # numpy's scalar, or _codecs.encode
      if name == "scalar":
        return lambda dtype, *args: found(_check_dtype(dtype), *args)
      return found
    if (module, name) in _CONTAINER_GLOBALS:
      return super().find_class(module, name)
    if (module, name) in _MAPPING_GLOBALS:
      return _as_dict
    raise pickle.UnpicklingError(
        f"refusing to unpickle {module}.{name}: a parameter file may hold only "
        f"dicts and NumPy arrays")

  def persistent_load(self, pid):
    raise pickle.UnpicklingError("refusing persistent references in a parameter file")


def _dtype(*args):
  """``numpy.dtype`` for unpickling: no object dtypes."""
  return _check_dtype(np.dtype(*args))


def load_haiku_file(path: str, max_bytes: int = MAX_FILE_BYTES,
                    max_array_bytes: int = MAX_ARRAY_BYTES) -> dict[str, dict[str, np.ndarray]]:
  """Reads a DeepMind Haiku parameter pickle as {module: {parameter: array}}, each array in
  its stored dtype (converted after the shapes are checked against a model).

  Raises:
    ConversionError: if the file names any global other than arrays and containers (its
      code is not run), is larger than ``max_bytes`` or holds an array larger than
      ``max_array_bytes``, is not a pickle, or does not hold a two-level tree of arrays.
  """
  size = os.path.getsize(path)
  if size > max_bytes:
    raise ConversionError(f"{path} is {size} bytes, more than a parameter file may be "
                          f"({max_bytes}; the released F6 is about 1.8 GB)")
  _BoundedArray.max_bytes = int(max_array_bytes)
  with open(path, "rb") as file:
    try:
      tree = _ParamsUnpickler(file).load()
    except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError,
            ImportError, IndexError, KeyError) as e:
      raise ConversionError(f"{path} is not a safe Haiku parameter pickle: {e}") from None
    finally:
      _BoundedArray.max_bytes = MAX_ARRAY_BYTES
  return _check_tree(tree, path)


def file_md5(path: str) -> str:
  digest = hashlib.md5()
  with open(path, "rb") as file:
    for chunk in iter(lambda: file.read(1 << 22), b""):
      digest.update(chunk)
  return digest.hexdigest()


def release_note(path: str, known: dict[str, str] | None = None) -> str:
  """One line: whether ``path`` is a released file (its MD5 among ``RELEASED_MD5``)."""
  known = RELEASED_MD5 if known is None else known
  md5 = file_md5(path)
  for name, released in known.items():
    if md5 == released:
      return f"this is the released {name} (md5 {md5})"
  name = os.path.basename(path)
  if name in known:
    return f"{name} differs from the released {name} (md5 {md5}, release {known[name]})"
  if not known:
    return f"md5 {md5}: no released MD5s are recorded in this kit to compare with"
  return f"md5 {md5} matches none of the released files ({', '.join(sorted(known))})"


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
    # Plain arrays in their stored dtype: nothing is converted before the shapes are checked.
    params[module] = {str(name): np.asarray(value).view(np.ndarray) if isinstance(
        value, np.ndarray) else np.asarray(value) for name, value in values.items()}
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
  # Shapes are checked (match_to_model) on the arrays as stored; assign_all converts them.
  sources = [(f"{module}/{param}", deepmind_key_to_keras_path(module, param, blocks),
              to_numpy(value, dtype=None))
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
