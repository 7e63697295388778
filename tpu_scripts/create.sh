#!/usr/bin/env bash
# Creates a Cloud TPU VM, or a queued resource that creates one when capacity frees up.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME --accelerator_type=TYPE [--version=RUNTIME] [--spot]
                 [--queued [--queued_id=ID]] [--project=ID] [--zone=ZONE] [--dry_run]

Creates TPU VM NAME (gcloud compute tpus tpu-vm create), or with --queued a queued resource ID
whose node is NAME (gcloud compute tpus queued-resources create); then run setup.sh.

  --name=NAME              the TPU VM (node) name
  --accelerator_type=TYPE  v2-8, v3-8, v4-8, v4-32, v5litepod-8, v5p-8, v6e-8, ...
                           (or TPU_ACCELERATOR_TYPE)
  --version=RUNTIME        TPU runtime image (default: TensorFlow's image from the table in
                           lib.sh, tpu-vm-tf-VERSION-pjrt on one host, tpu-vm-tf-VERSION-pod-pjrt
                           on a multi-host slice such as v4-32; pinned: ${!TF_RUNTIME[*]})
  --spot                   spot (pre-emptible) capacity
  --queued                 create a queued resource instead of the VM directly
  --queued_id=ID           the queued resource's id (default: NAME)

$COMMON_HELP
HELP
}

NAME=""
VERSION=""
SPOT=0
QUEUED=0
QUEUED_ID=""
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --accelerator_type | --accelerator_type=*) take_value ACCELERATOR_TYPE "$@" ;;
    --version | --version=*) take_value VERSION "$@" ;;
    --queued_id | --queued_id=*) take_value QUEUED_ID "$@" ;;
    --spot) SPOT=1 SHIFT=1 ;;
    --queued) QUEUED=1 SHIFT=1 ;;
    *) common_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

require_vm_target "$NAME"
require_accelerator_type "$ACCELERATOR_TYPE"
if [[ -z $VERSION ]]; then
  default_runtime "$ACCELERATOR_TYPE"
  VERSION=$RUNTIME
fi
matches version "$VERSION" '^[A-Za-z0-9._-]+$' "a runtime version such as tpu-vm-tf-2.18.0-pjrt"
QUEUED_ID=${QUEUED_ID:-$NAME}
require_tpu_name queued_id "$QUEUED_ID"

spot=()
((SPOT)) && spot=(--spot)
if ((QUEUED)); then
  run gcloud compute tpus queued-resources create "$QUEUED_ID" --project="$PROJECT" \
    --zone="$ZONE" --node-id="$NAME" --accelerator-type="$ACCELERATOR_TYPE" \
    --runtime-version="$VERSION" "${spot[@]}" || fail "could not create queued resource $QUEUED_ID"
  ((DRY_RUN)) || note "queued $QUEUED_ID; TPU VM $NAME exists once its state is ACTIVE:" \
    "gcloud compute tpus queued-resources describe $QUEUED_ID --project=$PROJECT --zone=$ZONE"
else
  run "${TPU_VM[@]}" create "$NAME" --project="$PROJECT" --zone="$ZONE" \
    --accelerator-type="$ACCELERATOR_TYPE" --version="$VERSION" "${spot[@]}" ||
    fail "could not create TPU VM $NAME"
fi
