"""Foreign checkpoints into the kit's Keras models, one module per source format.

  sources             convert_checkpoint(source, path, model_name): the one entry point
  deepmind            DeepMind's released NFNet Haiku pickles (a restricted unpickler)
  nfnet, vit, hybrid  timm state dicts per family (vit: also a ViT's weights at another size)
  big_vision          big_vision and ViT-AugReg .npz checkpoints into ViTs
  posemb_resampling   learned ViT position embeddings to another grid
  common              ConversionError, torch file reading, checking arrays against a model

Callers write ``converters.vit.load_timm_state_dict(...)``: the package path says these are
converters, not the builders of the same family names.
"""

from model_defs.converters import (big_vision, common, deepmind, hybrid, nfnet, posemb_resampling,
                                   sources, vit)

__all__ = ["big_vision", "common", "deepmind", "hybrid", "nfnet", "posemb_resampling",
           "sources", "vit"]
