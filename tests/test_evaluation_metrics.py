"""Evaluation metrics against hand-computed values and independent NumPy loops; the
200-class subsets against the index lists published with ImageNet-A and -R; spec checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from reproduce.evaluation import label_sets
from reproduce.evaluation import metrics
from reproduce.evaluation import specs

# ``indices_in_1k`` of hendrycks/natural-adv-examples eval.py and ``imagenet_r_indices`` of
# hendrycks/imagenet-r eval.py.
PUBLISHED_A = [
    6, 11, 13, 15, 17, 22, 23, 27, 30, 37, 39, 42, 47, 50, 57, 70, 71, 76, 79, 89, 90, 94, 96,
    97, 99, 105, 107, 108, 110, 113, 124, 125, 130, 132, 143, 144, 150, 151, 207, 234, 235, 254,
    277, 283, 287, 291, 295, 298, 301, 306, 307, 308, 309, 310, 311, 313, 314, 315, 317, 319,
    323, 324, 326, 327, 330, 334, 335, 336, 347, 361, 363, 372, 378, 386, 397, 400, 401, 402,
    404, 407, 411, 416, 417, 420, 425, 428, 430, 437, 438, 445, 456, 457, 461, 462, 470, 472,
    483, 486, 488, 492, 496, 514, 516, 528, 530, 539, 542, 543, 549, 552, 557, 561, 562, 569,
    572, 573, 575, 579, 589, 606, 607, 609, 614, 626, 627, 640, 641, 642, 643, 658, 668, 677,
    682, 684, 687, 701, 704, 719, 736, 746, 749, 752, 758, 763, 765, 768, 773, 774, 776, 779,
    780, 786, 792, 797, 802, 803, 804, 813, 815, 820, 823, 831, 833, 835, 839, 845, 847, 850,
    859, 862, 870, 879, 880, 888, 890, 897, 900, 907, 913, 924, 932, 933, 934, 937, 943, 945,
    947, 951, 954, 956, 957, 959, 971, 972, 980, 981, 984, 986, 987, 988]
PUBLISHED_R = [
    1, 2, 4, 6, 8, 9, 11, 13, 22, 23, 26, 29, 31, 39, 47, 63, 71, 76, 79, 84, 90, 94, 96, 97, 99,
    100, 105, 107, 113, 122, 125, 130, 132, 144, 145, 147, 148, 150, 151, 155, 160, 161, 162,
    163, 171, 172, 178, 187, 195, 199, 203, 207, 208, 219, 231, 232, 234, 235, 242, 245, 247,
    250, 251, 254, 259, 260, 263, 265, 267, 269, 276, 277, 281, 288, 289, 291, 292, 293, 296,
    299, 301, 308, 309, 310, 311, 314, 315, 319, 323, 327, 330, 334, 335, 337, 338, 340, 341,
    344, 347, 353, 355, 361, 362, 365, 366, 367, 368, 372, 388, 390, 393, 397, 401, 407, 413,
    414, 425, 428, 430, 435, 437, 441, 447, 448, 457, 462, 463, 469, 470, 471, 472, 476, 483,
    487, 515, 546, 555, 558, 570, 579, 583, 587, 593, 594, 596, 609, 613, 617, 621, 629, 637,
    657, 658, 701, 717, 724, 763, 768, 774, 776, 779, 780, 787, 805, 812, 815, 820, 824, 833,
    847, 852, 866, 875, 883, 889, 895, 907, 928, 931, 932, 933, 934, 936, 937, 943, 945, 947,
    948, 949, 951, 953, 954, 957, 963, 965, 967, 980, 981, 983, 988]


def _imagenet_wnids():
  from tensorflow_datasets.datasets.imagenet2012 import imagenet_common
  with open(imagenet_common.label_names_file(), encoding="utf-8") as f:
    return f.read().split()


@pytest.mark.parametrize("name, published", [("imagenet_a", PUBLISHED_A),
                                             ("imagenet_r", PUBLISHED_R)])
def test_subsets_match_the_published_indices(name, published):
  assert len(set(label_sets.SUBSETS[name])) == 200
  assert label_sets.subset_indices(name, _imagenet_wnids()) == published


def test_ece_of_a_hand_computed_example():
  # 15 bins of width 1/15: 0.95 -> bin 14, 0.9 -> 13, 0.85 -> 12, 0.3 and 0.32 -> 4, 0.1 -> 1.
  confidence = np.array([0.95, 0.9, 0.85, 0.3, 0.32, 0.1])
  correct = np.array([1, 1, 0, 0, 1, 0], bool)
  expected = (0.05 + 0.1 + 0.85 + 2 * abs(0.5 - 0.31) + 0.1) / 6
  assert metrics.expected_calibration_error(confidence, correct) == pytest.approx(expected)
  table = metrics.reliability(confidence, correct)
  assert table.counts.tolist() == [0, 1, 0, 0, 2] + [0] * 7 + [1, 1, 1]
  assert metrics.expected_calibration_error([1.0, 1.0], [True, True]) == 0.0


def _loop_metrics(logits, label_sets_per_row, num_bins=15):
  """Independent per-row loops: top-1/top-5 in the label set, NLL of the set, Guo ECE."""
  rows = []
  for row, labels in zip(logits, label_sets_per_row):
    z = row - row.max()
    p = np.exp(z) / np.exp(z).sum()
    order = sorted(range(len(p)), key=lambda c: -p[c])
    rows.append((order[0] in labels, any(c in labels for c in order[:5]),
                 -math.log(sum(p[c] for c in labels)), p.max()))
  top1 = np.array([r[0] for r in rows], float)
  conf = np.array([r[3] for r in rows])
  ece = 0.0
  for k in range(num_bins):
    lo, hi = k / num_bins, (k + 1) / num_bins
    in_bin = (conf > lo) & (conf <= hi)
    if in_bin.any():
      ece += in_bin.mean() * abs(top1[in_bin].mean() - conf[in_bin].mean())
  return {"top1": top1.mean(), "top5": np.mean([r[1] for r in rows]),
          "nll": np.mean([r[2] for r in rows]), "ece": ece}


def test_metrics_match_independent_loops_for_multi_label_rows():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(300, 12)) * 3
  sets = [set(rng.choice(12, size=rng.integers(1, 4), replace=False).tolist())
          for _ in range(300)]
  hot = np.zeros((300, 12))
  for i, s in enumerate(sets):
    hot[i, list(s)] = 1
  got = metrics.summarize(metrics.per_example(logits, hot))
  want = _loop_metrics(logits, sets)
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


@pytest.mark.parametrize("spec", ["imagenet", "tfds:", "folder:/x", ""])
def test_unknown_dataset_specs_are_one_line_errors(spec):
  with pytest.raises(specs.EvaluationError, match="unknown dataset"):
    specs.check_dataset(spec)


def test_resolutions_parse_and_reject():
  assert specs.parse_resolutions(["256", " 288"]) == [256, 288]
  for bad in (["0"], ["2x"], ["-3"]):
    with pytest.raises(specs.EvaluationError, match="--resolution"):
      specs.parse_resolutions(bad)
