"""Small hybrids of each stem kind for tests/test_hybrid.py's JAX forward (32 px, 10 classes):
the registered designs, narrowed so that JAX compiles them in seconds."""

import model_defs


def _small(name, **changes):
  return {**model_defs.get_spec(name).config, "image_size": 32, **changes}


CONFIGS = (
    (_small("vit_s_r26_s32", stem=dict(kind="resnetv2", layers=(1, 1)), width=32, depth=1,
            mlp_dim=64, num_heads=2), 10),
    (_small("vit_c1gf", width=32, depth=1, mlp_dim=64, num_heads=2,
            stem=dict(kind="conv", channels=(8, 16, 32), strides=(2, 2, 2))), 10),
    (_small("hybrid_mini_pico", pool_type="map"), 10),
)
