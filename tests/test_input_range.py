"""The input range is part of a model's weights: a converted AugReg/big_vision ViT is fed
[-1, 1] pixels by ``reproduce.evaluate`` (timm's own model on timm's own preprocessing gives
the same logits), NFNets ImageNet mean/std; the train and held-out pipelines and the
fine-tune read the same range."""

from __future__ import annotations

import json
import types

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
import torch  # torch alone imports fine next to TensorFlow (timm is run in its own process)

import checkpoint_export
import engine_helpers
import evaluation_helpers
import model_defs
from model_defs import weights_file
from reproduce import data
from reproduce.evaluation import datasets
from reproduce.train import model_loading
from reproduce.evaluation import run as run_lib
from test_convert import run_convert

RES, CLASSES, EXAMPLES = 32, 1000, 6

# timm's own model and data config (an AugReg tag: mean = std = 0.5) on the same crops.
_TIMM_SCRIPT = """
import sys, numpy as np, timm, torch
pth, pixels_path, out = sys.argv[1:4]
model = timm.create_model("vit_tiny_patch16_224.augreg_in21k_ft_in1k", pretrained=False,
                          img_size=32, num_classes=1000).eval()
model.load_state_dict(torch.load(pth, weights_only=True))
config = timm.data.resolve_data_config({}, model=model)
assert tuple(config["mean"]) == (0.5, 0.5, 0.5) and tuple(config["std"]) == (0.5, 0.5, 0.5)
pixels = torch.from_numpy(np.load(pixels_path)).permute(0, 3, 1, 2) / 255.0
mean, std = (torch.tensor(config[k])[:, None, None] for k in ("mean", "std"))
images = (pixels - mean) / std
with torch.no_grad():
  np.save(out, model(images.float()).numpy())
"""


def _random_vit_checkpoints(tmp_path):
  """A randomised vit_ti16 at 32 px as a timm .pth and as a big_vision .npz."""
  model = model_defs.build("vit_ti16", num_classes=CLASSES, image_size=RES)
  rng = np.random.default_rng(0)
  for v in model.weights:
    v.assign(rng.normal(0, 0.05, tuple(v.shape)).astype("float32")
             + (1.0 if v.path.endswith("gamma") else 0.0))
  weights = {v.path: np.asarray(v.numpy()) for v in model.weights}
  pth, npz = tmp_path / "vit.pth", tmp_path / "vit.npz"
  torch.save({k: torch.from_numpy(np.ascontiguousarray(v))
              for k, v in checkpoint_export.keras_vit_to_timm(weights, depth=12).items()}, pth)
  np.savez(npz, **checkpoint_export.keras_vit_to_big_vision(weights, depth=12, heads=3))
  return pth, npz


