"""ViT family: registry, exact analytic counts, published sizes, big_vision import,
position-embedding resampling and the JAX backend."""

import math
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

import model_defs
from model_defs import converters, vit, vit_layers
from model_defs.converters.posemb_resampling import resample_posemb
from reproduce.core import published

FULL = ["vit_ti16", "vit_s16", "vit_b16", "vit_b32", "vit_l16", "vit_h14", "vit_giant14",
        "vit_gigantic14", "vit_so400m14"]
MINI = model_defs.names(family="vit", mini=True)


def _randomise(model, seed=0, scale=0.05):
  """Adds noise to every weight so that no parameter is trivial (zero head, unit LN...)."""
  rng = np.random.default_rng(seed)
  for v in model.weights:
    v.assign(v.numpy() + scale * rng.standard_normal(v.shape).astype("float32"))


# --------------------------------------------------------------------------------------
# Registry and exact counts
# --------------------------------------------------------------------------------------

def test_registered_names():
  names = model_defs.names(family="vit")
  assert set(FULL) <= set(names)
  assert len(MINI) >= 4 and all(n.startswith("vit_mini_") for n in MINI)
  assert all(model_defs.get_spec(n).mini for n in MINI)
  assert not any(model_defs.get_spec(n).mini for n in FULL)
  for n in FULL:
    spec = model_defs.get_spec(n)
    assert spec.train_resolution == 224 and spec.source
    assert spec.test_resolution == (518 if n in ("vit_giant14", "vit_gigantic14",
                                                 "vit_so400m14") else 384)
  so = model_defs.get_spec("vit_so400m14").config
  assert (so["width"], so["depth"], so["mlp_dim"], so["num_heads"]) == (1152, 27, 4304, 16)


OPTION_SETS = [
    dict(pool_type="token"),
    dict(pool_type="gap"),
    dict(pool_type="map"),
    dict(pool_type="token", posemb="sincos2d", representation_size=40, qkv_bias=False),
    dict(pool_type="map", posemb="learn", representation_size=True, dropout_rate=0.1,
         stochdepth_rate=0.1, head_zeroinit=False),
]


@pytest.mark.parametrize("name", MINI)
@pytest.mark.parametrize("opts", OPTION_SETS, ids=lambda o: "-".join(f"{v}" for v in o.values()))
def test_stats_equal_count_params_mini(name, opts):
  model = model_defs.build(name, num_classes=10, **opts)
  assert model_defs.stats(name, num_classes=10, **opts).params == model.count_params()


@pytest.mark.parametrize("name", ["vit_ti16", "vit_s16"])
@pytest.mark.parametrize("pool", ["token", "gap", "map"])
def test_stats_equal_count_params_full(name, pool):
  model = model_defs.build(name, num_classes=1000, pool_type=pool)
  assert model_defs.stats(name, pool_type=pool).params == model.count_params()


def test_stats_at_other_resolution():
  model = model_defs.build("vit_ti16", num_classes=5, image_size=96)
  s = model_defs.stats("vit_ti16", resolution=96, num_classes=5)
  assert s.params == model.count_params()
  assert s.flops == 2 * s.macs


# Published sizes, from reproduce/published.py (the single source), each counted under its
# source's convention (the entry's model_overrides): Zhai et al. Table 2 counts the class-token
# body without a classifier; SoViT Table 1 a MAP head with a 1000-class classifier, rounded
# down to whole millions; ViT-H/14's 632M (NFNet Table 5, ViT Table 1) a 1000-class token head.
PUBLISHED_PARAMS = {e.key: e for e in published.entries(quantity="params")
                    if e.model.startswith("vit_")}
ZHAI_TABLE2 = {"vit_ti16": 5.5, "vit_s16": 22, "vit_b16": 86, "vit_l16": 303,
               "vit_giant14": 1011, "vit_gigantic14": 1843}


def _published_params(entry):
  return model_defs.stats(entry.model, 224, **dict(entry.model_overrides)).params / 1e6


@pytest.mark.parametrize("key", sorted(PUBLISHED_PARAMS))
def test_published_params(key):
  entry = PUBLISHED_PARAMS[key]
  params = _published_params(entry)
  assert abs(params - entry.value) <= entry.tolerance, (key, params)  # reproduce.compare's test
  if entry.source.startswith("S "):  # whole millions, rounded down
    assert math.floor(params) == entry.value, (key, params)


