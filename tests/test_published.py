"""The published-number registry: sources, counting conventions, and what the F4+ reading
(an unrounded "+" stage-1 bottleneck) would do to the planner's MFU anchor."""

import dataclasses
import re

import pytest

import model_defs
import tiny_models
from reproduce import planning
from reproduce.core import published

SOURCE_KEYS = {"P", "N", "C", "Z", "S", "V", "X", "D"}  # docs/published.md
SIZE_QUANTITIES = ("params", "gmacs", "gflops")


def test_every_entry_cites_a_known_source():
  for entry in published.ENTRIES:
    cited = set(re.findall(r"(?:^|; )([A-Z]) ", entry.source + " "))
    assert cited and cited <= SOURCE_KEYS, (entry.key, entry.source)
    assert entry.tolerance >= 0 and entry.convention, entry.key


def test_size_entries_name_their_convention_and_count_under_it():
  """Each model-size number states its resolution and carries the overrides it was counted
  with, which model_defs accepts (reproduce.compare counts it exactly so)."""
  sized = [e for e in published.ENTRIES if e.quantity in SIZE_QUANTITIES]
  assert sized
  for entry in sized:
    overrides = dict(entry.model_overrides)
    if entry.model.startswith("vit_"):
      assert "224 px" in entry.convention and "pool_type" in overrides, entry.key
      headless = overrides.get("include_top") is False
      assert headless == ("no classifier" in entry.convention), entry.key
    model_defs.stats(entry.model, 224, **overrides)  # accepted, no unknown override


def test_f4plus_entries_carry_the_unrounded_bottleneck():
  for key in ("nfnet_f4plus.params", "nfnet_f4plus.gmacs"):
    entry = published.get(key)
    assert entry.source == "N Table 5"
    assert dict(entry.model_overrides) == {"bottleneck_rounding": "unrounded"}
  assert "512 px" in published.get("nfnet_f4plus.gmacs").convention


@pytest.fixture
def unrounded_f7plus():
  """NFNet-F7+ with the unrounded stage-1 bottleneck, registered for the planner."""
  spec = model_defs.get_spec("nfnet_f7plus")
  name = "nfnet_f7plus_unrounded_test"
  tiny_models.register(dataclasses.replace(
      spec, name=name, config={**spec.config, "bottleneck_rounding": "unrounded"}))
  yield name
  tiny_models.unregister(name)


def test_mfu_anchor_under_each_bottleneck_reading(unrounded_f7plus):
  """docs/budget.md: the paper's F7+ run (8 epochs, 110k TPU-v4 core hours) implies an MFU
  of 0.355 with the released rounding and about 0.392 if F7+ kept 192 channels in stage 1."""
  anchor = planning.anchor()
  released = planning.anchor_mfu()
  unrounded = planning.implied_mfu(unrounded_f7plus, anchor["epochs"], anchor["dataset_size"],
                                   anchor["core_hours"], anchor["hardware"],
                                   anchor["resolution"], anchor["batch_size"])
  assert released == pytest.approx(0.355, abs=0.0005)
  assert unrounded == pytest.approx(0.392, abs=0.0005)
  # MFU is proportional to the counted FLOPs at fixed core hours.
  ratio = (model_defs.stats("nfnet_f7plus", 224, bottleneck_rounding="unrounded").flops
           / model_defs.stats("nfnet_f7plus", 224).flops)
  assert unrounded == pytest.approx(released * ratio, rel=1e-6)
  assert ratio == pytest.approx(111.18 / 100.74, abs=1e-3)
