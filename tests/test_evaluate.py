"""``reproduce.evaluate``: metrics on fake prepared ImageNet / ReaL reproduced by independent code,
run directories (EMA choice, results.json section), converted weights at another resolution,
ImageFolder with a class map (restricted logits), exclusions, and the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

import engine_helpers
import evaluation_helpers as helpers
import model_defs
import tiny_models
from model_defs.converters import posemb_resampling
from reproduce.evaluation import run as run_lib
from reproduce.evaluation import datasets
from reproduce.train import model_loading
from reproduce import data
from reproduce.evaluation import runner
from reproduce.evaluation import specs

TINY_1K = "evaluate_test_tiny_1k"
RES = 32
FAKE_EXAMPLES = 24


@pytest.fixture(scope="module")
def tiny_1k():
  tiny_models.register_tiny_model(TINY_1K, train_resolution=RES)
  yield TINY_1K
  tiny_models.unregister(TINY_1K)


@pytest.fixture(scope="module")
def fake_imagenet(tmp_path_factory):
  """A TFDS data_dir with fake prepared ImageNet validation, ReaL and ImageNet-A sets; the
  first two labelled with few classes, which a classifier can favour (``_classifier_for``)."""
  data_dir = str(tmp_path_factory.mktemp("tfds"))
  for seed, (name, split, count, labels) in enumerate((
      ("imagenet2012", "validation", FAKE_EXAMPLES, 4),
      ("imagenet2012_real", "validation", FAKE_EXAMPLES, 4), ("imagenet_a", "test", 40, None))):
    helpers.prepare_fake_tfds(name, data_dir, split, count, seed=seed, num_labels=labels)
  return data_dir


def _tfds_examples(name, label_key, data_dir):
  """(encoded images, label sets) of a prepared tfds split, read directly from tfds."""
  builder = tfds.builder(name, data_dir=data_dir)
  dataset = builder.as_dataset(split="validation", shuffle_files=False,
                               decoders={"image": tfds.decode.SkipDecoding()})
  encoded, labels = [], []
  for example in dataset:
    encoded.append(example["image"])
    labels.append(set(np.reshape(example[label_key].numpy(), [-1]).tolist()))
  return encoded, labels


def _classifier_for(model, imagenet_labels, real_label_sets):
  """Random weights, a few labels of the data favoured: a non-trivial top-1 and calibration."""
  helpers.randomise(model, scale=0.5)
  counts = np.bincount([c for labels in real_label_sets for c in labels], minlength=1000)
  favoured = [c for labels in imagenet_labels[:4] for c in labels] + list(np.argsort(-counts)[:2])
  bias = model.layers[-1].bias.numpy()
  bias[favoured] += 8.0
  model.layers[-1].bias.assign(bias)


def test_imagenet_and_real_reproduce_independent_metrics(tiny_1k, fake_imagenet, tmp_path):
  model = model_defs.build(tiny_1k, num_classes=1000)
  model(tf.zeros((1, RES, RES, 3)))
  reference = {name: _tfds_examples(name, key, fake_imagenet) for name, key in
               (("imagenet2012", "label"), ("imagenet2012_real", "real_label"))}
  _classifier_for(model, reference["imagenet2012"][1], reference["imagenet2012_real"][1])
  weights = helpers.write_converted(model, str(tmp_path / "weights"), name=tiny_1k,
                                    num_classes=1000, resolution=RES)
  record = run_lib.run(weights, ["imagenet2012", "imagenet2012_real"], [str(RES)],
                       batch_size=10, data_dir=fake_imagenet, output=str(tmp_path / "out"),
                       say=lambda _: None)
  for name, (encoded, label_sets_seen) in reference.items():
    images = np.stack([data.eval_image(e, RES, crop="nfnet").numpy() for e in encoded])
    want = helpers.loop_metrics(model.predict(images, verbose=0), label_sets_seen)
    got = record["eval"][name][str(RES)]
    assert got["examples"] == want["examples"]
    assert got["excluded"] == FAKE_EXAMPLES - want["examples"]
    for key in ("top1", "top5", "nll", "ece"):
      assert got[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), (name, key)
    assert got["crop"] == "nfnet" and got["resolution"] == RES and got["weights"] == "raw"
    assert got["images_per_second"] > 0
    assert os.path.exists(tmp_path / "out" / f"reliability_{name}_{RES}.png")
  for name in reference:
    assert 0 < record["eval"][name][str(RES)]["top1"] < 1, f"a trivial test on {name}"
  saved = json.loads((tmp_path / "out" / "results.json").read_text())
  assert saved["eval"] == json.loads(json.dumps(record["eval"]))
  tags = _tensorboard_tags(tmp_path / "out" / "tensorboard")
  assert {"eval/imagenet2012_real/top1", "eval/imagenet2012_real/ece",
          "eval/imagenet2012_real/reliability"} <= tags


def test_imagenet_a_scores_the_200_class_subset(tiny_1k, fake_imagenet):
  model = model_defs.build(tiny_1k, num_classes=1000)
  model(tf.zeros((1, RES, RES, 3)))
  helpers.randomise(model, scale=2.0)
  builder = tfds.builder("imagenet_a", data_dir=fake_imagenet)
  examples = list(builder.as_dataset(split="test", shuffle_files=False,
                                     decoders={"image": tfds.decode.SkipDecoding()}))
  eval_set = datasets.open_set("imagenet_a", 1000, fake_imagenet)
  result = runner.evaluate_set(model, eval_set, resolution=RES, crop="nfnet", batch_size=16)
  # Fake labels cover all 1000 classes; only those among the subset's 200 are scorable.
  position = {c: i for i, c in enumerate(helpers.PUBLISHED_A)}
  images = np.stack([data.eval_image(e["image"], RES).numpy() for e in examples])
  logits = model.predict(images, verbose=0)[:, helpers.PUBLISHED_A]
  labels = [{position[int(e["label"])]} if int(e["label"]) in position else set()
            for e in examples]
  want = helpers.loop_metrics(logits, labels)
  assert result.entry["scored_classes"] == 200 and result.entry["examples"] == want["examples"]
  assert result.entry["excluded"] == 40 - want["examples"] and want["examples"] > 0
  for key in ("top1", "top5", "nll", "ece"):
    assert result.entry[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key


def _tensorboard_tags(logdir):
  tags = set()
  for name in os.listdir(logdir):
    for event in tf.compat.v1.train.summary_iterator(os.path.join(logdir, name)):
      tags |= {v.tag for v in event.summary.value}
  return tags


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny):
  """Two finished tiny runs: one keeping an EMA, one without."""
  root = tmp_path_factory.mktemp("runs")
  made = {}
  for kind, ema_decay in (("ema", 0.9), ("raw", None)):
    from reproduce.train import loop
    loop.train(engine_helpers.tiny_config(ema_decay=ema_decay), engine_helpers.tiny_plan(steps=4),
               str(root / kind), engine_helpers.one_device(),
               data_module=engine_helpers.fake_data(), verbose=False)
    made[kind] = str(root / kind)
  return made


def _optimizer_tensors(model_dir):
  """(raw weights, EMA weights) straight from the checkpoint: the EMA slots are the
  optimizer's last variables, one per trainable variable."""
  tensors = engine_helpers.checkpoint_tensors(model_dir)

  def indexed(prefix):
    found = {int(k[len(prefix):].split("/")[0]): v for k, v in tensors.items()
             if k.startswith(prefix)}
    return [found[i] for i in sorted(found)]

  raw = indexed("optimizer/_trainable_variables/")
  return raw, indexed("optimizer/_variables/")[-len(raw):]


