"""One traced train step serves every budget and LR of a model (``loop.Program``).

The study's workers train a model's whole grid through one program; these tests check that
the step is traced once and that a reused program gives exactly what a fresh one gives.
"""

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
  reused = [_train(tmp_path, f"reused{i}", plan, data, program=program, base_lr=plan.base_lr)
            for i, plan in enumerate(plans)]
  assert program.train_chunk.experimental_get_tracing_count() == 1
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
