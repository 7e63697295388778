"""AGC, weight decay and EMA of reproduce.train.optim, and reproduce.train.lr_schedule, against
direct NumPy."""

import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from reproduce.train import agc
from reproduce.train import lr_schedule
from reproduce.train import optim
from reproduce.train import rundir


def _numpy_unit_norm(x):
  if x.ndim <= 1:
    return np.sqrt(np.sum(x ** 2))
  return np.sqrt(np.sum(x ** 2, axis=tuple(range(x.ndim - 1)), keepdims=True))


def _numpy_agc(g, w, clipping=0.01, eps=1e-3):
  max_norm = np.maximum(_numpy_unit_norm(w), eps) * clipping
  g_norm = _numpy_unit_norm(g)
  clipped = g_norm >= max_norm
  out = np.where(clipped, g * max_norm / np.maximum(g_norm, 1e-6), g)
  return out, int(np.sum(clipped))


def _params(rng):
  """Conv (HWIO), dense (IO), scalar and vector params with mixed clipping."""
  shapes = {"conv/kernel": (3, 3, 4, 8), "dense/kernel": (5, 6), "skip_gain": (),
            "conv/gain": (8,), "head/kernel": (6, 3)}
  weights, grads = {}, {}
  for name, shape in shapes.items():
    w = rng.normal(size=shape).astype(np.float32)
    # Per-unit gradient scale spanning 'well below' to 'well above' the threshold.
    scale = np.geomspace(1e-4, 1.0, num=shape[-1]) if len(shape) >= 2 else 1e-4
    grads[name] = (rng.normal(size=shape) * scale).astype(np.float32)
    weights[name] = w
  weights["zero_vector"] = np.zeros((4,), np.float32)  # exercises the eps floor
  grads["zero_vector"] = np.full((4,), 1e-3, np.float32)
  return weights, grads


def _variables(weights):
  out = {}
  for name, w in weights.items():
    out[name] = keras.Variable(w, name=name.replace("/", "_"))
  return out


@pytest.mark.parametrize("weight_decay", [0.0, 0.1])
def test_agc_and_decay_match_numpy(weight_decay):
  rng = np.random.default_rng(0)
  weights, grads = _params(rng)
  variables = _variables(weights)
  order = list(weights)
  head = variables["head/kernel"]
  opt = optim.with_agc(keras.optimizers.SGD, learning_rate=1.0, momentum=0.0,
                       clipping=0.01, eps=1e-3, exclude_variables=[head],
                       weight_decay=weight_decay)
  opt.apply_gradients([(grads[n], variables[n]) for n in order])

  total_clipped, total_units = 0, 0
  for name in order:
    w, g = weights[name], grads[name]
    if name == "head/kernel":
      expected_g = g  # the classifier weight is never clipped
    else:
      expected_g, clipped = _numpy_agc(g, w)
      total_clipped += clipped
      total_units += 1 if w.ndim <= 1 else w.shape[-1]
    decays = w.ndim >= 2  # no decay on scalars and vectors
    if decays:
      expected_g = expected_g + weight_decay * w
    np.testing.assert_allclose(variables[name].numpy(), w - expected_g, rtol=1e-5, atol=1e-7,
                               err_msg=name)
  assert 0 < total_clipped < total_units  # the test covers both branches
  stats = opt.agc_statistics()
  np.testing.assert_allclose(float(stats["agc_clip_fraction"]), total_clipped / total_units,
                             rtol=1e-6)
  raw_norm = math.sqrt(sum(float(np.sum(grads[n] ** 2)) for n in order))
  np.testing.assert_allclose(float(stats["grad_norm"]), raw_norm, rtol=1e-5)


def test_exclude_by_path_regex():
  rng = np.random.default_rng(1)
  w = rng.normal(size=(5, 6)).astype(np.float32)
  g = (rng.normal(size=(5, 6)) * 10).astype(np.float32)
  var = keras.Variable(w, name="logits_kernel")
  opt = optim.with_agc(keras.optimizers.SGD, learning_rate=1.0, momentum=0.0,
                       exclude=r"logits")
  opt.apply_gradients([(g, var)])
  np.testing.assert_allclose(var.numpy(), w - g, rtol=1e-6)


