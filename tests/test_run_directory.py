"""``rundir.RunDirectory``: the one reader of a run's config and plan, the one writer of its
results.json, one method per part of the file (``core.results``)."""

from __future__ import annotations

import json

import pytest

from reproduce.core import results as schema
from reproduce.train import rundir

import engine_helpers


def _finished(tmp_path) -> rundir.RunDirectory:
  directory = rundir.RunDirectory(str(tmp_path / "run"))
  config = rundir.config_to_dict(engine_helpers.tiny_config())
  directory.prepare(config, engine_helpers.tiny_plan())
  record = dict.fromkeys(schema.RECORD_FIELDS)
  record.update(schema=schema.SCHEMA, heldout_top1=0.5, steps=3)
  directory.write_record(record)
  return directory


def test_config_and_plan_read_back_what_prepare_wrote(tmp_path):
  directory = rundir.RunDirectory(str(tmp_path / "run"))
  assert not directory.is_run() and directory.results() is None
  config = rundir.config_to_dict(engine_helpers.tiny_config())
  plan = engine_helpers.tiny_plan()
  assert directory.prepare(config, plan) is plan
  assert directory.is_run() and directory.config() == config
  assert directory.plan().to_dict() == rundir.plan_to_dict(plan)
  assert directory.results() is None  # unfinished
  assert directory.latest_checkpoint() is None
  assert directory.checkpoint_dir == str(tmp_path / "run" / rundir.CHECKPOINT_DIR)


def test_the_record_must_have_the_declared_fields(tmp_path):
  directory = rundir.RunDirectory(str(tmp_path))
  with pytest.raises(ValueError, match="fields"):
    directory.write_record({"heldout_loss": 1.0})
  assert directory.results() is None


def test_a_finetune_adds_only_its_fields_and_rewrites_only_on_change(tmp_path):
  directory = _finished(tmp_path)
  with pytest.raises(ValueError, match="heldout_top1"):
    directory.add_finetune({"heldout_top1": 0.9})
  path = tmp_path / "run" / schema.FILE
  record = directory.add_finetune({"finetune_top1": 0.7, "finetune_run": "ft"})
  assert record["finetune_top1"] == 0.7 and record["heldout_top1"] == 0.5
  assert json.loads(path.read_text()) == record
  written = (path.stat().st_ino, path.stat().st_mtime_ns)  # an atomic write: a new file
  directory.add_finetune({"finetune_top1": 0.7})
  assert (path.stat().st_ino, path.stat().st_mtime_ns) == written


def test_a_finetune_of_an_unfinished_run_is_one_line(tmp_path):
  with pytest.raises(rundir.EngineError, match="no results.json yet"):
    rundir.RunDirectory(str(tmp_path)).add_finetune({"finetune_top1": 0.7})


def test_eval_entries_merge_into_the_eval_section_keeping_the_rest(tmp_path):
  directory = _finished(tmp_path)
  directory.add_eval({"digits": {32: {"top1": 0.5}}})
  record = directory.add_eval({"digits": {40: {"top1": 0.6}}, "other": {32: {"top1": 0.1}}})
  assert record[schema.EVAL_SECTION] == {"digits": {"32": {"top1": 0.5}, "40": {"top1": 0.6}},
                                         "other": {"32": {"top1": 0.1}}}
  assert record["heldout_top1"] == 0.5 and directory.results() == record
  converted = rundir.RunDirectory(str(tmp_path / "out"))
  made = converted.add_eval({"digits": {32: {"top1": 0.4}}}, base={"model": "m"})
  assert made == {"model": "m", schema.EVAL_SECTION: {"digits": {"32": {"top1": 0.4}}}}