def test_zhai_table2_counts_are_headless_class_token_counts():
  entries = {e.model: e for e in PUBLISHED_PARAMS.values() if e.source.startswith("Z ")}
  assert {m: e.value for m, e in entries.items()} == ZHAI_TABLE2
  for model, entry in entries.items():
    assert dict(entry.model_overrides) == dict(pool_type="token", include_top=False)
    headless = model_defs.stats(model, 224, include_top=False, pool_type="token")
    assert headless == model_defs.stats(model, 224, num_classes=0, pool_type="token")
  # The 1000-class counts the registry used to hold (5.7/22.1/86.6/304.3/1012.6/1844.4M)
  # do not round to Table 2's prints, except S/16's.
  wrong = [m for m, e in entries.items()
           if abs(model_defs.stats(m, 224, 1000, pool_type="token").params / 1e6 - e.value)
           > e.tolerance]
  assert sorted(wrong) == sorted(set(ZHAI_TABLE2) - {"vit_s16"})


def test_sovit_table1_reading():
  """S Table 1: G/14 1882M and SoViT-400m/14 428M fit a MAP head with a 1000-class
  classifier, rounded down; its g/14 1011M is Zhai et al.'s class-token count reprinted."""
  def millions(model, **options):
    return model_defs.stats(model, 224, **options).params / 1e6
  assert math.floor(millions("vit_gigantic14", pool_type="map")) == 1882
  assert math.floor(millions("vit_so400m14", pool_type="map")) == 428
  headless_g = millions("vit_gigantic14", pool_type="map", include_top=False)  # 1881.13M
  assert math.floor(headless_g) != 1882 and round(headless_g) != 1882
  assert millions("vit_giant14", pool_type="map", include_top=False) > 1030
  assert published.get("vit_gigantic14_map.params").source == "S Table 1"


@pytest.mark.parametrize("name,opts", [("vit_ti16", dict(pool_type="token")),
                                       ("vit_mini_s", dict(pool_type="map")),
                                       ("vit_mini_ti", dict(representation_size=40))])
def test_headless_build_count_params_equals_stats(name, opts):
  model = model_defs.build(name, num_classes=0, **opts)
  stats = model_defs.stats(name, num_classes=0, **opts)
  assert model.count_params() == stats.params and stats.num_classes == 0
  assert stats == model_defs.stats(name, num_classes=7, include_top=False, **opts)
  features = opts.get("representation_size") or model_defs.get_spec(name).config["width"]
  assert tuple(model.output_shape) == (None, features)
  with_head = model_defs.stats(name, num_classes=7, **opts)
  assert with_head.params - stats.params == 7 * (features + 1)
  with pytest.raises(ValueError, match="num_classes"):
    model_defs.build(name, num_classes=-1)


# Zhai et al. Table 2 "GFLOPs" at 224 px are FLOPs = 2 x MACs (class-token heads).
PUBLISHED_GFLOPS = {e.model: e for e in published.entries(quantity="gflops")}


@pytest.mark.parametrize("name", sorted(PUBLISHED_GFLOPS))
def test_published_flops(name):
  entry = PUBLISHED_GFLOPS[name]
  s = model_defs.stats(name, 224, 1000, **dict(entry.model_overrides))
  assert abs(s.gflops / entry.value - 1) <= 0.02, (name, s.gflops)
  assert s.flops == 2 * s.macs


def test_mini_family_compute_range():
  macs = [model_defs.stats(n, 32).macs for n in MINI]
  assert macs == sorted(macs)
  # From the long preset's smallest (0.15M MACs, matched to the narrowest mini NFNet) up.
  assert 0.15e6 <= macs[0] <= 1e6 and 25e6 <= macs[-1] <= 45e6
  nf_mini = model_defs.names(family="nfnet", mini=True)
  if nf_mini:  # same compute range as the mini NFNets (within a factor ~2 at each end)
    nf = sorted(model_defs.stats(n, 32).macs for n in nf_mini)
    assert macs[0] <= 2 * nf[0] and macs[-1] >= nf[-1] / 2


def test_invalid_options():
  with pytest.raises(ValueError, match="pool_type"):
    model_defs.build("vit_mini_ti", pool_type="cls")
  with pytest.raises(ValueError, match="unknown ViT override"):
    model_defs.build("vit_mini_ti", width=3)
  with pytest.raises(ValueError, match="posemb"):
    model_defs.stats("vit_mini_ti", posemb="rope")


