#!/usr/bin/env bash
# Starts `python -m reproduce.MODULE ARGS...` in the background (nohup, one log per run) as the
# one TensorFlow client of a TPU VM or slice: on worker 0, TPU_NAME=local on one host, the TPU's
# name (and TPU_LOAD_LIBRARY=0) on a multi-host slice.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME [--accelerator_type=TYPE] [--run=RUN] [--project=ID]
                 [--zone=ZONE] [--dry_run] [--] MODULE ARGS...

Runs python -m reproduce.MODULE ARGS... (MODULE: pretrain, finetune, ...) with nohup as the one
TensorFlow client of TPU VM NAME, on worker 0, from the kit's install root (so config paths such
as reproduce/configs/pretrain_jft.py work). TensorFlow's TPUStrategy is single-client: on one
host the client uses the attached TPU (TPU_NAME=local); on a multi-host slice (TYPE above -8,
e.g. v4-32) it names the slice (TPU_NAME=NAME, TPU_LOAD_LIBRARY=0) and drives every host.
Logs to ~/reproduce_logs/RUN.log on worker 0 (RUN.exit holds the exit status once it ends).
Refuses when the VM's last run is still alive. ARGS pass through unchanged, except that --tpu
is not allowed (TPU_NAME sets it: --strategy=tpu or auto picks it up); a --model_dir must be on
gs:// (the slice's hosts read and write there). Relaunching the same command resumes the run
from its checkpoints. Tail the log with logs.sh.

  --name=NAME               the TPU VM
  --accelerator_type=TYPE   its type, e.g. v4-8 or v4-32 (default: gcloud describe; required
                            with --dry_run; or TPU_ACCELERATOR_TYPE)
  --run=RUN                 log name (default: the basename of --model_dir, else MODULE)

Example:
  $SCRIPT_NAME --name=tpu1 -- pretrain --config=reproduce/configs/pretrain_jft.py \\
      --model_dir=gs://BUCKET/runs/f0 --config.epochs=1 --strategy=tpu

$COMMON_HELP
HELP
}

NAME=""
RUN_NAME=""
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --run | --run=*) take_value RUN_NAME "$@" ;;
    --)
      shift
      break
      ;;
    -*) common_flag "$@" || type_flag "$@" || unknown_flag "$1" ;;
    *) break ;;
  esac
  shift "$SHIFT"
done
(($#)) || die "no MODULE: give e.g. pretrain, finetune or evaluate, then its flags"
MODULE=$1
shift

require_vm_target "$NAME"
matches module "$MODULE" '^[a-z][a-z0-9_]*$' "a reproduce module such as pretrain, finetune, evaluate"
model_dir=""
previous=""
for arg in "$@"; do
  case "$arg" in
    --model_dir=*) model_dir=${arg#--model_dir=} ;;
    --tpu | --tpu=*) die "$arg: launch.sh sets the TPU itself (TPU_NAME: local on one host, the slice's name on a multi-host slice)" ;;
    *) [[ $previous == --model_dir ]] && model_dir=$arg ;;
  esac
  previous=$arg
done
if [[ -n $model_dir && $model_dir != gs://* ]]; then
  die "--model_dir=$model_dir must be on gs:// (the TPU hosts read and write there)"
fi
if [[ -z $RUN_NAME ]]; then
  RUN_NAME=$MODULE
  [[ -n $model_dir ]] && RUN_NAME=$(basename "$model_dir")
  RUN_NAME=${RUN_NAME//[^A-Za-z0-9._-]/_}
fi
require_run_name "$RUN_NAME"

vm_accelerator_type "$NAME"
tpu_client "$NAME" "$VM_TYPE"
tpu_ssh "$NAME" 0 "$(remote_launch "$RUN_NAME" "$MODULE" "$@")" ||
  fail "could not start $RUN_NAME on $NAME"
((DRY_RUN)) || note "follow it with: $SCRIPTS_DIR/logs.sh --name=$NAME --run=$RUN_NAME --follow"
