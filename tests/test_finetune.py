"""Fine-tuning (reproduce.finetuning): a fresh zero head over the source's body, beats
training from scratch, resumes bit-exactly after kill -9, reads converted weights, resamples
a ViT's position embedding, and writes its compute fields."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import keras
from model_defs import weights_file
import numpy as np
import pytest

import engine_helpers as h
from reproduce.finetuning import init as init_lib
from reproduce.finetuning import run as ft
from reproduce.train import loop
from reproduce.train import rundir

FT_RES = 24  # the fine-tune's resolution (pre-training: h.RES = 16)


def _plan(steps, lr=0.1, resolution=FT_RES, model=h.TINY):
  plan = h.tiny_plan(steps=steps, lr=lr, warmup=1)
  return rundir.StoredPlan(**dict(vars(plan), resolution=resolution, model=model))


def _config(**overrides):
  return h.tiny_config(agc_clipping=0.0, sam="standard", sam_rho=0.05, **overrides)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, tiny):
  """A tiny model pre-trained to full held-out accuracy on the 16 px synthetic task."""
  del tiny  # registered for this module, unregistered after it
  model_dir = str(tmp_path_factory.mktemp("pretrain"))
  record = loop.train(h.tiny_config(agc_clipping=0.0), h.tiny_plan(steps=60, lr=0.2), model_dir,
                      h.one_device(), data_module=h.fake_data(), verbose=False)
  assert record["heldout_top1"] > 0.9
  return model_dir


@pytest.mark.parametrize("head_init", ["model", "zeros"])
def test_model_fn_copies_the_body_and_sets_a_fresh_head(pretrained, head_init):
  init = init_lib.load_init(pretrained, FT_RES)
  model = init_lib.model_fn(init, head_init)(rundir.config_to_dict(_config()), _plan(4), 7)
  by_path = dict(init.arrays)
  for variable in init_lib.body_variables(model, 7):
    np.testing.assert_array_equal(variable.numpy(), by_path[variable.path])
  kernel, bias = init_lib.head_variables(model, 7)
  assert (tuple(kernel.shape), tuple(bias.shape)) == ((8, 7), (7,))
  assert not np.any(bias.numpy())
  # 'model': the builder's own (random) kernel init, as the NFNet code; 'zeros': all zero.
  assert np.any(kernel.numpy()) == (head_init == "model")
  assert init.info()["kind"] == "run" and init.pretrain["planned_core_hours"] > 0


def test_finetune_beats_training_from_scratch(pretrained, tmp_path):
  data, plan = h.fake_data(res=FT_RES), _plan(steps=6)
  tuned = ft.finetune(_config(), plan, str(tmp_path / "ft"), pretrained, h.one_device(),
                      data_module=data, verbose=False)
  scratch = loop.train(rundir.config_to_dict(_config()), plan, str(tmp_path / "scratch"),
                       h.one_device(), data_module=data, verbose=False)
  assert tuned["finetune_top1"] >= scratch["heldout_top1"] + 0.3, (tuned["finetune_top1"],
                                                                    scratch["heldout_top1"])
  record = json.load(open(tmp_path / "ft" / "results.json"))
  assert record["finetune_top1"] == tuned["finetune_top1"] == record["heldout_top1"]
  assert record["finetune"]["step_cost_factor"] == 2.0
  # Standard SAM costs two passes a step: the plan run and reported charges both.
  assert record["planned_core_hours"] == pytest.approx(2 * plan.core_hours)
  assert record["finetune_planned_core_hours"] == record["planned_core_hours"]
  assert record["pretrain_core_hours"] == pytest.approx(
      json.load(open(os.path.join(pretrained, "results.json")))["planned_core_hours"])
  assert record["finetune"]["init"]["path"] == pretrained


def test_converted_weights_init(pretrained, tmp_path):
  converted = tmp_path / "converted"
  init = init_lib.load_init(pretrained, h.RES)
  source = keras.models.clone_model(init_lib.model_fn(init, "model")(
      rundir.config_to_dict(_config()), _plan(1, resolution=h.RES), h.NUM_CLASSES))
  source.build((None, h.RES, h.RES, 3))
  weights_file.save(source, str(converted), name=h.TINY, num_classes=h.NUM_CLASSES,
                    overrides={}, resolution=h.RES, source="test")
  loaded = init_lib.load_init(str(converted), FT_RES)
  assert loaded.kind == "converted" and loaded.pretrain == {}
  assert len(loaded.arrays) == len(init.arrays)
  record = ft.finetune(_config(), _plan(2), str(tmp_path / "ft"), str(converted),
                       h.one_device(), data_module=h.fake_data(res=FT_RES), verbose=False)
  assert record["finetune"]["init"]["kind"] == "converted"


def test_wrong_init_is_one_line_error(pretrained, tmp_path):
  with pytest.raises(init_lib.FinetuneError, match="neither"):
    init_lib.source_model(str(tmp_path))
  with pytest.raises(init_lib.FinetuneError, match="holds"):
    ft.finetune(_config(), _plan(1, model="nfnet_mini_f0"), str(tmp_path / "x"), pretrained,
                h.one_device(), data_module=h.fake_data(), verbose=False)
  with pytest.raises(init_lib.FinetuneError, match="augment_multiplicity"):
    ft.finetune(_config(augment_multiplicity=3), _plan(1), str(tmp_path / "y"), pretrained,
                h.one_device(), data_module=h.fake_data(), verbose=False)


def test_vit_position_embedding_is_resampled(tmp_path):
  config = h.tiny_config(model="vit_mini_s", optimizer="adamw", weight_decay=0.0,
                         model_overrides={"posemb": "learn"})  # a weight to resample
  loop.train(config, _plan(1, resolution=16, model="vit_mini_s"), str(tmp_path / "pt"),
             h.one_device(), data_module=h.fake_data(), verbose=False)
  init = init_lib.load_init(str(tmp_path / "pt"), 32)
  own = init_lib.load_init(str(tmp_path / "pt"), 16)
  resampled = [p for (p, a), (_, b) in zip(init.arrays, own.arrays) if a.shape != b.shape]
  assert len(resampled) == 1 and "pos" in resampled[0], resampled
  model = init_lib.model_fn(init)(rundir.config_to_dict(config),
                                  _plan(1, resolution=32, model="vit_mini_s"), 3)
  assert model.inputs[0].shape[1] == 32
  for variable in init_lib.body_variables(model, 3):
    np.testing.assert_array_equal(variable.numpy(), dict(init.arrays)[variable.path])


# kill -9 / resume: the fine-tune is killed (SIGKILL from a hook) after step KILL_AT, then
# re-run; its final checkpoint equals an uninterrupted fine-tune's bit for bit.
_SCRIPT = """
import os, signal
import engine_helpers as h
from reproduce.finetuning import run as ft
from reproduce.train import rundir
h.register_engine_tiny_model()

