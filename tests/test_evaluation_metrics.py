"""Evaluation metrics against hand-computed values and independent NumPy loops; the
200-class subsets against the index lists published with ImageNet-A and -R; spec checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from evaluation_helpers import PUBLISHED_A, PUBLISHED_R, loop_metrics
from reproduce.data import imagenet_subsets
from reproduce.evaluation import metrics
from reproduce.evaluation import specs


def _imagenet_wnids():
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common
  with open(imagenet_common.label_names_file(), encoding="utf-8") as f:
    return f.read().split()


@pytest.mark.parametrize("name, published", [("imagenet_a", PUBLISHED_A),
                                             ("imagenet_r", PUBLISHED_R)])
def test_subsets_match_the_published_indices(name, published):
  assert len(set(imagenet_subsets.SUBSETS[name])) == 200
  assert imagenet_subsets.subset_indices(name, _imagenet_wnids()) == published


def test_ece_of_a_hand_computed_example():
  # 15 bins of width 1/15: 0.95 -> bin 14, 0.9 -> 13, 0.85 -> 12, 0.3 and 0.32 -> 4, 0.1 -> 1.
  confidence = np.array([0.95, 0.9, 0.85, 0.3, 0.32, 0.1])
  correct = np.array([1, 1, 0, 0, 1, 0], bool)
  expected = (0.05 + 0.1 + 0.85 + 2 * abs(0.5 - 0.31) + 0.1) / 6
  assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(expected)
  table = metrics.reliability(confidence, correct)
  assert table.counts.tolist() == [0, 1, 0, 0, 2] + [0] * 7 + [1, 1, 1]
  assert metrics.expected_calibration_error([1.0, 1.0], [True, True]) == 0.0


def test_metrics_match_independent_loops_for_multi_label_rows():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(300, 12)) * 3
  sets = [set(rng.choice(12, size=rng.integers(1, 4), replace=False).tolist())
          for _ in range(300)]
  hot = np.zeros((300, 12))
  for i, s in enumerate(sets):
    hot[i, list(s)] = 1
  got = metrics.summarize(metrics.per_example(logits, hot))
  want = loop_metrics(logits, sets)
  for key in ("top1", "top5", "nll", "ece"):
    assert got[key] == pytest.approx(want[key], rel=1e-9, abs=1e-12), key
  assert got["examples"] == 300


def test_single_label_nll_is_cross_entropy():
  logits = np.array([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
  stats = metrics.per_example(logits, np.eye(3)[[0, 2]])
  assert stats["nll"][0] == pytest.approx(-math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-1))))
  assert stats["nll"][1] == pytest.approx(math.log(3))
  assert stats["top1"].tolist() == [True, False]


def test_rows_without_labels_are_not_scorable():
  assert metrics.scorable(np.array([[0, 1, 0], [0, 0, 0]])).tolist() == [True, False]
  assert metrics.summarize(metrics.concatenate([]))["examples"] == 0


@pytest.mark.parametrize("spec", ["imagenet2012", "imagenet_a", "tfds:cifar10@test",
                                  "imagefolder:/data/x"])
def test_known_dataset_specs(spec):
  assert specs.check_dataset(f" {spec} ") == spec


@pytest.mark.parametrize("spec", ["image net", "tfds:", "folder:/x", ""])
def test_unknown_dataset_specs_are_one_line_errors(spec):
  with pytest.raises(specs.EvaluationError, match="unknown dataset"):
    specs.check_dataset(spec)


def test_resolutions_parse_and_reject():
  assert specs.parse_resolutions(["256", " 288"]) == [256, 288]
  for bad in (["0"], ["2x"], ["-3"]):
    with pytest.raises(specs.EvaluationError, match="--resolution"):
      specs.parse_resolutions(bad)
