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


def test_law_rows_list_every_fitted_law_with_its_value_and_interval():
  entry = dict(
      fit=dict(a=2.0, b=0.125, ci=dict(a=[1.5, 2.5], b=[0.1, 0.15])),
      floor=dict(E=0.25, E_over_top_loss=0.3),
      seeds=dict(sd=0.02, n_groups=3),
      optimal_scaling=dict(n=4, ratio=dict(value=1.5, ci=[1.2, 1.8]),
                           size=dict(k=10.0, exponent=0.6, ci=dict(k=[9.0, 11.0],
                                                                   exponent=[0.5, 0.7])),
                           epochs=dict(k=0.5, exponent=0.4, ci=dict(k=[0.4, 0.6],
                                                                    exponent=[0.3, 0.5]))),
      lr_trend=dict(pooled_slope=-0.5, ci=[-0.7, -0.3]),
      finetune_fit=dict(a=3.0, b=0.07, ci=dict(a=[2.0, 4.0], b=[0.05, 0.09])))
  size = "optimal size: size = k*C^alpha (iso-compute, 4 budgets)"
  epochs = "optimal epochs: epochs = k*C^alpha (iso-compute, 4 budgets)"
  assert study_report._law_rows(entry) == [
      ("frontier loss: L = a*C^-b", "a", "2", [1.5, 2.5]),
      ("frontier loss: L = a*C^-b", "b", "0.125", [0.1, 0.15]),
      ("floor diagnostic: L = E + a*C^-b", "E", "0.25", None),
      ("floor diagnostic", "E / top-budget loss (want < 0.5)", "0.3", None),
      ("seed spread (3 replicated runs)", "SD of log loss", "0.02", None),
      (size, "k", "10", [9.0, 11.0]), (size, "alpha", "0.6", [0.5, 0.7]),
      (epochs, "k", "0.5", [0.4, 0.6]), (epochs, "alpha", "0.4", [0.3, 0.5]),
      ("size / epochs exponent ratio (paper: ~1)", "ratio", "1.5", [1.2, 1.8]),
      ("optimal LR trend (Figure 3): lr ~ epochs^s, pooled", "s", "-0.5", [-0.7, -0.3]),
      ("fine-tuned top-1 error (Figure 1): err = a*C^-b", "a", "3", [2.0, 4.0]),
      ("fine-tuned top-1 error (Figure 1): err = a*C^-b", "b", "0.07", [0.05, 0.09])]
  assert study_report._law_rows({}) == []  # nothing fitted: no rows


def _prediction_record(loss_inside, size_inside):
  return dict(status="ok", compute=8.0, budgets=[1.0, 2.0, 4.0, 8.0], seed_sd=0.02,
              seed_source="floor (no replicates)", law=dict(a=2.0, b=0.1),
              loss=dict(predicted=0.5, interval=[0.4, 0.6], observed=0.55, inside=loss_inside),
              optimal_size=dict(predicted=100.0, interval=[80.0, 120.0], observed=90.0,
                                inside=size_inside, note="edge" if size_inside is None else None))


def test_prediction_lines_say_inside_outside_or_not_judged():
  lines = study_report._prediction_lines(_prediction_record(True, None))
  assert lines[0] == ("- prediction at the largest budget (compute 8), law fitted on the 3 "
                      "smaller budgets: L = 2*C^-0.1")
  assert lines[1] == "  - seed SD used: 0.02 (floor (no replicates))"
  assert lines[2] == "  - held-out loss: predicted 0.5 [0.4, 0.6], observed 0.55: inside"
  assert lines[3] == ("  - optimal size (FLOPs/image): predicted 100 [80, 120], observed 90: "
                      "not judged; edge")
  lines = study_report._prediction_lines(_prediction_record(False, True))
  assert lines[2].endswith("observed 0.55: outside") and lines[3].endswith("observed 90: inside")
  assert study_report._prediction_lines(None) == []
  assert study_report._prediction_lines(dict(status="skipped", note="3 budget(s)")) == [
      "- prediction: not made: 3 budget(s)"]


def test_prediction_sentence_says_inside_or_outside_for_the_loss_and_the_size():
  text = study_report._prediction_sentence("nfnet", _prediction_record(True, False))
  assert text == ("Fitted on the 3 smaller budgets, the nfnet law predicted a held-out loss of "
                  "0.5 [0.4, 0.6] (prediction interval) at the largest budget; the best run "
                  "there reached 0.55, inside the interval, and its iso-compute optimal size "
                  "(90 FLOPs/image) was outside the predicted optimal-size interval.")
  text = study_report._prediction_sentence("vit", _prediction_record(False, True))
  assert "reached 0.55, outside the interval" in text
  assert "was inside the predicted optimal-size interval." in text
  unjudged = study_report._prediction_sentence("vit", _prediction_record(True, None))
  assert unjudged.endswith("inside the interval.") and "optimal size" not in unjudged
  assert study_report._prediction_sentence("vit", dict(status="skipped", note="why")) == (
      "No vit prediction was made (why).")


