"""Public stand-in for JFT: ImageNet-21k (about 13M images, 21,841 classes) via tfds.

Same recipe as pretrain_jft.py, so the miniature of the paper's setting keeps its choices:
224 px training, held-out loss at 256 px with the NFNet crop (as the paper evaluates JFT),
no dropout and no stochastic depth in pre-training. The dataset name is resolved by
reproduce.data (tfds builder; the images must be prepared under --data_dir / --manual_dir).
ImageNet-21k has single labels, so softmax is the natural loss.
"""

from reproduce.configs import pretrain_jft


def get_config():
  config = pretrain_jft.get_config()
  config.dataset = "imagenet21k"
  config.heldout_size = 130_000  # carved from train, like the paper's JFT held-out set
  config.epochs = 1.0
  return config
