"""The recipes (reproduce/configs, train.builders/inputs, miniature.grid): held-out resolution and
split, the ImageNet recipe read from the variant table, explicit JFT regularisation, and each
family on its own optimizer in the study."""

import types

import keras
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from engine_helpers import NUM_CLASSES, fake_data, one_device, tiny_config, tiny_plan


def _plan(model, resolution, **fields):
  from reproduce.train import rundir
  return rundir.StoredPlan(**dict(tiny_plan().to_dict(), model=model, resolution=resolution, **fields))


# ----------------------------------------------------------------------------------------
# Held-out evaluation resolution.


def test_heldout_images_have_the_eval_resolution(tmp_path):
  from reproduce import data
  from reproduce.train import inputs, rundir
  source = data.load_source("digits", data_dir=str(tmp_path / "tfds"))
  plan = _plan("nfnet_mini_f0", 32)
  for eval_resolution, expected in ((None, 32), (40, 40)):
    config = rundir.config_to_dict(dict(eval_resolution=eval_resolution, eval_batch_size=8))
    fn = inputs.heldout_dataset_fn(one_device(), data, source, config, plan, tf.float32)
    images = next(iter(fn(None)))[0]
    assert tuple(images.shape[1:]) == (expected, expected, 3)


def test_the_engine_evaluates_at_the_eval_resolution(tiny, tmp_path):
  from reproduce.train import loop
  module = fake_data()
  asked = []

  def heldout_dataset(src, *, resolution, **kwargs):
    asked.append(resolution)
    return module.heldout_dataset(src, resolution=resolution, **kwargs).map(
        lambda x, y: (tf.image.resize(x, (resolution, resolution)), y))

  data_module = types.SimpleNamespace(load_source=module.load_source,
                                      train_dataset=module.train_dataset,
                                      heldout_dataset=heldout_dataset)
  record = loop.train(tiny_config(eval_resolution=24), tiny_plan(steps=2), str(tmp_path / "r"),
                      one_device(), data_module=data_module, verbose=False)
  assert asked == [24] and record["resolution"] == 16 and np.isfinite(record["heldout_loss"])


def test_the_eval_crop_is_passed_only_when_set():
  from reproduce.train import inputs, rundir
  calls = []
  module = types.SimpleNamespace(heldout_dataset=lambda source, **kw: calls.append(kw))
  for crop in (None, "vit"):
    config = rundir.config_to_dict(dict(eval_crop=crop))
    inputs.heldout_dataset_fn(one_device(), module, None, config, tiny_plan(), tf.float32)(None)
  assert "crop" not in calls[0] and calls[1]["crop"] == "vit"


def test_a_vit_refuses_an_eval_resolution_other_than_its_build_size():
  from reproduce.train import builders, rundir
  config = rundir.config_to_dict(dict(eval_resolution=40))
  with pytest.raises(rundir.EngineError, match="vit_mini_ti is built for 32 px"):
    builders.build_model(config, _plan("vit_mini_ti", 32), NUM_CLASSES)
  model = builders.build_model(rundir.config_to_dict({}), _plan("vit_mini_ti", 32), NUM_CLASSES)
  assert tuple(model.input_shape[1:]) == (32, 32, 3)


def test_configs_set_the_eval_resolution_as_the_paper():
  from reproduce.configs import pretrain_i21k, pretrain_jft, pretrain_mini, pretrain_mini_vit
  jft = pretrain_jft.get_config()
  assert (jft.resolution, jft.eval_resolution, jft.eval_crop) == (224, 256, "nfnet")
  assert pretrain_i21k.get_config().eval_resolution == 256
  assert pretrain_mini.get_config().eval_resolution is None
  assert pretrain_mini_vit.get_config().eval_resolution is None


# ----------------------------------------------------------------------------------------
# pretrain_imagenet: the variant table and the official validation split.


@pytest.mark.parametrize("model,train_res,test_res,dropout,randaugment", [
    ("nfnet_f0", 192, 256, 0.2, "405"),
    ("nfnet_f1", 224, 320, 0.3, "410"),
    ("nfnet_f3plus", 320, 416, 0.4, "415"),
])
def test_pretrain_imagenet_reads_the_variant_table(model, train_res, test_res, dropout,
                                                   randaugment):
  from reproduce.configs import pretrain_imagenet
  config = pretrain_imagenet.get_config(model)
  assert config.model == model
  assert (config.resolution, config.eval_resolution) == (train_res, test_res)
  assert config.model_overrides.to_dict() == dict(dropout_rate=dropout, stochdepth_rate=0.25)
  assert config.augment.randaugment == randaugment
  assert config.heldout_split == "validation" and config.heldout_size is None