# --------------------------------------------------------------------------------------
# Forward pass and training-mode regularisers
# --------------------------------------------------------------------------------------

def test_forward_and_regularisers():
  keras.utils.set_random_seed(0)
  model = model_defs.build("vit_mini_s", num_classes=7, dropout_rate=0.2, stochdepth_rate=0.3,
                           head_zeroinit=False)
  x = np.random.default_rng(0).standard_normal((4, 32, 32, 3)).astype("float32")
  a, b = model(x, training=False), model(x, training=False)
  assert a.shape == (4, 7)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  c = np.asarray(model(x, training=True))
  assert np.all(np.isfinite(c)) and not np.allclose(c, np.asarray(a))
  # The zero-initialised head gives zero logits at init (big_vision's head_zeroinit).
  zero = model_defs.build("vit_mini_s", num_classes=7)
  assert np.all(np.asarray(zero(x)) == 0)


def test_sincos_posemb_is_fixed_and_matches_formula():
  pe = vit_layers.posemb_sincos_2d(2, 3, 8)
  assert pe.shape == (1, 6, 8)
  # Token (row 1, col 2): x = 2, y = 1; omega = [1, 1e-4] for width // 4 = 2.
  omega = np.array([1.0, 1e-4])
  want = np.concatenate([np.sin(2 * omega), np.cos(2 * omega), np.sin(omega), np.cos(omega)])
  np.testing.assert_allclose(pe[0, 5], want, rtol=1e-6)
  model = model_defs.build("vit_mini_ti", posemb="sincos2d")
  assert not any("pos_embedding" in v.path for v in model.weights)


# --------------------------------------------------------------------------------------
# Position-embedding resampling and resolution change
# --------------------------------------------------------------------------------------

def test_resample_posemb_basics():
  rng = np.random.default_rng(0)
  pe = rng.standard_normal((1, 1 + 16, 5)).astype("float32")
  same = resample_posemb(pe, 4, num_prefix_tokens=1)
  np.testing.assert_allclose(same, pe)
  up = resample_posemb(pe, (6, 6), num_prefix_tokens=1)
  assert up.shape == (1, 37, 5)
  np.testing.assert_array_equal(up[:, :1], pe[:, :1])  # class-token row kept
  const = np.full((1, 49, 3), 0.7, "float32")
  for method in ("bilinear", "bicubic"):
    np.testing.assert_allclose(resample_posemb(const, 13, method=method),
                               np.full((1, 169, 3), 0.7), rtol=1e-6)


def test_resample_posemb_errors():
  with pytest.raises(ValueError, match=r"\(1, 15, 4\).*not a square"):
    resample_posemb(np.zeros((1, 15, 4)), 4)
  with pytest.raises(ValueError, match="method"):
    resample_posemb(np.zeros((1, 16, 4)), 4, method="nearest")
  with pytest.raises(ValueError, match=r"\(2, 16, 4\)"):
    resample_posemb(np.zeros((2, 16, 4)), 4)


def test_load_weights_across_resolution_gap_constant_image():
  """224 -> 384: on a constant image a GAP ViT with a constant pos-emb is resolution-invariant.

  All patch tokens are then identical at both resolutions, so every token's attention is a
  mean over identical values and GAP returns the same vector whatever the token count:
  predictions agree only if every weight (and the resampled table) was carried over.
  A learned, varying table would legitimately change the prediction with the grid, and a
  class token would too (its softmax share depends on the number of patches).
  """
  src = model_defs.build("vit_ti16", num_classes=10, pool_type="gap", image_size=224)
  _randomise(src)
  pe = src.get_layer("pos_embedding").pos_embedding
  pe.assign(np.broadcast_to(pe.numpy()[:, :1], pe.shape))  # constant over positions
  dst = model_defs.build("vit_ti16", num_classes=10, pool_type="gap", image_size=384)
  converters.vit.load_weights_across_resolution(src, dst)
  assert dst.get_layer("pos_embedding").pos_embedding.shape == (1, 24 * 24, 192)
  img = np.full((1, 224, 224, 3), 0.3, "float32")
  a = np.asarray(src(img, training=False))
  b = np.asarray(dst(np.full((1, 384, 384, 3), 0.3, "float32"), training=False))
  np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-4)
  assert np.abs(a).max() > 1e-2  # non-trivial logits
  fresh = model_defs.build("vit_ti16", num_classes=10, pool_type="gap", image_size=384)
  assert not np.allclose(np.asarray(fresh(np.full((1, 384, 384, 3), 0.3, "float32"))), a)


