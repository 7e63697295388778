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


def test_every_source_names_a_table_section_or_figure_as_the_paper_prints_it():
  """Each cited part reads "<key> Table|Section|Figure <n>" (or "D from C ..."), so a reader
  can find the number; rebuilt here, as the builders make the table now."""
  for entry in published._all_rows():
    for part in entry.source.split("; "):
      assert re.match(r"[A-Z] ((Table|Section|Figure) \d|from [A-Z] )", part), (entry.key,
                                                                                 part)


def test_core_hour_entries_say_which_tpu_generation_counts_them():
  hours = [e for e in published._all_rows() if e.quantity.endswith("core_hours")
           or e.quantity.endswith("core_hours_v3")]
  assert {e.key for e in hours} >= {"claim.optimal_epochs_gt1_above_core_hours",
                                    "nfnet_f7plus.pretrain_core_hours_v3"}
  for entry in hours:
    unit = "TPU-v3 core hours" if entry.quantity.endswith("_v3") else "TPU-v4 core hours"
    assert entry.unit == unit, entry.key


# Numbers as the papers print them, with their tolerance: half the last printed digit for
# the rounded size tables, a tenth for the authors' compute estimates.
AS_PRINTED = {
    "vit_ti16.params": (5.5, 0.05), "vit_s16.params": (22.0, 0.5),
    "vit_b16.params": (86.0, 0.5), "vit_l16.params": (303.0, 0.5),
    "vit_giant14.params": (1011.0, 0.5), "vit_gigantic14.params": (1843.0, 0.5),
    "vit_h14.params": (632.0, 0.5),
    "vit_c1gf.params": (4.6, 0.05), "vit_c4gf.params": (17.8, 0.05),
    "vit_c18gf.params": (81.6, 0.05), "vit_c36gf.params": (167.8, 0.05),
    "vit_c18gf.gmacs": (17.7, 0.05),
    "nfnet_f7plus.pretrain_core_hours_v3": (250e3, 25e3),
    "claim.optimal_epochs_gt1_above_core_hours": (5e3, 2.5e3),
    "claim.size_vs_epochs_exponent_ratio": (1.0, 0.5),
}


def test_registry_holds_the_numbers_as_printed():
  built = {e.key: e for e in published._all_rows()}
  for key, (value, tolerance) in AS_PRINTED.items():
    assert (built[key].value, built[key].tolerance) == (value, tolerance), key


def test_xiao_rows_are_the_four_vit_c_models_the_kit_defines():
  rows = published._xiao_rows()
  assert [e.key for e in rows] == [f"vit_c{n}gf.{q}" for n in (1, 4, 18, 36)
                                   for q in ("params", "gmacs")]
  for entry in rows:
    assert entry.model == entry.key.split(".")[0] and entry.source == "X Table 1"
    assert dict(entry.model_overrides) == {"pool_type": "token"}  # class token, with a head
    model_defs.get_spec(entry.model)  # a model the kit builds


def test_every_size_entry_names_a_model_the_kit_builds():
  sized = [e for e in published._all_rows() if e.quantity in SIZE_QUANTITIES]
  assert {f"nfnet_f{i}.params" for i in range(7)} <= {e.key for e in sized}  # N Table 3
  for entry in sized:
    model_defs.get_spec(entry.model)
