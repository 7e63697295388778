"""Every main turns bad input into one line on stderr and exit code 2, on every CPU.

TF_CPP_MIN_LOG_LEVEL=0 makes TensorFlow print its start-up notices on any CPU (AVX-512/AMX
machines print them even at level 3), so these cases see what such machines show.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MINI_CONFIG = "--config=reproduce/configs/pretrain_mini.py"
FINETUNE_CONFIG = "--config=reproduce/configs/finetune_mini.py"

CASES = [
    ("plan", ["--nope"], "nope"),
    ("plan", ["--model=nfnet_f0", "--budget_core_hours=-1"], "--budget_core_hours"),
    ("plan", ["--model=nfnet_nope", "--epochs=1"], "nfnet_nope"),
    ("pretrain", [], "--config"),
    ("pretrain", [MINI_CONFIG, "--model_dir={tmp}/run", "--config.model=nfnet_nope"],
     "nfnet_nope"),
    ("pretrain", [MINI_CONFIG, "--model_dir={tmp}/run", "--strategy=gpu"], "strategy"),
    ("fit_scaling", ["--runs={tmp}/none/*", "--logdir={tmp}/fits"], "{tmp}/none/*"),
    ("fit_scaling", ["--logdir={tmp}/fits"], "--runs"),
    ("compare", ["--runs={tmp}/none/*"], "{tmp}/none/*"),
    ("compare", ["--compute=wall"], "compute"),
    ("study", ["--workers=-1"], "--workers"),
    ("study", ["--finetune_steps=-1"], "--finetune_steps"),
    ("study", ["--budgets_core_seconds=a"], "--budgets_core_seconds"),
    ("study", ["--scale=0"], "--scale"),
    ("study", ["--lr_points=0"], "--lr_points"),
    ("study", ["--band=2"], "--band must be an integer >= 3"),
    ("study", ["--edge_rounds=-1"], "--edge_rounds must be an integer >= 0"),
    ("study", ["--workdir={tmp}/study", "--nfnet_models=nfnet_nope"], "nfnet_nope"),
    ("study", ["--workdir={tmp}/study", "--hybrid_models=vit_mini_mu"], "--hybrid_models"),
    ("study", ["--hybrids", "--hybrid_lr=0"], "--hybrid_lr"),
    ("study", ["--hybrid_lr=0.01"], "--hybrid_lr needs the third arm"),
    ("study", ["--nohybrids", "--hybrid_models=hybrid_mini_mu"], "drop --nohybrids"),
    ("evaluate", [], "--weights"),
    ("evaluate", ["--weights={tmp}/none", "--datasets=imagenet"], "imagenet"),
    ("evaluate", ["--weights={tmp}/none", "--resolution=2x"], "--resolution"),
    ("evaluate", ["--weights={tmp}/none", "--crop=centre"], "crop"),
    # pre-training's specs, read through reproduce.data, checked before the weights:
    ("evaluate", ["--weights={tmp}/none", "--datasets=digits@validation"],
     "digits@validation: TFDS dataset 'sklearn_digits' has no split 'validation'"),
    ("evaluate", ["--weights={tmp}/none", "--datasets=tfrecord:{tmp}/none/*"],
     "tfrecord glob '{tmp}/none/*' matches no files"),
    ("evaluate", ["--weights={tmp}/none", "--data_dir={tmp}"],
     "imagenet2012 is not prepared in {tmp}"),
    # --manual_dir reaches the preparation the line above asks for:
    ("evaluate", ["--weights={tmp}/none", "--data_dir={tmp}", "--manual_dir={tmp}"],
     "imagenet2012: --manual_dir={tmp} lacks"),
    ("evaluate", ["--weights={tmp}/none", "--datasets=digits"], "{tmp}/none"),
    ("convert", [], "--source"),
    ("convert", ["--source=haiku"], "haiku"),
    ("convert", ["--source=deepmind", "--input={tmp}/F0_haiku.npz", "--model=nfnet_f0",
                 "--output={tmp}/out"], "{tmp}/F0_haiku.npz"),
    ("convert", ["--source=deepmind", "--input=README.md", "--model=nfnet_f0",
                 "--output={tmp}/out", "--override=timm_compat"], "--override=timm_compat"),
    ("convert", ["--source=deepmind", "--input=README.md", "--model=nfnet_nope",
                 "--output={tmp}/out"], "nfnet_nope"),
    ("convert", ["--source=big_vision", "--input=README.md", "--model=nfnet_f0",
                 "--output={tmp}/out"], "big_vision"),
    ("convert", ["--source=deepmind", "--input=README.md", "--model=nfnet_f0",
                 "--output={tmp}/out"], "README.md is not a safe Haiku parameter pickle"),
    ("finetune", [], "--config"),
    ("finetune", [FINETUNE_CONFIG, "--init={tmp}/pt"], "--model_dir"),
    ("finetune", [FINETUNE_CONFIG, "--model_dir={tmp}/ft"], "--init"),
    ("finetune", [FINETUNE_CONFIG, "--model_dir={tmp}/ft", "--init={tmp}/none"], "{tmp}/none"),
    ("finetune", [FINETUNE_CONFIG, "--model_dir={tmp}/ft", "--init={tmp}/pt",
                  "--config.epochs=None"], "--config.epochs"),
    ("finetune", [FINETUNE_CONFIG, "--model_dir={tmp}/ft", "--init={tmp}/pt",
                  "--strategy=gpu"], "strategy"),
] + [  # words after the flags, refused by every main before any work
    (main, ["stray_word"], "unexpected arguments: stray_word")
    for main in ("plan", "pretrain", "finetune", "evaluate", "convert", "fit_scaling",
                 "compare", "study")]


@pytest.mark.parametrize("main, args, needle", CASES,
                         ids=[f"{m}:{' '.join(a) or 'no flags'}" for m, a, _ in CASES])
def test_bad_input_is_one_line_and_exit_2(tmp_path, main, args, needle):
  args = [a.format(tmp=tmp_path) for a in args]
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="0")
  proc = subprocess.run([sys.executable, "-m", f"reproduce.{main}", *args], cwd=ROOT, env=env,
                        capture_output=True, text=True, timeout=300)
  lines = proc.stderr.splitlines()
  assert proc.returncode == 2, proc.stderr[-2000:]
  assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-2000:]
  assert needle.format(tmp=tmp_path) in lines[0]