def test_run_directory_weights_follow_the_ema_flag(runs):
  raw, ema = _optimizer_tensors(runs["ema"])
  assert any(not np.allclose(r, e) for r, e in zip(raw, ema))
  for flag, want, label in (("auto", ema, "ema"), ("true", ema, "ema"), ("false", raw, "raw")):
    loaded = model_loading.load(runs["ema"], flag)
    assert loaded.weights == label and loaded.num_classes == engine_helpers.NUM_CLASSES
    for variable, expected in zip(loaded.model.trainable_variables, want):
      np.testing.assert_array_equal(variable.numpy(), expected)
  assert model_loading.load(runs["raw"], "auto").weights == "raw"
  with pytest.raises(model_loading.ModelLoadError, match="no EMA weights"):
    model_loading.load(runs["raw"], "true")


def test_converted_weights_hold_one_set():
  assert model_loading.choose_weights("auto", {"ema"}, "d") == "ema"
  with pytest.raises(model_loading.ModelLoadError, match="no RAW weights"):
    model_loading.choose_weights("false", {"ema"}, "d")
  with pytest.raises(model_loading.ModelLoadError, match="--ema"):
    model_loading.choose_weights("maybe", {"raw"}, "d")


def test_run_directory_gains_an_eval_section_on_a_class_mapped_imagefolder(runs, tmp_path):
  folder = helpers.write_imagefolder(str(tmp_path / "folder"), per_folder=3)
  class_map = tmp_path / "classes.json"
  class_map.write_text(json.dumps({"a": 0, "b": 2, "c": 3}))
  before = json.loads(open(os.path.join(runs["ema"], "results.json")).read())
  run_lib.run(runs["ema"], [f"imagefolder:{folder}"], [], batch_size=4,
               class_map=str(class_map), say=lambda _: None)
  after = json.loads(open(os.path.join(runs["ema"], "results.json")).read())
  entry = after["eval"][f"imagefolder:{folder}"][str(engine_helpers.RES)]
  assert {k: v for k, v in after.items() if k != "eval"} == before
  assert entry["scored_classes"] == 3 and entry["examples"] == 9 and entry["weights"] == "ema"
  loaded = model_loading.load(runs["ema"], "auto")
  paths = sorted(os.path.join(folder, d, f) for d in "abc" for f in os.listdir(
      os.path.join(folder, d)))
  images = np.stack([data.eval_image(tf.io.read_file(p), engine_helpers.RES).numpy()
                     for p in paths])
  logits = loaded.model.predict(images, verbose=0)[:, [0, 2, 3]]  # restricted to the map
  want = helpers.loop_metrics(logits, [{"abc".index(p.split("/")[-2])} for p in paths])
  for key in ("top1", "top5", "nll", "ece"):
    assert entry[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key
  assert os.path.exists(os.path.join(runs["ema"], "tensorboard", "eval"))


def test_unscorable_examples_are_excluded():
  """ReaL-style empty label sets and labels outside the scored classes are left out."""
  label_lists = [[0], [], [1, 2], [3], [2]]

  def examples(resolution, crop):
    def generate():
      for i, labels in enumerate(label_lists):
        yield np.full([resolution, resolution, 3], i, np.float32), np.array(labels, np.int64)
    return tf.data.Dataset.from_generator(generate, output_signature=(
        tf.TensorSpec([resolution, resolution, 3]), tf.TensorSpec([None], tf.int64)))

  inputs = tf.keras.Input((4, 4, 3))
  model = tf.keras.Model(inputs, tf.keras.layers.Dense(4)(
      tf.keras.layers.GlobalAveragePooling2D()(inputs)))
  helpers.randomise(model)
  eval_set = datasets.EvalSet("synthetic", examples, np.arange(4), np.array([0, 1, 2]), "test")
  result = runner.evaluate_set(model, eval_set, resolution=4, crop="nfnet", batch_size=2)
  assert result.entry["excluded"] == 2 and result.entry["examples"] == 3
  images = np.stack([np.full([4, 4, 3], i, np.float32) for i in range(5)])
  logits = model.predict(images, verbose=0)[:, :3]
  want = helpers.loop_metrics(logits, [set(l) - {3} for l in label_lists])
  for key in ("top1", "top5", "nll", "ece"):
    assert result.entry[key] == pytest.approx(want[key], rel=1e-5, abs=1e-6), key


def test_imagenet_sets_need_1000_classes():
  with pytest.raises(specs.EvaluationError, match="1000 classes"):
    datasets.open_set("imagenet_a", 10)


def _converted_mini_vit(tmp_path, name="vit_mini_ti"):
  """A randomised 3-class ``name`` at 16 px with a learned position embedding, converted
  (vit_mini_ti: 4x4 patches; hybrid_mini_pico: a stride-4 stem and 1x1 patches, the same
  4x4 grid)."""
  model = model_defs.build(name, num_classes=3, image_size=16, posemb="learn")
  model(tf.zeros((1, 16, 16, 3)))
  helpers.randomise(model, scale=0.1)
  weights = helpers.write_converted(model, str(tmp_path / "vit"), name=name,
                                    num_classes=3, resolution=16,
                                    overrides={"posemb": "learn"})
  return model, weights


@pytest.mark.parametrize("name", ["vit_mini_ti", "hybrid_mini_pico"])
def test_vit_at_another_resolution_resamples_its_position_embedding(tmp_path, name):
  model, weights = _converted_mini_vit(tmp_path, name)
  loaded = model_loading.load(weights)
  bigger = model_loading.at_resolution(loaded, 24)
  assert loaded.resolution == 16 and bigger.inputs[0].shape[1] == 24
  assert bigger.outputs[0].shape[-1] == 3

  def posemb(m):
    return [w.numpy() for w in m.weights if "pos_embedding" in w.path][0]

  expected = posemb_resampling.resample_posemb(posemb(model), 6)
  np.testing.assert_allclose(posemb(bigger).reshape(expected.shape), expected, atol=1e-6)
  assert bigger(tf.zeros((2, 24, 24, 3))).shape == (2, 3)


def test_command_line_writes_every_resolution(tmp_path):
  model, weights = _converted_mini_vit(tmp_path)
  folder = helpers.write_imagefolder(str(tmp_path / "folder"), per_folder=2)
  out = tmp_path / "out"
  proc = subprocess.run(
      [sys.executable, "-m", "reproduce.evaluate", f"--weights={weights}",
       f"--datasets=imagefolder:{folder}", "--resolution=16,24", "--crop=vit",
       f"--output={out}", "--batch_size=4"],
      cwd=engine_helpers.REPO_ROOT, capture_output=True, text=True, timeout=300,
      env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
  assert proc.returncode == 0, proc.stderr[-2000:]
  lines = [l for l in proc.stdout.splitlines() if "images/s" in l]
  assert len(lines) == 2 and "@24 px (vit crop, raw weights)" in lines[1]
  record = json.loads((out / "results.json").read_text())
  entries = record["eval"][f"imagefolder:{folder}"]
  assert sorted(entries) == ["16", "24"] and entries["24"]["examples"] == 6
  assert record["weights"]["model"] == "vit_mini_ti"


# --- pre-training's dataset specs, read through reproduce.data (docs/evaluate.md, "Datasets")


def test_digits_specs_score_the_sets_pretraining_uses():
  """``digits`` is the held-out set a mini run reports on, ``@train`` the rest; both read
  through the data module (the array_record digits: random access, no ``as_dataset``)."""
  source = data.load_source("digits")
  heldout = datasets.open_set("digits", 10)
  assert heldout.label_map.tolist() == list(range(10)) and heldout.scored_classes is None
  rows = [(images.shape[1:], targets.numpy()) for images, targets in
          datasets.batches(heldout, 32, "nfnet", 100, 10)]
  assert all(shape == (32, 32, 3) for shape, _ in rows)
  targets = np.concatenate([t for _, t in rows])
  assert len(targets) == source.heldout_size == 360
  expected = np.stack([source.read(tf.constant(int(r)))[1].numpy()
                       for r in source.heldout_records])
  np.testing.assert_array_equal(targets, expected)  # same examples, same order
  assert datasets.open_source("digits@train", None).heldout_size == source.train_size == 1437
  assert datasets.open_source("tfds:sklearn_digits@heldout", None).heldout_size == 360


@pytest.mark.parametrize("spec, message", [
    ("nope:x", "unknown dataset 'nope:x'"),
    ("digits@validation", "digits@validation: TFDS dataset 'sklearn_digits' has no split "
                          "'validation' (splits: train)"),
    ("tfds:sklearn_digits@test", "has no split 'test'"),
    ("tfds:no_such_dataset_xyz", "TFDS has no dataset 'no_such_dataset_xyz'"),
    ("imagefolder:/no/such/folder", "imagefolder root '/no/such/folder' does not exist"),
    ("tfrecord:/no/such/*.tfrecord", "tfrecord glob '/no/such/*.tfrecord' matches no files"),
    ("arrayrecord:/no/such/*.array_record", "arrayrecord glob '/no/such/*.array_record' matches"),
    ("tfrecord:/no/such/x@validation", "only TFDS datasets have named splits"),
    ("imagenet_a", "TFDS dataset 'imagenet_a' is not prepared in /no/such/dir"),
])
def test_every_bad_spec_is_one_evaluation_error_line(spec, message):
  data_dir = "/no/such/dir" if spec == "imagenet_a" else None
  with pytest.raises(specs.EvaluationError) as raised:
    datasets.open_source(spec, data_dir)
  assert message in str(raised.value) and "\n" not in str(raised.value)

