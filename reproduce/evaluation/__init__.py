"""Evaluation of trained or converted classifiers: ``python -m reproduce.evaluate``.

Modules:
  specs       dataset specs, resolutions, crops, evaluate's flag checks (``check_usage``),
              EvaluationError (no TensorFlow)
  metrics     top-1, top-5, NLL, ECE and the reliability table, in NumPy
  datasets    EvalSet: a spec to batches of (images, multi-hot targets in model classes)
  runner      ``evaluate_set``: one (dataset, resolution) scored
  outputs     TensorBoard, reliability-diagram PNGs, the summary line

Models come from ``reproduce.train.model_loading``; the eval section of results.json is
written by ``reproduce.train.rundir.RunDirectory.add_eval``.

Nothing is imported here, so ``specs`` stays usable before TensorFlow starts.
"""
