"""Serve a fit_scaling logdir with the real `tensorboard` binary and read scalars over HTTP."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest

import synthetic_runs



READY_TIMEOUT_S = 45  # ~5 s on an idle machine; the CI box is shared


def _free_port() -> int:
  with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


def _get_json(url: str):
  with urllib.request.urlopen(url, timeout=5) as response:
    return json.loads(response.read().decode())


def _tensorboard_command() -> list[str]:
  binary = shutil.which("tensorboard")
  return [binary] if binary else [sys.executable, "-m", "tensorboard.main"]


def test_serve_logdir_and_read_scalars(tmp_path):
  models = {f"nfnet_mini_s{i}": 1e5 * 2.0 ** i for i in range(4)}
  synthetic_runs.write_records(str(tmp_path / "runs"), synthetic_runs.synthetic_records(
      models=models, epochs=(0.5, 1.0, 2.0), lr_factors=(0.5, 1.0), noise=0.01))
  logdir = tmp_path / "tb"
  fit = subprocess.run(
      [sys.executable, "-m", "reproduce.fit_scaling", f"--runs={tmp_path}/runs/*",
       f"--logdir={logdir}", "--bootstrap=20"], capture_output=True, text=True, timeout=180)
  assert fit.returncode == 0, fit.stderr[-2000:]
  assert "loss: L =" in fit.stdout

  port = _free_port()
  base = f"http://127.0.0.1:{port}"
  server = subprocess.Popen(
      _tensorboard_command() + ["--logdir", str(logdir), "--host", "127.0.0.1", "--port",
                                str(port), "--load_fast=false", "--reload_interval=1"],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
  try:
    tags, deadline = {}, time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
      if server.poll() is not None:
        pytest.fail(f"tensorboard exited with {server.returncode}")
      try:
        tags = _get_json(f"{base}/data/plugin/scalars/tags")
        if "loss_vs_compute/frontier" in tags.get("fits", {}):
          break
      except (urllib.error.URLError, ConnectionError, OSError):
        pass
      time.sleep(0.5)
    assert "loss_vs_compute/frontier" in tags.get("fits", {}), (
        f"scalars not served in time: {tags}")
    assert "loss_vs_compute/nfnet_mini_s0" in tags["fits"]
    assert not any(tag.startswith("fit/") for tag in tags["fits"])  # no one-point charts

    query = urllib.parse.urlencode({"run": "fits", "tag": "loss_vs_compute/frontier"})
    frontier = _get_json(f"{base}/data/plugin/scalars/scalars?{query}")
    losses = [value for _, _, value in frontier]
    assert len(losses) >= 3 and losses == sorted(losses, reverse=True)
    images = _get_json(f"{base}/data/plugin/images/tags")
    assert "figures/fig2_loss_vs_compute" in images["fits"]
  finally:
    server.terminate()
    try:
      server.wait(timeout=10)
    except subprocess.TimeoutExpired:
      server.kill()
      server.wait()
