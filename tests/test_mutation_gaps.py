"""Behaviour the mutation run (scripts/mutation_score.py, docs/testing.md) found untested:
exact counts, both sides of every tolerance, truths other than 1, allow-lists by what they
refuse, and the config path a user takes. Hypothesis draws few, derandomized examples."""

from __future__ import annotations

import importlib
import math
import pickle

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

from reproduce.analysis import bootstrap, claims, pipeline, verdicts
from reproduce.core import published

import synthetic_runs

# model_defs.stats is the module; the package's own ``stats`` attribute is a function.
stats_lib = importlib.import_module("model_defs.stats")
FEW = settings(max_examples=12, deadline=None, derandomize=True, database=None)

# --- model_defs/stats.py: the counting rules -----------------------------------------------


@FEW
@given(out=st.integers(1, 9), kernel=st.integers(1, 7), groups=st.sampled_from([1, 2, 4]),
       in_per_group=st.integers(1, 5), out_ch=st.sampled_from([4, 8, 12]),
       bias=st.booleans(), extra=st.integers(0, 3))
def test_conv_counts_weights_bias_and_macs(out, kernel, groups, in_per_group, out_ch, bias,
                                           extra):
  tally = stats_lib.Tally()
  tally.conv(out, out + 1, kernel, in_per_group * groups, out_ch, groups=groups, bias=bias,
             extra_params_per_out=extra)
  weights = kernel * kernel * in_per_group * out_ch
  assert tally.params == weights + (out_ch if bias else 0) + extra * out_ch
  assert tally.macs == weights * out * (out + 1)


@FEW
@given(fan_in=st.integers(1, 50), fan_out=st.integers(1, 50), tokens=st.integers(1, 9),
       bias=st.booleans())
def test_dense_counts_per_token_macs(fan_in, fan_out, tokens, bias):
  tally = stats_lib.Tally()
  tally.dense(fan_in, fan_out, bias=bias, tokens=tokens)
  assert (tally.params, tally.macs) == (fan_in * fan_out + (fan_out if bias else 0),
                                        fan_in * fan_out * tokens)


def test_conv_and_dense_count_a_bias_by_default():
  tally = stats_lib.Tally()
  tally.conv(2, 2, 3, 4, 8)
  assert (tally.params, tally.macs) == (3 * 3 * 4 * 8 + 8, 3 * 3 * 4 * 8 * 4)
  tally = stats_lib.Tally()
  tally.dense(5, 7)
  assert (tally.params, tally.macs) == (5 * 7 + 7, 5 * 7)


def test_tally_accumulates_and_reports_flops_as_twice_macs():
  tally = stats_lib.Tally()
  assert (tally.params, tally.macs) == (0, 0)
  tally.add(params=3, macs=5)
  tally.add(params=4.0, macs=6)
  tally.add()
  result = tally.result("m", 32, 10)
  assert result == stats_lib.ModelStats("m", 32, 10, 7, 11)
  big = stats_lib.ModelStats("big", 224, 1000, params=25, macs=3_000_000_000)
  assert (big.flops, big.gmacs, big.gflops) == (6_000_000_000, 3.0, 6.0)
  assert big.to_dict() == dict(name="big", resolution=224, num_classes=1000, params=25,
                               macs=3_000_000_000, flops=6_000_000_000)


# --- reproduce/analysis/verdicts.py: both sides of every rule -------------------------------


def test_tolerance_passes_inside_and_fails_outside_on_both_sides():
  for ours, status in ((1.4, "PASS"), (0.6, "PASS"), (1.5, "PASS"), (0.5, "PASS"),
                       (1.6, "FAIL"), (0.4, "FAIL"), (math.nan, "UNDECIDED"),
                       (None, "UNDECIDED")):
    assert verdicts.tolerance_status(ours, 1.0, 0.5) == status, ours
  # The slack is a hair (1e-9 relative), not a tolerance of its own.
  assert verdicts.tolerance_status(100.0 + 0.5 + 5e-8, 100.0, 0.5) == "PASS"
  assert verdicts.tolerance_status(100.0 + 0.5 + 2e-6, 100.0, 0.5) == "FAIL"
  row = verdicts.Row("k", "claim", "m", "q", ours=1.6, published=1.0, unit="", tolerance=0.5,
                     source="s")
  assert row.status == "FAIL" and row.difference == pytest.approx(0.6)
  assert row.to_dict()["difference"] == pytest.approx(0.6)


@pytest.mark.parametrize("ci,status", [
    ((1.40, 1.45), "PASS"), ((0.55, 0.60), "PASS"), ((0.5, 1.5), "PASS"),
    ((1.55, 1.60), "FAIL"), ((0.30, 0.45), "FAIL"),
    ((1.40, 1.60), "UNDECIDED"), ((0.40, 0.60), "UNDECIDED"), ((0.2, 1.8), "UNDECIDED"),
    (None, "UNDECIDED"), ((None, 1.0), "UNDECIDED"), ((1.0, None), "UNDECIDED")])
def test_band_status_on_both_sides_of_the_band(ci, status):
  assert verdicts.band_status(1.0, 0.5, ci)[0] == status


def test_band_status_says_where_the_interval_is():
  assert verdicts.band_status(1.0, 0.5, (1.4, 1.45)) == ("PASS", "CI [1.4, 1.45] inside [0.5, 1.5]")
  assert verdicts.band_status(1.0, 0.5, (1.55, 1.6)) == ("FAIL",
                                                       "CI [1.55, 1.6] outside [0.5, 1.5]")
  assert verdicts.band_status(1.0, 0.5, (1.4, 1.6))[1] == (
      "CI [1.4, 1.6] reaches both in and out of [0.5, 1.5]")
  assert verdicts.band_status(1.0, 0.5, None) == ("UNDECIDED", "no interval")


@pytest.mark.parametrize("expected,estimate,ci,sign,status", [
    (1, 0.3, (0.1, 0.5), 1.0, "PASS"), (-1, -0.3, (-0.5, -0.1), -1.0, "PASS"),
    (1, -0.3, (-0.5, -0.1), -1.0, "FAIL"), (-1, 0.3, (0.1, 0.5), 1.0, "FAIL"),
    (1, 0.1, (-0.1, 0.3), 0.0, "UNDECIDED"), (1, 0.1, (0.0, 0.3), 0.0, "UNDECIDED"),
    (1, 0.1, None, 0.0, "UNDECIDED")])
def test_sign_status(expected, estimate, ci, sign, status):
  got = verdicts.sign_status(expected, estimate, ci)
  assert got[:2] == (sign, status)
  got = verdicts.sign_status(expected, None, ci)
  assert math.isnan(got[0]) and got[1] == "UNDECIDED"


def test_interval_status_and_counts():
  assert verdicts.interval_status(2.0, (1.0, 3.0)) == ("PASS", "inside")
  assert verdicts.interval_status(1.0, (1.0, 3.0))[0] == "PASS"
  assert verdicts.interval_status(3.5, (1.0, 3.0)) == ("FAIL", "outside")
  assert verdicts.interval_status(0.5, (1.0, 3.0))[0] == "FAIL"
  assert verdicts.interval_status(2.0, None)[0] == "UNDECIDED"

  def row(status, counted=True):
    return verdicts.Row("k", "claim", "m", "q", 0.0, 0.0, "", 0.0, "s", counted=counted,
                        status=status)

  mixed = verdicts.counts([row("PASS"), row("UNDECIDED"), row("FAIL", counted=False)])
  assert mixed == dict(n_rows=2, n_pass=1, n_fail=0, n_undecided=1, n_info=1,
                       verdict="UNDECIDED", passed=True)
  assert verdicts.counts([row("PASS"), row("PASS")])["verdict"] == "PASS"
  failed = verdicts.counts([row("PASS"), row("FAIL"), row("UNDECIDED")])
  assert (failed["verdict"], failed["passed"], failed["n_fail"]) == ("FAIL", False, 1)
  assert verdicts.counts([])["verdict"] == "UNDECIDED"
  assert verdicts.verdict_line(failed) == "1 PASS, 1 FAIL, 1 UNDECIDED of 3 counted rows -> FAIL"


