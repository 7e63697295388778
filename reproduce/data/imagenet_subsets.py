"""The 200-class subsets of ImageNet-A and ImageNet-R, as ImageNet wnids.

Both datasets hold images of 200 of the 1000 ImageNet classes; their protocol scores a
1000-way classifier on its logits restricted to those 200 classes. tfds labels them with
the full 1000-class ``ClassLabel`` and ships no subset list, so the lists live beside this
module, in ``imagenet_subsets.json``.

Sources: ImageNet-A: ``thousand_k_to_200`` in ``eval.py`` of
github.com/hendrycks/natural-adv-examples; ImageNet-R: ``imagenet_r_wnids`` in ``eval.py`` of
github.com/hendrycks/imagenet-r (the same lists as timm's ``imagenet_a_synsets.txt`` and
``imagenet_r_synsets.txt``). tests/test_evaluation_metrics.py checks the class indices
against the index lists published with them.
"""

from __future__ import annotations

import json
import pathlib

from reproduce.data.datasource import DataError

# {"imagenet_a": [wnid, ...], "imagenet_r": [...]}: table data, kept out of the code.
SUBSETS = {name: tuple(wnids) for name, wnids in json.loads(
    pathlib.Path(__file__).with_name("imagenet_subsets.json").read_text()).items()}


def subset_indices(name: str, class_names: list[str]) -> list[int]:
  """Class indices of subset ``name`` (``imagenet_a`` / ``imagenet_r``), ascending, in a
  label space whose class ``i`` is the wnid ``class_names[i]`` (tfds' ImageNet ClassLabel)."""
  position = {wnid: i for i, wnid in enumerate(class_names)}
  missing = [wnid for wnid in SUBSETS[name] if wnid not in position]
  if missing:
    raise DataError(f"{name}: wnid {missing[0]} is not among the dataset's class names")
  return sorted(position[wnid] for wnid in SUBSETS[name])
