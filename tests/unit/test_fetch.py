"""fetch(): resumable, sha256-pinned downloads against a local HTTP server."""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest

from fillrobust.data.fetch import FetchError, fetch

PAYLOAD = np.random.default_rng(0).integers(0, 256, size=300_000, dtype=np.uint8).tobytes()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


class _Handler(BaseHTTPRequestHandler):
    """Serves PAYLOAD at /file with Range support; /cut drops the first transfer mid-file."""

    requests: list[tuple[str, str | None]] = []
    cut_once = True

    def log_message(self, *args: object) -> None:  # keep test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 (http.server API)
        rng = self.headers.get("Range")
        type(self).requests.append((self.path, rng))
        if self.path not in ("/file", "/cut", "/norange"):
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng and self.path != "/norange":
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
        body = PAYLOAD[start:]
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if self.path == "/cut" and type(self).cut_once:
            type(self).cut_once = False
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)


@pytest.fixture()
def server() -> Iterator[str]:
    _Handler.requests = []
    _Handler.cut_once = True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_plain_download_and_cache(server: str, tmp_path) -> None:
    dest = tmp_path / "w" / "weights.bin"
    assert fetch(f"{server}/file", dest, SHA, timeout=5, retries=0) == dest
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("weights.bin.part").exists()
    n = len(_Handler.requests)
    fetch(f"{server}/file", dest, SHA.upper(), timeout=5, retries=0)  # cached: no request
    assert len(_Handler.requests) == n


def test_cut_transfer_is_resumed_with_range(server: str, tmp_path) -> None:
    dest = tmp_path / "weights.bin"
    fetch(f"{server}/cut", dest, SHA, timeout=5, retries=2)
    assert dest.read_bytes() == PAYLOAD
    assert len(_Handler.requests) == 2
    assert _Handler.requests[0][1] is None
    assert _Handler.requests[1][1] == f"bytes={len(PAYLOAD) // 3}-"


def test_cut_without_retries_keeps_part_for_next_call(server: str, tmp_path) -> None:
    dest = tmp_path / "weights.bin"
    with pytest.raises(FetchError, match=r"/cut: download failed after 1 attempts"):
        fetch(f"{server}/cut", dest, SHA, timeout=5, retries=0)
    part = tmp_path / "weights.bin.part"
    assert part.stat().st_size == len(PAYLOAD) // 3 and not dest.exists()
    fetch(f"{server}/cut", dest, SHA, timeout=5, retries=0)  # next call resumes
    assert dest.read_bytes() == PAYLOAD


def test_server_ignoring_range_restarts(server: str, tmp_path) -> None:
    dest = tmp_path / "weights.bin"
    (tmp_path / "weights.bin.part").write_bytes(b"garbage!" * 10)
    fetch(f"{server}/norange", dest, SHA, timeout=5, retries=0)
    assert dest.read_bytes() == PAYLOAD


def test_wrong_checksum_names_url_and_hashes(server: str, tmp_path) -> None:
    dest = tmp_path / "weights.bin"
    wrong = "0" * 64
    with pytest.raises(FetchError) as err:
        fetch(f"{server}/file", dest, wrong, timeout=5, retries=0)
    msg = str(err.value)
    assert f"{server}/file" in msg and wrong in msg and SHA in msg
    assert not dest.exists() and not (tmp_path / "weights.bin.part").exists()


def test_404_is_not_retried(server: str, tmp_path) -> None:
    with pytest.raises(FetchError, match=r"/missing: HTTP 404"):
        fetch(f"{server}/missing", tmp_path / "x.bin", SHA, timeout=5, retries=3)
    assert len(_Handler.requests) == 1


def test_unreachable_host_names_url(tmp_path) -> None:
    import socket

    with socket.socket() as sock:  # a free port with nothing listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file"
    with pytest.raises(FetchError, match=re.escape(url)):
        fetch(url, tmp_path / "x.bin", SHA, timeout=2, retries=1)
