#!/usr/bin/env bash
# Runs the planner's sweep (models x epoch budgets x LR grid) on a pool of TPU VMs, one run per
# VM at a time: each invocation is one pass (launch what can be launched, print the status);
# rerun it, or loop it with --watch. When every run is finished: fit_scaling and compare.
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() {
  cat <<HELP
Usage: $SCRIPT_NAME --pool=VM1,VM2,... --bucket=B [--sweep_name=NAME] [--plan_json=FILE]
                [--lr_grid=N] [--config=FILE] [--dataset=SPEC] [--watch=SECONDS]
                [--recreate --accelerator_type=TYPE [--version=V] [--spot]
                 (--repo=URL [--git_ref=REF] | --wheel=WHEEL)]
                [--analyze=auto|now|never] [--retry_failed] [--state_dir=DIR]
                [--project=ID] [--zone=ZONE] [--dry_run] [-- PRETRAIN_FLAGS...]

One pass:
  1. the runs: each row of the planner's JSON sweep (--plan_json, else the output of
     python -m reproduce.plan --sweep --format=json) times --lr_grid LR candidates
     (reproduce.planning.lr_grid around the row's base_lr), named MODEL_eEPOCHS_lrLR;
  2. a run whose gs://B/sweeps/NAME/runs/RUN/results.json exists is done (gsutil -q stat);
  3. each pool VM: READY and idle (or its last run ended) -> free; PREEMPTED/TERMINATED ->
     its run is pre-empted, and with --recreate the VM is deleted, created and set up again
     (create.sh, setup.sh), else it is skipped until it is READY again;
  4. pre-empted runs first, then queued ones, go to the free VMs (launch.sh's remote command:
     python -m reproduce.pretrain ... --strategy=tpu as the one client on worker 0, with
     TPU_NAME=local on one host, TPU_NAME=VM TPU_LOAD_LIBRARY=0 on a multi-host slice; the
     VM's type comes from gcloud describe); a relaunched run resumes from its model_dir;
  5. prints the status table (run, VM, state: done/running/queued/pre-empted/failed);
  6. when no run is left queued, running or pre-empted (or with --analyze=now), runs on the
     first READY VM: reproduce.fit_scaling into gs://B/sweeps/NAME/fits, then reproduce.compare
     (TensorBoard text in .../compare, JSON in .../compare.json).
A run that exited non-zero (diverged, bad flags) is 'failed' and not relaunched unless
--retry_failed. State kept here: the VM each run was last launched on (--state_dir).

  --pool=VMS            comma-separated TPU VM names (or TPU_POOL)
  --bucket=NAME         bucket for runs, fits and TensorBoard (or TPU_BUCKET)
  --sweep_name=NAME     sweep folder under gs://B/sweeps/ (default: figure2)
  --plan_json=FILE      the planner's --sweep --format=json output (default: run the planner here)
  --lr_grid=N           LR candidates per row (default: 1, the planner's base_lr)
  --config=FILE         pre-training config, a path in the kit on the VMs
                        (default: reproduce/configs/pretrain_jft.py)
  --dataset=SPEC        sets --config.dataset, e.g. 'tfrecord:gs://B/jft4b/train-*'
  --watch=SECONDS       repeat the pass every SECONDS until every run has ended
  --recreate            recreate pre-empted VMs (needs --accelerator_type and --repo or --wheel)
  --accelerator_type, --version, --spot, --repo, --git_ref, --wheel: as in create.sh / setup.sh
                        (--dry_run takes every VM to be of --accelerator_type)
  --analyze=WHEN        auto (default: once every run has ended), now, or never
  --retry_failed        relaunch failed runs too
  --state_dir=DIR       local state (default: ~/.reproduce_sweeps/NAME)
  -- PRETRAIN_FLAGS     passed to every python -m reproduce.pretrain

$COMMON_HELP
HELP
}

POOL=${TPU_POOL:-}
SWEEP_NAME=figure2
PLAN_JSON=""
LR_GRID=1
CONFIG=reproduce/configs/pretrain_jft.py
DATASET=""
WATCH=0
RECREATE=0
VERSION=""
SPOT=0
REPO=${TPU_KIT_REPO:-}
GIT_REF=""
WHEEL=""
ANALYZE=auto
RETRY_FAILED=0
STATE_DIR=""
PRETRAIN_FLAGS=()
while (($#)); do
  case "$1" in
    --pool | --pool=*) take_value POOL "$@" ;;
    --sweep_name | --sweep_name=*) take_value SWEEP_NAME "$@" ;;
    --plan_json | --plan_json=*) take_value PLAN_JSON "$@" ;;
    --lr_grid | --lr_grid=*) take_value LR_GRID "$@" ;;
    --config | --config=*) take_value CONFIG "$@" ;;
    --dataset | --dataset=*) take_value DATASET "$@" ;;
    --watch | --watch=*) take_value WATCH "$@" ;;
    --accelerator_type | --accelerator_type=*) take_value ACCELERATOR_TYPE "$@" ;;
    --version | --version=*) take_value VERSION "$@" ;;
    --repo | --repo=*) take_value REPO "$@" ;;
    --git_ref | --git_ref=*) take_value GIT_REF "$@" ;;
    --wheel | --wheel=*) take_value WHEEL "$@" ;;
    --analyze | --analyze=*) take_value ANALYZE "$@" ;;
    --state_dir | --state_dir=*) take_value STATE_DIR "$@" ;;
    --recreate) RECREATE=1 SHIFT=1 ;;
    --spot) SPOT=1 SHIFT=1 ;;
    --retry_failed) RETRY_FAILED=1 SHIFT=1 ;;
    --)
      shift
      PRETRAIN_FLAGS=("$@")
      break
      ;;
    *) common_flag "$@" || bucket_flag "$@" || unknown_flag "$1" ;;
  esac
  shift "$SHIFT"