def test_default_no_decay_rules():
  cases = {
      ("bias", (8,)): True, ("gain", (8,)): True, ("skip_gain", ()): True,
      ("kernel", (3, 3, 4, 8)): False, ("kernel", (4, 8)): False,
      ("gain", (1, 1, 1, 8)): True, ("pos_embedding", (1, 16, 8)): False,
  }
  for (name, shape), expected in cases.items():
    var = keras.Variable(np.zeros(shape, np.float32), name=name)
    assert optim.default_no_decay(var) == expected, (name, shape)


def test_nesterov_momentum_two_steps():
  w0 = np.array([[1.0, -2.0], [0.5, 3.0]], np.float32)
  g = np.array([[1e-3, -2e-3], [1e-3, 1e-3]], np.float32)  # below the clip threshold
  var = keras.Variable(w0, name="kernel")
  opt = optim.nfnet_sgd(0.1)
  for _ in range(2):
    opt.apply_gradients([(g, var)])
  m1 = -0.1 * g
  w1 = w0 + 0.9 * m1 - 0.1 * g
  m2 = 0.9 * m1 - 0.1 * g
  w2 = w1 + 0.9 * m2 - 0.1 * g
  np.testing.assert_allclose(var.numpy(), w2, rtol=1e-6)


def test_ema_warmup():
  w0 = np.ones((2, 2), np.float32)
  g = np.full((2, 2), 1e-3, np.float32)
  var = keras.Variable(w0, name="kernel")
  opt = optim.with_agc(keras.optimizers.SGD, learning_rate=1.0, momentum=0.0, clipping=0.0,
                       ema_decay=0.999)
  ema = w0.copy()
  w = w0.copy()
  for t in range(3):
    opt.apply_gradients([(g, var)])
    w = w - g
    d = min(0.999, (1 + t) / (10 + t))
    ema = d * ema + (1 - d) * w
  np.testing.assert_allclose(opt.ema_variables[0].numpy(), ema, rtol=1e-6)
  with optim.swap_in_ema(opt):
    np.testing.assert_allclose(var.numpy(), ema, rtol=1e-6)
  np.testing.assert_allclose(var.numpy(), w, rtol=1e-6)


def test_rejects_decoupled_weight_decay():
  with pytest.raises(ValueError, match="coupled"):
    optim.with_agc(keras.optimizers.SGD(learning_rate=0.1, weight_decay=1e-4))


def _plan(base_lr, steps, warmup_steps):
  return rundir.StoredPlan(steps=steps, warmup_steps=warmup_steps, base_lr=base_lr,
                           decay="cosine")


def _nfnet_schedule(s, base, total, warmup, end=0.0):
  """The official NFNet warm-up (base * s / W) then cosine to ``end`` at ``total``."""
  if s < warmup:
    return base * s / warmup
  progress = min((s - warmup) / max(total - warmup, 1), 1.0)
  return end + (base - end) * 0.5 * (1 + math.cos(math.pi * progress))


@pytest.mark.parametrize("base, total, warmup, end", [
    (1.6, 100, 10, 0.0), (1.0, 10, 0, 0.0), (0.4, 37, 5, 0.01), (0.2, 8, 8, 0.0)])
def test_schedule_matches_the_formula(base, total, warmup, end):
  sched = lr_schedule.schedule_from_plan(_plan(base, total, warmup), end_lr=end)
  assert isinstance(sched, keras.optimizers.schedules.CosineDecay)
  for s in range(total + 5):
    np.testing.assert_allclose(float(sched(s)), _nfnet_schedule(s, base, total, warmup, end),
                               rtol=1e-5, atol=1e-7, err_msg=f"step {s}")


def test_schedule_shape():
  sched = lr_schedule.schedule_from_plan(_plan(1.6, 100, 10))
  lrs = np.array([float(sched(s)) for s in range(0, 101)])
  assert lrs[0] == 0.0                          # the first update does not move (official)
  np.testing.assert_allclose(lrs[1], 0.16, rtol=1e-6)
  assert np.all(np.diff(lrs[:11]) > 0)          # linear warm-up
  np.testing.assert_allclose(lrs[10], 1.6, rtol=1e-6)
  assert np.all(np.diff(lrs[10:]) <= 1e-7)      # cosine decay
  np.testing.assert_allclose(lrs[55], 0.8, rtol=1e-5)  # half way through the decay
  assert abs(lrs[100]) < 1e-6
  no_warm = lr_schedule.schedule_from_plan(_plan(1.0, 10, 0))
  np.testing.assert_allclose(float(no_warm(0)), 1.0, rtol=1e-6)
  with pytest.raises(ValueError, match="total_steps"):
    lr_schedule.schedule_from_plan(_plan(1.0, 0, 0))