def test_pretrain_imagenet_default_variant_and_non_nfnets():
  from reproduce.configs import pretrain_imagenet
  assert pretrain_imagenet.get_config().model == "nfnet_f0"
  with pytest.raises(ValueError, match="NFNet recipe"):
    pretrain_imagenet.get_config("vit_b16")


class KitTestTwoSplits(tfds.core.GeneratorBasedBuilder):
  """A 'train' split of 12 and a 'validation' split of 5 constant 8x8 images."""

  VERSION = tfds.core.Version("1.0.0")

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=(8, 8, 3)),
        "label": tfds.features.ClassLabel(num_classes=3),
    }))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {"train": self._generate_examples(0, 12),
            "validation": self._generate_examples(100, 5)}

  def _generate_examples(self, start, count):  # pylint: disable=arguments-differ
    for i in range(start, start + count):
      yield i, {"image": np.full((8, 8, 3), i, np.uint8), "label": i % 3}


def test_heldout_split_trains_on_all_of_train_and_holds_out_validation(tmp_path):
  from reproduce import data
  data_dir = str(tmp_path / "tfds")
  KitTestTwoSplits(data_dir=data_dir).download_and_prepare(file_format="array_record")
  source = data.load_source("tfds:kit_test_two_splits", data_dir=data_dir,
                            heldout_split="validation")
  assert (source.train_size, source.heldout_size) == (12, 5)
  pixels = []
  for record in source.heldout_records:
    encoded, target = source.read(tf.constant(record))
    pixels.append(int(tf.io.decode_image(encoded)[0, 0, 0]))
    assert float(tf.reduce_sum(target)) == 1.0
  assert sorted(pixels) == list(range(100, 105))  # TFDS shuffles when preparing
  first_train = source.read(tf.constant(source.train_records[0]))[0]
  assert int(tf.io.decode_image(first_train)[0, 0, 0]) < 100
  with pytest.raises(data.DataError, match="not both"):
    data.load_source("tfds:kit_test_two_splits", data_dir=data_dir, heldout_size=3,
                     heldout_split="validation")
  with pytest.raises(data.DataError, match="lacks"):
    data.load_source("tfds:kit_test_two_splits", data_dir=data_dir, heldout_split="test")
  with pytest.raises(data.DataError, match="needs a TFDS dataset"):
    data.load_source("digits", heldout_split="validation")


def test_open_source_passes_the_heldout_split_only_when_set():
  from reproduce.train import inputs, rundir
  calls = []
  module = types.SimpleNamespace(load_source=lambda dataset, **kw: calls.append(kw))
  inputs.open_source(module, rundir.config_to_dict({}))
  inputs.open_source(module, rundir.config_to_dict(dict(heldout_split="validation")))
  assert "heldout_split" not in calls[0] and calls[1]["heldout_split"] == "validation"


# ----------------------------------------------------------------------------------------
# JFT pre-training regularisation.


def _regularisation(model):
  """(dropout rates, per-block stochastic-depth rates) of a built NFNet."""
  dropouts = [layer.rate for layer in model._flatten_layers() if isinstance(
      layer, keras.layers.Dropout)]
  stochdepth = [layer.stochdepth_rate for layer in model._flatten_layers()
                if hasattr(layer, "stochdepth_rate")]
  return dropouts, stochdepth


@pytest.mark.parametrize("name", ["pretrain_jft", "pretrain_i21k"])
def test_jft_pretraining_builds_without_dropout_or_stochastic_depth(name):
  import importlib
  from reproduce.train import builders, rundir
  config = importlib.import_module(f"reproduce.configs.{name}").get_config()
  assert config.model_overrides.to_dict() == dict(dropout_rate=0.0, stochdepth_rate=0.0)
  config.model = "nfnet_mini_f0"  # the same overrides on a model that builds in seconds
  model = builders.build_model(rundir.config_to_dict(config), _plan("nfnet_mini_f0", 32), 10)
  dropouts, stochdepth = _regularisation(model)
  assert max(dropouts, default=0.0) == 0.0  # a rate of 0 builds no Dropout layer
  assert stochdepth and max(stochdepth) == 0.0
  # The variant defaults the config now overrides: dropout 0.2, stochastic depth up to 0.1.
  default = builders.build_model(rundir.config_to_dict({}), _plan("nfnet_mini_f0", 32), 10)
  dropouts, stochdepth = _regularisation(default)
  assert max(dropouts) == pytest.approx(0.2) and max(stochdepth) > 0


