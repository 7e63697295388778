"""``python -m reproduce.convert`` and the converters behind it.

DeepMind-format acceptance: a randomised timm ``dm_nfnet_f0`` (every parameter non-zero,
skip gains included; timm runs in a subprocess, tests/nfnet_timm_reference.py) is written
in the released files' Haiku naming and pickling (tests/checkpoint_export.py), converted
by the command, read back with ``model_defs.weights_file.load`` and compared with timm's
logits.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import types

import numpy as np
import pytest
import torch  # torch alone imports fine next to TensorFlow (timm/torchvision after it do not)

import model_defs
from model_defs import converters, weights_file
from model_defs.converters.common import ConversionError
import checkpoint_export

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUM_CLASSES = 10


def run_convert(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, "-m", "reproduce.convert", *args], cwd=ROOT,
                        capture_output=True, text=True, timeout=600, check=False)


def relative_error(logits, reference) -> float:
  return float(np.abs(np.asarray(logits) - reference).max() / np.abs(reference).max())


@pytest.fixture(scope="module")
def timm_nfnets(tmp_path_factory):
  """{config: (state dict, NHWC images, timm logits)} for 'f0' and 'mini_f0'."""
  return checkpoint_export.timm_nfnet_references(tmp_path_factory.mktemp("timm_nfnet"),
                                                 ("f0", "mini_f0"), NUM_CLASSES)


def test_deepmind_file_through_the_command_gives_timm_logits(timm_nfnets, tmp_path):
  state_dict, images, timm_logits = timm_nfnets["f0"]
  assert all(np.all(v != 0) for k, v in state_dict.items() if k.endswith("skipinit_gain"))
  tree = checkpoint_export.timm_to_haiku_tree(state_dict)
  assert len(tree) == 94  # the released F0 file's module count
  path = tmp_path / "F0_haiku.npz"
  checkpoint_export.write_haiku_file(tree, path)
  out = tmp_path / "converted"
  # The randomised timm model has timm's numerics, so build with them.
  proc = run_convert("--source=deepmind", f"--input={path}", "--model=nfnet_f0",
                     f"--output={out}", "--override=timm_compat=true", "--check")
  assert proc.returncode == 0, proc.stderr[-3000:]
  assert "top-5" in proc.stdout
  info = json.loads((out / "model.json").read_text())
  assert info == {"format": weights_file.FORMAT, "model": "nfnet_f0", "num_classes": NUM_CLASSES,
                  "model_overrides": {"timm_compat": True}, "resolution": 256,
                  "source": "deepmind:F0_haiku.npz", "ema": False, "input_range": "imagenet"}
  model, loaded_info = weights_file.load(str(out))
  assert loaded_info == info
  assert relative_error(model(images, training=False), timm_logits) <= 1e-4


def test_deepmind_loader_defaults_to_official_numerics(timm_nfnets):
  state_dict, images, timm_logits = timm_nfnets["mini_f0"]
  tree = checkpoint_export.timm_to_haiku_tree(state_dict)
  exact = model_defs.build("nfnet_mini_f0", NUM_CLASSES, timm_compat=True)
  assert converters.deepmind.load_deepmind_params(exact, tree) is exact
  assert relative_error(exact(images, training=False), timm_logits) <= 1e-4
  official = converters.deepmind.load_deepmind_params(
      model_defs.build("nfnet_mini_f0", NUM_CLASSES), tree)
  assert relative_error(official(images, training=False), timm_logits) > 1e-3


def _first_line(error) -> str:
  return str(error.value).splitlines()[0]


def test_deepmind_errors_name_the_first_bad_parameter(timm_nfnets, tmp_path):
  tree = checkpoint_export.timm_to_haiku_tree(timm_nfnets["mini_f0"][0])
  model = model_defs.build("nfnet_mini_f0", NUM_CLASSES)
  missing = {m: dict(p) for m, p in tree.items()}
  del missing["NFNet/~/nf_block_3/~/conv1b"]["gain"]  # block 3 = stage 3, block 1
  with pytest.raises(ConversionError) as error:
    converters.deepmind.convert_deepmind_params(model, missing)
  assert "missing parameter 'stage3_block1/conv2b/gain'" in _first_line(error)
  unexpected = {**tree, "NFNet/~/nf_block_99/~/conv0": tree["NFNet/~/nf_block/~/conv0"]}
  with pytest.raises(ConversionError) as error:
    converters.deepmind.convert_deepmind_params(model, unexpected)
  assert "unexpected parameter 'NFNet/~/nf_block_99/~/conv0/" in _first_line(error)
  misshaped = {m: dict(p) for m, p in tree.items()}
  misshaped["NFNet/~/final_conv"]["bias"] = np.zeros(7, np.float32)
  with pytest.raises(ConversionError) as error:
    converters.deepmind.convert_deepmind_params(model, misshaped)
  assert "mis-shaped parameter NFNet/~/final_conv/bias (7,)" in _first_line(error)

  path = tmp_path / "bad_haiku.npz"
  checkpoint_export.write_haiku_file(misshaped, path)
  proc = run_convert("--source=deepmind", f"--input={path}", "--model=nfnet_mini_f0",
                     f"--output={tmp_path / 'out'}")
  assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
  assert "mis-shaped parameter NFNet/~/final_conv/bias" in proc.stderr
  assert not (tmp_path / "out").exists()


def test_malicious_pickle_is_rejected_without_running(tmp_path):
  path, marker = tmp_path / "evil_haiku.npz", tmp_path / "pwned"
  checkpoint_export.write_malicious_file(path, marker)
  with pytest.raises(ConversionError, match="refusing to unpickle (posix|os|nt).system"):
    converters.deepmind.load_haiku_file(str(path))
  proc = run_convert("--source=deepmind", f"--input={path}", "--model=nfnet_mini_f0",
                     f"--output={tmp_path / 'out'}")
  assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1, proc.stderr[-2000:]
  assert "refusing to unpickle" in proc.stderr
  assert not marker.exists()


def test_haiku_mappings_unpickle_as_dicts(tmp_path, monkeypatch):
  """Files pickled with Haiku's immutable mappings load without Haiku installed."""
  stub = types.ModuleType("haiku._src.data_structures")

  class frozendict(dict):  # pylint: disable=invalid-name  (Haiku's name)
    def __reduce__(self):
      return frozendict, (dict(self),)

  frozendict.__module__, frozendict.__qualname__ = stub.__name__, "frozendict"
  stub.frozendict = frozendict
  for name in ("haiku", "haiku._src"):
    monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
  monkeypatch.setitem(sys.modules, stub.__name__, stub)
  tree = frozendict({"NFNet/~/linear": frozendict({"w": np.ones((2, 3), np.float32),
                                                   "b": np.float32(0.5)})})
  path = tmp_path / "haiku.npz"
  with open(path, "wb") as f:
    pickle.dump(tree, f, protocol=4)
  monkeypatch.delitem(sys.modules, stub.__name__)
  params = converters.deepmind.load_haiku_file(str(path))
  assert type(params) is dict and params["NFNet/~/linear"]["w"].shape == (2, 3)
  assert converters.deepmind.head_classes(params) == 3
  with open(path, "wb") as f:
    pickle.dump([np.ones(2)], f)
  with pytest.raises(ConversionError, match="not a Haiku parameter tree"):
    converters.deepmind.load_haiku_file(str(path))