done

# --- checks ---------------------------------------------------------------------------------

require_gcloud
require_gsutil
require_project_zone
require_bucket
[[ -n $POOL ]] || die "no TPU VMs: pass --pool=VM1,VM2,... (or TPU_POOL)"
IFS=, read -r -a VMS <<<"$POOL"
declare -A SEEN=()
for vm in "${VMS[@]}"; do
  require_tpu_name pool "$vm"
  [[ -z ${SEEN[$vm]:-} ]] || die "--pool names $vm twice"
  SEEN[$vm]=1
done
matches sweep_name "$SWEEP_NAME" '^[A-Za-z0-9][A-Za-z0-9._-]*$' "letters, digits, '.', '_', '-'"
matches lr_grid "$LR_GRID" '^[1-9][0-9]*$' "a count >= 1"
matches watch "$WATCH" '^[0-9]+$' "seconds (0: one pass)"
matches analyze "$ANALYZE" '^(auto|now|never)$' "auto, now or never"
[[ -z $PLAN_JSON || -f $PLAN_JSON ]] || die "--plan_json=$PLAN_JSON: no such file"
for flag in "${PRETRAIN_FLAGS[@]}"; do
  [[ $flag != --tpu && $flag != --tpu=* ]] ||
    die "$flag: sweep.sh sets the TPU itself (TPU_NAME: local on one host, the VM's name on a slice)"
done
if ((RECREATE || DRY_RUN)); then
  require_accelerator_type "$ACCELERATOR_TYPE"
fi
if ((RECREATE)); then
  [[ -n $REPO || -n $WHEEL ]] || die "--recreate needs --repo=URL or --wheel=WHEEL to set the new VM up"
fi
ROOT="$BUCKET_URL/sweeps/$SWEEP_NAME"
RUNS_URL="$ROOT/runs"
STATE_DIR=${STATE_DIR:-$HOME/.reproduce_sweeps/$SWEEP_NAME}

# --- the runs -------------------------------------------------------------------------------

