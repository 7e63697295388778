#!/usr/bin/env bash
# Shared parts of the Cloud TPU scripts: flags, checks, the --dry_run-aware runner, ssh to the
# workers of a slice and the remote commands. Sourced by every script here; not run on its own.
#
# Environment defaults (a flag always wins):
#   TPU_PROJECT or CLOUDSDK_CORE_PROJECT   --project
#   TPU_ZONE or CLOUDSDK_COMPUTE_ZONE      --zone
#   TPU_BUCKET                             --bucket (name or gs://name)
#   TPU_PYTHON                             the Python on the TPU VMs (default python3)
# shellcheck disable=SC2034  # the variables set here are read by the scripts that source it

set -euo pipefail
((BASH_VERSINFO[0] >= 4)) || {
  echo "$(basename "$0"): error: needs bash >= 4 (on macOS: brew install bash)" >&2
  exit 2
}

SCRIPT_NAME=$(basename "$0")
SCRIPTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REMOTE_PYTHON=${TPU_PYTHON:-python3}
# Where launched runs keep their logs on every worker; expanded by the VM's shell.
# shellcheck disable=SC2016
REMOTE_LOG_DIR='$HOME/reproduce_logs'

PROJECT=${TPU_PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}
ZONE=${TPU_ZONE:-${CLOUDSDK_COMPUTE_ZONE:-}}
ACCELERATOR_TYPE=${TPU_ACCELERATOR_TYPE:-}
CLIENT_ENV=()
BUCKET=${TPU_BUCKET:-}
DRY_RUN=0
SHIFT=1

# --- messages -------------------------------------------------------------------------------

# A user error: one line on stderr, exit 2 (before any cloud call).
die() {
  printf '%s: error: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 2
}

# A cloud call that failed: one line on stderr, exit 1.
fail() {
  printf '%s: failed: %s\n' "$SCRIPT_NAME" "$*" >&2
  exit 1
}

note() {
  printf '%s\n' "$*" >&2
}

# --- flags ----------------------------------------------------------------------------------

# take_value VAR "$@": sets VAR from `--flag=value` or `--flag value`; SHIFT = args used.
take_value() {
  local var=$1 flag=$2
  if [[ $flag == *=* ]]; then
    printf -v "$var" '%s' "${flag#*=}"
    SHIFT=1
  elif (($# >= 3)); then
    printf -v "$var" '%s' "$3"
    SHIFT=2
  else
    die "${flag} needs a value"
  fi
}

# common_flag "$@": the flags every script takes; returns 1 when $1 is not one of them.
common_flag() {
  SHIFT=1
  case "$1" in
    --project | --project=*) take_value PROJECT "$@" ;;
    --zone | --zone=*) take_value ZONE "$@" ;;
    --dry_run) DRY_RUN=1 ;;
    --help | -h)
      usage
      exit 0
      ;;
    *) return 1 ;;
  esac
}

# bucket_flag "$@": --bucket, for the scripts that write to or read from a bucket.
bucket_flag() {
  SHIFT=1
  case "$1" in
    --bucket | --bucket=*) take_value BUCKET "$@" ;;
    *) return 1 ;;
  esac
}

# type_flag "$@": --accelerator_type, for the scripts that need to know the slice's shape.
type_flag() {
  SHIFT=1
  case "$1" in
    --accelerator_type | --accelerator_type=*) take_value ACCELERATOR_TYPE "$@" ;;
    *) return 1 ;;
  esac
}

unknown_flag() {
  die "unknown argument: $1 (see --help)"
}

COMMON_HELP="Common flags:
  --project=ID      Google Cloud project (or TPU_PROJECT / CLOUDSDK_CORE_PROJECT)
  --zone=ZONE       zone, e.g. us-central2-b (or TPU_ZONE / CLOUDSDK_COMPUTE_ZONE)
  --dry_run         print the exact gcloud/gsutil commands instead of running them
  --help            this text"

# --- checks (all run before the first cloud call) -------------------------------------------

matches() {
  [[ $2 =~ $3 ]] || die "--$1=$2 is not valid: expected $4"
}

require_gcloud() {
  ((DRY_RUN)) && return 0
  command -v gcloud >/dev/null 2>&1 ||
    die "gcloud not found on PATH: install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install)"
}

require_gsutil() {
  ((DRY_RUN)) && return 0
  command -v gsutil >/dev/null 2>&1 ||
    die "gsutil not found on PATH: install the Google Cloud SDK (https://cloud.google.com/sdk/docs/install)"
}

