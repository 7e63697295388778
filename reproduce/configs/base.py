"""Every config key the training engine reads, with its default: the one source of defaults.

The experiment configs (pretrain_mini, pretrain_mini_vit, pretrain_jft, pretrain_imagenet,
pretrain_i21k) start from ``get_config()`` here and set what their recipe changes; the engine
fills any key that a plain-dict config leaves out from here
(``reproduce.train.rundir.config_to_dict``). docs/pretrain.md, "Recipes", says why.
"""

from ml_collections import config_dict


def get_config() -> config_dict.ConfigDict:
  config = config_dict.ConfigDict()
  # What to train.
  config.model = "nfnet_mini_f0"                       # a model_defs name
  config.model_overrides = config_dict.ConfigDict()    # builder overrides, e.g. drop_rate
  config.dataset = "digits"                            # a reproduce.data dataset name
  config.heldout_size = config_dict.placeholder(int)   # None: the data module's default
  config.heldout_split = config_dict.placeholder(str)  # None: carve from train; or a TFDS split
  config.dataset_size = config_dict.placeholder(int)   # None: the source's train size
  config.resolution = config_dict.placeholder(int)     # None: the model's train resolution
  config.eval_resolution = config_dict.placeholder(int)  # None: the training resolution
  config.eval_crop = config_dict.placeholder(str)      # None: the source's ('nfnet'); or 'vit'
  config.input_range = config_dict.placeholder(str)    # the model's input range: None is
                                                       # 'imagenet' (mean/std); 'minus_one_one'
                                                       # (big_vision/AugReg ViTs); fine-tunes
                                                       # take their --init's
  config.strict_data = False                           # True: unusable ImageFolder files stop
                                                       # the run (else skipped, one warning)
  # How long: core hours of `hardware`, or epochs (the budget wins when both are set).
  # A laptop's run (cpu, batch 16); `python -m reproduce.plan` defaults to the paper's
  # (planning.PAPER_HARDWARE, published.PAPER_BATCH_SIZE).
  config.hardware = "cpu"                              # a planning hardware name
  config.budget_core_hours = config_dict.placeholder(float)
  config.epochs = config_dict.placeholder(float)
  config.mfu = config_dict.placeholder(float)          # None: the planner's calibrated MFU
  config.images_per_second_per_core = config_dict.placeholder(float)  # measured speed
  # Optimiser: 'sgd_agc', the NFNet recipe (SGD Nesterov + AGC + coupled weight decay), or
  # 'adamw' (the ViT recipe: Adam + decoupled weight decay, no AGC); both warm-up + cosine.
  config.optimizer = "sgd_agc"
  config.batch_size = 16                               # global batch
  config.base_lr = config_dict.placeholder(float)      # None: the planner's LR rule
  config.warmup_steps = config_dict.placeholder(int)   # None: the planner's warm-up
  config.momentum = 0.9                                # sgd_agc
  config.nesterov = True
  config.agc_clipping = 0.01                           # AGC lambda; 0 disables clipping
  config.agc_eps = 1e-3
  config.agc_exclude = ()                              # regexes; the classifier is always excluded
  config.weight_decay = 1e-6                           # sgd_agc: coupled, after clipping;
                                                       # adamw: decoupled, x the LR (Keras)
  config.adam_b1 = 0.9                                 # adamw
  config.adam_b2 = 0.999                               # adamw
  config.adam_eps = 1e-8                               # adamw
  config.grad_clip_norm = config_dict.placeholder(float)  # adamw: global-norm clip; None: off
  config.label_smoothing = 0.1
  config.loss = "softmax"                              # 'softmax' or 'sigmoid'
  config.ema_decay = config_dict.placeholder(float)    # None: no EMA
  config.augment = config_dict.ConfigDict()            # data.AUGMENT_DEFAULTS overrides
  config.seed = 0                                      # init, data order, augmentation
  # The data order and augmentation alone (None: ``seed``): replicates that share a traced
  # program, and so its initial weights (the miniature study's seeds).
  config.data_seed = config_dict.placeholder(int)
  # Execution.
  config.steps_per_execution = 1                       # steps per host round trip
  config.log_every_steps = 10                          # 0: no progress lines
  config.eval_every_steps = 0                          # 0: evaluate at the end only
  config.eval_batch_size = config_dict.placeholder(int)  # None: batch_size
  config.checkpoint_every_steps = 1000                 # 0: only by time and at the end
  config.checkpoint_every_secs = 600.0                 # 0: only by step and at the end
  config.keep_checkpoints = 3
  config.divergence_factor = 10.0                      # stop above this x the uniform-guess loss
  config.dtype_policy = config_dict.placeholder(str)   # None: strategy.policy_for
  config.jit_compile = False                           # XLA on one-device CPU/GPU
  config.deterministic = False                         # enable_op_determinism (exact resume)
  config.throughput_cache = config_dict.placeholder(str)  # None: see train/budgeting.cache_path
  return config