def test_schedule_from_plan():
  plan = rundir.StoredPlan(steps=20, warmup_steps=4, base_lr=0.8, decay="cosine")
  sched = lr_schedule.schedule_from_plan(plan)
  for s in range(22):
    np.testing.assert_allclose(float(sched(s)), _nfnet_schedule(s, 0.8, 20, 4), rtol=1e-5,
                               atol=1e-7)
  with pytest.raises(ValueError, match="decay"):
    lr_schedule.schedule_from_plan(rundir.StoredPlan(steps=20, warmup_steps=4, base_lr=0.8,
                                               decay="linear"))


def test_classifier_kernels_finds_head():
  inputs = keras.Input((8, 8, 3))
  x = keras.layers.Conv2D(4, 3)(inputs)
  x = keras.layers.GlobalAveragePooling2D()(x)
  x = keras.layers.Dense(7, name="hidden")(x)
  out = keras.layers.Dense(5, name="head")(x)
  model = keras.Model(inputs, out)
  (kernel,) = optim.classifier_kernels(model)
  assert kernel.path == "head/kernel"


def test_clip_segments_equals_clipping_per_tensor():
  """The vector group's one-pass AGC gives each tensor's ``clip_with_statistics``."""
  rng = np.random.default_rng(3)
  shapes = [(), (7,), (1,), (16,), (), (5,)]
  params = [rng.normal(size=s).astype(np.float32) for s in shapes]
  params[2] = np.zeros((1,), np.float32)  # the eps floor
  grads = [(rng.normal(size=s) * scale).astype(np.float32)
           for s, scale in zip(shapes, [1e-4, 1.0, 1e-3, 1e-4, 10.0, 0.05])]
  sizes = [int(np.prod(s)) for s in shapes]
  ids = np.repeat(np.arange(len(shapes)), sizes).astype("int32")
  flat = lambda xs: np.concatenate([x.reshape(-1) for x in xs])
  clipped, sq_norm, count = agc.clip_segments(flat(grads), flat(params), ids, len(shapes),
                                              0.01, 1e-3)
  expected, expected_count = [], 0
  for g, w in zip(grads, params):
    clipped_g, _, kept = agc.clip_with_statistics(g, w, 0.01, 1e-3)
    expected.append(np.asarray(clipped_g))
    expected_count += int(np.sum(~np.asarray(kept)))
  assert 0 < expected_count < len(shapes)  # both branches
  np.testing.assert_allclose(np.asarray(clipped), flat(expected), rtol=1e-6)
  assert float(count) == expected_count
  np.testing.assert_allclose(float(sq_norm), sum(float(np.sum(g ** 2)) for g in grads),
                             rtol=1e-6)


@pytest.mark.parametrize("nesterov", [True, False])
def test_fused_momentum_equals_keras_sgd(nesterov):
  """The one-kernel momentum update equals Keras SGD's own ``update_step``."""
  rng = np.random.default_rng(4)
  w0 = rng.normal(size=(3, 3, 4, 8)).astype(np.float32)
  fused, plain = keras.Variable(w0, name="a"), keras.Variable(w0, name="b")
  agc_sgd = optim.with_agc(keras.optimizers.SGD, learning_rate=0.3, momentum=0.9,
                           nesterov=nesterov, clipping=0.0)
  keras_sgd = keras.optimizers.SGD(learning_rate=0.3, momentum=0.9, nesterov=nesterov)
  for _ in range(3):
    g = rng.normal(size=w0.shape).astype(np.float32)
    agc_sgd.apply_gradients([(g, fused)])
    keras_sgd.apply_gradients([(g, plain)])
  np.testing.assert_allclose(fused.numpy(), plain.numpy(), rtol=1e-6, atol=1e-7)


