"""The training engine as parts, strung together by ``loop.train``:

  rundir       RunDirectory: the one reader of config.json / plan.json and writer of
               results.json; the model_dir layout, EngineError
  lock         model_dir/lock: one process trains a run directory; stale locks recovered
  losses       per-example losses, the uniform-guess reference, TrainingDiverged
  optim        AGC + coupled weight decay + EMA optimizer wrapper
  lr_schedule  the plan's warm-up + cosine schedule
  strategy     tf.distribute strategy and precision policy
  builders     the model and optimizer of a config and plan
  steps        train chunk / eval step for a strategy, Evaluator
  inputs       per-host data pipelines handed to the strategy
  clock        seconds by kind (training, startup, tracing, evaluation, checkpointing)
  checkpoints  tf.train.CheckpointManager of model, optimizer, RNG states and clock
  summaries    TensorBoard scalars and hparams, progress lines
  run_record   the pre-training record of results.json (schema in reproduce.core.results)
  loop         ``train(config, plan, model_dir, ...)``: build, restore, train, finish
  model_loading  a model from a run directory or converted weights (EMA, any resolution)
  throughput   ``measure(...)``: the loop's own train step timed on random data
  budgeting    plans from a measured (cached) throughput; the training/planned core-hour check

``pretrain`` and a fine-tuning script compose these parts; nothing here imports ``analysis``.
"""
