"""Atomic file and folder writers: build under a temporary sibling name, then rename.

A killed writer thus never leaves a file or folder that looks finished; what it does
leave (its temporary sibling) the next writer of the same path removes once it has
written it (:func:`remove_strays`), so no stray ends up in an output folder that DVC
versions. Standard library
only, so light jobs (e.g. relabelling an evaluation) start without pandas or pyarrow;
``fillrobust.data.store`` re-exports these names. ``read_json_object`` is the reading
side of ``write_json``: it lives here so that every rule whose code hash covers the
writers covers it too.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def temp_sibling(path: Path, suffix: str = "") -> Path:
    """A fresh temporary name beside ``path``: ``.<name>.tmp-<8 hex>[suffix]``."""
    return path.parent / f".{path.name}.tmp-{uuid.uuid4().hex[:8]}{suffix}"


def remove_strays(path: str | Path) -> None:
    """Remove the temporary siblings (:func:`temp_sibling`) that writers of ``path`` killed
    mid-write left behind. Call it after writing ``path``: its writer is the only one (a
    Snakemake output has one job, and a job one writer per file)."""
    path = Path(path)
    for stray in path.parent.glob(f".{glob.escape(path.name)}.tmp-*"):
        if stray.is_dir() and not stray.is_symlink():
            shutil.rmtree(stray, ignore_errors=True)
        else:
            stray.unlink(missing_ok=True)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Yield a fresh temporary folder that is renamed to ``target`` on success.

    An existing ``target`` is replaced only after the new one is complete; on
    error the temporary folder is removed and ``target`` is left untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(target)
    tmp.mkdir()
    try:
        yield tmp
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
        remove_strays(target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def atomic_write(path: str | Path, write: Callable[[Path], Any], suffix: str = "") -> None:
    """Create ``path`` by ``write(tmp)`` on a temporary sibling and a rename, so a killed
    writer leaves nothing that looks finished. ``suffix``: an ending the writer needs
    on its file name (``np.savez`` adds ``.npz`` otherwise)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_sibling(path, suffix)
    try:
        write(tmp)
        os.replace(tmp, path)
        remove_strays(path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file and a rename."""
    atomic_write(path, lambda tmp: tmp.write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


class JSONFileError(ValueError):
    """A JSON file is missing, unreadable, not JSON, or not the object expected."""


#: JSON's names for what ``json.loads`` returns, for messages
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_json_object(path: str | Path, what: str, keys: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON object in ``path``, with at least ``keys``.

    ``what`` names the file's role ("evaluation summary", "checkpoint sidecar"):
    every failure raises ``JSONFileError`` naming the file, its role and what
    was expected, instead of a bare decoder message or a TypeError later on.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise JSONFileError(f"{what} not found: {path}") from err
    except UnicodeDecodeError as err:
        raise JSONFileError(f"{path}: corrupt {what}: not UTF-8 text ({err}); expected a JSON object") from err
    except OSError as err:
        raise JSONFileError(f"{path}: unreadable {what} ({err})") from err
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as err:
        raise JSONFileError(f"{path}: corrupt {what}: not valid JSON ({err}); expected a JSON object") from err
    if not isinstance(obj, dict):
        kind = _JSON_KINDS.get(type(obj), type(obj).__name__)
        raise JSONFileError(f"{path}: corrupt {what}: a JSON {kind}; expected a JSON object")
    keys = list(keys)
    missing = [k for k in keys if k not in obj]
    if missing:
        raise JSONFileError(f"{path}: corrupt {what}: lacks {missing}; expected a JSON object with keys {keys}")
    return obj