# --- the size/epochs exponent ratio: a truth other than 1 ------------------------------------


@FEW
@given(size_exponent=st.sampled_from([0.35, 0.4, 0.45, 0.55, 0.6, 0.65]))
def test_exponent_ratio_is_size_over_epochs(size_exponent):
  """Optimal size ~ C^s and epochs ~ C^(1-s): the ratio reads s / (1 - s) (0.6 -> 1.5)."""
  points = synthetic_runs.as_points(synthetic_runs.synthetic_records(
      {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(7)}, (0.25, 0.5, 1, 2, 4, 8, 16),
      size_penalty=1.0, size_exponent=size_exponent, lr_factors=(1.0,)))
  runs = pipeline.FamilyRuns.from_points(points)
  got = dict(zip(pipeline.ESTIMATES, runs.estimates(np.arange(len(points)))))
  assert got["size_exponent"] == pytest.approx(size_exponent, abs=1e-6)
  assert got["epochs_exponent"] == pytest.approx(1 - size_exponent, abs=1e-6)
  assert got["ratio"] == pytest.approx(size_exponent / (1 - size_exponent), abs=1e-6)


def _ratio_row(value, ci):
  entry = {"optimal_scaling": dict(
      size_axis="params", n=4, n_budgets=5,
      size=dict(exponent=0.6, ci=dict(exponent=(0.5, 0.7))),
      epochs=dict(exponent=0.4, ci=dict(exponent=(0.3, 0.5))),
      ratio=dict(value=value, ci=ci))}
  rows = claims._scaling_rows("nfnet", entry, {})
  return {r.key: r for r in rows}["claim.nfnet.size_vs_epochs_exponent_ratio"]


@pytest.mark.parametrize("ci,status", [((1.35, 1.45), "PASS"), ((1.55, 1.65), "FAIL"),
                                       ((0.3, 0.45), "FAIL"), ((1.4, 1.6), "UNDECIDED")])
def test_ratio_claim_is_one_within_half(ci, status):
  """The paper's "same rate": ratio 1 +- 0.5. A ratio CI at 1.4 passes, at 1.6 fails."""
  row = _ratio_row(sum(ci) / 2, ci)
  assert (row.status, row.ours) == (status, pytest.approx(sum(ci) / 2))
  assert (row.published, row.tolerance) == (1.0, 0.5)


def test_ratio_claim_without_a_ratio_is_undecided():
  row = _ratio_row(None, (1.0, 1.1))
  assert row.status == "UNDECIDED" and math.isnan(row.ours)


# --- reproduce/analysis/bootstrap.py: the intervals' exact quantiles ------------------------


@FEW
@given(seed=st.integers(0, 2**16), n=st.integers(10, 60), confidence=st.sampled_from(
    [0.5, 0.8, 0.9, 0.95]))
def test_intervals_are_central_and_two_sided(seed, n, confidence):
  samples = np.random.default_rng(seed).normal(2.0, 0.5, n)
  tail = (1 - confidence) / 2 * 100
  assert bootstrap.percentile_interval(samples, confidence) == pytest.approx(
      [np.percentile(samples, tail), np.percentile(samples, 100 - tail)])
  sd = np.std(samples, ddof=1)
  z = {0.5: 0.6744898, 0.8: 1.2815516, 0.9: 1.6448536, 0.95: 1.9599640}[confidence]
  assert bootstrap.normal_interval(3.0, samples, confidence) == pytest.approx(
      [3.0 - z * sd, 3.0 + z * sd], rel=1e-6)
  from scipy import stats
  t = stats.t.ppf((1 + confidence) / 2, 4)
  assert bootstrap.t_interval(3.0, samples, 4, confidence) == pytest.approx(
      [3.0 - t * sd, 3.0 + t * sd], rel=1e-6)


def test_intervals_need_ten_finite_samples():
  nine = np.r_[np.arange(9.0), np.nan, np.inf]
  assert bootstrap.percentile_interval(nine, 0.9) == [None, None]
  assert bootstrap.t_interval(1.0, nine, 3, 0.9) == [None, None]
  assert bootstrap.percentile_interval(np.r_[nine, 9.0], 0.9)[0] is not None
  assert bootstrap.t_interval(1.0, np.r_[nine, 9.0], 3, 0.9)[0] is not None


# --- the published ratio claim itself --------------------------------------------------------


def test_published_ratio_claim():
  entry = published.get("claim.size_vs_epochs_exponent_ratio")
  assert (entry.model, entry.value, entry.tolerance) == ("nfnet", 1.0, 0.5)


# --- model_defs/converters/deepmind.py: the unpickler's allow-list refuses ----------------------


class _Calls:
  """Unpickling this calls ``function(*args)``."""

  def __init__(self, function, *args):
    self.function, self.args = function, args

  def __reduce__(self):
    return self.function, self.args


def _refused_globals(tmp_path):
  from numpy.testing._private import utils as numpy_testing_utils
  marker = tmp_path / "ran"
  return marker, [
      # Runs Python source: the exploit through a numpy.* global.
      _Calls(numpy_testing_utils.runstring, f"open({str(marker)!r}, 'w').close()", {}),
      _Calls(np.load, str(marker)),
      _Calls(np.frombuffer, b"\0" * 8, "f4"),
      _Calls(pickle.loads, b"N."),
  ]


def test_unpickler_refuses_every_other_global(tmp_path):
  from model_defs import converters
  from model_defs.converters.common import ConversionError
  marker, payloads = _refused_globals(tmp_path)
  for i, payload in enumerate(payloads):
    path = tmp_path / f"F{i}_haiku.npz"
    path.write_bytes(pickle.dumps({"NFNet/~/linear": {"w": payload}}, protocol=2))
    with pytest.raises(ConversionError, match="refusing to unpickle"):
      converters.deepmind.load_haiku_file(str(path))
  assert not marker.exists()


# --- reproduce/train/run_record.py: core hours from the clock, not from each other ----------


def test_results_record_accounts_core_hours_from_the_clock():
  import types

  import model_defs
  from reproduce.train import run_record, rundir, strategy as strategy_lib
  plan = rundir.StoredPlan(model="nfnet_f0", steps=10, batch_size=8, base_lr=0.1,
                           warmup_steps=2, decay="cosine", resolution=64, dataset_size=80,
                           epochs=1.0, hardware="cpu", num_cores=4, core_hours=5.0)
  seconds = dict(wall=7200.0, training=3600.0, startup=10.0, tracing=20.0, evaluation=30.0,
                 checkpointing=40.0)
  run = run_record.RunSummary(
      model=types.SimpleNamespace(count_params=lambda: 123),
      source=types.SimpleNamespace(num_classes=10, train_size=80),
      strategy=strategy_lib.make_strategy("one_device"), dtype_policy="float32", step=10,
      heldout=dict(loss=1.5, top1=0.25, examples=16), final_train_loss=1.7, seconds=seconds,
      num_cores=4)
  config = dict(dataset="digits", hardware="cpu", ema_decay=0.0, model_overrides=None)
  record = run_record.record(config, plan, run)
  # 3600 s training and 7200 s wall on 4 cores; the plan's 5 core hours.
  assert (record["training_core_hours"], record["measured_core_hours"],
          record["planned_core_hours"], record["training_over_planned"]) == (4.0, 8.0, 5.0, 0.8)
  assert record["flops_per_image"] == 2 * model_defs.stats("nfnet_f0", resolution=64,
                                                           num_classes=10).macs
  assert {k: record[k] for k in ("params", "family", "resolution", "dataset_size", "epochs",
                                 "steps", "batch_size", "base_lr", "num_classes",
                                 "eval_weights", "num_replicas", "strategy")} == dict(
      params=123, family="nfnet", resolution=64, dataset_size=80, epochs=1.0, steps=10,
      batch_size=8, base_lr=0.1, num_classes=10, eval_weights="raw", num_replicas=1,
      strategy="OneDeviceStrategy")
  assert record["overhead_seconds"] == dict(startup=10.0, tracing=20.0, evaluation=30.0,
                                            checkpointing=40.0)
  assert (record["heldout_loss"], record["heldout_top1"], record["heldout_examples"],
          record["wall_seconds"]) == (1.5, 0.25, 16, 7200.0)
  assert run_record.budget_line(record, seconds) == (
      "budget: training 4 / planned 5 core hours = 0.8; overhead startup 10.0 s, tracing "
      "20.0 s, evaluation 30.0 s, checkpointing 40.0 s, other 3500.0 s (wall 7200.0 s)")
  from reproduce.core import results as schema
  assert (record["schema"], record["hardware"], record["dataset"]) == (schema.SCHEMA, "cpu",
                                                                       "digits")
  ema = run_record.record(dict(config, ema_decay=0.999), plan, run)
  assert ema["eval_weights"] == "ema"
  # The plan's hardware wins; without one, the config's. No train_size: the plan's size.
  assert run_record.record(dict(config, hardware="tpu_v4"), plan, run)["hardware"] == "cpu"
  del plan.hardware
  assert run_record.record(dict(config, hardware="tpu_v4"), plan, run)["hardware"] == "tpu_v4"
  del run.source.train_size
  assert run_record.record(config, plan, run)["dataset_size"] == 80
  for planned in (0.0, float("nan")):
    plan.core_hours = planned
    assert math.isnan(run_record.record(config, plan, run)["training_over_planned"])


