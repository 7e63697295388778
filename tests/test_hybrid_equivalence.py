"""Keras hybrid ViTs vs timm's ``vit_small_r26_s32_224`` and ``vit_base_r50_s16_224/384``.

timm runs in a subprocess (tests/hybrid_timm_reference.py): importing timm or torchvision
after TensorFlow crashes the CI machine. It is not skipped: a missing timm is a failure.
"""

import os
import subprocess
import sys

import numpy as np
import pytest

import model_defs
from model_defs import converters
from model_defs.converters.common import ConversionError

import hybrid_timm_reference as reference

_SCRIPT = os.path.join(os.path.dirname(__file__), "hybrid_timm_reference.py")
KIT_NAMES = {reference.R26: "vit_s_r26_s32", reference.R50: "vit_b_r50_s16",
             reference.R50_384: "vit_b_r50_s16_384"}


@pytest.fixture(scope="module")
def timm_ref(tmp_path_factory):
  """(timm references, the R50 Keras models): built while timm runs, to overlap the two."""
  out = tmp_path_factory.mktemp("timm_hybrid")
  env = {**os.environ, "OMP_NUM_THREADS": "2", "CUDA_VISIBLE_DEVICES": ""}
  with subprocess.Popen([sys.executable, _SCRIPT, str(out)], stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True, env=env) as proc:
    models = {arch: model_defs.build(KIT_NAMES[arch], num_classes=1000)
              for arch in (reference.R50, reference.R50_384)}
    _, stderr = proc.communicate(timeout=300)
  assert proc.returncode == 0, f"timm reference script failed:\n{stderr[-3000:]}"
  return reference.read_all(str(out)), models


# vit_small_r26_s32_224 goes through a checkpoint file and reproduce.convert's entry point.
@pytest.mark.parametrize("arch", sorted(KIT_NAMES))
def test_timm_equivalence_and_counts(timm_ref, arch, tmp_path):
  state_dict, images, timm_logits, timm_params = timm_ref[0][arch]
  assert all(np.abs(v).max() > 0 for v in state_dict.values())  # no trivial parameter
  name = KIT_NAMES[arch]
  if arch == reference.R26:
    np.savez(tmp_path / "r26.npz", **state_dict)
    model, info = converters.sources.convert_checkpoint("timm", str(tmp_path / "r26.npz"), name)
    assert (info["num_classes"], info["resolution"], info["input_range"]) == (
        1000, 224, "minus_one_one")
  else:
    model = timm_ref[1][arch]
    converters.hybrid.load_timm_state_dict(model, state_dict)
  logits = np.asarray(model(images, training=False))
  rel = np.linalg.norm(logits - timm_logits) / np.linalg.norm(timm_logits)
  assert rel <= 1e-4, f"{name}: relative logits error {rel:.2e}"
  # timm's position table has a class-token row, which the kit folds into the class token.
  width = model_defs.get_spec(name).config["width"]
  assert model_defs.stats(name, num_classes=1000).params == timm_params - width
  assert model.count_params() == timm_params - width


def test_conversion_errors_name_the_parameter(timm_ref):
  state_dict, _, _, _ = timm_ref[0][reference.R26]
  model = model_defs.build("vit_s_r26_s32", num_classes=1000)
  broken = dict(state_dict)
  del broken["patch_embed.backbone.stages.2.blocks.1.conv2.weight"]
  with pytest.raises(ConversionError, match="stage3_block2_conv2/kernel"):
    converters.hybrid.load_timm_state_dict(model, broken)
  extra = {**state_dict, "patch_embed.backbone.stages.0.blocks.0.se.fc.weight": np.ones(2)}
  with pytest.raises(ConversionError, match="se.fc.weight"):
    converters.hybrid.load_timm_state_dict(model, extra)
  with pytest.raises(ConversionError, match="mis-shaped|shape"):
    converters.hybrid.load_timm_state_dict(timm_ref[1][reference.R50], state_dict)