def kill_at(step, logs):
  if KILL_AT and step >= KILL_AT:
    os.kill(os.getpid(), signal.SIGKILL)

plan = rundir.StoredPlan(**dict(vars(h.tiny_plan(steps=8, lr=0.1, warmup=1)), resolution=24))
config = h.tiny_config(agc_clipping=0.0, sam="standard", checkpoint_every_steps=3,
                       ema_decay=0.99)
record = ft.finetune(config, plan, MODEL_DIR, INIT, h.one_device(),
                     data_module=h.fake_data(res=24), verbose=False, hooks=[kill_at])
print("RESULT", record["finetune_top1"])
"""


def _script(model_dir, init, kill_at=0):
  return (_SCRIPT.replace("MODEL_DIR", repr(model_dir)).replace("INIT", repr(init))
          .replace("KILL_AT", str(kill_at)))


def test_kill9_then_resume_equals_uninterrupted(pretrained, tmp_path):
  killed_dir, clean_dir = str(tmp_path / "killed"), str(tmp_path / "clean")
  killed = h.run_script(_script(killed_dir, pretrained, kill_at=5))
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
  resumed = h.run_script(_script(killed_dir, pretrained))
  clean = h.run_script(_script(clean_dir, pretrained))
  assert resumed.returncode == 0 and clean.returncode == 0, (resumed.stderr + clean.stderr)[-3000:]
  a, b = h.checkpoint_tensors(killed_dir), h.checkpoint_tensors(clean_dir)
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_cli_finetune_mini_from_pretrain_mini(tmp_path):
  """The two mains end to end on the embedded digits: 32 px pre-training, 48 px fine-tune."""
  pt, tuned = str(tmp_path / "pt"), str(tmp_path / "ft")
  commands = [["reproduce.pretrain", "--config=reproduce/configs/pretrain_mini.py",
               f"--model_dir={pt}", "--config.budget_core_hours=0.0002"],
              ["reproduce.finetune", "--config=reproduce/configs/finetune_mini.py",
               f"--model_dir={tuned}", f"--init={pt}", "--config.epochs=0.1",
               "--config.warmup_steps=2"]]
  for command in commands:
    proc = subprocess.run([sys.executable, "-m", *command], cwd=h.REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # Both plan from the engine's measured step on CPU (one function: budgeting), not from
    # the analytic CPU throughput (which put the fine-tune at 8x its plan).
    assert "throughput measured" in proc.stdout, proc.stdout[-2000:]
  for run_dir in (pt, tuned):
    with open(os.path.join(run_dir, "plan.json"), encoding="utf-8") as f:
      assert json.load(f)["throughput_source"] == "measured", run_dir
  record = json.load(open(os.path.join(tuned, "results.json")))
  assert record["resolution"] == 48 and record["model"] == "nfnet_mini_f0"
  assert 0.0 <= record["finetune_top1"] <= 1.0
  assert record["finetune"]["augment_multiplicity"] == 1
  assert record["finetune"]["unique_images_per_epoch"] == record["dataset_size"]
  assert record["finetune"]["init"]["source_resolution"] == 32
  assert record["pretrain_core_hours"] > 0
