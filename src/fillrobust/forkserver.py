"""A fork server for the pipeline's jobs: import torch and the command modules once, fork per job.

Every job of the workflow is a ``python -m fillrobust <command>`` process, and
before it does any work it starts an interpreter and imports torch, numpy,
pandas and its command's modules: 2.5-4 s on this 2-core machine, a large part
of a 7-10 s evaluation job. With the fork server, the first job of a run
starts, in the background, one server process that imports all of that once
(and runs nothing else); every later ``python -m fillrobust`` connects to it
over a Unix socket, hands over its arguments, working directory, environment
and standard streams (the file descriptors themselves, so ``> log 2>&1``
works), and a forked copy of the server runs the command and reports its
exit code. Each job is still its own Snakemake job with its own outputs,
log and exit status; only the imports are shared.

Safety:
- the address is derived from the interpreter and the modification times and
  sizes of the package's files, so a server never runs code older than the
  client's: an edit makes the next client start a new server (the old one exits
  when idle);
- the forked job dies when its client dies (it watches the connection), and
  SIGINT / SIGTERM sent to the client are passed on, so killing a job kills it;
- the server never runs torch operations, so no thread pool exists when it
  forks; the forked job sets its own threads, seeds and device as usual, and
  computes the same bytes (tested);
- a client that cannot reach a server runs the command in its own process
  (the first job of a run does so while the server starts).

``FILLROBUST_FORKSERVER=0`` turns it off (every job imports for itself).
Linux only (abstract Unix sockets and descriptor passing); elsewhere it is off.
Snakemake's ``benchmark:`` files keep the job's wall time; their CPU and memory
columns then describe the small client, not the forked job.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ENV_SWITCH = "FILLROBUST_FORKSERVER"
ENV_ADDRESS = "FILLROBUST_FORKSERVER_ADDRESS"
#: seconds a server with no job running waits for the next one before it exits
IDLE_S = float(os.environ.get("FILLROBUST_FORKSERVER_IDLE_S", "120"))
#: modules every job needs; the command modules are added from the CLI's table
#: (torch.use_deterministic_algorithms and the optimizers import torch._dynamo and _inductor: ~2.5 s;
#: every threat evaluation runs AutoAttack, whose torchattacks imports scipy: ~1.3 s)
PRELOAD = ("numpy", "torch", "torch._dynamo", "torch._inductor", "torch.optim", "pandas", "pyarrow.parquet",
           "safetensors.torch", "yaml", "torchattacks")
_HEADER = struct.Struct("!I")


def enabled() -> bool:
    """Whether jobs may use a fork server here: Linux, not switched off, and not inside a
    SLURM job (a server outliving its job would hold a node's memory after the job ends)."""
    return (sys.platform.startswith("linux") and os.environ.get(ENV_SWITCH, "1") != "0"
            and "SLURM_JOB_ID" not in os.environ)


def address(package: Path | None = None) -> str:
    """The abstract socket name of the server for this interpreter and the package's code
    (``FILLROBUST_FORKSERVER_ADDRESS`` names a private one: tests and benchmarks)."""
    if os.environ.get(ENV_ADDRESS):
        return "\0" + os.environ[ENV_ADDRESS]
    package = package or Path(__file__).resolve().parent
    digest = hashlib.sha256(f"{sys.executable}\0{package}\0{os.getuid()}".encode())
    venv = Path(sys.prefix, "pyvenv.cfg")  # a rebuilt environment is new code too
    if venv.exists():
        digest.update(f"{venv.stat().st_mtime_ns}\0".encode())
    for path in sorted(package.rglob("*.py")):
        stat = path.stat()
        digest.update(f"{path.relative_to(package)}\0{stat.st_mtime_ns}\0{stat.st_size}\0".encode())
    return f"\0fillrobust-forkserver-{digest.hexdigest()[:24]}"


# --- messages: a 4-byte length, then JSON -------------------------------------------------

def _send(conn: socket.socket, message: dict, fds: Sequence[int] = ()) -> None:
    data = json.dumps(message).encode()
    payload = _HEADER.pack(len(data)) + data
    if fds:
        socket.send_fds(conn, [payload], list(fds))
    else:
        conn.sendall(payload)


def _recv_exact(conn: socket.socket, size: int) -> bytes:
    chunks = b""
    while len(chunks) < size:
        chunk = conn.recv(size - len(chunks))
        if not chunk:
            raise ConnectionError("connection closed")
        chunks += chunk
    return chunks


def _recv(conn: socket.socket, with_fds: int = 0) -> tuple[dict, list[int]]:
    fds: list[int] = []
    if with_fds:
        head, fds, _, _ = socket.recv_fds(conn, _HEADER.size, with_fds)
        if len(head) < _HEADER.size:
            head += _recv_exact(conn, _HEADER.size - len(head))
    else:
        head = _recv_exact(conn, _HEADER.size)
    (size,) = _HEADER.unpack(head)
    return json.loads(_recv_exact(conn, size)), fds


# --- client ------------------------------------------------------------------------------

def run_via_server(argv: Sequence[str]) -> int | None:
    """Run ``fillrobust argv`` in a forked copy of the server and return its exit code;
    None when no server answers (one is started for the next job; run it here)."""
    if not enabled():
        return None
    name = address()
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.connect(name)
    except OSError:
        conn.close()
        _start_server(name)
        return None
    with conn:
        try:
            _send(conn, {"argv": list(argv), "cwd": os.getcwd(), "env": dict(os.environ)}, fds=(0, 1, 2))
            reply = _recv(conn)[0]
        except (ConnectionError, OSError):
            # The server went away before a child took the job: the child sends its pid
            # before it runs anything and holds the socket open, so no pid and EOF mean
            # the job never started. Run it here (no risk of running it twice).
            return None
        if "pid" not in reply:  # a server whose imports failed: run the job here
            return None
        pid = reply["pid"]
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda s, _frame: os.kill(pid, s))
        try:
            return int(_recv(conn)[0]["exit"])
        except (ConnectionError, OSError):
            print(f"fillrobust: the forked job {pid} ended without an exit status (killed?)", file=sys.stderr)
            return 1