def test_load_weights_across_resolution_token_learned():
  src = model_defs.build("vit_mini_ti", num_classes=10, pool_type="token", posemb="learn")
  _randomise(src)
  dst = model_defs.build("vit_mini_ti", num_classes=10, pool_type="token", posemb="learn",
                         image_size=48)
  converters.vit.load_weights_across_resolution(src, dst)
  sw, dw = converters.vit.weights_dict(src), converters.vit.weights_dict(dst)
  for path, value in sw.items():
    if path == converters.vit.POSEMB_PATH:
      assert dw[path].shape == (1, 12 * 12, 32)
      np.testing.assert_allclose(dw[path], resample_posemb(value, 12), atol=1e-6)
    else:
      np.testing.assert_array_equal(dw[path], value)
  assert dst(np.zeros((2, 48, 48, 3), "float32")).shape == (2, 10)


def test_load_weights_across_resolution_errors():
  src = model_defs.build("vit_mini_ti", posemb="learn")
  with pytest.raises(ValueError, match="shape mismatch"):  # different width
    converters.vit.load_weights_across_resolution(src, model_defs.build("vit_mini_s",
                                                                        posemb="learn"))
  with pytest.raises(ValueError, match="missing"):  # different head
    converters.vit.load_weights_across_resolution(
        src, model_defs.build("vit_mini_ti", posemb="learn", pool_type="map"))
  bad = converters.vit.weights_dict(src)
  bad[converters.vit.POSEMB_PATH] = np.zeros((1, 50, 32), "float32")
  with pytest.raises(ValueError, match=r"\(1, 50, 32\).*not a square"):
    converters.vit.assign_weights(src, bad)


# --------------------------------------------------------------------------------------
# big_vision .npz: synthetic checkpoints with big_vision's names, checked against an
# independent NumPy forward pass that follows big_vision's vit.py semantics.
# --------------------------------------------------------------------------------------

def _bv_params(rng, d, depth, heads, mlp, patch, grid, pool, classes):
  """Random params named and shaped as big_vision's vit.py (flax linen names)."""
  hd = d // heads
  r = lambda *s: (0.1 * rng.standard_normal(s)).astype("float32")  # noqa: E731
  p = {"embedding/kernel": r(patch, patch, 3, d), "embedding/bias": r(d),
       "pos_embedding": r(1, grid * grid, d), "head/kernel": r(d, classes), "head/bias": r(classes),
       "Transformer/encoder_norm/scale": 1 + r(d), "Transformer/encoder_norm/bias": r(d)}
  if pool == "token":
    p["cls"] = r(1, 1, d)

  def attn(prefix):
    for part in ("query", "key", "value"):
      p[f"{prefix}/{part}/kernel"], p[f"{prefix}/{part}/bias"] = r(d, heads, hd), r(heads, hd)
    p[f"{prefix}/out/kernel"], p[f"{prefix}/out/bias"] = r(heads, hd, d), r(d)

  def mlp_block(prefix):
    p[f"{prefix}/Dense_0/kernel"], p[f"{prefix}/Dense_0/bias"] = r(d, mlp), r(mlp)
    p[f"{prefix}/Dense_1/kernel"], p[f"{prefix}/Dense_1/bias"] = r(mlp, d), r(d)

  def ln(prefix):
    p[f"{prefix}/scale"], p[f"{prefix}/bias"] = 1 + r(d), r(d)

  names = ("LayerNorm_0", "MultiHeadDotProductAttention_0", "LayerNorm_1", "MlpBlock_0")
  for i in range(depth):
    b = f"Transformer/encoderblock_{i}"
    ln(f"{b}/{names[0]}")
    attn(f"{b}/{names[1]}")
    ln(f"{b}/{names[2]}")
    mlp_block(f"{b}/{names[3]}")
  if pool == "map":
    p["MAPHead_0/probe"] = r(1, 1, d)
    attn("MAPHead_0/MultiHeadDotProductAttention_0")
    ln("MAPHead_0/LayerNorm_0")
    mlp_block("MAPHead_0/MlpBlock_0")
  return p