# --- reproduce/evaluation/metrics.py ---------------------------------------------------------


@FEW
@given(seed=st.integers(0, 2**16), n=st.integers(1, 40), num_bins=st.sampled_from([1, 5, 15]))
def test_reliability_and_ece_match_a_loop_over_bins(seed, n, num_bins):
  from reproduce.evaluation import metrics
  rng = np.random.default_rng(seed)
  confidence = rng.uniform(0, 0.5, n)  # the upper bins stay empty
  confidence[0] = 0.0                  # 0 goes into the first bin
  correct = rng.uniform(size=n) < 0.5
  table = metrics.reliability(confidence, correct, num_bins)
  assert len(table.counts) == len(table.accuracy) == len(table.confidence) == num_bins
  ece = 0.0
  for k in range(num_bins):
    lo, hi = k / num_bins, (k + 1) / num_bins
    inside = (confidence > lo) & (confidence <= hi) | ((k == 0) & (confidence == 0))
    assert table.counts[k] == inside.sum()
    if inside.any():
      assert table.accuracy[k] == pytest.approx(correct[inside].mean())
      assert table.confidence[k] == pytest.approx(confidence[inside].mean())
      ece += inside.sum() / n * abs(correct[inside].mean() - confidence[inside].mean())
    else:
      assert math.isnan(table.accuracy[k]) and math.isnan(table.confidence[k])
  assert metrics.expected_calibration_error(confidence, correct, num_bins) == pytest.approx(ece)


def test_summaries_of_no_examples_and_concatenated_parts():
  from reproduce.evaluation import metrics
  assert metrics.summarize(metrics.concatenate([])) == {
      "top1": None, "top5": None, "nll": None, "ece": None, "examples": 0}
  empty = metrics.concatenate([])
  assert sorted(empty) == ["confidence", "nll", "top1", "top5"]
  assert all(v.shape == (0,) for v in empty.values())
  parts = [{k: np.array([i, i + 0.5]) for k in ("top1", "top5", "nll", "confidence")}
           for i in range(3)]
  joined = metrics.concatenate(parts)
  for k in ("top1", "top5", "nll", "confidence"):
    np.testing.assert_array_equal(joined[k], [0, 0.5, 1, 1.5, 2, 2.5])


# --- model_defs/converters/deepmind.py: the Haiku -> Keras names --------------------------------


def test_deepmind_keys_map_to_keras_paths():
  from model_defs.converters.deepmind import deepmind_key_to_keras_path as path
  blocks = ["stage1_block1", "stage1_block2", "stage2_block1"]
  cases = {
      ("NFNet/~/stem_conv0", "w"): "stem_conv1/kernel",
      ("NFNet/~/stem_conv3", "gain"): "stem_conv4/gain",
      ("NFNet/~/final_conv", "bias"): "final_conv/bias",
      ("NFNet/~/linear", "w"): "classifier/kernel",
      ("NFNet/~/linear", "b"): "classifier/bias",
      ("NFNet/~/nf_block", "skip_gain"): "stage1_block1/skip_gain",
      ("NFNet/~/nf_block_1/~/conv1b", "w"): "stage1_block2/conv2b/kernel",
      ("NFNet/~/nf_block_2/~/conv_shortcut", "gain"): "stage2_block1/shortcut_conv/gain",
      ("NFNet/~/nf_block_2/~/squeeze_excite/~/linear", "w"): "stage2_block1/se/fc1/kernel",
      ("NFNet/~/nf_block_2/~/squeeze_excite/~/linear_1", "b"): "stage2_block1/se/fc2/bias",
      # Refused: past the last block, unknown names and parameters.
      ("NFNet/~/nf_block_3/~/conv0", "w"): None,
      ("NFNet/~/nf_block_1", "gain"): None,
      ("NFNet/~/nf_block_1/~/conv9", "w"): None,
      ("NFNet/~/stem_conv0", "b"): None,
      ("NFNet/~/stem_convx", "w"): None,
      ("NFNet/~/linear", "gain"): None,
      ("NFNet/~/other", "w"): None,
  }
  for (module, param), expected in cases.items():
    assert path(module, param, blocks) == expected, (module, param)


def test_a_tree_that_is_not_a_mapping_is_named(tmp_path):
  from model_defs import converters
  from model_defs.converters.common import ConversionError
  file = tmp_path / "F0_haiku.npz"
  file.write_bytes(pickle.dumps([1, 2], protocol=2))
  with pytest.raises(ConversionError, match="holds a list, not a Haiku parameter tree"):
    converters.deepmind.load_haiku_file(str(file))


# --- reproduce/train/losses.py against NumPy -------------------------------------------------


def _log_softmax(x):
  x = x - x.max(-1, keepdims=True)
  return x - np.log(np.exp(x).sum(-1, keepdims=True))


@FEW
@given(seed=st.integers(0, 2**16), classes=st.integers(2, 7),
       smoothing=st.sampled_from([0.0, 0.1, 0.3]))
def test_losses_per_example_match_numpy(seed, classes, smoothing):
  from reproduce.train import losses
  rng = np.random.default_rng(seed)
  logits = rng.normal(size=(3, classes)).astype(np.float32)
  labels = (rng.uniform(size=(3, classes)) < 0.4).astype(np.float32)
  labels[:, 0] = 1.0  # multi-hot rows, none empty
  target = labels / labels.sum(-1, keepdims=True)
  target = (1 - smoothing) * target + smoothing / classes
  softmax = -(target * _log_softmax(logits.astype(np.float64))).sum(-1)
  np.testing.assert_allclose(losses.per_example_loss(labels, logits, label_smoothing=smoothing),
                             softmax, rtol=1e-5)
  target = (1 - smoothing) * labels + smoothing / 2
  z = logits.astype(np.float64)
  sigmoid = (np.maximum(z, 0) - z * target + np.log1p(np.exp(-np.abs(z)))).sum(-1)
  np.testing.assert_allclose(losses.per_example_loss(labels, logits, "sigmoid", smoothing),
                             sigmoid, rtol=1e-5)
  assert losses.reference_loss("softmax", classes) == pytest.approx(math.log(classes))
  assert losses.reference_loss("sigmoid", classes) == pytest.approx(classes * math.log(2))
  with pytest.raises(ValueError, match="unknown loss"):
    losses.per_example_loss(labels, logits, "hinge")


