"""timm's hybrid ViTs on random weights, for tests/test_hybrid_equivalence.py.

``python tests/hybrid_timm_reference.py OUT_DIR`` runs in its own process (importing
timm/torchvision after TensorFlow crashes the CI machine) and writes OUT_DIR/<timm name>.npz
for each of timm's three hybrid ViTs: the parameter names and shapes in order ('names',
'shapes'), one input image (NHWC, 'images'), timm's logits and parameter count ('logits',
'params'). The weights themselves are not written (400 MB a model): ``read_all`` draws them
again, identically, from the names, shapes and the model's seed (``SEEDS``).

Every parameter is drawn afresh (norm scales 1 + 0.1 N(0, 1), everything else 0.02 N(0, 1)),
so none is trivial (zero biases, zero-initialised last norms, unit scales). The models are
made on the meta device: timm's own initialisers would take most of a minute on two cores.
The 384 px model has the 224 px one's weights and its own position table (SEEDS[...] + 1).
"""

import os
import sys

import numpy as np

R26, R50, R50_384 = "vit_small_r26_s32_224", "vit_base_r50_s16_224", "vit_base_r50_s16_384"
SEEDS = {R26: 0, R50: 1, R50_384: 1}


def random_state_dict(names, shapes, seed: int) -> dict:
  """{name: float32 array} drawn in ``names`` order from ``seed`` (NumPy only)."""
  rng = np.random.default_rng(seed)
  arrays = {}
  for name, shape in zip(names, shapes):
    noise = rng.standard_normal(tuple(int(s) for s in shape if s > 0), dtype=np.float32)
    is_scale = "norm" in name and name.endswith("weight")
    arrays[name] = 1.0 + 0.1 * noise if is_scale else 0.02 * noise
  return arrays


def read_all(out_dir: str) -> dict:
  """{timm name: (state dict, NHWC images, logits, timm's parameter count)}."""
  result, drawn = {}, {}
  for arch in (R26, R50, R50_384):
    with np.load(os.path.join(out_dir, f"{arch}.npz")) as f:
      names, shapes = [str(n) for n in f["names"]], f["shapes"]
      if SEEDS[arch] not in drawn:
        drawn[SEEDS[arch]] = random_state_dict(names, shapes, SEEDS[arch])
      sd = dict(drawn[SEEDS[arch]])
      if arch == R50_384:  # its own position table
        sd.update(random_state_dict(["pos_embed"], [shapes[names.index("pos_embed")]],
                                    SEEDS[arch] + 1))
      result[arch] = (sd, f["images"], f["logits"], int(f["params"]))
  return result


def main(out_dir: str) -> None:
  import timm  # pylint: disable=import-outside-toplevel
  import torch  # pylint: disable=import-outside-toplevel

  torch.set_num_threads(2)
  images_rng = np.random.default_rng(100)
  drawn = {}
  for arch in (R26, R50, R50_384):
    with torch.device("meta"):
      model = timm.create_model(arch, pretrained=False, num_classes=1000)
    model = model.to_empty(device="cpu").eval()
    names, shapes = zip(*[(n, tuple(p.shape)) for n, p in model.named_parameters()])
    if SEEDS[arch] not in drawn:
      drawn[SEEDS[arch]] = random_state_dict(names, shapes, SEEDS[arch])
    sd = dict(drawn[SEEDS[arch]])
    if arch == R50_384:
      sd.update(random_state_dict(["pos_embed"], [model.pos_embed.shape], SEEDS[arch] + 1))
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True)
    size = model.patch_embed.img_size[0]
    images = images_rng.standard_normal((1, size, size, 3), dtype=np.float32)
    with torch.no_grad():
      logits = model(torch.from_numpy(images).permute(0, 3, 1, 2))
    rank = max(len(s) for s in shapes)
    np.savez(os.path.join(out_dir, f"{arch}.npz"), names=np.array(names),
             shapes=np.array([s + (-1,) * (rank - len(s)) for s in shapes]), images=images,
             logits=logits.numpy(), params=sum(int(np.prod(s)) for s in shapes))


if __name__ == "__main__":
  main(sys.argv[1])
