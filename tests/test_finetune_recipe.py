"""configs/finetune_imagenet.py as the paper's recipe: every value it sets has a provenance
(stated, with its source, or assumed), repeated augmentation only in the "F7+ with RA"
setting, SAM in a named form, and the LR unit with both readings."""

import pytest

from reproduce.configs import base
from reproduce.configs import finetune_base
from reproduce.configs import finetune_imagenet
from reproduce.core import published
from reproduce.train import sam

# Keys a config sets that are not recipe values.
_NOT_RECIPE = {"provenance", "model", "init"}


def _set_keys(config) -> list[str]:
  """The keys whose value differs from configs/base.py, plus the fine-tune's own keys."""
  defaults = base.get_config().to_dict()
  values = config.to_dict()
  own = set(finetune_base.defaults())
  return sorted(k for k, v in values.items()
                if k not in _NOT_RECIPE and (k in own or defaults.get(k, object()) != v))


@pytest.mark.parametrize("variant", finetune_imagenet.VARIANTS)
def test_every_value_of_the_finetune_config_has_a_provenance(variant):
  config = finetune_imagenet.get_config(variant)
  provenance = config.provenance.to_dict()
  keys = _set_keys(config)
  assert {"sam", "augment_multiplicity", "base_lr", "head_init", "epochs"} <= set(keys)
  missing = [k for k in keys if k not in provenance]
  assert not missing, f"values without a provenance: {missing}"
  for key in keys:
    text = provenance[key]
    assert text.startswith(("stated [P]", "assumed")), (key, text)
    if text.startswith("stated"):  # a stated value names where: a section, figure or caption
      assert any(w in text for w in ("§", "Figure", "footnote")), (key, text)


def test_repeated_augmentation_only_for_the_f7plus_ra_point():
  plain = finetune_imagenet.get_config()
  ra = finetune_imagenet.get_config("f7plus_ra")
  assert plain.augment_multiplicity == 1 and ra.augment_multiplicity == 4
  assert "without repeated augmentation" in plain.provenance.augment_multiplicity
  assert "F7+ with RA" in ra.provenance.augment_multiplicity
  with pytest.raises(ValueError, match="variant"):
    finetune_imagenet.get_config("ra8")


def test_sam_form_is_named_and_stated_and_head_init_is_assumed():
  config = finetune_imagenet.get_config()
  assert config.sam == "per_replica" and sam.canonical(config.sam) == "per_replica"
  assert config.provenance.sam.startswith("stated [P]") and "google-research/sam" in \
      config.provenance.sam
  assert config.provenance.head_init.startswith("assumed")


def test_lr_unit_is_stated_with_both_readings():
  config = finetune_imagenet.get_config()
  assert config.base_lr == 0.1 and config.batch_size == 2048
  assert published.nfnet_batch_scaled_lr(0.1, 2048) == pytest.approx(0.8)
  assert published.nfnet_batch_scaled_lr(0.1, 4096) == pytest.approx(1.6)
  text = config.provenance.base_lr
  assert "peak" in text and "0.8" in text and "batch/256" in text


def test_finetune_docstring_describes_the_default_head():
  # Read, not imported: importing a second main defines its absl flags twice in one process.
  import ast
  import pathlib
  path = pathlib.Path(__file__).resolve().parents[1] / "reproduce" / "finetune.py"
  assert "starts at zero" not in ast.get_docstring(ast.parse(path.read_text()))