def _start_server(name: str) -> None:
    """Start a detached server at ``name`` (a second one racing for it exits at once)."""
    subprocess.Popen([sys.executable, "-m", "fillrobust.forkserver", name.removeprefix("\0")],
                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                     start_new_session=True, close_fds=True)


# --- server ------------------------------------------------------------------------------

def preload() -> None:
    """Import what the jobs import: the heavy libraries and every command's module."""
    import importlib

    from fillrobust import cli

    for module in PRELOAD:
        importlib.import_module(module)
    for target, _, _ in cli.COMMANDS.values():
        if isinstance(target, str):
            importlib.import_module(f"fillrobust.{target.partition(':')[0]}")


def serve(name: str, idle_s: float = IDLE_S) -> None:
    """Accept jobs at ``name`` until idle for ``idle_s`` seconds with none running."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(name)
    except OSError:  # another server took the address first: it serves
        return
    try:
        preload()
        broken = None
    except Exception as err:  # noqa: BLE001 - any failure: the clients run their jobs themselves
        broken = f"{type(err).__name__}: {err}"
    listener.listen(64)
    listener.settimeout(1.0)
    children: set[int] = set()
    last = time.monotonic()
    while True:
        _reap(children)
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            if not children and time.monotonic() - last > idle_s:
                return
            continue
        last = time.monotonic()
        pid = _fork_job(conn, listener, broken)
        if pid:
            children.add(pid)


def _fork_job(conn: socket.socket, listener: socket.socket, broken: str | None) -> int | None:
    """Fork the job a client sends on ``conn``; its pid (None when it was not run here)."""
    fds: list[int] = []
    try:
        conn.settimeout(None)
        request, fds = _recv(conn, with_fds=3)
        if broken:
            _send(conn, {"fallback": broken})
            return None
        pid = os.fork()
        if pid == 0:
            listener.close()
            _child(conn, request, fds)  # never returns
        print(f"job {pid}: fillrobust {' '.join(request['argv'][:1])} in {request['cwd']}", file=sys.stderr,
              flush=True)
        return pid
    except (ConnectionError, OSError, ValueError):  # a client gone before its job started
        return None
    finally:
        conn.close()
        for fd in fds:
            os.close(fd)


def _reap(children: set[int]) -> None:
    for pid in list(children):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)


def _child(conn: socket.socket, request: dict, fds: list[int]) -> None:
    """Become the job: its streams, directory and environment; run it; report its exit code."""
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.setpgid(0, 0)
        for signum in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        _send(conn, {"pid": os.getpid()})
        threading.Thread(target=_die_with_client, args=(conn,), daemon=True).start()
        code = _run_cli(request["argv"])
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        try:
            _send(conn, {"exit": code})
        finally:
            os._exit(code)


def _run_cli(argv: list[str]) -> int:
    """``fillrobust.cli.main(argv)`` as ``python -m fillrobust`` would end: its exit code."""
    import traceback

    from fillrobust.cli import main

    try:
        return int(main(argv) or 0)
    except SystemExit as exit_:  # argparse's errors and --help
        if exit_.code is None or isinstance(exit_.code, int):
            return int(exit_.code or 0)
        print(exit_.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BaseException:  # the traceback a normal process would print
        traceback.print_exc()
        return 1


def _die_with_client(conn: socket.socket) -> None:
    """The client never writes after its request: EOF means it died, so the job dies too."""
    with contextlib.suppress(OSError):
        conn.recv(1)
    os.kill(os.getpid(), signal.SIGKILL)


if __name__ == "__main__":
    serve("\0" + sys.argv[1])
