"""Analysis of finished runs: reading ``results.json``, frontiers, scaling-law fits, figures,
TensorBoard output, and the comparison with the published numbers.

  runs         Point, load_points (results.json read and validated), ScalingError
  frontier     best run of a group/LR sweep, the frontier (best run per budget), fitted
               vertices, optimal LR and its trend
  seeds        replicate seeds averaged, their spread, the optimism of a best-of-k pick
  bootstrap    case and residual bootstrap (scipy.stats.bootstrap), confidence intervals
  pipeline     one family's selections (iso-compute optima) + fits on any resample
  laws         power laws and exponents
  fits         fit_family (one family, the paper's claims), fit_all (fits.json)
  figures      the paper's figures (matplotlib)
  tensorboard  the TensorBoard writer: figures, scalars, text, hparams, comparison table
  outputs      fits.json, points.csv and compare.json (atomic writes), load_fits
  verdicts     PASS / FAIL / UNDECIDED and the rules that give them
  claims       the paper's claims per family and the prediction rows
  versus_published  ours vs published: the table and its verdict
  prediction   the largest budget predicted from the smaller ones (prediction interval)
  study_report the study's report.md, its figures, the same text in TensorBoard

Imports run runs <- (frontier, seeds) <- (bootstrap) pipeline <- laws <- (fits,
prediction) <- (figures, verdicts <- claims <- versus_published) <- tensorboard <-
study_report. Reads files only; never imports ``train`` or ``data``.
"""
