"""Test helpers that write checkpoints in other codebases' formats.

``timm_nfnet_references``: randomised timm NFNets, their inputs and logits (subprocess).

``timm_to_haiku_tree``: a timm ``dm_nfnet`` state dict as DeepMind's released Haiku files.
``keras_vit_to_big_vision`` / ``keras_vit_to_timm``: a Keras ViT's weights under
big_vision's and timm's names and layouts.

The names follow the released ``nfnets/nfnet.py`` and ``base.py`` (not the converter under
test): modules ``NFNet/~/stem_conv0..3``, blocks ``NFNet/~/nf_block``, ``nf_block_1``, ...
(Haiku's names for unnamed ``NFBlock`` modules, numbered over the whole network) with
``conv0``, ``conv1``, ``conv1b``, ``conv2``, ``conv_shortcut`` and
``squeeze_excite/~/linear``/``linear_1``, then ``NFNet/~/final_conv`` and ``NFNet/~/linear``.
``WSConv2D`` parameters are ``w`` (HWIO), ``gain`` (out,) and ``bias``; ``hk.Linear``
parameters ``w`` [in, out] and ``b``; each block has a scalar ``skip_gain``.

timm's names: ``stem.conv{1..4}``, ``stages.{s}.{b}.conv{1,2,2b,3}``,
``downsample.conv``, ``attn_last.fc{1,2}`` (1x1 convs), ``skipinit_gain``,
``final_conv``, ``head.fc``; conv weights OIHW, gains (out, 1, 1, 1), linear (out, in).
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys

import numpy as np

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))


def timm_nfnet_references(out_dir, configs, num_classes: int, resolution: int = 64,
                          batch: int = 2) -> dict:
  """{config: (state dict, NHWC images, logits)} of randomised timm NFNets ('f0', 'mini_f0').

  timm runs in a subprocess (tests/nfnet_timm_reference.py): importing timm or torchvision
  after TensorFlow crashes this machine.
  """
  result = subprocess.run(
      [sys.executable, os.path.join(TESTS_DIR, "nfnet_timm_reference.py"), str(out_dir),
       "--configs", *configs, "--resolution", str(resolution), "--batch", str(batch),
       "--num_classes", str(num_classes)],
      capture_output=True, text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  references = {}
  for config in configs:
    data = np.load(os.path.join(str(out_dir), f"{config}.npz"))
    state_dict = {k[len("state_dict/"):]: data[k] for k in data.files
                  if k.startswith("state_dict/")}
    references[config] = (state_dict, data["images_nhwc"], data["logits"])
  return references


_TIMM_BLOCK_CONV = {"conv1": "conv0", "conv2": "conv1", "conv2b": "conv1b", "conv3": "conv2",
                    "downsample.conv": "conv_shortcut"}
_TIMM_SE = {"fc1": "linear", "fc2": "linear_1"}


def _haiku_block_name(index: int) -> str:
  return "nf_block" if index == 0 else f"nf_block_{index}"


def _block_indices(state_dict) -> dict[tuple[int, int], int]:
  """(stage, block) of timm -> the block's index over the whole network."""
  pairs = sorted({(int(m[1]), int(m[2])) for k in state_dict
                  for m in [re.match(r"stages\.(\d+)\.(\d+)\.", k)] if m})
  return {pair: i for i, pair in enumerate(pairs)}


def _conv_param(param: str, value: np.ndarray) -> tuple[str, np.ndarray]:
  if param == "weight":
    return "w", value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
  if param == "gain":
    return "gain", value.reshape(-1)
  return "bias", value


def timm_to_haiku_tree(state_dict) -> dict[str, dict[str, np.ndarray]]:
  """{module: {param: array}} as the released DeepMind files hold it."""
  blocks = _block_indices(state_dict)
  tree: dict[str, dict[str, np.ndarray]] = {}

  def put(module, param, value):
    tree.setdefault(f"NFNet/~/{module}", {})[param] = np.asarray(value, np.float32)

  for key, value in state_dict.items():
    value = np.asarray(value)
    if m := re.fullmatch(r"stem\.conv(\d)\.(weight|gain|bias)", key):
      put(f"stem_conv{int(m[1]) - 1}", *_conv_param(m[2], value))
    elif m := re.fullmatch(r"final_conv\.(weight|gain|bias)", key):
      put("final_conv", *_conv_param(m[1], value))
    elif m := re.fullmatch(r"head\.fc\.(weight|bias)", key):
      put("linear", "w" if m[1] == "weight" else "b", value.T if m[1] == "weight" else value)
    elif m := re.fullmatch(r"stages\.(\d+)\.(\d+)\.(.+)", key):
      block = _haiku_block_name(blocks[(int(m[1]), int(m[2]))])
      rest = m[3]
      if rest == "skipinit_gain":
        put(block, "skip_gain", value.reshape(()))
      elif c := re.fullmatch(r"(conv1|conv2|conv2b|conv3|downsample\.conv)\.(weight|gain|bias)",
                             rest):
        put(f"{block}/~/{_TIMM_BLOCK_CONV[c[1]]}", *_conv_param(c[2], value))
      elif c := re.fullmatch(r"attn_last\.(fc1|fc2)\.(weight|bias)", rest):
        module = f"{block}/~/squeeze_excite/~/{_TIMM_SE[c[1]]}"
        put(module, "w", value[:, :, 0, 0].T) if c[2] == "weight" else put(module, "b", value)
      else:
        raise KeyError(f"unexpected timm key {key}")
    else:
      raise KeyError(f"unexpected timm key {key}")
  return tree


