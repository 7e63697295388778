"""The registered NFNet variants: the paper's F0-F7 and F0+-F7+, the mini family (the same
depths at 1/8 width, 32 px) and the narrow mini F0s below it. Importing this module registers
them (``model_defs/__init__.py`` does)."""

from __future__ import annotations

from typing import Any

from model_defs import registry
from model_defs.nfnet import (FAMILY, MINI_WIDTH_DIVISOR, NFNET_TABLE, NFNetRow, build_nfnet,
                              count_nfnet, row_config)

MINI_VARIANTS = ("f0", "f1", "f3", "f3plus", "f7", "f7plus")
# Below the mini F0: its depths at a fraction of its body widths (and group width; the stem
# is kept), so the miniature study's size ladder reaches the compute-optimal sizes of its
# budgets (docs/study.md): 0.17M (the long preset's smallest), 0.32M, 0.58M, 0.94M and 1.96M
# MACs at 32 px against the mini F0's 3.37M.
MINI_NARROW_F0 = (("f0w12", 0.125), ("f0w25", 0.25), ("f0w38", 0.375), ("f0w50", 0.5),
                  ("f0w75", 0.75))


def variant_specs() -> list[registry.ModelSpec]:
  """One ModelSpec per NFNet variant: F0..F7 and F0+..F7+, then the mini family."""
  rows = {row.variant: row for row in NFNET_TABLE}
  specs = []
  for row in NFNET_TABLE:
    for plus in (False, True):
      cfg = row_config(row, plus=plus)
      widths = "[384,768,2048,2048] ('+')" if plus else "[256,512,1536,1536]"
      specs.append(_spec(
          f"nfnet_{cfg['variant']}", cfg,
          source=row.source + ("; '+' widths from [C] base.py" if plus else ""),
          description=f"NFNet-{_display(cfg['variant'])}: depths {list(row.depths)}, "
                      f"widths {widths}"))
  for variant in MINI_VARIANTS:
    base = variant.replace("plus", "")
    cfg = row_config(rows[base], plus=variant.endswith("plus"), mini=True)
    specs.append(_spec(
        f"nfnet_mini_{variant}", cfg, mini=True,
        source=f"this kit: NFNet-{variant.upper()} depths, all widths / {MINI_WIDTH_DIVISOR}, "
               f"32 px",
        description=f"mini NFNet-{_display(variant)}: depths {list(rows[base].depths)}, "
                    f"widths {list(cfg['widths'])}, group width {cfg['group_width']}"))
  specs += [_narrow_f0_spec(rows["f0"], variant, fraction)
            for variant, fraction in MINI_NARROW_F0]
  return specs


def _narrow_f0_spec(row: NFNetRow, variant: str, fraction: float) -> registry.ModelSpec:
  cfg = row_config(row, mini=True)
  cfg.update(variant=variant, widths=tuple(int(w * fraction) for w in cfg["widths"]),
             group_width=int(cfg["group_width"] * fraction))
  return _spec(
      f"nfnet_mini_{variant}", cfg, mini=True,
      source=f"this kit: the mini F0 at {fraction:.0%} of its body and group widths, 32 px",
      description=f"narrow mini NFNet-F0: depths {list(row.depths)}, widths "
                  f"{list(cfg['widths'])}, group width {cfg['group_width']}")


def _display(variant: str) -> str:
  return variant.replace("plus", "+").upper()


def _spec(name: str, cfg: dict[str, Any], **fields) -> registry.ModelSpec:
  return registry.ModelSpec(
      name=name, family=FAMILY, config=cfg, builder=build_nfnet, counter=count_nfnet,
      train_resolution=cfg["train_resolution"], test_resolution=cfg["test_resolution"],
      **fields)


registry.register_family(FAMILY, variant_specs())