def test_timm_nfnet_pth_through_the_command(timm_nfnets, tmp_path):
  state_dict, images, timm_logits = timm_nfnets["mini_f0"]
  path = tmp_path / "dm_nfnet_mini_f0.pth"
  torch.save({k: torch.from_numpy(v.copy()) for k, v in state_dict.items()}, path)
  proc = run_convert("--source=timm", f"--input={path}", "--model=nfnet_mini_f0",
                     f"--output={tmp_path / 'out'}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  model, info = weights_file.load(str(tmp_path / "out"))
  assert info["model_overrides"] == {"timm_compat": True} and info["resolution"] == 32
  assert relative_error(model(images, training=False), timm_logits) <= 1e-4


def _random_vit(seed=0):
  """vit_ti16 at 32 px (a 2x2 grid) with every weight random."""
  model = model_defs.build("vit_ti16", num_classes=NUM_CLASSES, image_size=32)
  rng = np.random.default_rng(seed)
  for v in model.weights:
    v.assign(rng.normal(0, 0.05, tuple(v.shape)).astype("float32")
             + (1.0 if v.path.endswith("gamma") else 0.0))
  return model, {v.path: np.asarray(v.numpy()) for v in model.weights}


@pytest.mark.parametrize("source", ["big_vision", "timm"])
def test_vit_checkpoints_through_the_command(tmp_path, source):
  reference, weights = _random_vit()
  images = np.random.default_rng(1).normal(size=(2, 32, 32, 3)).astype("float32")
  expected = np.asarray(reference(images, training=False))
  if source == "big_vision":
    path = tmp_path / "vit.npz"
    np.savez(path, **checkpoint_export.keras_vit_to_big_vision(weights, depth=12, heads=3))
  else:
    path = tmp_path / "vit.pth"
    torch.save({k: torch.from_numpy(np.ascontiguousarray(v))
                for k, v in checkpoint_export.keras_vit_to_timm(weights, depth=12).items()}, path)
  model, info = converters.sources.convert_checkpoint(source, str(path), "vit_ti16")
  assert info["resolution"] == 32 and info["num_classes"] == NUM_CLASSES
  np.testing.assert_allclose(model(images, training=False), expected, rtol=1e-4, atol=1e-4)
  out = tmp_path / "out"
  proc = run_convert(f"--source={source}", f"--input={path}", "--model=vit_ti16",
                     f"--output={out}")
  assert proc.returncode == 0, proc.stderr[-3000:]
  loaded, loaded_info = weights_file.load(str(out))
  assert loaded_info["resolution"] == 32 and loaded_info["model_overrides"] == {}
  np.testing.assert_allclose(loaded(images, training=False), expected, rtol=1e-4, atol=1e-4)


def test_weights_file_rejects_other_directories(tmp_path):
  with pytest.raises(weights_file.WeightsFileError, match="no model.json"):
    weights_file.read_info(str(tmp_path))
  (tmp_path / "model.json").write_text(json.dumps({"format": "other"}))
  with pytest.raises(weights_file.WeightsFileError, match="format 'other'"):
    weights_file.read_info(str(tmp_path))


def test_source_and_model_family_must_match(tmp_path):
  path = tmp_path / "x.npz"
  np.savez(path, a=np.zeros(1))
  with pytest.raises(ConversionError, match="big_vision holds vit weights, not nfnet"):
    converters.sources.convert_checkpoint("big_vision", str(path), "nfnet_mini_f0")
