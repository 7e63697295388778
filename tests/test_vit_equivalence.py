"""Converted timm ViTs give timm's logits; pos-emb resampling matches PyTorch's resize.

The torch/timm side runs in a subprocess (tests/vit_timm_reference.py): importing
timm/torchvision after TensorFlow crashes on the CI machine. It is not skipped: a
missing timm is a test failure.
"""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch  # torch alone imports fine next to TensorFlow (timm/torchvision after it do not)

import model_defs
from model_defs import converters
from model_defs.converters.common import ConversionError
from model_defs.converters.posemb_resampling import resample_posemb

_SCRIPT = os.path.join(os.path.dirname(__file__), "vit_timm_reference.py")


@pytest.fixture(scope="module")
def timm_ref(tmp_path_factory):
  out = tmp_path_factory.mktemp("timm_vit")
  env = {**os.environ, "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}
  proc = subprocess.run([sys.executable, _SCRIPT, str(out)], capture_output=True, text=True,
                        env=env, timeout=300)
  assert proc.returncode == 0, f"timm reference script failed:\n{proc.stderr[-3000:]}"
  return out


def _load(path):
  with np.load(path) as f:
    sd = {k[3:]: f[k] for k in f.files if k.startswith("sd/")}
    return sd, f["images"], f["logits"]


@pytest.mark.parametrize("ref_name,model_name,overrides", [
    ("vit_tiny_token", "vit_ti16", {}),
    ("vit_base_token", "vit_b16", {}),
    ("vit_tiny_map", "vit_ti16", {"pool_type": "map"}),
])
def test_timm_equivalence(timm_ref, ref_name, model_name, overrides):
  sd, images, ref = _load(timm_ref / f"{ref_name}.npz")
  # The randomised timm model has no trivial parameter (zero bias, zero head...).
  assert all(np.abs(v).max() > 0 for v in sd.values())
  model = model_defs.build(model_name, num_classes=1000, **overrides)
  converters.vit.load_timm_state_dict(model, sd)
  logits = np.asarray(model(images, training=False))
  rel = np.linalg.norm(logits - ref) / np.linalg.norm(ref)
  assert rel <= 1e-4, f"{ref_name}: relative logits error {rel:.2e}"


def test_timm_missing_and_extra_keys(timm_ref):
  sd, _, _ = _load(timm_ref / "vit_tiny_token.npz")
  model = model_defs.build("vit_ti16")
  broken = dict(sd)
  del broken["blocks.3.mlp.fc1.weight"]
  with pytest.raises(ConversionError, match="blocks.3.mlp.fc1.weight"):
    converters.vit.load_timm_state_dict(model, broken)
  with pytest.raises(ConversionError, match="extra.thing"):
    converters.vit.load_timm_state_dict(model, {**sd, "extra.thing": np.zeros(3)})
  with pytest.raises(ConversionError, match="class token"):
    converters.vit.load_timm_state_dict(model_defs.build("vit_ti16", pool_type="gap"), sd)


@pytest.mark.parametrize("wrapper,suffix", [(None, ".pth"), ("model", ".pth"), (None, ".bin")])
def test_timm_checkpoint_file_loads(timm_ref, tmp_path, wrapper, suffix):
  """A real torch.save file goes through load_timm_checkpoint and gives timm's logits."""
  sd, images, ref = _load(timm_ref / "vit_tiny_token.npz")
  tensors = {k: torch.from_numpy(v.copy()) for k, v in sd.items()}
  path = tmp_path / f"vit_tiny{suffix}"
  torch.save(tensors if wrapper is None else {wrapper: tensors, "optimizer": {}}, path)
  model = model_defs.build("vit_ti16", num_classes=1000)
  converters.vit.load_timm_checkpoint(model, str(path))
  logits = np.asarray(model(images, training=False))
  assert np.linalg.norm(logits - ref) / np.linalg.norm(ref) <= 1e-4


def test_timm_into_other_resolution(timm_ref):
  """A 224 px timm checkpoint loads into a 384 px model; pos-emb = bicubic resample."""
  sd, _, _ = _load(timm_ref / "vit_tiny_token.npz")
  model = model_defs.build("vit_ti16", image_size=384)
  converters.vit.load_timm_state_dict(model, sd)
  pe = model.get_layer("pos_embedding").pos_embedding.numpy()
  assert pe.shape == (1, 24 * 24, 192)
  np.testing.assert_allclose(pe, resample_posemb(sd["pos_embed"][:, 1:], 24),
                             rtol=0, atol=1e-6)
  cls = model.get_layer("cls").token.numpy()
  np.testing.assert_allclose(cls, sd["cls_token"] + sd["pos_embed"][:, :1], atol=1e-7)


def test_resample_matches_torch_interpolate(timm_ref):
  with np.load(timm_ref / "interp.npz") as f:
    grid = f["grid"]
    for method in ("bicubic", "bilinear"):
      for side in (24, 10):
        ours = resample_posemb(grid.reshape(1, 14 * 14, 8), side, method=method)
        np.testing.assert_allclose(ours.reshape(1, side, side, 8), f[f"{method}_{side}"],
                                   rtol=0, atol=1e-5)
