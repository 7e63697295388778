"""Every config key the fine-tune adds to the engine's (configs/base.py), with its default:
the one source of the fine-tune's defaults.

finetune_imagenet.py and finetune_mini.py start from ``get_config()`` here and set what their
recipe changes; ``reproduce.finetuning.recipe`` fills any of these keys that a plain-dict
config leaves out from ``defaults()``. docs/finetune.md says what each one does.
"""

from ml_collections import config_dict

from reproduce.configs import base


def defaults() -> dict:
  """The fine-tune's own keys and their defaults."""
  return dict(
      init="",                    # the source run / converted weights; or --init
      head_init="model",          # 'model': the builder's init; 'zeros': a zero classifier
      sam="none",                 # 'none', 'per_replica' (the SAM code), 'fractional'
                                  # ([N] A.4), 'global' (all-reduced): train/sam.py
      sam_rho=0.05,
      sam_ascent_fraction=0.2,    # 'fractional': share of each replica's batch
      augment_multiplicity=1,     # repeated augmentation; 1 = off
  )


def get_config() -> config_dict.ConfigDict:
  """The engine's keys (configs/base.py) and the fine-tune's, at their defaults."""
  config = base.get_config()
  for key, value in defaults().items():
    config[key] = value
  return config
