"""The fork server runs a job as its own process would: the same bytes, exit code and
streams; a killed client takes its job down; edited code gets a new server; with no
server the client runs the job itself and starts one."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from fillrobust import forkserver
from tests.unit.test_train import _split

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is Linux only")

PARAMS = {"init": "scratch", "lr": 0.05, "epochs": 2, "batch_size": 8, "momentum": 0.9, "weight_decay": 5e-4,
          "balanced_sampling": True, "channels_last": True, "hflip": True}


def _env(name: str | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILLROBUST_FORKSERVER")}
    env.update(extra)
    if name:
        env[forkserver.ENV_ADDRESS] = name
    else:
        env[forkserver.ENV_SWITCH] = "0"
    return env


def _reachable(name: str) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect("\0" + name)
            return True
        except OSError:
            return False


def _wait(condition, timeout: float = 120.0, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(poll)


@pytest.fixture
def server(tmp_path):
    """A private server (its own address), its log, stopped after the test."""
    name, log = f"fillrobust-test-{uuid.uuid4().hex}", tmp_path / "server.log"
    with open(log, "w") as stream:
        proc = subprocess.Popen([sys.executable, "-m", "fillrobust.forkserver", name], stderr=stream,
                                stdout=subprocess.DEVNULL, start_new_session=True, env=_env(name))
    try:
        _wait(lambda: _reachable(name))
        yield name, log
    finally:
        proc.kill()
        proc.wait()


def _train(env: dict, data: Path, split: Path, out: Path, epochs: int = 2) -> subprocess.Popen:
    params = dict(PARAMS, epochs=epochs)
    return subprocess.Popen([sys.executable, "-m", "fillrobust", "train", "--dataset", str(data), "--split",
                             str(split), "--split-name", "S1", "--strategy", "ST", "--seed", "0", "--params",
                             json.dumps(params), "--device", "cpu", "--threads", "1", "--out", str(out)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _jobs(log: Path) -> list[int]:
    return [int(line.split()[1].rstrip(":")) for line in log.read_text().splitlines() if line.startswith("job ")]


def test_served_job_writes_the_same_bytes_as_its_own_process(tmp_path, tiny_ccm, server):
    name, log = server
    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    plain, served = tmp_path / "plain" / "model.safetensors", tmp_path / "served" / "model.safetensors"
    out_plain = _train(_env(None), data, split, plain).communicate()[0]
    proc = _train(_env(name), data, split, served)
    out_served = proc.communicate()[0]
    assert proc.returncode == 0, out_served
    assert len(_jobs(log)) == 1  # it ran in the server, and its output still reached our pipe
    assert served.read_bytes() == plain.read_bytes()
    assert served.with_suffix(".json").read_bytes() == plain.with_suffix(".json").read_bytes()
    epochs = [line.split(" images_per_s")[0] for line in out_served.splitlines() if line.startswith("epoch=")]
    assert epochs and epochs == [line.split(" images_per_s")[0] for line in out_plain.splitlines()
                                 if line.startswith("epoch=")]


def test_exit_code_and_error_stream_of_a_failing_job(tmp_path, server):
    name, log = server
    proc = subprocess.run([sys.executable, "-m", "fillrobust", "evaluate-corruptions", "--corrupted",
                           str(tmp_path / "missing"), "--checkpoint", "x", "--strategy", "ST", "--params", "{}",
                           "--device", "cpu", "--threads", "1", "--out", str(tmp_path / "out")],
                          env=_env(name), capture_output=True, text=True)
    assert proc.returncode == 2 and "missing" in proc.stderr and "not a dataset folder" in proc.stderr
    assert len(_jobs(log)) == 1


def test_killed_client_takes_its_job_down(tmp_path, tiny_ccm, server):
    name, log = server
    data, split = tiny_ccm / "crops", _split(tmp_path, tiny_ccm / "crops")
    client = _train(_env(name), data, split, tmp_path / "m" / "model.safetensors", epochs=500)
    _wait(lambda: _jobs(log))
    job = _jobs(log)[0]
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()

    def gone() -> bool:  # dead, or a zombie until the server reaps it
        try:
            return Path(f"/proc/{job}/stat").read_text().split(") ")[1].startswith("Z")
        except FileNotFoundError:
            return True

    _wait(gone, timeout=10)


def test_address_follows_the_code(tmp_path, monkeypatch):
    monkeypatch.delenv(forkserver.ENV_ADDRESS, raising=False)
    package = tmp_path / "pkg"
    package.mkdir()
    module = package / "m.py"
    module.write_text("x = 1\n")
    first = forkserver.address(package)
    assert forkserver.address(package) == first
    os.utime(module, ns=(module.stat().st_atime_ns, module.stat().st_mtime_ns + 10**9))
    assert forkserver.address(package) != first


def test_without_a_server_the_client_runs_the_job_itself_and_starts_one(monkeypatch):
    name = f"fillrobust-test-{uuid.uuid4().hex}"
    monkeypatch.setenv(forkserver.ENV_SWITCH, "0")
    assert forkserver.run_via_server(["--help"]) is None  # switched off: nothing started
    monkeypatch.delenv(forkserver.ENV_SWITCH)
    monkeypatch.setenv(forkserver.ENV_ADDRESS, name)
    monkeypatch.setenv("FILLROBUST_FORKSERVER_IDLE_S", "1")  # read by the server it starts
    assert forkserver.run_via_server(["--help"]) is None  # no server yet: run it here
    _wait(lambda: _reachable(name))  # ... and one started for the next job
    _wait(lambda: not _reachable(name), timeout=60, poll=3)  # idle (a probe counts as a job): it exits


def test_a_server_gone_before_the_fork_lets_the_client_run_the_job(monkeypatch):
    """A server that accepts and dies before forking: no job started, so the client runs it."""
    name = f"fillrobust-test-{uuid.uuid4().hex}"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(1)
    monkeypatch.setenv(forkserver.ENV_ADDRESS, name)

    def accept_and_die():
        conn, _ = listener.accept()
        conn.recv(1 << 16)  # the request (its fds arrive and are dropped)
        conn.close()

    thread = threading.Thread(target=accept_and_die)
    thread.start()
    try:
        assert forkserver.run_via_server(["--help"]) is None
    finally:
        thread.join(10)
        listener.close()