def _to_augreg(params, pool, rng):
  """The same model in the original ViT/AugReg .npz layout (pre-linen names; the table
  under Transformer/posembed_input with a class-token row that big_vision folds into cls)."""
  old = {"/MultiHeadDotProductAttention_0/": "/MultiHeadDotProductAttention_1/",
         "/LayerNorm_1/": "/LayerNorm_2/", "/MlpBlock_0/": "/MlpBlock_3/"}
  out = {}
  for k, v in params.items():
    if k.startswith("Transformer/encoderblock_"):
      for new_name, old_name in old.items():
        k = k.replace(new_name, old_name)
    out[k] = v
  out.pop("pos_embedding")
  pe = params["pos_embedding"]
  if pool == "token":
    row = (0.1 * rng.standard_normal((1, 1, pe.shape[-1]))).astype("float32")
    out["cls"] = params["cls"] - row
    pe = np.concatenate([row, pe], axis=1)
  out["Transformer/posembed_input/pos_embedding"] = pe
  return out


def _np_forward(p, x, heads, pool, eps=1e-6):
  """NumPy ViT in big_vision's order (posemb before cls), flax tanh-GELU."""
  def ln(t, pre):
    mu, var = t.mean(-1, keepdims=True), t.var(-1, keepdims=True)
    return (t - mu) / np.sqrt(var + eps) * p[f"{pre}/scale"] + p[f"{pre}/bias"]

  def gelu(t):
    return 0.5 * t * (1 + np.tanh(math.sqrt(2 / math.pi) * (t + 0.044715 * t**3)))

  def attention(q_in, kv_in, pre):
    q = np.einsum("bnd,dhk->bnhk", q_in, p[f"{pre}/query/kernel"]) + p[f"{pre}/query/bias"]
    k = np.einsum("bnd,dhk->bnhk", kv_in, p[f"{pre}/key/kernel"]) + p[f"{pre}/key/bias"]
    v = np.einsum("bnd,dhk->bnhk", kv_in, p[f"{pre}/value/kernel"]) + p[f"{pre}/value/bias"]
    logits = np.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(q.shape[-1])
    w = np.exp(logits - logits.max(-1, keepdims=True))
    w /= w.sum(-1, keepdims=True)
    o = np.einsum("bhqs,bshk->bqhk", w, v)
    return np.einsum("bqhk,hkd->bqd", o, p[f"{pre}/out/kernel"]) + p[f"{pre}/out/bias"]

  def mlp(t, pre):
    h = gelu(t @ p[f"{pre}/Dense_0/kernel"] + p[f"{pre}/Dense_0/bias"])
    return h @ p[f"{pre}/Dense_1/kernel"] + p[f"{pre}/Dense_1/bias"]

  kern = p["embedding/kernel"]
  ps, d = kern.shape[0], kern.shape[-1]
  b, g = x.shape[0], x.shape[1] // ps
  patches = x[:, :g * ps, :g * ps].reshape(b, g, ps, g, ps, 3).transpose(0, 1, 3, 2, 4, 5)
  t = patches.reshape(b, g * g, -1) @ kern.reshape(-1, d) + p["embedding/bias"]
  t = t + p["pos_embedding"]
  if pool == "token":
    t = np.concatenate([np.tile(p["cls"], (b, 1, 1)), t], axis=1)
  i = 0
  while f"Transformer/encoderblock_{i}/LayerNorm_0/scale" in p:
    pre = f"Transformer/encoderblock_{i}"
    y = ln(t, f"{pre}/LayerNorm_0")
    t = t + attention(y, y, f"{pre}/MultiHeadDotProductAttention_0")
    t = t + mlp(ln(t, f"{pre}/LayerNorm_1"), f"{pre}/MlpBlock_0")
    i += 1
  t = ln(t, "Transformer/encoder_norm")
  if pool == "token":
    f = t[:, 0]
  elif pool == "gap":
    f = t.mean(1)
  else:
    z = attention(np.tile(p["MAPHead_0/probe"], (b, 1, 1)), t,
                  "MAPHead_0/MultiHeadDotProductAttention_0")
    f = (z + mlp(ln(z, "MAPHead_0/LayerNorm_0"), "MAPHead_0/MlpBlock_0"))[:, 0]
  return f @ p["head/kernel"] + p["head/bias"]


