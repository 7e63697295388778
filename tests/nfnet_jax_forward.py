"""Runs a mini NFNet forward pass on the JAX backend (``KERAS_BACKEND=jax``).

Usage: ``KERAS_BACKEND=jax python tests/nfnet_jax_forward.py IN.npz OUT.npz``. IN holds
``model`` (name), ``num_classes``, ``images`` and the TF model's weights ``w0, w1, ...``
(``model.get_weights()`` order); OUT receives the JAX logits. Run in a fresh process
because the backend is fixed at the first ``import keras``. ``skip_random_init`` and
``jit_logits`` also serve the hybrids' JAX test (tests/test_hybrid.py).
"""

import sys

import keras
import numpy as np

import model_defs


def skip_random_init() -> None:
  """Initialises variables with zeros: they are overwritten by ``set_weights`` anyway, and
  JAX would otherwise compile one XLA program per random initializer shape (~30 s)."""
  def zeros(self, shape, dtype=None):  # pylint: disable=unused-argument
    return keras.ops.zeros(shape, dtype=dtype)
  for initializer in (keras.initializers.VarianceScaling, keras.initializers.RandomNormal,
                      keras.initializers.RandomUniform):
    initializer.__call__ = zeros


def jit_logits(model, images) -> np.ndarray:
  """Inference logits as one jitted program: eager JAX would compile every op separately
  (slow on 2 cores)."""
  import jax  # pylint: disable=import-outside-toplevel

  forward = jax.jit(lambda variables, images: model.stateless_call(
      variables, [v.value for v in model.non_trainable_variables], images, training=False)[0])
  return np.asarray(forward([v.value for v in model.trainable_variables], images))


def main(in_path: str, out_path: str) -> None:
  if keras.backend.backend() != "jax":
    raise SystemExit(f"expected the jax backend, got {keras.backend.backend()}")
  skip_random_init()
  data = np.load(in_path)
  model = model_defs.build(str(data["model"]), int(data["num_classes"]))
  count = len(model.weights)
  model.set_weights([data[f"w{i}"] for i in range(count)])
  logits = jit_logits(model, data["images"])
  np.savez(out_path, logits=logits, backend=keras.backend.backend())


if __name__ == "__main__":
  main(sys.argv[1], sys.argv[2])
