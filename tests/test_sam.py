"""SAM (reproduce.train.sam) against NumPy on a linear softmax classifier: the ascent step
has norm rho along the normalised gradient, and the update uses the gradient at w + e."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

import engine_helpers
from reproduce.train import sam
from reproduce.train import steps

BATCH, FEATURES, CLASSES, LR, RHO = 8, 5, 3, 0.5, 0.3


def _linear_model():
  keras.utils.set_random_seed(1)
  inputs = keras.Input((FEATURES,))
  model = keras.Model(inputs, keras.layers.Dense(CLASSES, kernel_initializer="random_normal")(inputs))
  return model


def _data():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(BATCH, FEATURES)).astype(np.float32)
  y = np.eye(CLASSES, dtype=np.float32)[rng.integers(0, CLASSES, BATCH)]
  return x, y


def _numpy_grads(w, b, x, y, count=None):
  """Gradients of the mean softmax cross-entropy over the first ``count`` examples, times
  count / BATCH (the engine's objective: sum over the sub-batch / global batch)."""
  count = count or len(x)
  x, y = x[:count], y[:count]
  logits = x @ w + b
  p = np.exp(logits - logits.max(-1, keepdims=True))
  p /= p.sum(-1, keepdims=True)
  d = (p - y) / BATCH
  return x.T @ d, d.sum(0)


def _one_step(step_fn):
  model = _linear_model()
  w0, b0 = [v.numpy().copy() for v in model.trainable_variables]
  optimizer = keras.optimizers.SGD(LR)
  optimizer.build(model.trainable_variables)
  strategy = tf.distribute.get_strategy()
  chunk = steps.make_train_chunk(strategy, model, optimizer, loss="softmax", label_smoothing=0.0,
                                 global_batch_size=BATCH, step_fn=step_fn)
  x, y = _data()
  chunk(iter(tf.data.Dataset.from_tensors((x, y)).repeat()), tf.constant(1))
  w1, b1 = [v.numpy() for v in model.trainable_variables]
  return (w0, b0), (w1, b1), (x, y)


def test_ascent_has_norm_rho_along_the_normalised_gradient():
  rng = np.random.default_rng(3)
  grads = [rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3,)).astype(np.float32)]
  e = [t.numpy() for t in sam.ascent([tf.constant(g) for g in grads], RHO)]
  norm = np.sqrt(sum((g ** 2).sum() for g in grads))
  assert np.sqrt(sum((t ** 2).sum() for t in e)) == pytest.approx(RHO, rel=1e-5)
  for t, g in zip(e, grads):
    np.testing.assert_allclose(t, RHO * g / norm, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("form", ["per_replica", "global", "standard", "fractional"])
def test_sam_update_uses_the_gradient_at_the_perturbed_point(form, monkeypatch):
  """Built from the config, as a run builds it: each form's ascent batch, and whether its
  ascent gradient is all-reduced (a recorder here; the two-replica test below runs the real
  all-reduce)."""
  reduced = []
  real_all_reduced = sam._all_reduced
  monkeypatch.setattr(sam, "_all_reduced", lambda g: reduced.append(1) or real_all_reduced(g))
  fraction = 0.5  # only the fractional form reads it
  step_fn = sam.from_config({"sam": form, "sam_rho": RHO, "sam_ascent_fraction": fraction})
  (w0, b0), (w1, b1), (x, y) = _one_step(step_fn)
  assert bool(reduced) == (form in ("global", "standard")), form
  count = int(BATCH * fraction) if form == "fractional" else BATCH
  gw, gb = _numpy_grads(w0, b0, x, y, count)
  norm = np.sqrt((gw ** 2).sum() + (gb ** 2).sum())
  ew, eb = RHO * gw / norm, RHO * gb / norm
  assert np.sqrt((ew ** 2).sum() + (eb ** 2).sum()) == pytest.approx(RHO)
  sw, sb = _numpy_grads(w0 + ew, b0 + eb, x, y)   # full batch at w + e
  np.testing.assert_allclose(w1, w0 - LR * sw, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b1, b0 - LR * sb, rtol=1e-5, atol=1e-6)
  # ... and not the plain gradient at w.
  pw, _ = _numpy_grads(w0, b0, x, y)
  assert np.abs((w0 - LR * pw) - w1).max() > 1e-4


def test_plain_step_is_unchanged_without_step_fn():
  (w0, b0), (w1, b1), (x, y) = _one_step(None)
  gw, gb = _numpy_grads(w0, b0, x, y)
  np.testing.assert_allclose(w1, w0 - LR * gw, rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(b1, b0 - LR * gb, rtol=1e-5, atol=1e-6)


def test_step_cost_counts_both_passes():
  assert sam.step_cost("none", 0.2) == 1.0
  assert sam.step_cost("per_replica", 0.2) == 2.0
  assert sam.step_cost("global", 0.2) == 2.0
  assert sam.step_cost("standard", 0.2) == 2.0  # the old name, read as 'global'
  assert sam.step_cost("fractional", 0.2) == pytest.approx(1.2)
  assert sam.canonical("standard") == "global" and sam.canonical(None) == "none"
  assert sam.FORMS == ("none", "per_replica", "fractional", "global")
  assert sam.from_config({"sam": "none", "sam_rho": 0.05, "sam_ascent_fraction": 0.2}) is None
  with pytest.raises(ValueError, match="sam"):
    sam.from_config({"sam": "asam", "sam_rho": 0.05, "sam_ascent_fraction": 0.2})


class _Recorder:
  """Stands in for the optimizer: keeps the gradients it is asked to apply."""

  def __init__(self):
    self.grads = None

  def apply_gradients(self, pairs):
    self.grads = [g.numpy() for g, _ in pairs]


@pytest.mark.parametrize("form", ["per_replica", "global"])
def test_ascent_and_descent_passes_drop_the_same_units(form, monkeypatch):
  """With dropout on, both passes of a SAM step see the same mask (the SAM code uses one rng
  for both): the hidden bias's gradient is zero on exactly the dropped units, in both."""
  keras.utils.set_random_seed(3)
  inputs = keras.Input((FEATURES,))
  hidden = keras.layers.Dense(64, kernel_initializer="random_normal", name="hidden")(inputs)
  hidden = keras.layers.Dropout(0.5, seed=7)(hidden)
  model = keras.Model(inputs, keras.layers.Dense(CLASSES, name="out")(hidden))
  ascents = []
  real_ascent = sam.ascent
  monkeypatch.setattr(sam, "ascent", lambda g, rho: ascents.append([t.numpy() for t in g])
                      or real_ascent(g, rho))
  recorder = _Recorder()

  def objective(labels, logits, extra):
    del extra
    return tf.reduce_sum(keras.losses.categorical_crossentropy(labels, logits,
                                                               from_logits=True))

  x, y = _data()
  update = sam.sam_step_fn(RHO, form)(model, recorder, objective)
  seeds_before = [v.numpy().copy() for v in model.non_trainable_variables]
  update(tf.constant(x[:1]), tf.constant(y[:1]))
  bias_index = [v.path for v in model.trainable_variables].index("hidden/bias")
  ascent_zero = ascents[0][bias_index] == 0
  descent_zero = recorder.grads[bias_index] == 0
  assert 10 < ascent_zero.sum() < 54  # about half the units dropped
  np.testing.assert_array_equal(ascent_zero, descent_zero)
  # ... and the seeds advance once, as in a plain step.
  assert any((a != b).any() for a, b in zip(seeds_before, model.non_trainable_variables))


_MIRRORED_SCRIPT = """
import keras, numpy as np, tensorflow as tf
from reproduce.train import sam, steps, strategy as strategy_lib

LR, RHO, FRACTION = 0.5, 0.3, 0.5
rng = np.random.default_rng(0)
x = rng.normal(size=(8, 5)).astype(np.float32)
y = np.eye(3, dtype=np.float32)[rng.integers(0, 3, 8)]

def grads(w, b, xs, ys):  # the engine's objective: sum over the examples / global batch 8
  logits = xs @ w + b
  p = np.exp(logits - logits.max(-1, keepdims=True))
  d = (p / p.sum(-1, keepdims=True) - ys) / 8
  return [xs.T @ d, d.sum(0)]

def numpy_step(form, w, b):
  # Replica r holds examples 4r..4r+3; each ascends on its form's gradient, the descent
  # gradients at each replica's own w + e are summed (the optimizer's all-reduce).
  total = [0.0, 0.0]
  for r in (0, 1):
    xs, ys = x[4 * r:4 * r + 4], y[4 * r:4 * r + 4]
    g = {"global": grads(w, b, x, y), "per_replica": grads(w, b, xs, ys),
         "fractional": grads(w, b, xs[:2], ys[:2])}[form]
    norm = np.sqrt(sum((t ** 2).sum() for t in g))
    e = [RHO * t / norm for t in g]
    total = [a + t for a, t in zip(total, grads(w + e[0], b + e[1], xs, ys))]
  return [w - LR * total[0], b - LR * total[1]]

def weights_after(strategy, form):
  with strategy.scope():
    keras.utils.set_random_seed(1)
    inputs = keras.Input((5,))
    model = keras.Model(inputs, keras.layers.Dense(3, kernel_initializer="random_normal")(inputs))
    optimizer = keras.optimizers.SGD(LR)
    optimizer.build(model.trainable_variables)
  before = [v.numpy().copy() for v in model.trainable_variables]
  # Through the config path a user takes (a swapped form there is caught here).
  step_fn = sam.from_config({"sam": form, "sam_rho": RHO, "sam_ascent_fraction": FRACTION})
  chunk = steps.make_train_chunk(strategy, model, optimizer, loss="softmax",
                                 label_smoothing=0.0, global_batch_size=8, step_fn=step_fn)
  dataset = tf.data.Dataset.from_tensors((x, y)).repeat().unbatch().batch(8)
  chunk(iter(strategy.experimental_distribute_dataset(dataset)), tf.constant(1))
  return before, [v.numpy() for v in model.trainable_variables]

two = strategy_lib.make_strategy("mirrored")
assert two.num_replicas_in_sync == 2
for form in ("global", "per_replica", "fractional"):
  before, after = weights_after(two, form)
  for a, b in zip(after, numpy_step(form, *before)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=form)
# Global SAM on two replicas is one device's SAM on the whole batch.
_, one = weights_after(strategy_lib.make_strategy("one_device"), "global")
for a, b in zip(one, weights_after(two, "global")[1]):
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
print("OK")
"""


def test_sam_forms_on_two_replicas_match_numpy():
  """On 2 Mirrored replicas each form ascends as named (NumPy): global on the all-reduced
  gradient (== one device), per_replica on each replica's own batch, fractional on the first
  share of it; the descent gradients at each replica's own w + e are summed."""
  proc = engine_helpers.run_script(_MIRRORED_SCRIPT, logical_cpus=2)
  assert proc.returncode == 0 and "OK" in proc.stdout, proc.stderr[-3000:]
