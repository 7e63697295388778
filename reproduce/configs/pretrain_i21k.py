"""Public stand-in for JFT: ImageNet-21k (about 13M images, 21,841 classes) via tfds.

Same recipe as pretrain_jft.py; the dataset name is resolved by reproduce.data
(tfds builder; the images must be prepared under --data_dir / --manual_dir).
ImageNet-21k has multi-label-free single labels, so softmax is the natural loss.
"""

from reproduce.configs import pretrain_jft


def get_config():
  config = pretrain_jft.get_config()
  config.dataset = "imagenet21k"
  config.heldout_size = 130_000  # carved from train, like the paper's JFT held-out set
  config.epochs = 1.0
  return config