def test_divergence_message_names_loss_step_and_checkpoint():
  from reproduce.train import losses
  with pytest.raises(losses.TrainingDiverged,
                     match=r"^loss is nan \(gradient norm 1.0\) at step 7: stopped without "
                           r"saving; last good checkpoint: ckpt-5$"):
    losses.check_divergence(7, float("nan"), 1.0, 2.3, 10.0, "ckpt-5")
  with pytest.raises(losses.TrainingDiverged, match=r"gradient norm inf.*checkpoint: none$"):
    losses.check_divergence(7, 1.0, float("inf"), 2.3, 10.0, None)
  with pytest.raises(losses.TrainingDiverged, match=r"loss 23.1 at step 3 exceeds 10 x"):
    losses.check_divergence(3, 23.1, 1.0, 2.3, 10.0, None)
  losses.check_divergence(3, 22.9, 1.0, 2.3, 10.0, None)  # below 10 x 2.3: no error
  losses.check_divergence(3, 1e6, 1.0, 2.3, 0.0, None)    # factor 0: off


# --- reproduce/train/optim.py and sam.py: settings a run stores and defaults it relies on -----


def test_agc_settings_are_in_the_optimizer_config():
  import keras
  from reproduce.train import optim
  opt = optim.with_agc(keras.optimizers.SGD, learning_rate=0.1, clipping=0.02, eps=1e-4,
                       weight_decay=5e-5, ema_decay=0.99)
  config = opt.get_config()
  assert {k: config[k] for k in ("agc_clipping", "agc_eps", "coupled_weight_decay",
                                 "ema_decay")} == dict(agc_clipping=0.02, agc_eps=1e-4,
                                                       coupled_weight_decay=5e-5,
                                                       ema_decay=0.99)


def test_per_device_lookup():
  from reproduce.train import optim
  assert optim._on_device({"/cpu:0": 1}, "/gpu:0") == 1  # the default strategy's only entry
  assert optim._on_device({"a": 1, "b": 2}, "b") == 2
  with pytest.raises(KeyError):
    optim._on_device({"a": 1, "b": 2}, "c")


def test_sam_step_fn_defaults():
  from reproduce.train import sam
  sam.sam_step_fn(0.05)                # per_replica
  sam.sam_step_fn(0.05, "fractional")  # ascent_fraction 1: the whole batch
  for form, fraction in (("fractional", 0.0), ("fractional", 1.5), ("none", 1.0)):
    with pytest.raises(ValueError, match="SAM needs"):
      sam.sam_step_fn(0.05, form, fraction)
  with pytest.raises(ValueError, match="SAM needs"):
    sam.sam_step_fn(0.0)


# --- reproduce/train/budgeting.py: what a cached speed is keyed by ----------------------------


def test_machine_names_cpu_cores_and_tensorflow(monkeypatch):
  import os
  import platform

  import tensorflow as tf
  from reproduce.core import cpu
  from reproduce.train import budgeting
  found = budgeting.machine()
  assert (found["cpu_cores"], found["tensorflow"]) == (os.cpu_count(), tf.__version__)
  if os.path.exists("/proc/cpuinfo"):
    names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
             if line.startswith("model name")]
    assert found["cpu"] == (names[0] if names else platform.processor() or platform.machine())

  def no_cpuinfo(*args, **kwargs):
    raise OSError("no /proc here")
  monkeypatch.setattr(cpu, "open", no_cpuinfo, raising=False)
  monkeypatch.setattr(platform, "machine", lambda: "arm64")
  monkeypatch.setattr(platform, "processor", lambda: "")
  assert budgeting.machine()["cpu"] == "arm64"
  monkeypatch.setattr(platform, "processor", lambda: "i386")
  assert budgeting.machine()["cpu"] == "i386"


# --- reproduce/core/cpu.py: the CPU every benchmark table names ------------------------------

_TWO_CPUS = """processor	: 0
vendor_id	: GenuineIntel
cpu family	: 6
model		: 143
model name	: Intel(R) Xeon(R) Platinum 8480+
flags		: fpu sse avx2 avx512f avx512_bf16 amx_bf16 amx_tile avx512_vnni

processor	: 1
vendor_id	: AuthenticAMD
model name	: second
flags		: fpu
"""


def test_cpu_description_reads_the_first_processor_and_orders_its_vector_flags():
  from reproduce.core import cpu
  info = cpu.parse_cpuinfo("\n" + _TWO_CPUS)
  assert cpu.name(info) == "Intel(R) Xeon(R) Platinum 8480+"
  assert cpu.vector_flags(info) == ["avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile",
                                    "amx_bf16"]
  line = cpu.describe(info)
  assert line.startswith("Intel(R) Xeon(R) Platinum 8480+ (vendor GenuineIntel, family 6, "
                         "model 143), ")
  assert line.endswith("; flags: avx2 avx512f avx512_vnni avx512_bf16 amx_tile amx_bf16; "
                       "bf16 unit: AMX")


def test_cpu_bf16_unit_is_amx_then_avx512_bf16_then_none():
  from reproduce.core import cpu
  assert cpu.bf16_unit({"flags": "avx512_bf16 amx_bf16"}) == "AMX"
  assert cpu.bf16_unit({"flags": "avx2 avx512f avx512_bf16"}) == "AVX-512 BF16"
  assert cpu.bf16_unit({"flags": "avx2 amx_tile"}) is None
  assert cpu.describe({"flags": "avx2"}).endswith("flags: avx2; bf16 unit: none (emulated)")
  assert "flags: none of avx2 " in cpu.describe({})


def test_budget_warning_without_a_throughput_source_says_given():
  import types

  from reproduce.train import budgeting
  plan = types.SimpleNamespace(core_hours=0.001, steps=100, batch_size=16)
  text = budgeting.BudgetCheck(plan, print).message(2.0, 7.2, 100, 1)
  assert "planned from given throughput 444.4 images/s/core (given)" in text
  assert "measure again" in text


# --- reproduce/data/order.py: the shard order, one host and many -----------------------------


@settings(max_examples=6, deadline=None, derandomize=True, database=None)
@example(sizes=[2, 3, 1, 2, 2], window=2, pipelines=1, epoch=1)  # several windows of 2
@given(sizes=st.lists(st.integers(1, 4), min_size=3, max_size=6), window=st.integers(1, 3),
       pipelines=st.integers(1, 3), epoch=st.integers(0, 3))
def test_shard_order_hosts_together_visit_every_example_once(sizes, window, pipelines, epoch):
  """Host p owns shards p, p+P, ...; each host's epoch is a permutation of its own shards'
  records, read window by window (k shards at a time), and the hosts together are one epoch."""
  from reproduce.data import order
  from reproduce.data.datasource import ShardOrder
  pipelines = min(pipelines, len(sizes))
  starts = np.cumsum(sizes) - sizes
  shard_of = np.repeat(np.arange(len(sizes)), sizes)
  seen = []
  for host in range(pipelines):
    shards = order.HostShards(ShardOrder(sizes=tuple(sizes), window=window), 7, pipelines, host)
    own = [i for s in range(host, len(sizes), pipelines) for i in range(starts[s],
                                                                       starts[s] + sizes[s])]
    assert shards.size == len(own)
    tables = shards.epoch_tables(epoch)
    visit = [int(shards.train_index(tables, epoch, p)) for p in range(shards.size)]
    assert sorted(visit) == own
    # Window by window: each run of records comes from at most `window` shards, in order.
    slots, _, window_ends = (t.numpy() for t in tables)
    owned = np.arange(host, len(sizes), pipelines)
    begin = 0
    for w, end in enumerate(window_ends):
      in_window = set(owned[slots[w * window:(w + 1) * window]])
      assert set(shard_of[visit[begin:end]]) == in_window
      begin = end
    assert begin == shards.size
    seen += visit
  assert sorted(seen) == list(range(sum(sizes)))


def test_shard_order_needs_a_shard_per_host():
  from reproduce.data import order
  from reproduce.data.datasource import DataError, ShardOrder
  with pytest.raises(DataError, match="2 shards for 3 input pipelines"):
    order.HostShards(ShardOrder(sizes=(4, 4), window=2), 0, 3, 0)


# --- reproduce/planning: in-process (the CLI tests run it in a subprocess) -------------------