# Reads {"sweep": [{"model", "epochs", "base_lr", ...}, ...]} on stdin; prints one line per run:
# NAME<TAB>MODEL<TAB>EPOCHS<TAB>LR.
PARSE_SWEEP='import json, sys
n = int(sys.argv[1])
try:
  rows = json.load(sys.stdin)["sweep"]
  if n > 1:
    from reproduce.planning import lr_grid
  names = set()
  def short(row):
    # The fewest digits that plan the same whole steps: 0.25, not 0.250000384.
    epochs = float(row["epochs"])
    for digits in range(1, 10):
      text = f"{epochs:.{digits}g}"
      if round(float(text) * row["dataset_size"] / row["batch_size"]) == row["steps"]:
        return text
    return repr(epochs)
  for row in rows:
    model, epochs, base_lr = str(row["model"]), short(row), float(row["base_lr"])
    for lr in (lr_grid(base_lr, n) if n > 1 else [base_lr]):
      name = f"{model}_e{epochs}_lr{lr:g}"
      if name in names:
        sys.exit(f"two runs would be named {name}")
      names.add(name)
      print(f"{name}\t{model}\t{epochs}\t{lr!r}")
except ImportError:
  sys.exit("--lr_grid needs the kit importable here (pip install -e .)")
except (ValueError, KeyError, TypeError) as e:
  sys.exit(f"not the planner sweep JSON ({{\"sweep\": [{{model, epochs, base_lr}}, ...]}}): {e!r}")
if not names:
  sys.exit("the sweep has no runs")'

load_runs() {
  local json tsv source="--plan_json=$PLAN_JSON"
  [[ -n $PLAN_JSON ]] || source="the planner's output"
  if [[ -n $PLAN_JSON ]]; then
    json=$(<"$PLAN_JSON")
  else
    json=$(python3 -m reproduce.plan --sweep --format=json) || die "python -m reproduce.plan --sweep failed"
  fi
  tsv=$(python3 -c "$PARSE_SWEEP" "$LR_GRID" 2>&1 <<<"$json") || die "$source: ${tsv##*$'\n'}"
  RUNS=()
  declare -gA MODEL=() EPOCHS=() LR=()
  local name model epochs lr
  while IFS=$'\t' read -r name model epochs lr; do
    RUNS+=("$name")
    MODEL[$name]=$model EPOCHS[$name]=$epochs LR[$name]=$lr
  done <<<"$tsv"
}

pretrain_flags() {
  local run=$1
  PRETRAIN=(--config="$CONFIG" --model_dir="$RUNS_URL/$run" --config.model="${MODEL[$run]}"
    --config.epochs="${EPOCHS[$run]}" --config.base_lr="${LR[$run]}" --strategy=tpu)
  [[ -z $DATASET ]] || PRETRAIN+=(--config.dataset="$DATASET")
  PRETRAIN+=("${PRETRAIN_FLAGS[@]}")
}

# --- local state: done runs, failed runs, the run last launched on each VM ------------------

state_lines() {
  [[ -f $STATE_DIR/$1 ]] && cat "$STATE_DIR/$1"
  return 0
}

state_add() {
  ((DRY_RUN)) && return 0
  mkdir -p "$STATE_DIR"
  printf '%s\n' "$2" >>"$STATE_DIR/$1"
}

record_launch() {
  ((DRY_RUN)) && return 0
  mkdir -p "$STATE_DIR"
  { state_lines launched | grep -v -e "^$1 " -e " $2\$" || true; } >"$STATE_DIR/launched.tmp"
  printf '%s %s\n' "$1" "$2" >>"$STATE_DIR/launched.tmp"
  mv "$STATE_DIR/launched.tmp" "$STATE_DIR/launched"
}

last_run_on() {
  state_lines launched | awk -v vm="$1" '$1 == vm { print $2 }'
}

# mark_preempted RUN VM: a queued RUN that lost VM (pre-emption, recreation) goes first.
mark_preempted() {
  if [[ -n $1 && ${RUN_STATE[$1]:-} == queued ]]; then
    RUN_STATE[$1]=pre-empted
    RUN_VM[$1]=$2
  fi
}

