"""Fine-tuning on ``loop.train``: its model_fn (the source's body, a fresh head), SAM as its
step_fn, repeated augmentation as its data module; then the fine-tune's results fields."""

from __future__ import annotations

from typing import Sequence

import model_defs
from reproduce import data
from reproduce.data import repeated
from reproduce.finetuning import init as init_lib
from reproduce.finetuning import recipe
from reproduce.train import budgeting
from reproduce.train import inputs
from reproduce.train import loop
from reproduce.train import rundir
from reproduce.train import sam
from reproduce.train import strategy as strategy_lib


def check_config(config: dict) -> None:
  """Fine-tune keys that need no TensorFlow; raises ``FinetuneError``."""
  try:
    sam.canonical(config["sam"])
  except ValueError:
    raise init_lib.FinetuneError(f"config.sam={config['sam']!r}: use one of {sam.FORMS}") from None
  if sam.canonical(config["sam"]) != "none" and float(config["sam_rho"]) <= 0:
    raise init_lib.FinetuneError(f"config.sam_rho={config['sam_rho']} must be > 0")
  if not 0 < float(config["sam_ascent_fraction"]) <= 1:
    raise init_lib.FinetuneError(
        f"config.sam_ascent_fraction={config['sam_ascent_fraction']} must be in (0, 1]")
  multiplicity = int(config["augment_multiplicity"] or 1)
  if multiplicity < 1 or int(config["batch_size"]) % multiplicity:
    raise init_lib.FinetuneError(
        f"config.augment_multiplicity={multiplicity} must be >= 1 and divide "
        f"config.batch_size={config['batch_size']}")
  if config["head_init"] not in init_lib.HEAD_INITS:
    raise init_lib.FinetuneError(
        f"config.head_init={config['head_init']!r}: use one of {init_lib.HEAD_INITS}")


def finetune(config, plan, model_dir: str, init, strategy=None, *, source=None,
             data_module=None, hooks: Sequence = (), verbose: bool = True,
             allow_config_change: bool = False, data_dir: str | None = None,
             manual_dir: str | None = None, log=None) -> dict:
  """Fine-tunes ``plan.model`` from ``init`` (a path or an ``Initialisation``) for
  ``plan.steps`` steps in ``model_dir``; resumes from ``model_dir``'s own checkpoint.

  Returns the results record (``loop.train``'s plus ``recipe.accounting``'s fields), also
  written to ``model_dir/results.json``.
  """
  config = recipe.with_defaults(rundir.config_to_dict(config))
  check_config(config)
  if not isinstance(init, init_lib.Initialisation):
    init = init_lib.load_init(init or config["init"], int(plan.resolution))
  if init.model != plan.model:
    raise init_lib.FinetuneError(f"--init={init.path} holds {init.model}, not {plan.model}")
  config["init"] = init.path
  config["input_range"] = init_lib.input_range(init, config.get("input_range"))
  multiplicity = int(config["augment_multiplicity"] or 1)
  plan = recipe.charged_plan(plan, config)
  record = loop.train(
      config, plan, model_dir, strategy, allow_config_change=allow_config_change,
      data_dir=data_dir, manual_dir=manual_dir, source=source,
      data_module=repeated.data_module(data_module or data, multiplicity),
      initialise=init_lib.initialiser(init, config["head_init"]),
      step_fn=sam.from_config(config), hooks=hooks, verbose=verbose, log=log)
  fields = recipe.accounting(config, plan, record, init.info(), init.pretrain)
  return rundir.RunDirectory(model_dir).add_finetune(fields)


def run(config, model_dir: str, init: str, strategy_kind: str = "auto", tpu: str | None = None,
        data_dir: str | None = None, manual_dir: str | None = None,
        allow_config_change: bool = False) -> dict:
  """Everything ``python -m reproduce.finetune`` does: the model from ``init``, the plan of
  the config (its epochs, or its budget with both SAM passes counted; on CPU/GPU from a
  measured step, as ``reproduce.pretrain`` plans), then ``finetune``."""
  model = init_lib.source_model(init)
  if config.model and config.model != model:
    raise init_lib.FinetuneError(f"config.model={config.model} but --init={init} holds {model}")
  config.model = model
  config.init = init
  check_config(recipe.with_defaults(rundir.config_to_dict(config)))
  model_defs.get_spec(model)
  strategy = strategy_lib.make_strategy(strategy_kind, tpu=tpu)
  source = inputs.open_source(data, config, data_dir, manual_dir)
  # Planned exactly as pre-training plans: from the engine's measured step where no MFU is
  # calibrated (CPU, GPUs), else the calibrated MFU (train/budgeting.py).
  plan = budgeting.plan_with_measured_throughput(
      recipe.planning_config(config), source, strategy,
      passes=recipe.cost_factor(recipe.with_defaults(rundir.config_to_dict(config))))
  print(budgeting.plan_line(recipe.charged_plan(plan, config)), flush=True)
  return finetune(config, plan, model_dir, init, strategy, source=source,
                  allow_config_change=allow_config_change, data_dir=data_dir,
                  manual_dir=manual_dir)
