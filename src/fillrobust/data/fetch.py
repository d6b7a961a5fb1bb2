"""Download a file by URL, resumably, pinned by sha256 (standard library only).

Bytes go to ``dest.part``; an interrupted transfer is resumed with an HTTP
``Range`` request on the next attempt (or the next call). A server that
ignores ``Range`` (answers 200) restarts the file from byte 0. When the
transfer completes the sha256 is checked: on a match ``dest.part`` is renamed
to ``dest`` (atomic), on a mismatch ``dest.part`` is deleted, because
resuming onto wrong bytes could never succeed, and ``FetchError`` names the
URL, the expected and the actual hash. Client errors (4xx other than 408/429)
are not retried; network errors and 5xx are, up to ``retries`` times.
"""

from __future__ import annotations

import http.client
import os
import time
import urllib.error
import urllib.request
from pathlib import Path

from fillrobust.data.store import file_sha256

CHUNK = 1 << 16
_RETRYABLE_STATUS = {408, 429}


class FetchError(RuntimeError):
    """A download failed; the message names the URL and the reason."""


def _part(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def _attempt(url: str, part: Path, timeout: float) -> None:
    """One request: append to ``part`` from its current size (or restart)."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # nothing left to send: the part is complete
            return
        raise
    with response:
        resumed = response.status == 206
        with open(part, "ab" if resumed else "wb") as out:
            while block := response.read(CHUNK):
                out.write(block)
        expected = response.headers.get("Content-Length")
    got = part.stat().st_size - (have if resumed else 0)
    if expected is not None and got < int(expected):
        raise http.client.IncompleteRead(b"", int(expected) - got)


def fetch(url: str, dest: str | Path, sha256: str, timeout: float = 60.0, retries: int = 3) -> Path:
    """Download ``url`` to ``dest`` and verify its sha256; returns ``dest``.

    An existing ``dest`` with the right hash is kept without any request.
    """
    dest = Path(dest)
    sha256 = sha256.lower()
    if dest.is_file() and file_sha256(dest) == sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part(dest)
    last: Exception | None = None
    for attempt in range(retries + 1):
        try:
            _attempt(url, part, timeout)
            break
        except urllib.error.HTTPError as err:
            if err.code < 500 and err.code not in _RETRYABLE_STATUS:
                raise FetchError(f"{url}: HTTP {err.code} {err.reason}") from err
            last = err
        except (urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as err:
            last = err
        if attempt < retries:
            time.sleep(min(0.2 * 2**attempt, 5.0))
    else:
        raise FetchError(f"{url}: download failed after {retries + 1} attempts ({last!r}); "
                         f"partial data kept in {part} for resuming")
    actual = file_sha256(part)
    if actual != sha256:
        part.unlink(missing_ok=True)
        raise FetchError(f"{url}: sha256 mismatch: expected {sha256}, got {actual} "
                         f"(deleted {part})")
    os.replace(part, dest)
    return dest
