"""Analysis of finished runs: reading ``results.json``, frontiers, scaling-law fits, figures,
TensorBoard output, and the comparison with the published numbers.

  runs         Point, load_points (results.json read and validated), ScalingError
  frontier     best run of a group/LR sweep, compute frontier, optimal runs, optimal LR
  bootstrap    case and residual bootstrap (scipy.stats.bootstrap), confidence intervals
  pipeline     one family's selections + fits on any resample (whole-pipeline bootstrap)
  fits         power laws, optimal size/epochs exponents, fit_family (one family, the
               paper's claims), fit_all (the content of fits.json)
  figures      the paper's figures (matplotlib)
  tensorboard  the TensorBoard writer: figures, scalars, text, hparams, comparison table
  outputs      fits.json, points.csv and compare.json (atomic writes), load_fits
  compare      ours vs published: the PASS/FAIL rows (claims per family, predictions)
  prediction   each family's law fitted on all budgets but the largest, predicting it
  report       the study's report.md, its figures, the same text in TensorBoard
  synthetic    runs that follow a known law (tests, docs)

Imports run runs <- frontier <- (bootstrap) pipeline <- (fits, prediction) <- (figures,
compare) <- tensorboard <- report. Reads files only;
never imports ``train`` or ``data``.
"""
