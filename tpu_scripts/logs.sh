#!/usr/bin/env bash
# Shows (or follows) the log of a run started by launch.sh or sweep.sh on a TPU VM.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME [--run=RUN] [--worker=N|all] [--lines=N] [--follow]
               [--project=ID] [--zone=ZONE] [--dry_run]

Prints the last lines of ~/reproduce_logs/RUN.log on a worker of TPU VM NAME (tail -F with
--follow; Ctrl-C stops following, not the run). Without --run, lists the logs there.

  --name=NAME     the TPU VM
  --run=RUN       the run's log name (launch.sh --run, or the sweep's run name)
  --worker=W      worker number (default 0) or all
  --lines=N       lines to show (default 50)
  --follow        keep following the log

$COMMON_HELP
HELP
}

NAME=""
RUN_NAME=""
WORKER=0
LINES=50
FOLLOW=0
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --run | --run=*) take_value RUN_NAME "$@" ;;
    --worker | --worker=*) take_value WORKER "$@" ;;
    --lines | --lines=*) take_value LINES "$@" ;;
    --follow) FOLLOW=1 SHIFT=1 ;;
    *) common_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

require_vm_target "$NAME"
matches worker "$WORKER" '^(all|[0-9]+)$' "all or a worker number"
matches lines "$LINES" '^[0-9]+$' "a number of lines"
if [[ -n $RUN_NAME ]]; then
  require_run_name "$RUN_NAME"
  follow=""
  ((FOLLOW)) && follow=" -F"
  command="tail -n $LINES$follow \"$REMOTE_LOG_DIR/$RUN_NAME.log\""
else
  command="ls -lt \"$REMOTE_LOG_DIR\""
fi
tpu_ssh "$NAME" "$WORKER" "$command" || fail "could not read the logs on $NAME"