def test_positive_names_the_flag_and_why():
  from reproduce.planning import errors
  cases = [("a", False, "--x must be a number, got 'a'"), (True, False, "must be a number"),
           (-1, False, "--x must be > 0, got -1"), (math.nan, False, "must be > 0"),
           (math.inf, False, "must be > 0"), (2.5, True, "--x must be a whole number, got 2.5")]
  for value, integer, message in cases:
    with pytest.raises(errors.PlanError) as info:
      errors.positive("x", value, integer=integer)
    assert message in str(info.value) and info.value.flag == "x", value
  assert errors.positive("x", 3.0, integer=True) == 3 and type(
      errors.positive("x", 3.0, integer=True)) is int
  assert type(errors.positive("x", 3)) is float
  error = errors.PlanError("epochs", "=0.1 is less than one step")
  again = pickle.loads(pickle.dumps(error))  # the study's workers send errors back
  assert (type(again), again.flag, again.message) == (errors.PlanError, "epochs",
                                                      "=0.1 is less than one step")
  assert str(again) == "--epochs=0.1 is less than one step"


def test_lr_grid_and_size_fraction():
  import model_defs
  from reproduce import planning
  assert planning.lr_grid(1.0, 5) == [4.0, 2.0, 1.0, 0.5, 0.25]
  assert planning.lr_grid(1.0, 2) == [1.0, 0.5]
  with pytest.raises(planning.PlanError) as info:
    planning.lr_grid(1.0, 0)
  assert info.value.flag == "lr_grid"
  small, large = (published.value(f"nfnet_{v}.params") * 1e6 for v in ("f0", "f7plus"))
  params = model_defs.stats("nfnet_f3").params
  assert planning.lr.model_size_fraction("nfnet_f3") == pytest.approx(
      math.log(params / small) / math.log(large / small))
  assert 0.3 < planning.lr.model_size_fraction("nfnet_f3") < 0.7


def test_costs_count_a_1000_class_head_at_the_default_resolution():
  import model_defs
  from reproduce.planning import cost
  assert cost.registered_params("nfnet_f0") == model_defs.stats("nfnet_f0",
                                                                num_classes=1000).params
  assert cost.registered_params("no_such_model") is None
  assert cost.model_stats("nfnet_f0").params == cost.registered_params("nfnet_f0")
  assert cost.default_resolution("nfnet_f0") == 224
  assert cost.train_flops_per_image("nfnet_f0") == round(
      3 * model_defs.stats("nfnet_f0", resolution=224).flops)
  assert cost.train_flops_per_image("nfnet_f0", 128) == round(
      3 * model_defs.stats("nfnet_f0", resolution=128).flops)
  from reproduce.planning import mfu
  steps = cost.steps_from_epochs(1.0, 1000, 100)
  assert mfu.implied_mfu("nfnet_f0", 1.0, 1000, 1.0, "tpu_v4", resolution=128,
                         batch_size=100) == pytest.approx(
      steps * 100 * cost.train_flops_per_image("nfnet_f0", 128)
      / (3600.0 * mfu.peak_flops_per_core("tpu_v4")))


def test_plan_inputs_and_config_path():
  import dataclasses

  import ml_collections
  from reproduce import planning
  from reproduce.planning import plan_tables
  common = dict(dataset_size=1000, batch_size=100)
  assert planning.plan_from_epochs("nfnet_f0", 1.0, warmup_steps=0, **common).warmup_steps == 0
  whole = planning.plan_from_epochs("nfnet_f0", 1.0, dataset_size=1000, batch_size=100.0,
                                    num_classes=10.0)
  assert type(whole.batch_size) is int and type(whole.num_classes) is int
  for flag, kwargs in (("batch_size", dict(batch_size=2.5)), ("num_classes",
                                                               dict(num_classes=2.5))):
    with pytest.raises(planning.PlanError) as info:
      planning.plan_from_epochs("nfnet_f0", 1.0, **dict(common, **kwargs))
    assert info.value.flag == flag
  config = ml_collections.ConfigDict(dict(
      model="nfnet_f0", hardware="tpu_v4", batch_size=100, resolution=None, epochs=1.0,
      mfu=0.25, dataset_size=None, budget_core_hours=None, warmup_steps=None, base_lr=None,
      images_per_second_per_core=None))
  plan = planning.plan_from_config(config, dataset_size=1000, num_classes=1000)
  assert (plan.mfu, plan.throughput_source, plan.throughput_note) == (0.25, "analytic",
                                                                      "MFU 0.25 given")
  measured = planning.plan_from_config(config, 1000, 1000, images_per_second_per_core=50.0,
                                       throughput_note="measured here")
  assert (measured.images_per_second_per_core, measured.throughput_note) == (50.0,
                                                                             "measured here")
  table = plan_tables.plan_table(dataclasses.replace(plan, throughput_note=""))
  assert table.splitlines()[-1].split() == ["throughput", "from", "analytic"]
  assert plan_tables.plan_table(plan).splitlines()[-1].endswith("  MFU 0.25 given")
  rows = plan_tables.allocation_table(planning.allocate(5000.0, ["nfnet_f0"])).splitlines()
  assert rows[0].split() == ["model", "epochs", "target", "core", "hours", "base", "LR"]
  assert rows[1].startswith("*  nfnet_f0")


def test_allocation_ranks_by_log2_distance_and_skips_only_unaffordable_models():
  from reproduce import planning
  from reproduce.planning import allocation
  models = ["nfnet_f0", "nfnet_f3", "nfnet_f7plus"]
  one_f7plus_step = planning.plan_from_epochs("nfnet_f7plus", 4096 / 4e9).core_hours
  rows = allocation.allocate(0.5 * one_f7plus_step, models)  # F7+ cannot afford a step
  assert [r.model for r in rows] and "nfnet_f7plus" not in [r.model for r in rows]
  # 50k core hours: a target of about 3 epochs (at 5k it is 1, where e/t and e*t agree).
  rows = allocation.allocate(50_000.0, models)
  assert sorted(r.model for r in rows) == sorted(models)
  assert [r.recommended for r in rows] == [True, False, False]
  for r in rows:
    assert r.log2_distance == pytest.approx(abs(math.log2(r.epochs / r.target_epochs)))
  assert rows[0].log2_distance == min(r.log2_distance for r in rows)
  assert rows[0].target_epochs == pytest.approx(math.sqrt(10), rel=0.01)
  minis = list(allocation.family_models("nfnet_mini"))[:2]
  # At a resolution other than the minis' default (32), so the reference reads the one asked.
  (row, *_) = allocation.allocate(1.0, minis, dataset_size=60000, resolution=64)
  reference = allocation.reference_train_flops(minis, 60000, 64)
  assert reference != allocation.reference_train_flops(minis, 60000, 32)
  assert row.target_epochs == pytest.approx(
      (3600.0 * row.plan.images_per_second_per_core * row.plan.train_flops_per_image
       / reference) ** 0.5)
  with pytest.raises(planning.PlanError) as info:
    allocation.allocate(5000.0, [])
  assert info.value.flag == "models"
  with pytest.raises(planning.PlanError) as info:
    allocation.allocate(5000.0, models, batch_size=4095, num_replicas=2)
  assert info.value.flag == "batch_size"
  with pytest.raises(planning.PlanError, match="unknown; known: nfnet, nfnet_mini"):
    allocation.family_models("vit")
  assert allocation.family_models("nfnet_mini")[0] == "nfnet_mini_f0"


def test_mini_reference_sits_where_the_papers_does_in_its_grid():
  from reproduce.planning import allocation
  paper = allocation.reference_train_flops(allocation.FIGURE2_MODELS)
  lo, hi = allocation._grid_flops(allocation.FIGURE2_MODELS, 4e9, 224)
  assert lo < paper < hi
  minis = allocation.family_models("nfnet_mini")
  mini = allocation.reference_train_flops(minis, dataset_size=60000, resolution=32)
  lo_m, hi_m = allocation._grid_flops(minis, 60000, 32)
  assert math.log(mini / lo_m) / math.log(hi_m / lo_m) == pytest.approx(
      math.log(paper / lo) / math.log(hi / lo))



