"""Keras NFNet vs timm ``dm_nfnet`` with the same (converted) weights.

timm runs in a subprocess (``tests/nfnet_timm_reference.py``): importing timm or
torchvision after TensorFlow crashes this machine. The subprocess randomises every timm
parameter (skip gains, gains and biases are made non-zero) and saves the state dict,
the input images and timm's logits; this process only reads the .npz.
"""

import numpy as np
import pytest
import torch  # torch alone imports fine next to TensorFlow (timm/torchvision after it do not)

import checkpoint_export
import model_defs
from model_defs import converters
from model_defs.converters.common import ConversionError, load_torch_state_dict
from model_defs.converters.nfnet import load_timm_checkpoint, load_timm_state_dict

NUM_CLASSES = 10
KERAS_NAMES = {"f0": "nfnet_f0", "mini_f0": "nfnet_mini_f0"}


@pytest.fixture(scope="module")
def timm_references(tmp_path_factory):
  return checkpoint_export.timm_nfnet_references(tmp_path_factory.mktemp("timm_nfnet"),
                                                 tuple(KERAS_NAMES), NUM_CLASSES)


@pytest.mark.parametrize("config", sorted(KERAS_NAMES))
def test_logits_match_timm(timm_references, config):
  state_dict, images, timm_logits = timm_references[config]
  assert any(k.endswith("skipinit_gain") and np.all(v != 0) for k, v in state_dict.items())
  model = model_defs.build(KERAS_NAMES[config], NUM_CLASSES, timm_compat=True)
  load_timm_state_dict(model, state_dict)
  logits = np.asarray(model(images, training=False))
  rel = np.abs(logits - timm_logits).max() / np.abs(timm_logits).max()
  assert rel <= 1e-4, rel

  # The official numerics (tanh GELU, official WS epsilon) differ measurably from timm's.
  official = model_defs.build(KERAS_NAMES[config], NUM_CLASSES)
  with pytest.warns(UserWarning, match="timm_compat"):
    load_timm_state_dict(official, state_dict)
  official_rel = np.abs(np.asarray(official(images)) - timm_logits).max() / np.abs(timm_logits).max()
  assert official_rel > 1e-3


def test_conversion_errors_name_the_problem(timm_references):
  state_dict, _, _ = timm_references["mini_f0"]
  model = model_defs.build("nfnet_mini_f0", NUM_CLASSES, timm_compat=True)
  broken = dict(state_dict)
  del broken["stages.2.3.conv2b.gain"]
  broken["stages.9.0.conv1.weight"] = state_dict["stages.0.0.conv1.weight"]
  with pytest.raises(ConversionError) as error:
    load_timm_state_dict(model, broken)
  message = str(error.value)
  assert "stage3_block4/conv2b/gain" in message and "stages.9.0.conv1.weight" in message
  wrong_head = model_defs.build("nfnet_mini_f0", NUM_CLASSES + 1, timm_compat=True)
  with pytest.raises(ConversionError, match="head.fc.weight"):
    load_timm_state_dict(wrong_head, state_dict)


def _relative_error(logits, reference):
  return np.abs(logits - reference).max() / np.abs(reference).max()


@pytest.mark.parametrize("wrapper", [None, "state_dict", "state_dict_ema"])
def test_pth_checkpoint_loads_through_the_path_loader(timm_references, tmp_path, wrapper):
  """A real torch.save file (timm's tensors, optionally nested as training scripts save
  them) goes through load_timm_checkpoint and gives timm's logits."""
  state_dict, images, timm_logits = timm_references["mini_f0"]
  tensors = {k: torch.from_numpy(v.copy()) for k, v in state_dict.items()}
  path = tmp_path / "dm_nfnet_mini_f0.pth"
  torch.save(tensors if wrapper is None else {wrapper: tensors, "epoch": 3}, path)
  model = model_defs.build("nfnet_mini_f0", NUM_CLASSES, timm_compat=True)
  assert load_timm_checkpoint(model, str(path)) is model
  assert _relative_error(np.asarray(model(images, training=False)), timm_logits) <= 1e-4
  arrays = load_torch_state_dict(str(path))
  assert sorted(arrays) == sorted(state_dict)
  assert all(arrays[k].dtype == np.float32 for k in arrays)


def test_torch_loader_errors_and_one_conversion_error(tmp_path):
  assert converters.vit.ConversionError is ConversionError is converters.common.ConversionError
  assert issubclass(ConversionError, ValueError)
  path = tmp_path / "not_a_state_dict.pth"
  torch.save([torch.zeros(2)], path)
  with pytest.raises(ConversionError, match="not a state dict"):
    load_torch_state_dict(str(path))
  bf16 = torch.arange(4, dtype=torch.float32).to(torch.bfloat16)
  np.testing.assert_array_equal(converters.common.to_numpy(bf16), np.arange(4, dtype=np.float32))