def test_converted_vit_is_evaluated_on_timm_preprocessing(tmp_path):
  pth, npz = _random_vit_checkpoints(tmp_path)
  data_dir = evaluation_helpers.prepare_fake_tfds("imagenet2012", str(tmp_path / "tfds"),
                                                  "validation", EXAMPLES)
  builder = tfds.builder("imagenet2012", data_dir=data_dir)
  encoded = [e["image"] for e in builder.as_dataset(
      split="validation", shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})]
  pixels = np.stack([data.eval_pixels(e, RES, crop="vit").numpy() for e in encoded])
  np.save(tmp_path / "pixels.npy", pixels)
  script = _TIMM_SCRIPT.replace("sys.argv[1:4]", repr([str(pth), str(tmp_path / "pixels.npy"),
                                                        str(tmp_path / "timm.npy")]))
  proc = engine_helpers.run_script(script)
  assert proc.returncode == 0, proc.stderr[-3000:]
  timm_logits = np.load(tmp_path / "timm.npy")
  for source, path in (("timm", pth), ("big_vision", npz)):
    out = tmp_path / source
    proc = run_convert(f"--source={source}", f"--input={path}", "--model=vit_ti16",
                       f"--output={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "input range minus_one_one" in proc.stdout
    assert json.loads((out / "model.json").read_text())["input_range"] == "minus_one_one"
    # The evaluate path: the loaded model, its input range, the evaluation batches.
    loaded = model_loading.load(str(out))
    assert loaded.input_range == "minus_one_one"
    eval_set = datasets.open_set("imagenet2012", CLASSES, data_dir)
    images, _ = next(iter(datasets.batches(eval_set, RES, "vit", EXAMPLES, CLASSES,
                                           input_range=loaded.input_range)))
    logits = np.asarray(loaded.model(images, training=False))
    np.testing.assert_allclose(logits, timm_logits, rtol=1e-4, atol=1e-4, err_msg=source)
    # ... and the whole command: its default crop is the ViT's, its metrics timm's.
    said = []
    record = run_lib.run(str(out), ["imagenet2012"], [str(RES)], batch_size=4,
                         data_dir=data_dir, output=str(tmp_path / f"eval_{source}"),
                         say=said.append)
    entry = record["eval"]["imagenet2012"][str(RES)]
    assert entry["input_range"] == "minus_one_one" and entry["examples"] == EXAMPLES
    assert entry["crop"] == "vit"
    labels = np.array([int(x["label"]) for x in builder.as_dataset(split="validation",
                                                                   shuffle_files=False)])
    shifted = timm_logits - timm_logits.max(-1, keepdims=True)
    nll = np.log(np.exp(shifted).sum(-1)) - shifted[np.arange(EXAMPLES), labels]
    assert entry["nll"] == pytest.approx(nll.mean(), rel=1e-4)
    assert entry["top1"] == pytest.approx(np.mean(np.argmax(timm_logits, -1) == labels))
    assert any("expected top-1" in line and "measured" in line for line in said), said


def test_source_input_ranges_and_old_model_json(tmp_path):
  assert weights_file.source_input_range("deepmind", "nfnet") == "imagenet"
  assert weights_file.source_input_range("timm:x.pth", "nfnet") == "imagenet"
  assert weights_file.source_input_range("timm:x.pth", "vit") == "minus_one_one"
  assert weights_file.source_input_range("big_vision:x.npz", "vit") == "minus_one_one"
  model = model_defs.build("vit_ti16", num_classes=3, image_size=RES)
  out = tmp_path / "w"
  weights_file.save(model, str(out), name="vit_ti16", num_classes=3, overrides={},
                    resolution=RES, source="big_vision:vit.npz")
  info = json.loads((out / "model.json").read_text())
  assert info["input_range"] == "minus_one_one"
  del info["input_range"]  # a model.json written before the field: the source's range
  (out / "model.json").write_text(json.dumps(info))
  assert weights_file.read_info(str(out))["input_range"] == "minus_one_one"


def test_normalise_maps_each_range():
  image = tf.constant([[[0.0, 127.5, 255.0]]])
  np.testing.assert_allclose(data.normalise(image, input_range="minus_one_one").numpy(),
                             [[[-1.0, 0.0, 1.0]]], atol=1e-6)
  imagenet = (np.array([0.0, 127.5, 255.0]) - data.MEAN_RGB) / data.STDDEV_RGB
  np.testing.assert_allclose(data.normalise(image).numpy()[0, 0], imagenet, rtol=1e-6)
  with pytest.raises(data.DataError, match="input range"):
    data.normalise(image, input_range="zero_one")


def test_train_and_heldout_pipelines_use_the_configured_range(tmp_path):
  from reproduce.train import inputs, rundir
  source = data.load_source("digits", data_dir=str(tmp_path / "tfds"))
  config = rundir.config_to_dict(dict(input_range="minus_one_one", eval_batch_size=8))
  plan = rundir.StoredPlan(**dict(engine_helpers.tiny_plan().to_dict(), model="nfnet_mini_f0",
                                  resolution=32))
  heldout = next(iter(inputs.heldout_dataset_fn(engine_helpers.one_device(), data, source,
                                                config, plan, tf.float32)(None)))[0].numpy()
  train = next(iter(data.train_dataset(source, global_batch_size=8, resolution=32, seed=0,
                                       **inputs.input_range(config))))[0].numpy()
  for images in (heldout, train):
    assert images.min() >= -1.0 - 1e-5 and images.max() <= 1.0 + 1e-5
    assert images.min() < -0.9  # digits have a black background: -1, not ImageNet's -2.1


def test_finetune_takes_the_init_range_and_refuses_another():
  from reproduce.finetuning import init as init_lib
  init = init_lib.Initialisation("p", "converted", "vit_ti16", "raw", 1000, 224, [], {},
                                 "minus_one_one")
  assert init_lib.input_range(init, None) == "minus_one_one"
  with pytest.raises(init_lib.FinetuneError, match="input_range"):
    init_lib.input_range(init, "imagenet")


def test_evaluate_prints_the_published_top1_beside_the_measured():
  import types
  nfnet = types.SimpleNamespace(name="nfnet_f0")
  line = run_lib.expected_top1_line(nfnet, {"top1": 0.8, "examples": 100, "resolution": 256,
                                            "crop": "nfnet"})
  assert "expected top-1 83.6%" in line and "N Table 3" in line and "at 256 px" in line
  assert "80.00% on 100 images, resolution 256, crop nfnet" in line
  other = run_lib.expected_top1_line(types.SimpleNamespace(name="vit_ti16"),
                                     {"top1": 0.5, "examples": 10})
  assert "none recorded for vit_ti16" in other


def test_convert_check_feeds_the_weights_crop_and_range(tmp_path):
  """``convert --check`` scores the image as evaluate will: a big_vision ViT gets the ViT
  crop and [-1, 1] pixels."""
  from model_defs import converters
  from reproduce import convert
  _, npz = _random_vit_checkpoints(tmp_path)
  model, info = converters.sources.convert_checkpoint("big_vision", str(npz), "vit_ti16")
  assert info["input_range"] == "minus_one_one"
  encoded = tf.io.encode_png(np.random.default_rng(2).integers(
      0, 256, (40, 50, 3), dtype=np.uint8)).numpy()
  want = model(data.eval_image(encoded, RES, crop="vit", input_range="minus_one_one")[None],
               training=False)
  np.testing.assert_allclose(convert.check_logits(model, encoded, info), np.asarray(want)[0],
                             rtol=1e-5, atol=1e-5)
  assert weights_file.source_eval_crop("vit") == "vit"
  assert weights_file.source_eval_crop("nfnet") == "nfnet"


def test_finetune_feeds_the_init_range_to_train_and_heldout(tmp_path, tiny):
  """A fine-tune from [-1, 1] weights trains and evaluates on [-1, 1] pixels, and records it."""
  from reproduce.finetuning import run as ft
  from reproduce.train import rundir
  model = model_defs.build(tiny, num_classes=engine_helpers.NUM_CLASSES)
  model(tf.zeros((1, engine_helpers.RES, engine_helpers.RES, 3)))
  converted = tmp_path / "converted"
  weights_file.save(model, str(converted), name=tiny, num_classes=engine_helpers.NUM_CLASSES,
                    overrides={}, resolution=engine_helpers.RES, source="test",
                    input_range="minus_one_one")
  fake, seen = engine_helpers.fake_data(), []

  def spy(kind, fn):
    def call(*args, input_range=None, **kwargs):
      seen.append((kind, input_range))
      return fn(*args, **kwargs)
    return call

  module = types.SimpleNamespace(load_source=fake.load_source,
                                 train_dataset=spy("train", fake.train_dataset),
                                 heldout_dataset=spy("heldout", fake.heldout_dataset))
  ft.finetune(engine_helpers.tiny_config(agc_clipping=0.0), engine_helpers.tiny_plan(steps=1),
              str(tmp_path / "ft"), str(converted), engine_helpers.one_device(),
              data_module=module, verbose=False)
  assert {kind for kind, _ in seen} == {"train", "heldout"}
  assert all(chosen == "minus_one_one" for _, chosen in seen), seen
  config = rundir.RunDirectory(str(tmp_path / "ft")).config()
  assert config["input_range"] == "minus_one_one"
