#!/usr/bin/env bash
# Installs the kit with the TPU build of TensorFlow on every worker of a TPU VM slice, then checks
# that TensorFlow sees the TPU cores on each.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --name=NAME (--repo=URL [--git_ref=REF] | --wheel=WHEEL [--bucket=B])
                [--check_only] [--project=ID] [--zone=ZONE] [--dry_run]

On every worker of TPU VM NAME (gcloud ... tpu-vm ssh --worker=all): installs the kit with
  pip install -e '.[tpu]' -f $LIBTPU_INDEX
from a git clone checked out at REF (in ~/nfnet-vit-scaling), or installs a wheel with its
[tpu] extra; then prints the TPU core count TensorFlow sees and fails if it is 0.

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
    *) common_flag "$@" || bucket_flag "$@" || unknown_flag "$1" ;;
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

# The check, one line: TensorFlow's TPU cores on this worker; exit status 1 when there are none.
CHECK_CODE='import socket, tensorflow as tf; host = socket.gethostname(); resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu="local"); tf.config.experimental_connect_to_cluster(resolver); tf.tpu.experimental.initialize_tpu_system(resolver); cores = len(tf.config.list_logical_devices("TPU")); print(f"{host}: TensorFlow {tf.__version__} sees {cores} TPU cores"); raise SystemExit(0 if cores else f"error: {host}: TensorFlow sees no TPU cores")'
check_command=$(quote_command "$REMOTE_PYTHON" -c "$CHECK_CODE")

install_command=""
if ((!CHECK_ONLY)) && [[ -n $WHEEL ]]; then
  if [[ $WHEEL != gs://* ]]; then
    local_wheel=$WHEEL
    WHEEL="$BUCKET_URL/wheels/$(basename "$WHEEL")"
    run gsutil cp "$local_wheel" "$WHEEL" || fail "could not copy $local_wheel to $WHEEL"
  fi
  # shellcheck disable=SC2016  # expanded on the VM
  install_command=$(printf 'mkdir -p "$HOME/reproduce_wheels" && gsutil cp %s "$HOME/reproduce_wheels/" && %s -m pip install --quiet "$HOME/reproduce_wheels/"%s -f %s && ' \
    "$(quote_command "$WHEEL")" "$(quote_command "$REMOTE_PYTHON")" \
    "$(quote_command "$(basename "$WHEEL")[tpu]")" "$LIBTPU_INDEX")
elif ((!CHECK_ONLY)); then
  repo=$(quote_command "$REPO")
  # shellcheck disable=SC2016  # expanded on the VM
  install_command=$(printf 'kit="$HOME/nfnet-vit-scaling" && { [ -d "$kit/.git" ] || git clone --quiet %s "$kit"; } && git -C "$kit" fetch --quiet %s %s && git -C "$kit" checkout --quiet --detach FETCH_HEAD && cd "$kit" && %s -m pip install --quiet -e %s -f %s && ' \
    "$repo" "$repo" "$GIT_REF" "$(quote_command "$REMOTE_PYTHON")" "'.[tpu]'" "$LIBTPU_INDEX")
fi

tpu_ssh "$NAME" all "set -e; ${install_command}${check_command}" ||
  fail "setup of $NAME failed on a worker (see the messages above)"