def test_plain_words_give_the_claim_family_prediction_first_then_the_others_by_name():
  fits = dict(compute_unit="FLOPs", settings=dict(confidence=0.95), n_runs=12, per_family={})
  comparison = dict(rows=[])
  predictions = {f: dict(status="skipped", note=f"{f} note") for f in ("vit", "hybrid", "nfnet")}
  text = study_report.plain_words(fits, comparison, predictions)
  assert text.startswith("No NFNet claim could be judged. No nfnet prediction was made "
                         "(nfnet note). No hybrid prediction was made (hybrid note). No vit "
                         "prediction was made (vit note). No run was fine-tuned")
  assert "every interval is a 95% bootstrap over 12 runs" in text


def test_each_figure_is_drawn_from_the_data_it_plots(monkeypatch):
  for name in ("figure_top1_vs_compute", "figure_frontiers", "figure_loss_vs_compute",
               "figure_optimal_lr", "figure_optimal_scaling", "figure_prediction"):
    monkeypatch.setattr(study_report.figures, name, lambda *a, _n=name: (_n,) + a)
  made = {file: make() for file, make in study_report._figures("P", "F", "R").items()}
  assert made == {"fig1_top1_error_vs_compute.png": ("figure_top1_vs_compute", "P", "F"),
                  "frontiers_loss_vs_compute.png": ("figure_frontiers", "P", "F"),
                  "fig2_loss_vs_compute.png": ("figure_loss_vs_compute", "P", "F"),
                  "fig3_optimal_lr_vs_epochs.png": ("figure_optimal_lr", "F"),
                  "optimal_size_epochs_vs_compute.png": ("figure_optimal_scaling", "F"),
                  "prediction_largest_budget.png": ("figure_prediction", "R")}


def test_intervals_that_touch_overlap_and_a_missing_bound_is_not_judged():
  law = lambda lo, hi: dict(ci=dict(b=[lo, hi]))
  assert study_report._intervals_overlap(law(0.1, 0.2), law(0.2, 0.3)) is True
  assert study_report._intervals_overlap(law(0.2, 0.3), law(0.1, 0.2)) is True
  assert study_report._intervals_overlap(law(0.1, 0.2), law(0.21, 0.3)) is False
  assert study_report._intervals_overlap(law(0.21, 0.3), law(0.1, 0.2)) is False
  assert study_report._intervals_overlap(law(0.1, None), law(0.2, 0.3)) is None
  assert study_report._slopes_compared({"a": dict(b=0.1, ci=dict(b=[0.0, 0.2]))}) == ""


def test_laws_markdown_lists_edge_optima_predictions_and_each_familys_own_notes():
  fits = dict(compute_kind="training", compute_unit="FLOPs",
              settings=dict(confidence=0.9, bootstrap=50),
              per_family=dict(nfnet=dict(optimal=[dict(compute=1e6, edge="smallest size"),
                                                  dict(compute=4e6, edge=None),
                                                  dict(compute=1.6e7, edge="largest size")])),
              notes={"per_family.nfnet.fit": "few points", "per_family.vit.fit": "other"})
  text = study_report.laws_markdown(fits, {"nfnet": dict(status="skipped", note="why")})
  assert text.splitlines()[0] == ("Compute in training FLOPs; intervals: 90%, bootstrap "
                                  "(50 resamples).")
  assert "### nfnet\n\n| law | coefficient | value | 90% CI |\n|---|---|---|---|\n" in text
  assert ("- budgets whose optimum is an edge (no interior vertex; not fitted): "
          "1e+06 (smallest size), 1.6e+07 (largest size)") in text
  assert "- prediction: not made: why" in text
  assert "- note: few points" in text and "other" not in text
  fits["settings"]["family_intervals"] = "t intervals"
  assert study_report.laws_markdown(fits, {}).splitlines()[0].endswith(
      "intervals: 90%, t intervals (50 resamples).")


def test_breakdown_gives_each_share_of_the_wall_time_and_the_time_not_training():
  text = study_report.breakdown_markdown({"data": 30.0, "training": 150.0}, wall_seconds=200.0,
                                         cores=4, training_core_seconds=400.0)
  assert text.splitlines() == [
      "| category | seconds | share of wall time |", "|---|---|---|",
      "| data | 30.0 | 15.0% |", "| training | 150.0 | 75.0% |", "",
      "Wall time 200.0 s on 4 core(s); training 400.0 core-seconds = 100.0 s of wall time on "
      "4 core(s); time not spent training 100.0 s (50.0% of the wall time)."]
  assert "| data | 0.0 | 0.0% |" in study_report.breakdown_markdown(
      {"data": 0.0}, wall_seconds=0.0, cores=1, training_core_seconds=0.0)  # no division by 0


