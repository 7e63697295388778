#!/usr/bin/env bash
# Starts `python -m reproduce.MODULE ARGS...` in the background (nohup, one log per run) on the
# workers of a TPU VM slice.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME [--run=RUN] [--worker=all|N] [--project=ID] [--zone=ZONE]
                 [--dry_run] [--] MODULE ARGS...

Runs python -m reproduce.MODULE ARGS... (MODULE: pretrain, finetune, evaluate, ...) with nohup
on the workers of TPU VM NAME, from the kit's install root (so config paths such as
reproduce/configs/pretrain_jft.py work), logging to ~/reproduce_logs/RUN.log on each worker
(RUN.exit holds the exit status once it ends). Refuses when the VM's last run is still alive.
ARGS pass through unchanged; a --model_dir must be on gs:// (every worker writes there).
Relaunching the same command resumes the run from its checkpoints. Tail the log with logs.sh.

  --name=NAME     the TPU VM
  --run=RUN       log name (default: the basename of --model_dir, else MODULE)
  --worker=W      all (default) or one worker number

Example:
  $SCRIPT_NAME --name=tpu1 -- pretrain --config=reproduce/configs/pretrain_jft.py \\
      --model_dir=gs://BUCKET/runs/f0 --config.epochs=1 --strategy=tpu --tpu=local

$COMMON_HELP
HELP
}

NAME=""
RUN_NAME=""
WORKER=all
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --run | --run=*) take_value RUN_NAME "$@" ;;
    --worker | --worker=*) take_value WORKER "$@" ;;
    --)
      shift
      break
      ;;
    -*) common_flag "$@" || unknown_flag "$1" ;;
    *) break ;;
  esac
  shift "$SHIFT"
done
(($#)) || die "no MODULE: give e.g. pretrain, finetune or evaluate, then its flags"
MODULE=$1
shift

require_vm_target "$NAME"
matches worker "$WORKER" '^(all|[0-9]+)$' "all or a worker number"
matches module "$MODULE" '^[a-z][a-z0-9_]*$' "a reproduce module such as pretrain, finetune, evaluate"
model_dir=""
previous=""
for arg in "$@"; do
  case "$arg" in
    --model_dir=*) model_dir=${arg#--model_dir=} ;;
    *) [[ $previous == --model_dir ]] && model_dir=$arg ;;
  esac
  previous=$arg
done
if [[ -n $model_dir && $model_dir != gs://* ]]; then
  die "--model_dir=$model_dir must be on gs:// (every worker of the slice writes there)"
fi
if [[ -z $RUN_NAME ]]; then
  RUN_NAME=$MODULE
  [[ -n $model_dir ]] && RUN_NAME=$(basename "$model_dir")
  RUN_NAME=${RUN_NAME//[^A-Za-z0-9._-]/_}
fi
require_run_name "$RUN_NAME"

tpu_ssh "$NAME" "$WORKER" "$(remote_launch "$RUN_NAME" "$MODULE" "$@")" ||
  fail "could not start $RUN_NAME on $NAME"
((DRY_RUN)) || note "follow it with: $SCRIPTS_DIR/logs.sh --name=$NAME --run=$RUN_NAME --follow"