# --- one pass -------------------------------------------------------------------------------

check_runs() {
  declare -gA RUN_STATE=() RUN_VM=()
  local run done_runs failed_runs
  done_runs=$(state_lines "done")
  failed_runs=$(state_lines failed | awk '{ print $1 }')
  for run in "${RUNS[@]}"; do
    RUN_STATE[$run]=queued
    RUN_VM[$run]=-
    if grep -qxF "$run" <<<"$done_runs"; then
      RUN_STATE[$run]='done'
    elif gs_exists "$RUNS_URL/$run/results.json"; then
      RUN_STATE[$run]='done'
      state_add 'done' "$run"
    elif ((!RETRY_FAILED)) && grep -qxF "$run" <<<"$failed_runs"; then
      RUN_STATE[$run]=failed
    fi
  done
}

recreate_vm() {
  local vm=$1
  local common=(--name="$vm" --project="$PROJECT" --zone="$ZONE")
  ((DRY_RUN)) && common+=(--dry_run)
  local create=(--accelerator_type="$ACCELERATOR_TYPE") setup=(--accelerator_type="$ACCELERATOR_TYPE")
  [[ -z $VERSION ]] || create+=(--version="$VERSION")
  ((SPOT)) && create+=(--spot)
  if [[ -n $WHEEL ]]; then
    setup+=(--wheel="$WHEEL" --bucket="$BUCKET_URL")
  else
    setup+=(--repo="$REPO")
    [[ -z $GIT_REF ]] || setup+=(--git_ref="$GIT_REF")
  fi
  note "recreating pre-empted TPU VM $vm"
  "$SCRIPTS_DIR/delete.sh" "${common[@]}" &&
    "$SCRIPTS_DIR/create.sh" "${common[@]}" "${create[@]}" &&
    "$SCRIPTS_DIR/setup.sh" "${common[@]}" "${setup[@]}"
}

# Sorts the pool into FREE_VMS and READY_VMS (VM_TYPES: each one's accelerator type); marks
# running and pre-empted runs.
check_vms() {
  FREE_VMS=()
  READY_VMS=()
  declare -gA VM_TYPES=()
  local vm run word code probe
  for vm in "${VMS[@]}"; do
    tpu_state "$vm"
    VM_TYPES[$vm]=$VM_TYPE
    case "$STATE" in
      READY)
        if ! [[ $VM_TYPE =~ ^[a-z0-9]+-[1-9][0-9]*$ ]]; then
          note "TPU VM $vm has no accelerator type in gcloud describe ('$VM_TYPE'): skipped this pass"
          continue
        fi
        if ((DRY_RUN)); then
          tpu_ssh "$vm" 0 "$(remote_probe)"
          probe=idle
        elif ! probe=$(tpu_ssh "$vm" 0 "$(remote_probe)"); then
          note "could not reach TPU VM $vm by ssh: skipped this pass"
          continue
        fi
        READY_VMS+=("$vm")
        probe=${probe##*$'\n'}
        read -r run word code <<<"$probe"
        if [[ $word == running ]]; then
          if [[ -n ${RUN_STATE[$run]:-} && ${RUN_STATE[$run]} != 'done' ]]; then
            RUN_STATE[$run]=running
            RUN_VM[$run]=$vm
          fi
          continue
        fi
        if [[ $word == gone ]]; then
          mark_preempted "$run" "$vm"
        elif [[ $run == idle ]]; then
          mark_preempted "$(last_run_on "$vm")" "$vm"
        fi
        if [[ $word == exited && $code != 0 && ${RUN_STATE[$run]:-x} != 'done' ]]; then
          note "run $run exited with status $code on $vm: failed (logs.sh --name=$vm --run=$run)"
          grep -qxF "$run" <<<"$(state_lines failed | awk '{ print $1 }')" ||
            state_add failed "$run $code"
          ((RETRY_FAILED)) || RUN_STATE[$run]=failed
        fi
        FREE_VMS+=("$vm")
        ;;
      PREEMPTED | TERMINATED)
        mark_preempted "$(last_run_on "$vm")" "$vm"
        if ((RECREATE)); then
          if recreate_vm "$vm"; then
            VM_TYPES[$vm]=$ACCELERATOR_TYPE
            FREE_VMS+=("$vm")
            READY_VMS+=("$vm")
          else
            note "could not recreate $vm; the next pass tries again"
          fi
        else
          note "TPU VM $vm is $STATE: recreate it (delete.sh, create.sh, setup.sh) or pass --recreate"
        fi
        ;;
      *) note "TPU VM $vm is ${STATE:-in an unknown state}: skipped this pass" ;;
    esac
  done
}