MINI_ARCH = dict(d=32, depth=2, heads=2, mlp=128, patch=4, grid=8)  # = vit_mini_ti at depth 2


def _mini_model(pool, image_size=32, depth=2):
  # vit_mini_ti has depth 3; build it and use only a depth-2 config via a custom row.
  row = vit.ViTRow("bv_test", 4, 32, depth, 128, 2, "test", pool_type=pool,
                   train_resolution=image_size)
  cfg = vit.row_config(row)
  return vit.build_vit(cfg, 10, name="bv_test", gelu_approximate=True, posemb="learn")


@pytest.mark.parametrize("pool", ["token", "gap", "map"])
@pytest.mark.parametrize("legacy", [False, True], ids=["big_vision", "augreg"])
def test_big_vision_npz_matches_reference(tmp_path, pool, legacy):
  rng = np.random.default_rng(1)
  params = _bv_params(rng, pool=pool, classes=10, **MINI_ARCH)
  ckpt = _to_augreg(params, pool, rng) if legacy else params
  if legacy:
    assert "Transformer/encoderblock_1/MultiHeadDotProductAttention_1/query/kernel" in ckpt
  path = tmp_path / "ckpt.npz"
  np.savez(path, **ckpt)
  model = _mini_model(pool)
  converters.big_vision.load_big_vision_npz(model, str(path))
  x = rng.standard_normal((2, 32, 32, 3)).astype("float32")
  ref = _np_forward(params, x.astype("float64"), MINI_ARCH["heads"], pool)
  out = np.asarray(model(x, training=False))
  np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
  assert np.abs(ref).max() > 0.1


def test_big_vision_npz_resamples_and_reports_errors(tmp_path):
  rng = np.random.default_rng(2)
  params = _bv_params(rng, pool="gap", classes=10, **MINI_ARCH)
  model = _mini_model("gap", image_size=48)  # 12 x 12 grid from an 8 x 8 checkpoint
  converters.big_vision.load_big_vision_npz(model, params)
  np.testing.assert_allclose(model.get_layer("pos_embedding").pos_embedding.numpy(),
                             resample_posemb(params["pos_embedding"], 12), atol=1e-6)
  missing = {k: v for k, v in params.items() if "encoderblock_1/MlpBlock_0/Dense_1" not in k}
  with pytest.raises(ValueError, match="encoderblock_1/MlpBlock_0/Dense_1"):
    converters.big_vision.load_big_vision_npz(_mini_model("gap"), missing)
  with pytest.raises(ValueError, match="MAP head"):
    converters.big_vision.load_big_vision_npz(_mini_model("map"), params)
  with pytest.raises(ValueError, match="more than"):
    converters.big_vision.load_big_vision_npz(_mini_model("gap", depth=1), params)
  bad = dict(params, pos_embedding=np.zeros((1, 63, 32), "float32"))
  with pytest.raises(ValueError, match=r"\(1, 63, 32\)"):
    converters.big_vision.load_big_vision_npz(_mini_model("gap"), bad)
  four_heads = _bv_params(rng, pool="gap", classes=10, **{**MINI_ARCH, "heads": 4})
  with pytest.raises(ValueError, match="heads"):
    converters.big_vision.load_big_vision_npz(_mini_model("gap"), four_heads)


def test_big_vision_scanned_layout():
  rng = np.random.default_rng(3)
  params = _bv_params(rng, pool="gap", classes=10, **MINI_ARCH)
  blocks = [k for k in params if k.startswith("Transformer/encoderblock_0/")]
  scanned = {k: v for k, v in params.items() if not k.startswith("Transformer/encoderblock_")}
  for k in blocks:
    rest = k[len("Transformer/encoderblock_0/"):]
    scanned[f"Transformer/encoderblock/{rest}"] = np.stack(
        [params[f"Transformer/encoderblock_{i}/{rest}"] for i in range(2)])
  a, b = _mini_model("gap"), _mini_model("gap")
  converters.big_vision.load_big_vision_npz(a, params)
  converters.big_vision.load_big_vision_npz(b, {"params": _nest(scanned)})
  for (pa, va), (pb, vb) in zip(converters.vit.weights_dict(a).items(),
                                converters.vit.weights_dict(b).items()):
    assert pa == pb
    np.testing.assert_array_equal(va, vb)