def test_fused_adamw_equals_keras_adamw_in_a_traced_step():
  """TensorFlow's fused Adam kernel makes Keras AdamW's update: moments, bias correction,
  decoupled decay (on the kernel, not the bias) and the LR, over steps inside tf.function."""
  rng = np.random.default_rng(5)
  shapes = [(4, 6), (6,)]
  start = [rng.normal(size=s).astype(np.float32) for s in shapes]
  sides = []
  for make in (lambda **kw: optim.adamw(variables=variables, **kw),
               lambda **kw: keras.optimizers.AdamW(**kw)):
    variables = [keras.Variable(w, name=f"w{i}") for i, w in enumerate(start)]
    opt = make(learning_rate=0.05, weight_decay=0.1, beta_1=0.8, beta_2=0.95, epsilon=1e-3)
    if not isinstance(opt, optim.FusedAdamW):
      opt.exclude_from_weight_decay(var_list=[variables[1]])
    sides.append((variables, opt))
  for _ in range(4):
    grads = [rng.normal(size=s).astype(np.float32) for s in shapes]
    for variables, opt in sides:
      tf.function(lambda: opt.apply_gradients(zip(grads, variables)))()
  (fused, opt), (plain, _) = sides
  assert isinstance(opt, optim.FusedAdamW)
  for a, b, w in zip(fused, plain, start):
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-5, atol=1e-6)
    assert np.abs(a.numpy() - w).max() > 0.05


def test_traced_recipe_matches_numpy():
  """AGC (vector group and per tensor), coupled decay, Nesterov and EMA over two traced
  steps, and the statistics of the last one, against the per-variable NumPy formulas."""
  rng = np.random.default_rng(5)
  weights, grads = _params(rng)
  weights["bias"] = rng.normal(size=(6,)).astype(np.float32)
  grads["bias"] = (rng.normal(size=(6,)) * 0.1).astype(np.float32)  # clipped
  variables = _variables(weights)
  order = list(weights)
  head = variables["head/kernel"]
  lr, mom, wd, ema_decay = 0.5, 0.9, 0.1, 0.99
  opt = optim.nfnet_sgd(lr, momentum=mom, exclude_variables=[head], weight_decay=wd,
                        ema_decay=ema_decay)
  opt.build([variables[n] for n in order])  # eagerly, as the engine does (EMA init once)
  step = tf.function(lambda: opt.apply_gradients([(grads[n], variables[n]) for n in order]))
  w = {n: weights[n].copy() for n in order}
  m = {n: np.zeros_like(weights[n]) for n in order}
  ema = {n: weights[n].copy() for n in order}
  for t in range(2):
    step()
    clipped_units, units = 0, 0
    for n in order:
      g = grads[n]
      if n != "head/kernel":
        g, clipped = _numpy_agc(g, w[n])
        clipped_units += clipped
        units += 1 if w[n].ndim <= 1 else w[n].shape[-1]
      if w[n].ndim >= 2:
        g = g + wd * w[n]
      m[n] = mom * m[n] - lr * g
      w[n] = w[n] + mom * m[n] - lr * g
      d = min(ema_decay, (1 + t) / (10 + t))
      ema[n] = d * ema[n] + (1 - d) * w[n]
  for i, n in enumerate(order):
    np.testing.assert_allclose(variables[n].numpy(), w[n], rtol=1e-5, atol=1e-6, err_msg=n)
    np.testing.assert_allclose(opt.ema_variables[i].numpy(), ema[n], rtol=1e-5, atol=1e-6)
  stats = opt.agc_statistics()
  assert 0 < clipped_units < units
  np.testing.assert_allclose(float(stats["agc_clip_fraction"]), clipped_units / units,
                             rtol=1e-6)
  np.testing.assert_allclose(float(stats["grad_norm"]),
                             math.sqrt(sum(float(np.sum(grads[n] ** 2)) for n in order)),
                             rtol=1e-5)


def test_optimizer_variable_layout_is_unchanged():
  """Keras checkpoints optimizer variables by position: the layout of earlier versions stays,
  so their checkpoints (EMA included) restore."""
  kernel = keras.Variable(np.ones((2, 3), np.float32), name="k")
  bias = keras.Variable(np.ones((3,), np.float32), name="b")
  opt = optim.nfnet_sgd(0.1, ema_decay=0.9)
  opt.build([kernel, bias])
  assert [v.name for v in opt.variables] == [
      "iteration", "learning_rate", "k_momentum", "b_momentum", "agc_clipped_0",
      "agc_clipped_1", "grad_sq_norm_0", "grad_sq_norm_1", "k_ema", "b_ema"]