def write_haiku_file(tree, path) -> None:
  """Pickles the tree as plain dicts of NumPy arrays, like the released ``*_haiku.npz``."""
  with open(path, "wb") as f:
    pickle.dump(tree, f, protocol=2)


class _RunsCommand:
  """Unpickling this calls ``os.system(command)``: what a malicious file would do."""

  def __init__(self, command: str):
    self.command = command

  def __reduce__(self):
    import os  # pylint: disable=import-outside-toplevel
    return os.system, (self.command,)


def write_malicious_file(path, marker_path) -> None:
  """A Haiku-looking pickle that would create ``marker_path`` when unpickled unsafely."""
  tree = {"NFNet/~/linear": {"w": _RunsCommand(f"touch {marker_path}"),
                             "b": np.zeros(3, np.float32)}}
  with open(path, "wb") as f:
    pickle.dump(tree, f, protocol=2)


def keras_vit_to_big_vision(weights, depth: int, heads: int) -> dict[str, np.ndarray]:
  """{Keras path: array} of a class-token ViT -> big_vision's flat '/'-joined params."""
  width = weights["embedding/kernel"].shape[-1]
  out = {"embedding/kernel": weights["embedding/kernel"], "embedding/bias": weights["embedding/bias"],
         "cls": weights["cls/token"], "pos_embedding": weights["pos_embedding/pos_embedding"],
         "Transformer/encoder_norm/scale": weights["encoder_norm/gamma"],
         "Transformer/encoder_norm/bias": weights["encoder_norm/beta"],
         "head/kernel": weights["head/kernel"], "head/bias": weights["head/bias"]}
  for i in range(depth):
    k, b = f"encoderblock_{i}", f"Transformer/encoderblock_{i}"
    for ln, name in (("ln0", "LayerNorm_0"), ("ln1", "LayerNorm_1")):
      out[f"{b}/{name}/scale"] = weights[f"{k}_{ln}/gamma"]
      out[f"{b}/{name}/bias"] = weights[f"{k}_{ln}/beta"]
    qkv_w = np.split(weights[f"{k}_attn/qkv_kernel"], 3, axis=1)
    qkv_b = np.split(weights[f"{k}_attn/qkv_bias"], 3)
    for part, w, bias in zip(("query", "key", "value"), qkv_w, qkv_b):
      out[f"{b}/MultiHeadDotProductAttention_0/{part}/kernel"] = w.reshape(width, heads, -1)
      out[f"{b}/MultiHeadDotProductAttention_0/{part}/bias"] = bias.reshape(heads, -1)
    out[f"{b}/MultiHeadDotProductAttention_0/out/kernel"] = (
        weights[f"{k}_attn/out_kernel"].reshape(heads, -1, width))
    out[f"{b}/MultiHeadDotProductAttention_0/out/bias"] = weights[f"{k}_attn/out_bias"]
    for fc, dense in (("fc1", "Dense_0"), ("fc2", "Dense_1")):
      out[f"{b}/MlpBlock_0/{dense}/kernel"] = weights[f"{k}_mlp_{fc}/kernel"]
      out[f"{b}/MlpBlock_0/{dense}/bias"] = weights[f"{k}_mlp_{fc}/bias"]
  return out


def keras_vit_to_timm(weights, depth: int) -> dict[str, np.ndarray]:
  """{Keras path: array} of a class-token ViT -> a timm ``VisionTransformer`` state dict
  (its position table gets a zero class-token row)."""
  pos = weights["pos_embedding/pos_embedding"]
  out = {"patch_embed.proj.weight": weights["embedding/kernel"].transpose(3, 2, 0, 1),
         "patch_embed.proj.bias": weights["embedding/bias"], "cls_token": weights["cls/token"],
         "pos_embed": np.concatenate([np.zeros_like(pos[:, :1]), pos], axis=1),
         "norm.weight": weights["encoder_norm/gamma"], "norm.bias": weights["encoder_norm/beta"],
         "head.weight": weights["head/kernel"].T, "head.bias": weights["head/bias"]}
  for i in range(depth):
    k, b = f"encoderblock_{i}", f"blocks.{i}"
    for ln, name in (("ln0", "norm1"), ("ln1", "norm2")):
      out[f"{b}.{name}.weight"] = weights[f"{k}_{ln}/gamma"]
      out[f"{b}.{name}.bias"] = weights[f"{k}_{ln}/beta"]
    out[f"{b}.attn.qkv.weight"] = weights[f"{k}_attn/qkv_kernel"].T
    out[f"{b}.attn.qkv.bias"] = weights[f"{k}_attn/qkv_bias"]
    out[f"{b}.attn.proj.weight"] = weights[f"{k}_attn/out_kernel"].T
    out[f"{b}.attn.proj.bias"] = weights[f"{k}_attn/out_bias"]
    for fc in ("fc1", "fc2"):
      out[f"{b}.mlp.{fc}.weight"] = weights[f"{k}_mlp_{fc}/kernel"].T
      out[f"{b}.mlp.{fc}.bias"] = weights[f"{k}_mlp_{fc}/bias"]
  return out
