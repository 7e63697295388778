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
LIBTPU_INDEX="https://storage.googleapis.com/libtpu-releases/index.html"
REMOTE_PYTHON=${TPU_PYTHON:-python3}
# Where launched runs keep their logs on every worker; expanded by the VM's shell.
# shellcheck disable=SC2016
REMOTE_LOG_DIR='$HOME/reproduce_logs'

PROJECT=${TPU_PROJECT:-${CLOUDSDK_CORE_PROJECT:-}}
ZONE=${TPU_ZONE:-${CLOUDSDK_COMPUTE_ZONE:-}}
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

# default_runtime ACCELERATOR_TYPE: a runtime image for each TPU generation. The kit installs its
# own TensorFlow (the tpu extra), so the plain Ubuntu images do where Google offers one.
default_runtime() {
  case "${1%%-*}" in
    v2 | v3 | v4) echo "tpu-ubuntu2204-base" ;;
    v5litepod) echo "v2-alpha-tpuv5-lite" ;;
    v5p) echo "v2-alpha-tpuv5" ;;
    v6e) echo "v2-alpha-tpuv6e" ;;
  esac
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
# fails); under --dry_run prints the describe command and takes READY.
tpu_state() {
  local cmd=("${TPU_VM[@]}" describe "$1" --project="$PROJECT" --zone="$ZONE" --format='value(state)')
  if ((DRY_RUN)); then
    quote_command "${cmd[@]}"
    STATE=READY
  else
    STATE=$("${cmd[@]}") || STATE=UNREACHABLE
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

# remote_launch RUN MODULE ARGS...: starts `python -m reproduce.MODULE ARGS` in the background
# with nohup; log RUN.log, pid RUN.pid, exit status RUN.exit; refuses when a run is alive.
remote_launch() {
  local run=$1 module=$2
  shift 2
  local d=$REMOTE_LOG_DIR inner
  inner="$(quote_command "$REMOTE_PYTHON" -m "reproduce.$module" "$@")"
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