def test_write_report_returns_where_it_wrote_the_report_figures_and_tensorboard_text(
    tmp_path, monkeypatch):
  """The files as written, with the figures and the text stubbed (the study fixture draws
  the real ones)."""
  drawn = {name: (lambda n=name: n) for name in study_report.FIGURE_FILES}
  monkeypatch.setattr(study_report, "_figures", lambda points, fits, predictions: drawn)
  monkeypatch.setattr(study_report.figures, "png_bytes", lambda name: name.encode())
  monkeypatch.setattr(study_report, "report_markdown", lambda *a, **k: "the text")
  workdir, logdir = str(tmp_path / "study"), str(tmp_path / "logs")
  written = study_report.write_report(workdir, [], {}, {}, {}, {}, wall_seconds=1.0, cores=1,
                                      training_core_seconds=1.0, logdir=logdir)
  assert set(written) == {"report", "figures", "tensorboard"}
  assert written["report"] == os.path.join(workdir, "report.md")
  assert fileio.read_text(written["report"]) == "the text"
  assert written["figures"] == [os.path.join(workdir, n) for n in study_report.FIGURE_FILES]
  for path in written["figures"]:
    with open(path, "rb") as f:
      assert f.read() == os.path.basename(path).encode()
  assert written["tensorboard"].startswith(logdir) and os.listdir(written["tensorboard"])


def test_two_laws_are_compared_too():
  apart = {"nfnet": dict(b=0.3, ci=dict(b=[0.25, 0.35])), "vit": dict(b=0.1, ci=dict(b=[0.0, 0.2]))}
  assert study_report._slopes_compared(apart) == "; nfnet improves faster with compute than vit"


def test_the_size_panel_titles_the_size_epochs_ratio_and_the_epochs_panel_does_not():
  from reproduce.analysis import figures
  law = dict(k=1.0, exponent=0.5, ci=dict(exponent=[0.4, 0.6]))
  fits = dict(compute_unit="FLOPs", per_family=dict(nfnet=dict(
      optimal=[dict(compute=1.0, flops_per_image=10.0, epochs=1.0, edge=None),
               dict(compute=4.0, flops_per_image=20.0, epochs=2.0, edge=None)],
      optimal_scaling=dict(size=law, epochs=law, ratio=dict(value=1.25, ci=[1.0, 1.5])))))
  size_ax, epochs_ax = figures.figure_optimal_scaling(fits).axes
  assert size_ax.get_title() == "nfnet: size/epochs exponent ratio 1.250 [1, 1.5] (paper: ~1)"
  assert epochs_ax.get_title() == "nfnet"


def test_figure_titles_and_labels_say_what_is_drawn():
  from reproduce.analysis import figures
  points = (helpers.study_points() + helpers.study_points(
      {f"vit_mini_s{i}": 1e5 * 2.0 ** i for i in range(5)}, seed=2))
  fits = fits_lib.fit_all(points, bootstrap=0)
  (ax,) = figures.figure_frontiers(points, fits).axes
  assert ax.get_title() == "Each family's frontier and law at matched compute"
  assert ax.get_ylabel() == "held-out loss"
  nfnet_ax, _ = figures.figure_loss_vs_compute(points, fits).axes
  labels = [line.get_label() for line in nfnet_ax.get_lines()] + [
      c.get_label() for c in nfnet_ax.collections]
  assert nfnet_ax.get_title() == "nfnet: held-out loss vs compute"
  assert "other LRs / seeds" in labels and "best run per budget (frontier)" in labels
  _, published_ax = figures.figure_top1_vs_compute(points, fits).axes
  assert published_ax.get_ylabel() == "ImageNet top-1 error (%)"
  assert published_ax.get_title() == "published (the paper's Figure 1 points)"


def test_per_family_figures_grow_a_row_per_family():
  from reproduce.analysis import figures
  one = dict(per_family=dict(nfnet={}), compute_unit="FLOPs")
  two = dict(per_family=dict(nfnet={}, vit={}), compute_unit="FLOPs")
  (w1, h1), (w2, h2) = (figures.figure_optimal_scaling(f).get_size_inches() for f in (one, two))
  assert w1 == w2 == 11 and h2 == pytest.approx(2 * h1) and h1 == pytest.approx(4.2)