require_project_zone() {
  [[ -n $PROJECT ]] || die "no project: pass --project=ID or set TPU_PROJECT (or CLOUDSDK_CORE_PROJECT)"
  matches project "$PROJECT" '^[a-z][-a-z0-9.:]*[a-z0-9]$' "a project ID such as my-project"
  [[ -n $ZONE ]] || die "no zone: pass --zone=ZONE or set TPU_ZONE (or CLOUDSDK_COMPUTE_ZONE)"
  matches zone "$ZONE" '^[a-z]+-[a-z]+[0-9]+-[a-z]$' "a zone such as us-central2-b"
}

# Sets BUCKET_URL (gs://NAME, no trailing slash) from --bucket / TPU_BUCKET.
require_bucket() {
  [[ -n $BUCKET ]] || die "no bucket: pass --bucket=NAME or set TPU_BUCKET"
  local name=${BUCKET#gs://}
  name=${name%/}
  matches bucket "$name" '^[a-z0-9][-a-z0-9._]{1,220}[a-z0-9]$' "a bucket name such as my-bucket"
  BUCKET_URL="gs://$name"
}

require_tpu_name() {
  [[ -n $2 ]] || die "no TPU VM: pass --$1=NAME"
  matches "$1" "$2" '^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$' "a TPU VM name: lower-case letters, digits, '-'"
}

# The checks of every script that acts on one TPU VM (--name).
require_vm_target() {
  require_gcloud
  require_project_zone
  require_tpu_name name "$1"
}

require_accelerator_type() {
  [[ -n $1 ]] || die "no accelerator type: pass --accelerator_type, e.g. v4-8"
  matches accelerator_type "$1" '^(v2|v3|v4|v5p|v5litepod|v6e)-[1-9][0-9]*$' \
    "GENERATION-CORES with GENERATION one of v2 v3 v4 v5p v5litepod v6e, e.g. v4-32"
}

require_run_name() {
  matches run "$1" '^[A-Za-z0-9][A-Za-z0-9._-]*$' "letters, digits, '.', '_', '-'"
}

# --- the runtime table: the one place that pins TensorFlow per TPU generation ---------------
# Google's TensorFlow runtime images (cloud.google.com/tpu/docs/runtimes) are named
# tpu-vm-tf-VERSION-pjrt (one host) and tpu-vm-tf-VERSION-pod-pjrt (multi-host slice); they
# come with TensorFlow and libtpu installed, so setup.sh installs the kit without a TF extra.
declare -A TF_RUNTIME=([v4]=2.18.0 [v5litepod]=2.18.0 [v5p]=2.18.0 [v6e]=2.18.0)

# multi_host TYPE: true when the slice spans more than one host. One TPU VM host holds 8
# TensorCores (v2, v3, v4, v5p count cores) or 8 chips (v5litepod, v6e count chips), so every
# type above -8 is multi-host.
multi_host() {
  ((${1##*-} > 8))
}

# default_runtime TYPE: sets RUNTIME to the TensorFlow runtime image for TYPE from TF_RUNTIME.
default_runtime() {
  local generation=${1%%-*} pod=""
  [[ -n ${TF_RUNTIME[$generation]:-} ]] ||
    die "no TensorFlow runtime pinned for $generation (pinned: ${!TF_RUNTIME[*]}): pass --version"
  if multi_host "$1"; then
    pod=-pod
  fi
  RUNTIME="tpu-vm-tf-${TF_RUNTIME[$generation]}${pod}-pjrt"
}

# tpu_client NAME TYPE: how TensorFlow drives TPU VM NAME. Always one client process, on
# worker 0: CLIENT_ENV holds its environment. One host: TPU_NAME=local (the attached TPU).
# Multi-host: TPU_NAME=NAME (TPUClusterResolver(tpu=NAME) reaches every host) and
# TPU_LOAD_LIBRARY=0, so the client leaves worker 0's chips to the slice's TPU runtime.
tpu_client() {
  if multi_host "$2"; then
    CLIENT_ENV=("TPU_NAME=$1" TPU_LOAD_LIBRARY=0)
  else
    CLIENT_ENV=(TPU_NAME=local)
  fi
}

# vm_accelerator_type NAME: sets VM_TYPE to --accelerator_type when given, else asks gcloud
# describe (under --dry_run the flag is required: nothing is asked).
vm_accelerator_type() {
  if [[ -n $ACCELERATOR_TYPE ]]; then
    VM_TYPE=$ACCELERATOR_TYPE
  elif ((DRY_RUN)); then
    die "--dry_run needs --accelerator_type=TYPE (a real run reads it with gcloud describe)"
  else
    VM_TYPE=$("${TPU_VM[@]}" describe "$1" --project="$PROJECT" --zone="$ZONE" \
      --format='value(acceleratorType)') || fail "could not describe TPU VM $1"
  fi
  require_accelerator_type "$VM_TYPE"
}

# --- running commands -----------------------------------------------------------------------

# quote_command ARGS...: one shell-ready line (bare words stay bare, others in single quotes).
quote_command() {
  local out="" arg
  for arg in "$@"; do
    if [[ $arg =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
      out+="$arg "
    else
      out+="'${arg//\'/\'\\\'\'}' "
    fi
  done
  printf '%s\n' "${out% }"
}

# run ARGS...: runs a command, or prints it under --dry_run.
run() {
  if ((DRY_RUN)); then
    quote_command "$@"
  else
    "$@"
  fi
}

TPU_VM=(gcloud compute tpus tpu-vm)

# tpu_ssh NAME WORKER COMMAND: runs COMMAND (a shell line) on WORKER (a number or 'all').
tpu_ssh() {
  run "${TPU_VM[@]}" ssh "$1" --project="$PROJECT" --zone="$ZONE" --worker="$2" --command="$3"
}

# tpu_state NAME: sets STATE to the VM's state (READY, PREEMPTED, ...; UNREACHABLE when describe
# fails) and VM_TYPE to its accelerator type; under --dry_run prints the describe command and
# takes READY and --accelerator_type.
tpu_state() {
  local cmd=("${TPU_VM[@]}" describe "$1" --project="$PROJECT" --zone="$ZONE"
    --format='value(state,acceleratorType)')
  if ((DRY_RUN)); then
    quote_command "${cmd[@]}"
    STATE=READY VM_TYPE=$ACCELERATOR_TYPE
  else
    read -r STATE VM_TYPE < <("${cmd[@]}" || echo UNREACHABLE) || true
  fi
}

# gs_exists URL: whether the object exists (`gsutil -q stat`); under --dry_run prints the
# command and answers no.
gs_exists() {
  if ((DRY_RUN)); then
    quote_command gsutil -q stat "$1"
    return 1
  fi
  gsutil -q stat "$1"
}

# --- remote commands (shell lines run on the workers) ---------------------------------------

# The kit's import root on the VM (the clone for a git install, site-packages for a wheel), so
# that config paths such as reproduce/configs/pretrain_jft.py resolve either way.
remote_cd_kit() {
  local code="import os, reproduce; print(os.path.dirname(os.path.dirname(os.path.abspath(reproduce.__file__))))"
  # shellcheck disable=SC2016  # expanded on the VM
  printf 'cd "$(%s)"' "$(quote_command "$REMOTE_PYTHON" -c "$code")"
}

# remote_launch RUN MODULE ARGS...: starts `env CLIENT_ENV... python -m reproduce.MODULE ARGS`
# (see tpu_client) in the background with nohup; log RUN.log, pid RUN.pid, exit status RUN.exit; refuses when a run is alive.
remote_launch() {
  local run=$1 module=$2
  shift 2
  local d=$REMOTE_LOG_DIR inner
  inner="$(quote_command env "${CLIENT_ENV[@]}" "$REMOTE_PYTHON" -m "reproduce.$module" "$@")"
  inner+="; echo \$? > \"$d/$run.exit\""
  printf '%s' "mkdir -p \"$d\" && "
  printf '%s' "if r=\$(cat \"$d/current\" 2>/dev/null) && [ ! -f \"$d/\$r.exit\" ] && kill -0 \"\$(cat \"$d/\$r.pid\" 2>/dev/null)\" 2>/dev/null; "
  printf '%s' "then echo \"busy: run \$r is still running\" >&2; exit 3; fi; "
  printf '%s' "rm -f \"$d/$run.exit\" && $(remote_cd_kit) || exit 1; "
  printf '%s' "nohup bash -c $(quote_command "$inner") > \"$d/$run.log\" 2>&1 < /dev/null & "
  printf '%s' "echo \$! > \"$d/$run.pid\"; echo $run > \"$d/current\"; echo \"started $run (log $d/$run.log)\""
}

# One line about the VM's last launched run: 'RUN running', 'RUN exited CODE', 'RUN gone'
# (no process, no exit status: the VM was recreated or rebooted) or 'idle'.
remote_probe() {
  local d=$REMOTE_LOG_DIR
  printf '%s' "if ! r=\$(cat \"$d/current\" 2>/dev/null); then echo idle; "
  printf '%s' "elif [ -f \"$d/\$r.exit\" ]; then echo \"\$r exited \$(cat \"$d/\$r.exit\")\"; "
  printf '%s' "elif kill -0 \"\$(cat \"$d/\$r.pid\" 2>/dev/null)\" 2>/dev/null; then echo \"\$r running\"; "
  printf '%s' "else echo \"\$r gone\"; fi"
}