def test_allocation_refuses_a_budget_below_every_models_step_on_the_budget_flag():
  from reproduce import planning
  from reproduce.planning import allocation
  one_f0_step = planning.plan_from_epochs("nfnet_f0", 4096 / 4e9).core_hours
  with pytest.raises(planning.PlanError) as info:
    allocation.allocate(0.5 * one_f0_step, ["nfnet_f0", "nfnet_f7plus"])
  assert info.value.flag == "budget_core_hours"
  assert info.value.message.endswith("is smaller than one training step of every model")
  assert allocation.epochs_exponent() == 0.5  # 1 / (1 + the paper's ratio of 1)


def test_mini_reference_without_a_dataset_size_costs_the_grid_on_jft():
  from reproduce.core import published
  from reproduce.planning import allocation
  minis = allocation.family_models("nfnet_mini")
  jft = published.value("jft4b.dataset_size")
  assert allocation.reference_train_flops(minis, resolution=32) == pytest.approx(
      allocation.reference_train_flops(minis, jft, 32))
  assert allocation.reference_train_flops(minis, resolution=32) != pytest.approx(
      allocation.reference_train_flops(minis, 60000, 32))


def test_allocation_dict_holds_the_plan_as_a_dict_for_json():
  import json
  from reproduce.planning import allocation
  (row, *_) = allocation.allocate(5000.0, ["nfnet_f0"])
  d = row.to_dict()
  assert d["plan"] == row.plan.to_dict() and isinstance(d["plan"], dict)
  assert (d["model"], d["recommended"], d["epochs"]) == ("nfnet_f0", True, row.epochs)
  assert json.loads(json.dumps(d)) == d

# --- reproduce/core/published.py: every entry's key, model, quantity and unit agree ---------

# The unit each quantity is stated in (the key names the quantity; this, its unit).
UNITS = {"params": "M params", "gmacs": "GMACs", "gflops": "GFLOPs", "imagenet_top1": "%",
         "imagenet_top1_ra": "%", "pretrain_core_hours": "TPU-v4 core hours",
         "pretrain_core_hours_v3": "TPU-v3 core hours", "finetune_core_hours":
         "TPU-v4 core hours", "pretrain_epochs": "epochs", "dataset_size": "images"}


def test_published_keys_name_their_model_and_quantity():
  # The tables as their builders make them now (ENTRIES was built once, at import).
  built = published._all_rows()
  assert tuple(built) == published.ENTRIES
  for e in built:
    model_part, quantity_part = e.key.split(".", 1)
    if model_part == "claim":
      assert quantity_part == e.quantity and e.model in ("nfnet", "vit"), e.key
      continue
    # A suffix may tell apart two numbers of one quantity (vit_gigantic14_map, f5_ra).
    assert model_part.startswith(e.model) and e.quantity.startswith(quantity_part), e.key
    if e.quantity in UNITS:
      assert e.unit == UNITS[e.quantity], e.key
    assert isinstance(e.value, float | int) and e.value > 0 and e.tolerance >= 0, e.key
    assert all(isinstance(k, str) and k.islower() for k, _ in e.model_overrides), e.key
  assert published.get("nfnet_f0.params").value == 71.5  # N Table 3
  assert published.entries("nfnet_f0", "gmacs")[0].key == "nfnet_f0.gmacs"
  with pytest.raises(KeyError, match="close: .*nfnet_f0.params"):
    published.get("nfnet_f0.param")


# --- reproduce/analysis/outputs.py and tensorboard.py: the files and tables as written ------


def test_points_csv_and_fits_json_round_trip(tmp_path):
  import csv
  import json

  from reproduce.analysis import outputs
  points = synthetic_runs.as_points(synthetic_runs.synthetic_records(
      {"nfnet_mini_s0": 1e5}, (1.0, 2.0), lr_factors=(1.0,)))
  text = outputs.points_to_csv(points)
  assert "\r" not in text and text.endswith("\n")
  rows = list(csv.reader(text.splitlines()))
  assert rows[0] == list(outputs.POINT_COLUMNS) and len(rows) == 3
  for point, row in zip(points, rows[1:]):
    values = dict(zip(rows[0], row))
    assert values["name"] == point.name and float(values["epochs"]) == point.epochs
    assert values["finetune_top1"] == ""  # None is written empty
  fits = {"schema": "x", "b": 0.1, "nested": {"k": [1, 2]}}
  paths = outputs.write_fit_files(str(tmp_path), points, fits)
  assert json.load(open(paths[0])) == fits and open(paths[1]).read() == text


def test_coefficients_table_rows():
  from reproduce.analysis import tensorboard
  entry = dict(
      fit=dict(b=0.1, ci=dict(b=[0.05, 0.15])),
      floor=dict(E=0.5, E_over_top_loss=0.25),
      seeds=dict(sd=0.01, n_groups=3),
      optimal_scaling=dict(n=4, size=dict(exponent=0.6, ci=dict(exponent=[0.5, 0.7])),
                           epochs=dict(exponent=0.4, ci=dict(exponent=[0.3, 0.5])),
                           ratio=dict(value=1.5, ci=[1.2, 1.8])),
      finetune_fit=dict(b=0.2, ci=dict(b=[0.1, 0.3])),
      lr_trend=dict(pooled_slope=-0.25, ci=[-0.3, -0.2]))
  assert [(name, coef, value) for name, _, coef, value, _ in
          tensorboard._family_values(entry)] == [
      ("loss_b", "b", 0.1), ("floor_E", "E", 0.5), ("seed_sd", "sd", 0.01),
      ("optimal_size_exponent", "alpha", 0.6), ("optimal_epochs_exponent", "alpha", 0.4),
      ("size_epochs_exponent_ratio", "ratio", 1.5), ("finetune_error_b", "b", 0.2),
      ("lr_trend_slope", "s", -0.25)]
  fits = dict(compute_kind="planned", compute_unit="core hours", n_runs=12,
              settings=dict(confidence=0.9, bootstrap=100, seed=0),
              loss_vs_compute=dict(form="L = E + a*C^-b", a=3.0, b=0.2, E=0.1,
                                   ci=dict(a=[2.0, 4.0], b=[0.1, 0.3], E=None)),
              per_family={"nfnet": entry})
  lines = tensorboard.coefficients_markdown(fits).splitlines()
  assert lines[2] == "| fit | coefficient | value | 90% CI |"
  assert [line.split(" | ")[1] for line in lines[4:7]] == ["a", "b", "E"]
  assert lines[5].endswith("| b | 0.2 | [0.1, 0.3] |") and lines[6].endswith("| n/a |")
  assert "| nfnet: size / epochs exponent ratio | ratio | 1.5 | [1.2, 1.8] |" in lines
  assert "| nfnet: floor diagnostic: E of L = E + a*C^-b (E / top loss 0.25) | E | 0.5 | n/a |" \
      in lines


# --- reproduce/analysis/figures.py: the figures plot the fitted numbers ----------------------


@pytest.fixture(scope="module")
def small_study():
  import analysis_helpers as helpers
  from reproduce.analysis import fits as fits_lib
  from reproduce.analysis import prediction
  points = helpers.study_points(finetune_b=0.1)
  return points, fits_lib.fit_all(points, bootstrap=20), prediction.predict_all(points,
                                                                               bootstrap=20)


def _lines(ax):
  return {line.get_label(): line for line in ax.get_lines()}