# ----------------------------------------------------------------------------------------
# Each family on its own recipe.


def test_build_optimizer_builds_the_configured_one(tiny):
  from reproduce.train import builders, lr_schedule, rundir
  plan = tiny_plan()
  model = builders.build_model(rundir.config_to_dict(tiny_config()), plan, NUM_CLASSES)
  schedule = lr_schedule.schedule_from_plan(plan)
  sgd = builders.build_optimizer(rundir.config_to_dict(tiny_config()), schedule, model,
                                 NUM_CLASSES)
  assert isinstance(sgd, keras.optimizers.SGD) and sgd.agc_clipping == 0.01
  config = rundir.config_to_dict(tiny_config(optimizer="adamw", weight_decay=0.1,
                                             adam_b2=0.999, grad_clip_norm=1.0))
  adamw = builders.build_optimizer(config, schedule, model, NUM_CLASSES)
  assert isinstance(adamw, keras.optimizers.AdamW) and not hasattr(adamw, "agc_statistics")
  assert (adamw.weight_decay, adamw.beta_2, adamw.global_clipnorm) == (0.1, 0.999, 1.0)
  decayed = [v for v in model.trainable_variables if adamw._use_weight_decay(v)]
  assert decayed and all(len(v.shape) > 1 for v in decayed)  # no decay on biases
  with pytest.raises(rundir.EngineError, match="unknown"):
    builders.build_optimizer(rundir.config_to_dict(tiny_config(optimizer="lamb")), schedule,
                             model, NUM_CLASSES)
  with pytest.raises(rundir.EngineError, match="sgd_agc"):
    builders.build_optimizer(
        rundir.config_to_dict(tiny_config(optimizer="adamw", ema_decay=0.9)), schedule, model,
        NUM_CLASSES)


def test_a_mini_vit_trains_with_adamw_through_the_loop(tmp_path):
  from reproduce.configs import pretrain_mini_vit
  from reproduce.train import loop, rundir
  config = pretrain_mini_vit.get_config()
  config.update(dataset="synthetic", resolution=16, batch_size=8, log_every_steps=0,
                checkpoint_every_steps=0, checkpoint_every_secs=0.0)
  from reproduce import planning
  lr = planning.MINI_LR["vit"]  # config.base_lr None: the planner's mini-family LR
  plan = _plan("vit_mini_ti", 16, steps=6, base_lr=lr)
  model_dir = str(tmp_path / "vit")
  record = loop.train(config, plan, model_dir, one_device(), data_module=fake_data(),
                      verbose=False)
  assert record["config"]["optimizer"] == "adamw" and record["base_lr"] == lr
  assert record["steps"] == 6 and np.isfinite(record["heldout_loss"])
  run = loop.build_run(rundir.config_to_dict(config), plan, model_dir, one_device(),
                       data_module=fake_data(), say=lambda line: None)
  assert isinstance(run.program.optimizer, keras.optimizers.AdamW)


def test_study_config_picks_each_familys_recipe():
  from reproduce.miniature import grid
  nfnet = grid.study_config("nfnet_mini_f0", 6.0, 0.4, 0)
  vit = grid.study_config("vit_mini_ti", 6.0, 2e-3, 0)
  assert (nfnet.optimizer, nfnet.base_lr, nfnet.agc_clipping) == ("sgd_agc", 0.4, 0.01)
  assert (vit.optimizer, vit.base_lr, vit.adam_b2) == ("adamw", 2e-3, 0.999)
  assert nfnet.budget_core_hours == vit.budget_core_hours == 6.0 / 3600


def test_the_mini_vit_config_derives_from_base():
  from reproduce.configs import base, pretrain_mini_vit
  assert set(pretrain_mini_vit.get_config().to_dict()) == set(base.get_config().to_dict())
