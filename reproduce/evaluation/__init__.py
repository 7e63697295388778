"""Evaluation of trained or converted classifiers: ``python -m reproduce.evaluate``.

Modules:
  specs       dataset specs, resolutions, crops, EvaluationError (no TensorFlow)
  metrics     top-1, top-5, NLL, ECE and the reliability table, in NumPy
  datasets    EvalSet: a spec to batches of (images, multi-hot targets in model classes)
  models      load a run directory or converted weights for inference (EMA, resolution)
  runner      ``evaluate_set``: one (dataset, resolution) scored
  outputs     results.json ``eval`` section, TensorBoard, reliability-diagram PNGs

Nothing is imported here, so ``specs`` stays usable before TensorFlow starts.
"""
