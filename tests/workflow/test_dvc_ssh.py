"""Sharing through a real SSH DVC remote: an OpenSSH server on loopback with throwaway keys.

A pushes the session's finished tiny run over SSH, a fresh clone B pulls it and
has nothing to do; an object tampered with on the server makes B's pull fail
loudly and leaves B's workspace untouched.
"""

from __future__ import annotations

import getpass
import hashlib
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.workflow.servers import ensure_packages, free_port
from tests.workflow.workspace import BIN, ROOT, copy_workspace, env, planned_jobs, run

pytestmark = pytest.mark.slow

SSHD = Path("/usr/sbin/sshd")


def ensure_sshd() -> str | None:
    """Install Debian's openssh-server when absent (root only); a reason to skip, or None."""
    return ensure_packages(("openssh-server",), lambda: [] if SSHD.exists() else [str(SSHD)])


def wait_for_port(port: int, proc: subprocess.Popen, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited with {proc.returncode}: {proc.stderr.read()}")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"sshd did not listen on port {port} within {timeout} s")


class SshServer:
    """A foreground sshd on 127.0.0.1 that accepts one throwaway client key."""

    def __init__(self, root: Path) -> None:
        self.root, self.port, self.user = root, free_port(), getpass.getuser()
        self.host_key, self.client_key = root / "host_ed25519", root / "client_ed25519"
        for key in (self.host_key, self.client_key):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        (root / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        # The client's known_hosts pins the server's key: host verification stays on.
        self.home = root / "home"
        (self.home / ".ssh").mkdir(parents=True)
        host_pub = " ".join(self.host_key.with_suffix(".pub").read_text().split()[:2])
        (self.home / ".ssh/known_hosts").write_text(f"[127.0.0.1]:{self.port} {host_pub}\n")
        self.config = root / "sshd_config"
        self.config.write_text("\n".join([
            f"Port {self.port}", "ListenAddress 127.0.0.1", f"HostKey {self.host_key}",
            f"AuthorizedKeysFile {root / 'authorized_keys'}", f"PidFile {root / 'sshd.pid'}",
            "PasswordAuthentication no", "KbdInteractiveAuthentication no", "PubkeyAuthentication yes",
            "PermitRootLogin prohibit-password", "StrictModes no", "UsePAM no", "Subsystem sftp internal-sftp",
        ]) + "\n")
        Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation folder
        self.proc = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(self.config)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        wait_for_port(self.port, self.proc)

    def url(self, path: Path) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture(scope="module")
def sshd(tmp_path_factory) -> Iterator[SshServer]:
    reason = ensure_sshd()
    if reason:
        pytest.skip(reason)
    server = SshServer(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def dvc(ws: Path, server: SshServer, *args, check: bool = True) -> subprocess.CompletedProcess:
    """Run dvc in ``ws`` with HOME pointing at the throwaway known_hosts."""
    return subprocess.run([str(BIN / "dvc"), *map(str, args)], cwd=ws, capture_output=True, text=True,
                          env=dict(env(), HOME=str(server.home)), check=check, timeout=600)


def add_remote(ws: Path, server: SshServer, store: Path | None = None) -> None:
    """Make ``lab`` the default remote (``store``), or, in a clone that has it from git, only
    give it this machine's key (``.dvc/config.local``, never committed)."""
    if store is not None:
        dvc(ws, server, "remote", "add", "-d", "lab", server.url(store))
    dvc(ws, server, "remote", "modify", "--local", "lab", "keyfile", server.client_key)


def test_ssh_remote_push_pull_and_tamper(sshd, recorded_run, tmp_path):
    store = tmp_path / "store"
    a = copy_workspace(recorded_run, tmp_path / "a")  # the tiny run, `dvc repro` recorded
    add_remote(a, sshd, store)
    run(a, "git", "commit", "-qam", "the lab remote")
    dvc(a, sshd, "push")
    assert any(p.is_file() for p in store.rglob("*")), "nothing reached the SSH remote"

    run(tmp_path, "git", "clone", "-q", a, "b")
    b = tmp_path / "b"
    add_remote(b, sshd)
    pulled = subprocess.run(["bash", str(ROOT / "workflow/scripts/pull.sh")], cwd=b, capture_output=True, text=True,
                            env=dict(env(), HOME=str(sshd.home)), timeout=600)
    assert pulled.returncode == 0, pulled.stdout + pulled.stderr
    for name in ("models/S1/ST/seed0/model.safetensors", "results/tables/filling_per_container.csv"):
        assert (b / name).read_bytes() == (a / name).read_bytes(), name
    assert "up to date" in dvc(b, sshd, "status").stdout
    assert planned_jobs(b) == {}

    # Tamper with the stored object of one checkpoint: a fresh clone's pull (workflow/scripts/pull.sh,
    # which makes the remote verify downloads) fails, and the tampered bytes reach no file.
    weights = "models/S1/ST/seed0/model.safetensors"
    md5 = hashlib.md5((a / weights).read_bytes()).hexdigest()  # DVC addresses a file by its content's md5
    obj = next(p for p in store.rglob("*") if p.is_file() and p.parent.name + p.name == md5)
    obj.write_bytes(b"tampered" + obj.read_bytes()[8:])
    run(tmp_path, "git", "clone", "-q", a, "c")
    c = tmp_path / "c"
    add_remote(c, sshd)
    failed = subprocess.run(["bash", str(ROOT / "workflow/scripts/pull.sh")], cwd=c, capture_output=True, text=True,
                            env=dict(env(), HOME=str(sshd.home)), timeout=600)
    assert failed.returncode != 0, failed.stdout + failed.stderr
    assert "failed to pull" in failed.stderr, failed.stderr
    landed = [p for p in c.rglob("*") if p.is_file() and ".git" not in p.parts and p.read_bytes()[:8] == b"tampered"]
    assert not landed, landed
    assert not (c / weights).exists() or (c / weights).read_bytes() == (a / weights).read_bytes()
