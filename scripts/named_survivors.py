"""Puts back, one at a time, each bug issue #23 names as surviving the tests, and runs the test
that must now catch it. Every line should read CAUGHT. Not run in CI (it edits source files
in place and restores them; about 2 minutes): do not run it while scripts/mutation_score.py
is copying the tree.

  python scripts/named_survivors.py
"""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# (what, file, text now, text with the bug, the tests that must fail)
BUGS = [
    ("--tpu=local passed to TensorFlow as ''", "reproduce/train/strategy.py",
     "TPUClusterResolver(tpu=name)", "TPUClusterResolver(tpu='' if name == 'local' else name)",
     ["tests/test_strategy.py::test_the_real_resolver_with_our_arguments"]),
    ("size/epochs exponent ratio inverted", "reproduce/analysis/pipeline.py",
     "out[6] = out[3] / out[5]", "out[6] = out[5] / out[3]",
     ["tests/test_mutation_gaps.py::test_exponent_ratio_is_size_over_epochs"]),
    ("ratio tolerance widened from 0.5 to 0.95", "reproduce/core/published.py",
     '"scale model size and epochs at the same rate", "P Section 2", 0.5)',
     '"scale model size and epochs at the same rate", "P Section 2", 0.95)',
     ["tests/test_mutation_gaps.py::test_ratio_claim_is_one_within_half"]),
    ("DeepMind unpickler allows every numpy.* global", "model_defs/converters/deepmind.py",
     "  def find_class(self, module: str, name: str):\n",
     "  def find_class(self, module: str, name: str):\n"
     "    if module.split('.')[0] == 'numpy' and (module, name) not in _ARRAY_GLOBALS:\n"
     "      return super().find_class(module, name)\n",
     ["tests/test_mutation_gaps.py::test_unpickler_refuses_every_other_global"]),
    ("SAM forms swapped in from_config", "reproduce/train/sam.py",
     'return sam_step_fn(float(config["sam_rho"]), form,',
     'return sam_step_fn(float(config["sam_rho"]), {"global": "per_replica", '
     '"per_replica": "global"}.get(form, form),',
     ["tests/test_sam.py::test_sam_update_uses_the_gradient_at_the_perturbed_point"]),
    ("RandAugment never draws its last op", "reproduce/data/randaugment.py",
     "op_seed, 0, len(OP_NAMES), dtype=tf.int32)", "op_seed, 0, len(OP_NAMES) - 1, dtype=tf.int32)",
     ["tests/test_randaugment.py::test_each_layer_applies_one_uniformly_chosen_op"]),
]


def main() -> int:
  env = dict(os.environ, PYTHONPATH=REPO, TF_CPP_MIN_LOG_LEVEL="3")
  missed = 0
  for what, rel, now, bug, tests in BUGS:
    path = os.path.join(REPO, rel)
    with open(path) as f:
      original = f.read()
    if original.count(now) != 1:
      print(f"STALE   {what}: {rel} no longer holds {now!r} once")
      missed += 1
      continue
    try:
      with open(path, "w") as f:
        f.write(original.replace(now, bug))
      proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-o", "addopts=",
                             "-p", "no:cacheprovider", *tests], cwd=REPO, env=env,
                            capture_output=True, text=True)
    finally:
      with open(path, "w") as f:
        f.write(original)
    caught = proc.returncode == 1  # tests ran and failed (2+: could not run)
    missed += not caught
    print(f"{'CAUGHT' if caught else 'MISSED'}  {what}: {' '.join(tests)} (pytest exit "
          f"{proc.returncode})", flush=True)
  return 1 if missed else 0


if __name__ == "__main__":
  sys.exit(main())
