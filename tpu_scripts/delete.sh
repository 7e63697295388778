#!/usr/bin/env bash
# Deletes a Cloud TPU VM, or a queued resource together with its VM.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME [--queued [--queued_id=ID]] [--project=ID] [--zone=ZONE] [--dry_run]

Deletes TPU VM NAME without asking (gcloud ... tpu-vm delete --quiet), or with --queued the
queued resource ID and its VM (queued-resources delete --force --quiet). Data on gs:// stays.

  --name=NAME       the TPU VM (node) name
  --queued          delete the queued resource that created NAME
  --queued_id=ID    the queued resource's id (default: NAME)

$COMMON_HELP
HELP
}

NAME=""
QUEUED=0
QUEUED_ID=""
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --queued_id | --queued_id=*) take_value QUEUED_ID "$@" ;;
    --queued) QUEUED=1 SHIFT=1 ;;
    *) common_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

require_vm_target "$NAME"
QUEUED_ID=${QUEUED_ID:-$NAME}
require_tpu_name queued_id "$QUEUED_ID"

if ((QUEUED)); then
  run gcloud compute tpus queued-resources delete "$QUEUED_ID" --project="$PROJECT" \
    --zone="$ZONE" --force --quiet || fail "could not delete queued resource $QUEUED_ID"
else
  run "${TPU_VM[@]}" delete "$NAME" --project="$PROJECT" --zone="$ZONE" --quiet ||
    fail "could not delete TPU VM $NAME"
fi