launch_queued() {
  LAUNCH_FAILED=0
  local queue=() run vm
  for run in "${RUNS[@]}"; do
    [[ ${RUN_STATE[$run]} == pre-empted ]] && queue+=("$run")
  done
  for run in "${RUNS[@]}"; do
    [[ ${RUN_STATE[$run]} == queued ]] && queue+=("$run")
  done
  for vm in "${FREE_VMS[@]}"; do
    ((${#queue[@]})) || break
    run=${queue[0]}
    queue=("${queue[@]:1}")
    pretrain_flags "$run"
    tpu_client "$vm" "${VM_TYPES[$vm]}"
    if tpu_ssh "$vm" 0 "$(remote_launch "$run" pretrain "${PRETRAIN[@]}")"; then
      RUN_STATE[$run]=running
      RUN_VM[$run]=$vm
      record_launch "$vm" "$run"
    else
      note "could not launch $run on $vm; the next pass tries again"
      LAUNCH_FAILED=1
    fi
  done
}

print_table() {
  local run state count
  declare -A counts=()
  printf '%-40s %-20s %s\n' RUN VM STATE
  for run in "${RUNS[@]}"; do
    state=${RUN_STATE[$run]}
    printf '%-40s %-20s %s\n' "$run" "${RUN_VM[$run]}" "$state"
    counts[$state]=$((${counts[$state]:-0} + 1))
  done
  local summary=""
  for state in 'done' running pre-empted queued failed; do
    count=${counts[$state]:-0}
    summary+="$state $count, "
  done
  printf '%s runs: %s\n' "${#RUNS[@]}" "${summary%, }"
  ACTIVE=$((${counts[running]:-0} + ${counts[queued]:-0} + ${counts[pre-empted]:-0}))
  DONE=${counts[done]:-0}
}

analyze() {
  local vm=${READY_VMS[0]:-}
  [[ -n $vm ]] || {
    note "no READY TPU VM to run fit_scaling and compare on; the next pass tries again"
    return 1
  }
  local fit compare
  fit=$(quote_command "$REMOTE_PYTHON" -m reproduce.fit_scaling --runs="$RUNS_URL/*" --logdir="$ROOT/fits")
  compare=$(quote_command "$REMOTE_PYTHON" -m reproduce.compare --runs="$RUNS_URL/*" \
    --fits="$ROOT/fits/fits.json" --logdir="$ROOT" --json_out="$ROOT/compare.json")
  note "fit_scaling and compare on $vm over $DONE finished runs"
  tpu_ssh "$vm" 0 "$(remote_cd_kit) && $fit && $compare"
}

one_pass() {
  check_runs
  check_vms
  launch_queued
  print_table
  if [[ $ANALYZE == now || ($ANALYZE == auto && $ACTIVE == 0 && $DONE -gt 0) ]]; then
    analyze || return 1
  fi
  return "$LAUNCH_FAILED"
}

load_runs
((DRY_RUN)) && note "dry run: no run counts as done, every VM as READY and idle"
while true; do
  status=0
  one_pass || status=$?
  if ((WATCH == 0 || ACTIVE == 0 || DRY_RUN)); then
    exit "$status"
  fi
  note "next pass in $WATCH s ($(date -u +%H:%M:%S) UTC now)"
  sleep "$WATCH"
done
