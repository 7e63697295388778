#!/usr/bin/env bash
# Installs the kit on every worker of a TPU VM or slice (next to the TensorFlow of the runtime
# image), then checks, as the one TensorFlow client on worker 0, that TensorFlow reaches the TPU.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME (--repo=URL [--git_ref=REF] | --wheel=WHEEL [--bucket=B])
                [--accelerator_type=TYPE] [--check_only] [--project=ID] [--zone=ZONE] [--dry_run]

1. On every worker of TPU VM NAME (gcloud ... tpu-vm ssh --worker=all): installs the kit with
     pip install -e .
   from a git clone checked out at REF (in ~/nfnet-vit-scaling), or installs a wheel; no
   TensorFlow extra: the runtime image (create.sh's tpu-vm-tf-*-pjrt) brings TensorFlow and
   libtpu, and a second TensorFlow would replace them.
2. On worker 0 only, the way launch.sh runs: builds the kit's TPUStrategy (TPU_NAME=local on one
   host; TPU_NAME=NAME and TPU_LOAD_LIBRARY=0 on a multi-host slice) and prints its replica
   count; fails if TensorFlow cannot reach the TPU.

  --accelerator_type=TYPE   NAME's type (default: gcloud describe; required with --dry_run;
                            or TPU_ACCELERATOR_TYPE)

  --repo=URL      git URL of the kit (or TPU_KIT_REPO)
  --git_ref=REF   branch, tag or commit to check out (default: main)
  --wheel=WHEEL   gs://.../nfnet_vit_scaling-*.whl, or a local wheel (copied first to
                  gs://BUCKET/wheels/ with gsutil cp, so it needs --bucket or TPU_BUCKET)
  --bucket=NAME   bucket for a local wheel (or TPU_BUCKET)
  --check_only    skip the install, only check the TPU cores

$COMMON_HELP
HELP
}

NAME=""
REPO=${TPU_KIT_REPO:-}
GIT_REF=""
WHEEL=""
CHECK_ONLY=0
while (($#)); do
  case "$1" in
    --name | --name=*) take_value NAME "$@" ;;
    --repo | --repo=*) take_value REPO "$@" ;;
    --git_ref | --git_ref=*) take_value GIT_REF "$@" ;;
    --wheel | --wheel=*) take_value WHEEL "$@" ;;
    --check_only) CHECK_ONLY=1 SHIFT=1 ;;
    *) common_flag "$@" || bucket_flag "$@" || type_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

require_vm_target "$NAME"
if ((!CHECK_ONLY)); then
  if [[ -n $WHEEL ]]; then
    [[ -z $GIT_REF ]] || die "--wheel and --git_ref are exclusive"
    [[ $WHEEL == *.whl ]] || die "--wheel=$WHEEL is not a .whl file"
    if [[ $WHEEL != gs://* ]]; then
      [[ -f $WHEEL ]] || die "--wheel=$WHEEL: no such file"
      require_bucket
      require_gsutil
    fi
  else
    [[ -n $REPO ]] || die "nothing to install: pass --repo=URL (or TPU_KIT_REPO) or --wheel=WHEEL"
    GIT_REF=${GIT_REF:-main}
    matches git_ref "$GIT_REF" '^[A-Za-z0-9][A-Za-z0-9._/-]*$' "a branch, tag or commit"
  fi
fi

# The check, run as the client: the kit's own strategy code, one line either way; exit status 1
# when TensorFlow cannot reach the TPU.
# shellcheck disable=SC2016  # Python, not shell
CHECK_CODE='import os, socket, sys
from reproduce.train import strategy as strategy_lib
host, tpu = socket.gethostname(), os.environ.get("TPU_NAME")
try:
  replicas = strategy_lib.make_strategy("tpu").num_replicas_in_sync
except strategy_lib.StrategyError as e:
  sys.exit(f"error: {host}: {e}")
print(f"{host}: TPU {tpu}: {replicas} replicas")'

vm_accelerator_type "$NAME"
tpu_client "$NAME" "$VM_TYPE"
install_command=""
if ((!CHECK_ONLY)) && [[ -n $WHEEL ]]; then
  if [[ $WHEEL != gs://* ]]; then
    local_wheel=$WHEEL
    WHEEL="$BUCKET_URL/wheels/$(basename "$WHEEL")"
    run gsutil cp "$local_wheel" "$WHEEL" || fail "could not copy $local_wheel to $WHEEL"
  fi
  # shellcheck disable=SC2016  # expanded on the VM
  install_command=$(printf 'mkdir -p "$HOME/reproduce_wheels" && gsutil cp %s "$HOME/reproduce_wheels/" && %s -m pip install --quiet "$HOME/reproduce_wheels/"%s' \
    "$(quote_command "$WHEEL")" "$(quote_command "$REMOTE_PYTHON")" \
    "$(quote_command "$(basename "$WHEEL")")")
elif ((!CHECK_ONLY)); then
  repo=$(quote_command "$REPO")
  # shellcheck disable=SC2016  # expanded on the VM
  install_command=$(printf 'kit="$HOME/nfnet-vit-scaling" && { [ -d "$kit/.git" ] || git clone --quiet %s "$kit"; } && git -C "$kit" fetch --quiet %s %s && git -C "$kit" checkout --quiet --detach FETCH_HEAD && cd "$kit" && %s -m pip install --quiet -e .' \
    "$repo" "$repo" "$GIT_REF" "$(quote_command "$REMOTE_PYTHON")")
fi

if [[ -n $install_command ]]; then
  tpu_ssh "$NAME" all "set -e; $install_command" ||
    fail "install on $NAME failed on a worker (see the messages above)"
fi
tpu_ssh "$NAME" 0 "$(remote_cd_kit) && $(quote_command env "${CLIENT_ENV[@]}" "$REMOTE_PYTHON" -c "$CHECK_CODE")" ||
  fail "TensorFlow on $NAME cannot reach the TPU (see the message above)"