def _nest(flat):
  tree = {}
  for k, v in flat.items():
    node = tree
    *parents, leaf = k.split("/")
    for part in parents:
      node = node.setdefault(part, {})
    node[leaf] = v
  return tree


def test_fused_attention_equals_the_explicit_form_forward_and_backward():
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  kw = dict(pool_type="map", representation_size=16)  # MAP: cross-attention too
  explicit = model_defs.build("vit_mini_ti", num_classes=10, **kw)
  fused = model_defs.build("vit_mini_ti", num_classes=10, fused_attention=True, **kw)
  _randomise(explicit, seed=7)
  fused.set_weights(explicit.get_weights())
  assert any(isinstance(layer, vit_layers.Attention) and layer.fused for layer in fused.layers)
  x = np.random.default_rng(7).standard_normal((2, 32, 32, 3)).astype("float32")
  outputs, gradients = [], []
  for model in (explicit, fused):
    with tf.GradientTape() as tape:
      y = model(x, training=False)
      loss = tf.reduce_sum(y * tf.range(10, dtype=y.dtype))
    outputs.append(np.asarray(y))
    gradients.append(tape.gradient(loss, model.trainable_weights))
  np.testing.assert_allclose(outputs[1], outputs[0], rtol=1e-5, atol=1e-5)
  assert len(gradients[0]) == len(explicit.trainable_weights)
  for weight, g_explicit, g_fused in zip(explicit.trainable_weights, *gradients):
    assert np.abs(np.asarray(g_explicit)).max() > 0, weight.path  # every parameter exercised
    np.testing.assert_allclose(np.asarray(g_fused), np.asarray(g_explicit), rtol=1e-4,
                               atol=1e-5, err_msg=weight.path)
  config = fused.get_layer("map_attn").get_config()
  assert config["fused"] and vit_layers.Attention.from_config(config).fused


# --------------------------------------------------------------------------------------
# JAX backend
# --------------------------------------------------------------------------------------

_JAX_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import keras
    assert keras.backend.backend() == "jax", keras.backend.backend()
    import model_defs
    from model_defs import converters
    f = np.load(sys.argv[1])
    kw = dict(pool_type="map", posemb="learn", representation_size=16,
              stochdepth_rate=0.2, dropout_rate=0.1)
    model = model_defs.build("vit_mini_ti", num_classes=10, **kw)
    converters.vit.assign_weights(model, {k[2:]: f[k] for k in f.files if k.startswith("w/")})
    out = np.asarray(model(f["x"], training=False))
    err = np.abs(out - f["y"]).max()
    assert err < 1e-4, err
    train = np.asarray(model(f["x"], training=True))
    assert np.all(np.isfinite(train)) and train.shape == (2, 10)
    fused = model_defs.build("vit_mini_ti", num_classes=10, fused_attention=True, **kw)
    converters.vit.assign_weights(fused, {k[2:]: f[k] for k in f.files if k.startswith("w/")})
    fused_err = np.abs(np.asarray(fused(f["x"], training=False)) - f["y"]).max()
    assert fused_err < 1e-4, fused_err
    sincos = model_defs.build("vit_mini_s", num_classes=10)
    assert np.asarray(sincos(f["x"])).shape == (2, 10)
    print("JAX_OK", err)
""")


def test_jax_backend_forward(tmp_path):
  keras.utils.set_random_seed(4)
  kw = dict(pool_type="map", posemb="learn", representation_size=16, stochdepth_rate=0.2,
            dropout_rate=0.1)
  model = model_defs.build("vit_mini_ti", num_classes=10, **kw)
  _randomise(model)
  x = np.random.default_rng(4).standard_normal((2, 32, 32, 3)).astype("float32")
  y = np.asarray(model(x, training=False))
  data = tmp_path / "tf.npz"
  np.savez(data, x=x, y=y, **{f"w/{k}": v for k, v in converters.vit.weights_dict(model).items()})
  env = {**os.environ, "KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
  proc = subprocess.run([sys.executable, "-c", _JAX_SCRIPT, str(data)], capture_output=True,
                        text=True, env=env, timeout=240,
                        cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
  assert proc.returncode == 0 and "JAX_OK" in proc.stdout, proc.stderr[-3000:]
