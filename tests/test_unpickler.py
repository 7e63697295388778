"""The DeepMind parameter-file unpickler bounds what a file can make it allocate: a size cap on
the file and on every array (checked before numpy allocates), ``numpy.ndarray`` only as
``_reconstruct``'s subtype, no object arrays, arrays converted only after the shapes match
the model, and the released files' MD5 check."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

import model_defs
from model_defs import converters
from model_defs.converters.common import ConversionError


class _BareNdarray:
  """REDUCE of ``numpy.ndarray`` itself: 4e9 uninitialised float32 from a few bytes."""

  def __reduce__(self):
    return np.ndarray, ((4_000_000_000,), "f4")


class _ClaimsHugeShape:
  """numpy's own reconstruction whose state claims 1e10 elements."""

  def __reduce__(self):
    reconstruct = np.ndarray.__reduce__(np.zeros(1, np.float32))[0]
    return reconstruct, (np.ndarray, (0,), b"b"), (1, (100_000, 100_000), np.dtype("f4"),
                                                     False, b"\0" * 16)


def _write(tmp_path, tree, protocol=2):
  path = tmp_path / "F0_haiku.npz"
  with open(path, "wb") as f:
    pickle.dump(tree, f, protocol=protocol)
  return str(path)


@pytest.mark.parametrize("protocol", [2, 4])
def test_plain_arrays_load_in_their_stored_dtype(tmp_path, protocol):
  tree = {"NFNet/~/linear": {"w": np.arange(6, dtype=np.float32).reshape(2, 3),
                             "b": np.float32(0.5), "h": np.ones(3, np.float16)}}
  params = converters.deepmind.load_haiku_file(_write(tmp_path, tree, protocol))["NFNet/~/linear"]
  assert type(params["w"]) is np.ndarray and params["w"].dtype == np.float32
  assert params["h"].dtype == np.float16  # converted only after the shape check
  np.testing.assert_array_equal(params["w"], tree["NFNet/~/linear"]["w"])


def test_bare_ndarray_call_is_refused(tmp_path):
  path = _write(tmp_path, {"NFNet/~/linear": {"w": _BareNdarray()}})
  with pytest.raises(ConversionError, match="not a safe Haiku parameter pickle"):
    converters.deepmind.load_haiku_file(path)


def test_array_size_is_checked_before_allocation(tmp_path):
  path = _write(tmp_path, {"NFNet/~/linear": {"w": _ClaimsHugeShape()}})
  with pytest.raises(ConversionError, match=r"shape \(100000, 100000\) \(40000000000 bytes"):
    converters.deepmind.load_haiku_file(path)
  small = _write(tmp_path, {"NFNet/~/linear": {"w": np.zeros((4, 4), np.float32)}})
  with pytest.raises(ConversionError, match="refusing an array of shape"):
    converters.deepmind.load_haiku_file(small, max_array_bytes=63)
  assert converters.deepmind.load_haiku_file(small, max_array_bytes=64)


def test_file_size_cap_and_object_arrays(tmp_path):
  path = _write(tmp_path, {"NFNet/~/linear": {"w": np.zeros(3, np.float32)}})
  with pytest.raises(ConversionError, match="more than a parameter file may be"):
    converters.deepmind.load_haiku_file(path, max_bytes=16)
  objects = _write(tmp_path, {"NFNet/~/linear": {"w": np.array([1, "x"], dtype=object)}})
  with pytest.raises(ConversionError, match="Python objects"):
    converters.deepmind.load_haiku_file(objects)


def test_shapes_are_checked_before_any_array_is_converted(monkeypatch):
  # The shape check sees the stored float16 arrays themselves (no float32 copy made first),
  # and a mis-shaped tree is refused before anything is converted.
  model = model_defs.build("nfnet_mini_f0", 3)
  tree = {"NFNet/~/linear": {"w": np.zeros((5, 5), np.float16), "b": np.zeros(3, np.float16)}}
  stored = list(tree["NFNet/~/linear"].values())
  checked = []
  real_match = converters.deepmind.match_to_model
  monkeypatch.setattr(converters.deepmind, "match_to_model", lambda model, sources, *rest: (
      checked.extend(value for _, _, value in sources) or real_match(model, sources, *rest)))
  converted = []
  real_astype = np.ndarray.astype

  class Spy(np.ndarray):
    def astype(self, *args, **kwargs):
      converted.append(self.shape)
      return real_astype(self, *args, **kwargs)

  tree["NFNet/~/linear"] = {k: v.view(Spy) for k, v in tree["NFNet/~/linear"].items()}
  with pytest.raises(ConversionError, match="missing parameter|mis-shaped"):
    converters.deepmind.load_deepmind_params(model, tree)
  assert not converted
  assert len(checked) == 2 and all(v.dtype == np.float16 for v in checked)
  assert all(any(np.shares_memory(v, s) for s in stored) for v in checked)


def test_release_note_names_the_release_or_the_difference(tmp_path):
  path = _write(tmp_path, {"NFNet/~/linear": {"w": np.zeros(3, np.float32)}})
  md5 = converters.deepmind.file_md5(path)
  assert converters.deepmind.release_note(path, {"F0_haiku.npz": md5}).startswith(
      "this is the released F0_haiku.npz")
  assert "differs from the released F0_haiku.npz" in converters.deepmind.release_note(
      path, {"F0_haiku.npz": "0" * 32})
  assert "no released MD5s are recorded" in converters.deepmind.release_note(path, {})


def test_the_released_table_names_f0_to_f6_and_flags_a_renamed_release(tmp_path):
  # A file named like a release but with other bytes is reported as differing from it.
  assert sorted(converters.deepmind.RELEASED_MD5) == [f"F{i}_haiku.npz" for i in range(7)]
  assert all(len(m) == 32 and int(m, 16) >= 0 for m in converters.deepmind.RELEASED_MD5.values())
  assert len(set(converters.deepmind.RELEASED_MD5.values())) == 7
  path = tmp_path / "F3_haiku.npz"
  with open(path, "wb") as file:
    pickle.dump({"NFNet/~/linear": {"w": np.zeros(3, np.float32)}}, file, protocol=2)
  note = converters.deepmind.release_note(str(path))
  assert note.startswith("F3_haiku.npz differs from the released F3_haiku.npz")
  assert converters.deepmind.RELEASED_MD5["F3_haiku.npz"] in note