def test_figures_plot_the_fitted_numbers(small_study):
  import matplotlib.pyplot as plt

  from reproduce.analysis import figures
  points, fits, predictions = small_study
  (family,) = fits["per_family"]
  entry = fits["per_family"][family]
  by_name = {p.name: p for p in points}

  fig = figures.figure_loss_vs_compute(points, fits)
  lines = _lines(fig.axes[0])
  frontier = lines["best run per budget (frontier)"]
  np.testing.assert_allclose(frontier.get_xydata(), [(by_name[n].compute, by_name[n].heldout_loss)
                                                     for n in entry["frontier"]])
  (law,) = [line for label, line in lines.items() if label.startswith("L = ")]
  x, y = law.get_xydata().T
  np.testing.assert_allclose(y, entry["fit"]["a"] * x ** -entry["fit"]["b"], rtol=1e-6)
  assert x.min() == pytest.approx(min(p.compute for p in points))
  plt.close(fig)

  fig = figures.figure_optimal_lr(fits)
  lines = _lines(fig.axes[0])
  for model in {s["model"] for s in entry["optimal_lr"]}:
    rows = sorted((s for s in entry["optimal_lr"] if s["model"] == model),
                  key=lambda s: s["epochs"])
    np.testing.assert_allclose(lines[model].get_xydata(),
                               [(s["epochs"], s["refined_lr"]) for s in rows])
  plt.close(fig)
  fig = figures.figure_optimal_lr({"per_family": {family: {}}})
  assert "no LR sweeps" in " ".join(t.get_text() for t in fig.axes[0].texts)
  plt.close(fig)

  record = predictions[family]
  fig = figures.figure_prediction(predictions)
  (line,) = [l for label, l in _lines(fig.axes[0]).items() if label.startswith("law of")]
  np.testing.assert_allclose(line.get_xydata(), np.c_[record["band"]["compute"],
                                                      record["band"]["centre"]])
  plt.close(fig)
  fig = figures.figure_prediction({family: {"status": "skipped", "note": "too few budgets"}})
  assert [t.get_text() for t in fig.axes[0].texts] == ["too few budgets"]
  plt.close(fig)


# --- reproduce/analysis/seeds.py and runs.py ------------------------------------------------


def test_replicates_average_and_spread():
  from reproduce.analysis import seeds
  records = synthetic_runs.synthetic_records({"nfnet_mini_s0": 1e5}, (1.0,), lr_factors=(1.0,),
                                             seeds=(0, 1, 2), noise=0.05, finetune_b=0.1)
  points = synthetic_runs.as_points(records)
  (mean,) = seeds.average_replicates(points)
  losses = np.array([p.heldout_loss for p in points])
  assert mean.heldout_loss == pytest.approx(np.exp(np.log(losses).mean()))
  assert mean.finetune_top1 == pytest.approx(np.mean([p.finetune_top1 for p in points]))
  assert (mean.n_seeds, mean.seed) == (3, None)
  spread = seeds.seed_spread(points)
  assert spread == dict(sd=pytest.approx(np.log(losses).std(ddof=1)), dof=2, n_groups=1,
                        n_runs=3)
  assert seeds._mean_or_none([1.0, None]) is None and seeds._mean_or_none([1, 2]) == 1.5
  assert seeds.noise_sd(dict(sd=None)) == seeds.SEED_SD_FLOOR
  assert seeds.noise_sd(dict(sd=0.2)) == 0.2


def test_min_of_normals_two_equal_candidates():
  from reproduce.analysis import seeds
  mean, sd = seeds.min_of_normals([1, 1], 0.1)  # integers are losses too
  assert mean == pytest.approx(-0.1 / math.sqrt(math.pi), abs=0.004)  # E min of 2 = -1/sqrt(pi)
  assert seeds.min_of_normals([1.0, 9.0], 0.1)[0] == pytest.approx(0.0, abs=1e-3)
  assert seeds.min_of_normals([], 0.1) == (0.0, 0.0)
  assert seeds.min_of_normals([1.0, 1.0], 0.0) == (0.0, 0.0)


def test_run_labels_are_unique_and_short():
  from reproduce.analysis import runs
  assert runs._unique_names(["a/x/results.json", "a/y/results.json"]) == ["x", "y"]
  assert runs._unique_names(["a\\x\\results.json", "b\\x\\results.json"]) == ["a/x", "b/x"]
  assert runs._unique_names(["p/a/x", "q/a/x"]) == ["p/a/x", "q/a/x"]
  assert runs._unique_names(["r/p/a/x", "s/p/a/x"]) == ["x#0", "x#1"]


def test_a_path_is_read_through_the_safe_unpickler(tmp_path):
  from model_defs import converters
  from model_defs.converters.common import ConversionError
  path = tmp_path / "F0_haiku.npz"
  path.write_bytes(pickle.dumps({"NFNet/~/linear": {"w": _Calls(np.load, "x")}}, protocol=2))
  with pytest.raises(ConversionError, match="not a safe Haiku parameter pickle"):
    converters.deepmind.load_deepmind_params(None, str(path))  # refused before any model use


def test_keras_per_variable_hook_makes_the_same_update():
  """``update_step`` (Keras' hook on other backends) clips and steps as ``apply`` does."""
  import keras
  import tensorflow as tf
  from reproduce.train import optim

  def make():
    variable = keras.Variable(np.array([[1.0, -2.0], [0.5, 3.0]], np.float32), name="w")
    opt = optim.with_agc(keras.optimizers.SGD, learning_rate=0.1, momentum=0.0,
                         clipping=0.01, weight_decay=0.01)
    opt.build([variable])
    return variable, opt

  grad = tf.constant([[0.3, -0.1], [2.0, 0.05]])
  applied, opt = make()
  opt.apply_gradients([(grad, applied)])
  hooked, opt = make()
  opt.update_step(grad, hooked, 0.1)
  np.testing.assert_allclose(hooked.numpy(), applied.numpy(), rtol=1e-6)
  assert np.abs(applied.numpy() - [[1.0, -2.0], [0.5, 3.0]]).max() > 1e-4


def test_edge_optimum_reasons():
  from reproduce.analysis import fits
  assert fits._edge(1.0, np.log([2.0, 2.0, 2.0])) == "only size"
  assert fits._edge(1.0, np.log([2.0, 4.0])) == "fewer than 3 sizes"
  sizes = np.log([2.0, 4.0, 8.0])
  assert fits._edge(sizes[0], sizes) == "smallest" and fits._edge(sizes[2], sizes) == "largest"
  assert fits._edge(np.log(5.0), sizes) == "no vertex"


def test_prediction_rows_state_interval_tolerance_and_who_counts():
  made = dict(observed=2.2, predicted=2.0, interval=[1.5, 2.5], inside=True)
  rows = claims.prediction_rows({"nfnet": {"loss": made}, "vit": {"loss": dict(
      made, observed=2.7, inside=False)}})
  by_key = {r.key: r for r in rows}
  nfnet, vit = by_key["prediction.nfnet.loss"], by_key["prediction.vit.loss"]
  assert (nfnet.status, nfnet.counted, nfnet.tolerance) == ("PASS", True, pytest.approx(0.5))
  assert nfnet.note == ("held-out loss of the best run at the largest budget from the smaller "
                        "ones: predicted [1.5, 2.5]: inside")
  assert (vit.status, vit.counted) == ("FAIL", False) and vit.note.startswith(claims.NOT_A_CLAIM)
  below = claims.prediction_rows({"nfnet": {"loss": dict(made, observed=1.8)}})[0]
  assert below.tolerance == pytest.approx(0.5)  # predicted - lo on the low side
  skewed = claims.prediction_rows({"nfnet": {"loss": dict(made, interval=[1.9, 2.5])}})[0]
  assert skewed.tolerance == pytest.approx(0.5)
  skewed = claims.prediction_rows({"nfnet": {"loss": dict(made, observed=1.95,
                                                          interval=[1.9, 2.5])}})[0]
  assert skewed.tolerance == pytest.approx(0.1)
  none = by_key["prediction.nfnet.optimal_size"]
  assert (none.status, none.note.endswith("no interval")) == ("UNDECIDED", True)


