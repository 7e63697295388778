#!/usr/bin/env bash
# A first run on a fresh TPU VM or slice: a few hundred steps of a mini model under
# --strategy=tpu, in the foreground, then one line with the replica count, step rate and the
# core hours the run charged.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME [--accelerator_type=TYPE] [--bucket=B] [--project=ID]
                [--zone=ZONE] [--dry_run]

Run after create.sh and setup.sh. As the one TensorFlow client on worker 0 (as launch.sh:
TPU_NAME=local on one host; TPU_NAME=NAME, TPU_LOAD_LIBRARY=0 on a multi-host slice), in the foreground:
  python -m reproduce.pretrain --config=reproduce/configs/pretrain_mini.py --strategy=tpu
      (the embedded digits data set, batch $SMOKE_BATCH, $SMOKE_EPOCHS epochs: about $SMOKE_STEPS steps)
      --model_dir=gs://B/smoke/NAME-UTCSTAMP
then prints from its results.json: replicas, steps per second (over the whole run, compile
included) and the core hours it charged (wall time x cores). A few minutes on any slice.

  --name=NAME               the TPU VM
  --accelerator_type=TYPE   its type (default: gcloud describe; required with --dry_run; or
                            TPU_ACCELERATOR_TYPE)
  --bucket=NAME             bucket for the run directory (or TPU_BUCKET)

$COMMON_HELP
HELP
}

# 1437 digits / batch 128 = 11 steps an epoch; 128 divides over up to 128 replicas.
SMOKE_BATCH=128
SMOKE_EPOCHS=30
SMOKE_STEPS=$((1437 * SMOKE_EPOCHS / SMOKE_BATCH))
NAME=""
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    *) common_flag "$@" || bucket_flag "$@" || type_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

require_vm_target "$NAME"
require_bucket
vm_accelerator_type "$NAME"
tpu_client "$NAME" "$VM_TYPE"

# Prints the summary line from MODEL_DIR/results.json (read with tf.io.gfile: gs:// works).
SMOKE_SUMMARY='import json, sys
import tensorflow as tf
with tf.io.gfile.GFile(sys.argv[1] + "/results.json") as f:
  r = json.load(f)
replicas, strategy, steps = r["num_replicas"], r["strategy"], r["steps"]
rate, charged = steps / max(r["wall_seconds"], 1e-9), r["measured_core_hours"]
print(f"smoke: {replicas} replicas ({strategy}), {steps} steps, {rate:.2f} steps/s, "
      f"{charged:.4g} core hours charged")'
model_dir="$BUCKET_URL/smoke/$NAME-$(date -u +%Y%m%d-%H%M%S)"
client=(env "${CLIENT_ENV[@]}" "$REMOTE_PYTHON")
train=$(quote_command "${client[@]}" -m reproduce.pretrain \
  --config=reproduce/configs/pretrain_mini.py --model_dir="$model_dir" --strategy=tpu \
  --config.budget_core_hours=None --config.epochs="$SMOKE_EPOCHS" \
  --config.batch_size="$SMOKE_BATCH")
summary=$(quote_command "${client[@]}" -c "$SMOKE_SUMMARY" "$model_dir")
((DRY_RUN)) || note "smoke run on $NAME ($VM_TYPE) into $model_dir"
tpu_ssh "$NAME" 0 "$(remote_cd_kit) && $train && $summary" ||
  fail "the smoke run on $NAME failed (see its output above)"
