"""Classification metrics in NumPy: top-1, top-5, NLL and expected calibration error.

Labels are multi-hot rows over the scored classes, so one definition covers single-label
sets (one-hot), ReaL (the set of valid labels) and the 200-class subsets (columns
restricted): a prediction is correct when its class is in the row's label set, and the
NLL is ``-log`` of the probability the softmax puts on the label set. Rows without any
label are not scorable and are left out by the caller (``scorable``).

ECE (Guo et al. 2017): confidences (max softmax probability) binned into ``NUM_BINS``
equal-width bins ``(k/B, (k+1)/B]`` (0 goes into the first), ``ECE = sum_b |b|/n *
|accuracy(b) - mean confidence(b)|`` with top-1 correctness.
"""

from __future__ import annotations

import dataclasses

import numpy as np

NUM_BINS = 15
TOP_K = 5


def log_softmax(logits: np.ndarray) -> np.ndarray:
  logits = np.asarray(logits, np.float64)
  shifted = logits - logits.max(axis=-1, keepdims=True)
  return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def scorable(labels: np.ndarray) -> np.ndarray:
  """Boolean mask of rows with at least one label."""
  return np.asarray(labels).reshape(len(labels), -1).any(axis=-1)


def per_example(logits: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
  """Per-example top1 / top5 hits, NLL and confidence of logits [n, C] vs multi-hot [n, C]."""
  labels = np.asarray(labels) > 0
  log_probs = log_softmax(logits)
  ranked = np.argsort(-log_probs, axis=-1, kind="stable")[:, :TOP_K]
  hits = np.take_along_axis(labels, ranked, axis=-1)
  label_log_probs = np.where(labels, log_probs, -np.inf)
  label_mass = np.log(np.exp(label_log_probs).sum(axis=-1))
  return {"top1": hits[:, 0], "top5": hits.any(axis=-1), "nll": -label_mass,
          "confidence": np.exp(log_probs.max(axis=-1))}


@dataclasses.dataclass
class Reliability:
  """Per-bin example counts, accuracy and mean confidence (empty bins: NaN)."""
  edges: np.ndarray
  counts: np.ndarray
  accuracy: np.ndarray
  confidence: np.ndarray


def reliability(confidence: np.ndarray, correct: np.ndarray,
                num_bins: int = NUM_BINS) -> Reliability:
  confidence = np.asarray(confidence, np.float64)
  correct = np.asarray(correct, np.float64)
  edges = np.linspace(0.0, 1.0, num_bins + 1)
  # Bin k holds (edges[k], edges[k+1]]; a confidence of exactly 0 goes to bin 0.
  bins = np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, num_bins - 1)
  counts = np.bincount(bins, minlength=num_bins).astype(np.int64)
  with np.errstate(invalid="ignore", divide="ignore"):
    accuracy = np.bincount(bins, correct, minlength=num_bins) / counts
    mean_confidence = np.bincount(bins, confidence, minlength=num_bins) / counts
  return Reliability(edges, counts, accuracy, mean_confidence)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray,
                               num_bins: int = NUM_BINS) -> float:
  table = reliability(confidence, correct, num_bins)
  filled = table.counts > 0
  gaps = np.abs(table.accuracy[filled] - table.confidence[filled])
  return float(np.sum(table.counts[filled] * gaps) / max(table.counts.sum(), 1))


def summarize(stats: dict[str, np.ndarray], num_bins: int = NUM_BINS) -> dict:
  """Mean top1 / top5 / NLL, ECE and the example count of concatenated ``per_example``s."""
  count = int(len(stats["top1"]))
  if not count:
    return {"top1": None, "top5": None, "nll": None, "ece": None, "examples": 0}
  return {"top1": float(np.mean(stats["top1"])), "top5": float(np.mean(stats["top5"])),
          "nll": float(np.mean(stats["nll"])),
          "ece": expected_calibration_error(stats["confidence"], stats["top1"], num_bins),
          "examples": count}


def concatenate(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
  keys = ("top1", "top5", "nll", "confidence")
  if not parts:
    return {k: np.zeros([0]) for k in keys}
  return {k: np.concatenate([p[k] for p in parts]) for k in keys}