def test_absolute_claims_rows_and_notes():
  entry = dict(optimal_lr=[dict(batch_size=4096, epochs=0.25, refined_lr=1.6),
                           dict(batch_size=4096, epochs=0.25, refined_lr=0.4),
                           dict(batch_size=4096, epochs=1.0, refined_lr=0.1)],
               optimal=[dict(compute=1e3, epochs=0.5, edge=None),
                        dict(compute=4e3, epochs=2.0, edge=None),
                        dict(compute=2e3, epochs=0.9, edge="smallest"),
                        dict(compute=8e3, epochs=3.0, edge=None)])
  rows, notes = claims._absolute_claims("nfnet", entry)
  lr, crossing = rows
  assert lr.ours == pytest.approx(0.8) and "2 model(s) at 0.25 epochs" in lr.note
  assert crossing.ours == 4e3 and crossing.note == (
      "smallest budget above which every interior optimum has > 1 epoch")
  assert notes == []
  rows, notes = claims._absolute_claims("nfnet", {})
  assert rows == [] and notes == [
      "nfnet: optimal-LR value claim skipped: no LR sweeps at batch 4096",
      "nfnet: optimal-epochs > 1 claim skipped: interior optima do not cross 1 epoch"]


def test_choose_order_sizes_and_refusals():
  import tensorflow as tf
  from reproduce.data import order
  from reproduce.data.datasource import DataError, ShardOrder
  assert order.choose_order("shards", (3, 4, 5), 10) == ShardOrder(sizes=(3, 4, 3), window=8)
  # Files past the train part hold no train example: no empty shards.
  assert order.choose_order("shards", (3, 4, 5), 7, window=2) == ShardOrder(sizes=(3, 4),
                                                                           window=2)
  assert order.choose_order("global", (3, 4, 5), 10) is None
  assert order.choose_order("auto", (3, 4, 5), 10) is None
  with pytest.raises(DataError, match="order='random': use one of auto, global, shards"):
    order.choose_order("random", (3,), 3)
  with pytest.raises(DataError, match="shard_window=0"):
    order.choose_order("shards", (3,), 3, window=0)
  assert order.base_seed(3, order.ORDER_TAG).dtype == tf.int64  # Philox keys are int64


def test_auto_order_turns_to_shards_only_above_shard_order_from():
  from reproduce.data import order
  from reproduce.data.datasource import ShardOrder
  sizes = (order.SHARD_ORDER_FROM, order.SHARD_ORDER_FROM)
  assert order.choose_order("auto", sizes, order.SHARD_ORDER_FROM) is None
  assert order.choose_order("auto", sizes, order.SHARD_ORDER_FROM + 1) == ShardOrder(
      sizes=(order.SHARD_ORDER_FROM, 1), window=order.SHARD_WINDOW)


def test_prediction_interval_is_the_exp_of_the_log_interval():
  from reproduce.analysis import prediction
  draws = np.random.default_rng(0).normal(0.0, 0.1, 50)
  lo, hi = bootstrap.normal_interval(1.0, draws, 0.9)
  assert prediction._exp_interval(1.0, draws, 0.9) == pytest.approx([math.exp(lo),
                                                                     math.exp(hi)])
  assert prediction._exp_interval(1.0, draws[:5], 0.9) == [None, None]  # too few draws


# --- reproduce/analysis: survivors of the complete analysis sample (Dec 7) -------------------


def test_fits_keep_the_floor_diagnostic_the_compute_kind_and_each_frontier_runs_top1_source():
  from reproduce.analysis import fits
  records = synthetic_runs.synthetic_records(irreducible=0.5, finetune_b=0.1)
  points = synthetic_runs.as_points(records)
  result = fits.fit_all(points, bootstrap=0)
  floor = result["per_family"]["nfnet"]["floor"]
  assert floor["E"] == pytest.approx(0.5, rel=0.05)
  assert floor["E_over_top_loss"] == pytest.approx(floor["E"] / floor["top_loss"])
  assert {row["top1_source"] for row in result["frontier"]} == {"finetune"}
  assert result["compute_kind"] == "planned"
  plain = fits.fit_all(synthetic_runs.as_points(synthetic_runs.synthetic_records()), bootstrap=0)
  assert {row["top1_source"] for row in plain["frontier"]} == {"heldout"}


def test_lowest_per_group_of_nothing_is_an_empty_index_array():
  from reproduce.analysis import frontier
  found = frontier.lowest_per_group(np.zeros(0, dtype=int), np.zeros(0))
  assert found.shape == (0,) and found.dtype.kind == "i"


def test_power_law_refuses_unequal_or_2d_inputs_and_non_positive_values_by_name():
  from reproduce.analysis import laws
  with pytest.raises(laws.ScalingError, match=r"fit: x and y must be 1-D of one length, got "
                                              r"\(3,\), \(4,\)"):
    laws.fit_power_law([1.0, 2.0, 4.0], [3.0, 2.0, 1.5, 1.0], what="fit")
  with pytest.raises(laws.ScalingError, match="1-D of one length"):
    laws.fit_power_law([[1.0, 2.0], [4.0, 8.0]], [[3.0, 2.0], [1.5, 1.0]], what="fit")
  with pytest.raises(laws.ScalingError, match=r"^fit: log-log fit needs positive finite values "
                                              r"\(a, b, c\)$"):
    laws.fit_power_law([1.0, 2.0, 4.0], [3.0, 0.0, 1.0], what="fit", names=["a", "b", "c"])
  with pytest.raises(laws.ScalingError, match=r"ci_method must be 't' or 'percentile', got 'x'"):
    laws.fit_power_law([1.0, 2.0, 4.0], [3.0, 2.0, 1.0], ci_method="x")


def test_power_law_records_its_confidence_and_the_r2_of_log_loss():
  from reproduce.analysis import laws
  x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
  y = 3.0 * x ** -0.2 * np.exp([0.05, -0.04, 0.02, -0.06, 0.03])
  law = laws.fit_power_law(x, y, bootstrap=20, confidence=0.9)
  assert law["confidence"] == 0.9
  slope, intercept = np.polyfit(np.log(x), np.log(y), 1)
  residual = np.log(y) - (intercept + slope * np.log(x))
  centred = np.log(y) - np.log(y).mean()
  assert law["r2_log"] == pytest.approx(1 - np.sum(residual ** 2) / np.sum(centred ** 2))


def test_a_runs_seed_is_its_data_seed_else_its_seed():
  from reproduce.analysis import runs
  record = synthetic_runs.synthetic_records({"nfnet_mini_s0": 1e5}, (1.0,),
                                            lr_factors=(1.0,))[0]
  record.pop("seed", None)
  for config, expected in (({"data_seed": 7, "seed": 3}, 7), ({"data_seed": None, "seed": 3}, 3),
                           ({"seed": 4}, 4), ({}, None)):
    record["config"] = dict(record["config"], **config)
    for key in ("data_seed", "seed"):
      if key not in config:
        record["config"].pop(key, None)
    assert runs.point_from_record("r/results.json", "r", record).seed == expected, config


def test_seed_spread_skips_a_single_run_group_before_a_replicated_one():
  from reproduce.analysis import seeds
  single = synthetic_runs.synthetic_records({"nfnet_mini_s0": 1e5}, (1.0,), lr_factors=(1.0,))
  pair = synthetic_runs.synthetic_records({"nfnet_mini_s1": 2e5}, (1.0,), lr_factors=(1.0,),
                                          seeds=(0, 1), noise=0.05)
  spread = seeds.seed_spread(synthetic_runs.as_points(single + pair))
  losses = np.log([r["heldout_loss"] for r in pair])
  assert spread == dict(sd=pytest.approx(losses.std(ddof=1)), dof=1, n_groups=1, n_runs=2)


def test_sign_status_without_an_estimate_says_so():
  assert verdicts.sign_status(-1, None, [0.1, 0.2]) == (pytest.approx(math.nan, nan_ok=True),
                                                         verdicts.UNDECIDED, "no estimate")
  assert verdicts.sign_status(-1, math.inf, None)[2] == "no estimate"


def test_compare_limits_the_model_rows_to_the_models_asked_and_heads_its_table():
  from reproduce.analysis import versus_published
  result = versus_published.compare(models=["nfnet_f0"])
  assert {(r["model"], r["quantity"]) for r in result["rows"]} == {("nfnet_f0", "params"),
                                                                    ("nfnet_f0", "gmacs")}
  header, rule = versus_published.markdown_table(result).splitlines()[:2]
  assert header == "| key | ours | published | difference | tolerance | unit | status | note |"
  assert rule == "|---|---|---|---|---|---|---|---|"
