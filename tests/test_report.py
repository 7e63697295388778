"""The study's report.md: every section, the figures beside it, the same text in TensorBoard."""

import math
import os

import pytest

from reproduce.analysis import fits as fits_lib
from reproduce.analysis import prediction
from reproduce.analysis import study_report
from reproduce.analysis import versus_published
from reproduce.core import fileio

import analysis_helpers as helpers

BREAKDOWN = {"start-up": 20.0, "data": 10.0, "tracing": 30.0, "training": 300.0,
             "evaluation": 15.0, "fits": 5.0}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
  """A two-family study with fine-tuned runs, and the report written from it."""
  points = (helpers.study_points(finetune_b=0.1) + helpers.study_points(
      {f"vit_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}, seed=2, finetune_b=0.07))
  fits = fits_lib.fit_all(points, bootstrap=50)
  predictions = prediction.predict_all(points, bootstrap=50)
  comparison = versus_published.compare(points, fits, model_stats=False, predictions=predictions)
  workdir = str(tmp_path_factory.mktemp("study"))
  written = study_report.write_report(workdir, points, fits, comparison, predictions, BREAKDOWN,
                                      wall_seconds=400.0, cores=2, training_core_seconds=600.0)
  return workdir, written, fileio.read_text(written["report"]), predictions


def test_report_has_every_section(study):
  workdir, written, text, _ = study
  assert written["report"] == os.path.join(workdir, study_report.REPORT_FILE)
  for heading in ("## In plain words", "## Ours vs the paper", "## Fitted laws",
                  "### nfnet", "### vit", "## Figures", "## Where the time went"):
    assert heading in text, heading
  for law in ("frontier loss: L = a*C^-b", "optimal size: size = k*C^alpha",
              "optimal epochs", "optimal LR trend (Figure 3)",
              "fine-tuned top-1 error (Figure 1)", "prediction at the largest budget"):
    assert text.count(law) >= 2, law  # once per family
  assert "| prediction.nfnet.loss |" in text and "| claim.nfnet." in text
  assert "(PASS)" in text or "(FAIL)" in text  # ViT rows shown in parentheses


def test_plain_words_come_from_the_results(study):
  _, _, text, predictions = study
  paragraph = text.split("## In plain words")[1].split("##")[0]
  assert "NFNet claims" in paragraph and "undecided" in paragraph
  loss = predictions["nfnet"]["loss"]
  assert f"{loss['predicted']:.3g}" in paragraph
  assert ("inside the interval" if loss["inside"] else "outside the interval") in paragraph
  assert "Figure 1" in paragraph and "nfnet improves faster" in paragraph
  assert "At the largest budget the best held-out losses are" in paragraph
  assert "The hybrids" not in paragraph  # two families: no third-arm sentence
  assert "interval" in paragraph and "prediction interval" in paragraph


def test_time_breakdown_table(study):
  _, _, text, _ = study
  section = text.split("## Where the time went")[1]
  assert "| training | 300.0 | 75.0% |" in section
  assert "| tracing | 30.0 | 7.5% |" in section
  assert "600.0 core-seconds = 300.0 s" in section
  assert "100.0 s (25.0% of the wall time)" in section


def test_figures_are_png_files_beside_the_report(study):
  workdir, written, text, _ = study
  assert [os.path.basename(p) for p in written["figures"]] == list(study_report.FIGURE_FILES)
  from reproduce.analysis import figures
  assert [f"{name}.png" for name in figures.study_figures([], {}, {})] == list(
      study_report.FIGURE_FILES)  # every figure has a caption, in the report's order
  for name in study_report.FIGURE_FILES:
    path = os.path.join(workdir, name)
    with open(path, "rb") as f:
      assert f.read(8) == b"\x89PNG\r\n\x1a\n", name
    assert f"![{name}]({name})" in text


def test_report_text_in_tensorboard(study):
  _, written, text, _ = study
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  events = event_accumulator.EventAccumulator(written["tensorboard"],
                                              size_guidance={"tensors": 0})
  events.Reload()
  tensor = events.Tensors("report/markdown")[0].tensor_proto
  assert tensor.string_val[0].decode() == text


def _family_entry(model, loss, sd=0.02, b=0.2, ci=(0.1, 0.3), top=4.0):
  """The parts of a ``fits.per_family`` entry the plain-words comparison reads: the top
  budget's optimum (a 2-seed mean), the seed spread and the fine-tuned law."""
  return dict(optimal=[dict(compute=1.0, model=model, heldout_loss=9.0, n_seeds=1),
                       dict(compute=top, model=model, heldout_loss=loss, n_seeds=2)],
              seeds=dict(sd=sd, dof=3 if sd is not None else 0, n_groups=3, n_runs=6),
              finetune_fit=dict(b=b, ci=dict(b=list(ci))))


def test_the_families_are_ranked_only_beyond_the_seed_noise():
  fits = dict(per_family=dict(nfnet=_family_entry("f", 0.50), vit=_family_entry("v", 0.60),
                              hybrid=_family_entry("h", 0.505)))
  text = study_report._families_sentence(fits)
  # t(0.975, 3 + 3) x sqrt(0.02^2 / 2 + 0.02^2 / 2) = 2.447 x 0.02 = 0.049.
  assert "nfnet 0.500 (f), hybrid 0.505 (h), vit 0.600 (v)" in text
  assert "nfnet is level with hybrid (log loss ratio 0.010; 95% seed-noise threshold 0.049)" in (
      text)
  hybrids = text.split("The hybrids")[1]
  assert "level with nfnet" in hybrids and "below vit (log loss ratio 0.172;" in hybrids
  fits["per_family"]["hybrid"] = _family_entry("h", 0.50 * math.exp(0.05))  # just beyond
  assert "above nfnet" in study_report._families_sentence(fits).split("The hybrids")[1]
  fits["per_family"]["hybrid"] = _family_entry("h", 0.50 * math.exp(0.048))  # just within
  assert "level with nfnet" in study_report._families_sentence(fits).split("The hybrids")[1]
  fits["per_family"]["hybrid"] = _family_entry("h", 0.40)
  text = study_report._families_sentence(fits)
  assert "hybrid is below nfnet" in text and "below nfnet" in text.split("The hybrids")[1]
  del fits["per_family"]["hybrid"]
  two = study_report._families_sentence(fits)
  assert "nfnet is below vit" in two and "hybrid" not in two
  del fits["per_family"]["vit"]
  assert study_report._families_sentence(fits) == ""  # one family: nothing to compare


def test_families_without_replicates_or_without_the_largest_budget_are_not_ranked():
  fits = dict(per_family=dict(nfnet=_family_entry("f", 0.50, sd=None),
                              vit=_family_entry("v", 0.60, sd=None)))
  assert "nfnet is not ranked against vit (no seed replicates" in (
      study_report._families_sentence(fits))
  fits = dict(per_family=dict(nfnet=_family_entry("f", 0.50), vit=_family_entry("v", 0.60),
                              hybrid=_family_entry("h", 0.40, top=2.0)))
  text = study_report._families_sentence(fits)
  assert "(hybrid: no run at the largest budget, not compared)" in text
  assert "nfnet is below vit" in text and "The hybrids" not in text


def test_figure1_sentence_tells_apart_only_the_pairs_whose_intervals_do():
  fits = dict(per_family=dict(nfnet=_family_entry("f", 0.5, b=0.3, ci=(0.25, 0.35)),
                              vit=_family_entry("v", 0.6, b=0.1, ci=(0.05, 0.15)),
                              hybrid=_family_entry("h", 0.5, b=0.2, ci=(0.12, 0.28))))
  text = study_report._figure1_sentence(fits)
  assert "nfnet improves faster with compute than vit" in text
  assert "hybrid" in text and "than hybrid" not in text and "hybrid improves" not in text
  fits["per_family"]["vit"]["finetune_fit"]["ci"]["b"] = [0.05, 0.26]
  assert "cannot tell the families' slopes apart" in study_report._figure1_sentence(fits)
  fits["per_family"]["vit"]["finetune_fit"]["ci"]["b"] = [None, None]
  assert "without an interval for every law" in study_report._figure1_sentence(fits)


def test_frontiers_figure_draws_each_familys_best_runs_and_law_on_one_axes():
  from reproduce.analysis import figures
  points = (helpers.study_points() + helpers.study_points(
      {f"vit_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}, seed=2))
  fits = fits_lib.fit_all(points, bootstrap=0)
  (ax,) = figures.figure_frontiers(points, fits).axes
  lines = {line.get_label(): line for line in ax.get_lines()}
  for family in ("nfnet", "vit"):
    entry = fits["per_family"][family]
    best = lines[f"{family}: best run per budget"]
    assert list(best.get_xdata()) == [p.compute for p in points if p.name in entry["frontier"]]
    assert any(label.startswith(f"{family}: L = ") and f"C^-{entry['fit']['b']:.3f}" in label
               for label in lines)


def test_a_frontier_with_seeds_is_drawn_at_their_mean_as_the_law_sees_it():
  from reproduce.analysis import figures
  points = helpers.verdict_points()  # two seeds at the largest budget
  fits = fits_lib.fit_all(points, bootstrap=0)
  top = fits["per_family"]["nfnet"]["frontier"][-1]
  seeds = [p.heldout_loss for p in points if p.replicate_key == next(
      q.replicate_key for q in points if q.name == top)]
  assert len(seeds) == 2 and seeds[0] != seeds[1]
  (ax,) = figures.figure_frontiers(points, fits).axes
  best = {line.get_label(): line for line in ax.get_lines()}["nfnet: best run per budget"]
  assert best.get_ydata()[-1] == pytest.approx(math.sqrt(seeds[0] * seeds[1]))
