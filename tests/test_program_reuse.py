"""One traced train step serves every budget and LR of a model (``loop.Program``).

The study's workers train a model's whole grid through one program; these tests check that
the step is traced once and that a reused program gives exactly what a fresh one gives.
"""

import types

import numpy as np
import pytest

import engine_helpers as h
from reproduce.train import loop
from reproduce.train import rundir


def _train(tmp_path, name, plan, data, program=None, **config):
  return loop.train(h.tiny_config(**config), plan, str(tmp_path / name), h.one_device(),
                    data_module=data, verbose=False, program=program)


def test_one_trace_for_every_budget_and_lr_and_same_results_as_fresh_runs(tiny, tmp_path):
  data = h.fake_data()
  plans = [h.tiny_plan(steps=6, lr=0.2, warmup=2), h.tiny_plan(steps=9, lr=0.05, warmup=3),
           h.tiny_plan(steps=4, lr=0.4, warmup=0)]
  config = rundir.config_to_dict(h.tiny_config())
  program = loop.build_program(config, plans[0], h.one_device(), data_module=data,
                               source=data.load_source("synthetic"))
  built = []
  make_train_dataset = data.train_dataset
  data.train_dataset = lambda *a, **k: built.append(k["seed"]) or make_train_dataset(*a, **k)
  reused = [_train(tmp_path, f"reused{i}", plan, data, program=program, base_lr=plan.base_lr)
            for i, plan in enumerate(plans)]
  assert program.train_chunk.experimental_get_tracing_count() == 1
  assert len(built) == 1  # one input pipeline, iterated by each run from its start
  _train(tmp_path, "replicate", plans[0], data, program=program, base_lr=plans[0].base_lr,
         data_seed=7)
  assert built[1:] == [7]  # another data seed: its own pipeline
  data.train_dataset = make_train_dataset
  for i, plan in enumerate(plans):
    fresh = _train(tmp_path, f"fresh{i}", plan, data, base_lr=plan.base_lr)
    for key in ("heldout_loss", "heldout_top1", "final_train_loss", "steps"):
      assert reused[i][key] == fresh[key], (i, key)
    a = h.checkpoint_tensors(str(tmp_path / f"reused{i}"))
    b = h.checkpoint_tensors(str(tmp_path / f"fresh{i}"))
    assert a.keys() == b.keys()
    for key in a:
      np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_a_program_refuses_another_recipe(tiny, tmp_path):
  data = h.fake_data()
  plan = h.tiny_plan()
  program = loop.build_program(rundir.config_to_dict(h.tiny_config()), plan, h.one_device(),
                               data_module=data, source=data.load_source("synthetic"))
  with pytest.raises(rundir.EngineError, match="weight_decay"):
    _train(tmp_path, "other", plan, data, program=program, weight_decay=0.5)
  with pytest.raises(rundir.EngineError, match="plan.batch_size"):
    _train(tmp_path, "batch", h.tiny_plan(batch=4), data, program=program, batch_size=4)


def _two_datasets():
  """A data module serving 'synthetic' and 'other' (different images, same classes)."""
  first, second = h.fake_data(), h.fake_data(train_size=40, heldout=16)
  modules = {"synthetic": first, "other": second}
  sources = {"synthetic": first.load_source("synthetic"), "other": second.load_source("x")}
  sources["other"].name = "other"

  def load_source(dataset, **kwargs):
    del kwargs
    return sources[dataset]

  def train_dataset(src, **kwargs):
    return modules[src.name].train_dataset(src, **kwargs)

  def heldout_dataset(src, **kwargs):
    return modules[src.name].heldout_dataset(src, **kwargs)

  return types.SimpleNamespace(load_source=load_source, train_dataset=train_dataset,
                               heldout_dataset=heldout_dataset), sources


def test_another_dataset_reuses_the_traced_step_with_a_fresh_programs_results(tiny, tmp_path):
  """The study's transfer fine-tunes: ``Program.for_source`` feeds the same traced step from
  another dataset, and a run through it equals a run through a program built for that
  dataset (its own held-out set evaluated)."""
  data, sources = _two_datasets()
  plan = h.tiny_plan(steps=6, lr=0.2, warmup=2)
  config = rundir.config_to_dict(h.tiny_config())
  program = loop.build_program(config, plan, h.one_device(), data_module=data,
                               source=sources["synthetic"])
  _train(tmp_path, "pretrain", plan, data, program=program)
  other_config = rundir.config_to_dict(h.tiny_config(dataset="other"))
  other = program.for_source(other_config, plan, sources["other"])
  reused = _train(tmp_path, "reused", plan, data, program=other, dataset="other")
  assert program.train_chunk.experimental_get_tracing_count() == 1
  fresh = _train(tmp_path, "fresh", plan, data, dataset="other")
  assert reused["heldout_examples"] == fresh["heldout_examples"] == 16
  for key in ("heldout_loss", "heldout_top1", "final_train_loss"):
    assert reused[key] == fresh[key], key


def test_another_dataset_must_share_the_recipe_and_classes(tiny, tmp_path):
  data, sources = _two_datasets()
  plan = h.tiny_plan()
  program = loop.build_program(rundir.config_to_dict(h.tiny_config()), plan, h.one_device(),
                               data_module=data, source=sources["synthetic"])
  with pytest.raises(rundir.EngineError, match="weight_decay"):
    program.for_source(rundir.config_to_dict(h.tiny_config(dataset="other", weight_decay=0.5)),
                       plan, sources["other"])
  sources["other"].num_classes = h.NUM_CLASSES + 1
  with pytest.raises(rundir.EngineError, match="classes"):
    program.for_source(rundir.config_to_dict(h.tiny_config(dataset="other")), plan,
                       sources["other"])
