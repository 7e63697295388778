#!/usr/bin/env bash
# Serves TensorBoard for a gs:// log root on a TPU VM (bound to 127.0.0.1 there) and prints the
# ssh port-forward line that shows it in the local browser.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME (--logdir=gs://... | --bucket=B [--sweep_name=NAME])
                      [--port=6006] [--project=ID] [--zone=ZONE] [--dry_run]

Starts tensorboard --logdir LOGDIR --host 127.0.0.1 --port PORT with nohup on worker 0 of TPU VM
NAME (log: ~/reproduce_logs/tensorboard-PORT.log; the TensorBoard this script started before
on PORT is stopped first), then prints the command that forwards the port:
  gcloud compute tpus tpu-vm ssh NAME --zone ZONE -- -L PORT:127.0.0.1:PORT
and the address to open (http://127.0.0.1:PORT). Only the ssh tunnel reaches it.

  --name=NAME         the TPU VM to serve from
  --logdir=URL        the log root (default: gs://BUCKET/sweeps/SWEEP_NAME, the sweep's root)
  --bucket=NAME       bucket (or TPU_BUCKET), with --sweep_name (default: figure2)
  --port=PORT         port on the VM and here (default: 6006)

$COMMON_HELP
HELP
}

NAME=""
LOGDIR=""
SWEEP_NAME=figure2
PORT=6006
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --logdir | --logdir=*) take_value LOGDIR "$@" ;;
    --sweep_name | --sweep_name=*) take_value SWEEP_NAME "$@" ;;
    --port | --port=*) take_value PORT "$@" ;;
    *) common_flag "$@" || bucket_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

require_vm_target "$NAME"
matches port "$PORT" '^[1-9][0-9]{2,4}$' "a port number such as 6006"
if [[ -z $LOGDIR ]]; then
  require_bucket
  matches sweep_name "$SWEEP_NAME" '^[A-Za-z0-9][A-Za-z0-9._-]*$' "letters, digits, '.', '_', '-'"
  LOGDIR="$BUCKET_URL/sweeps/$SWEEP_NAME"
fi
[[ $LOGDIR == gs://?* ]] || die "--logdir=$LOGDIR must be a gs:// URL"

d=$REMOTE_LOG_DIR
serve=$(quote_command "$REMOTE_PYTHON" -m tensorboard.main --logdir="$LOGDIR" --host=127.0.0.1 --port="$PORT")
pid="$d/tensorboard-$PORT.pid"
start="mkdir -p \"$d\" || exit 1; kill \"\$(cat \"$pid\" 2>/dev/null)\" 2>/dev/null; "
start+="nohup $serve > \"$d/tensorboard-$PORT.log\" 2>&1 < /dev/null & echo \$! > \"$pid\""
start+="; echo \"TensorBoard serving $LOGDIR\""
tpu_ssh "$NAME" 0 "$start" || fail "could not start TensorBoard on $NAME"
forward=$(quote_command gcloud compute tpus tpu-vm ssh "$NAME" --project="$PROJECT" --zone="$ZONE" -- -L "$PORT:127.0.0.1:$PORT")
printf 'Forward the port (keep it open), then browse http://127.0.0.1:%s\n  %s\n' "$PORT" "$forward"
