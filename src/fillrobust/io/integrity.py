"""File hashes, and the workspace check that runs before Snakemake plans any job.

A checkpoint or dataset changed after it was written (a flipped byte, a partial
copy, a hand edit) must stop the run before anything is deleted. Left to
itself, Snakemake sees a newer input, deletes every output downstream of it and
reruns those jobs, which refuse the file only after the old results are gone;
and when nothing downstream is asked for, `dvc repro` records the changed file
as the stage's output and `dvc push` shares it. So `workflow/rules/common.smk`
calls :func:`verify_workspace` once per Snakemake invocation (dry runs
included): every checkpoint is compared with its sidecar's ``weights_sha256``
and every dataset folder with its ``content_hash``.

Hashing the whole workspace each time would cost seconds (about 1.2 GB in the
embedded default), so file hashes are cached by path, size and modification
time in ``.snakemake/fillrobust-sha256.json``: only new or rewritten files are
read. The cache guards against accidents, not against someone who edits a
file, restores its modification time and edits the cache too.

Standard library only (and the light ``fillrobust.data.atomic``): the Snakefile imports this
module while it parses.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from fillrobust.data.atomic import JSONFileError, read_json_object

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

#: The cache of file hashes, under Snakemake's own folder of the workspace.
CACHE = Path(".snakemake") / "fillrobust-sha256.json"


class IntegrityError(ValueError):
    """Checkpoints or datasets of the workspace were changed after they were written."""


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def content_hash(folder: Path, names: list[str],
                 file_hash: Callable[[Path], str] = file_sha256) -> str:
    """A dataset folder's content hash: sha256 over each named file's name and sha256."""
    digest = hashlib.sha256()
    for name in names:
        digest.update(name.encode())
        digest.update(file_hash(folder / name).encode())
    return digest.hexdigest()


def check_pin(path: str | Path, sha256: str | None, what: str, key: str) -> None:
    """Raise ``ValueError`` unless the local file ``path`` exists and has the pinned ``sha256``.

    ``what`` names the file ("detector weights"), ``key`` the param that pins it. A
    missing pin is refused too, with the file's hash to pin if it is the file you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} {path} not found (a local file; nothing is downloaded)")
    fault = pin_fault(path, sha256, file_sha256(path), what, key)
    if fault:
        raise ValueError(fault)


def pin_fault(path: str | Path, sha256: str | None, actual: str, what: str, key: str) -> str | None:
    """What is wrong with a file of sha256 ``actual`` pinned by ``sha256`` (None: nothing)."""
    if not sha256 or str(sha256).lower() in ("null", "none"):
        return f"{what} {path}: no sha256 pinned ({key}); if this is the file you trust, pin {actual}"
    if actual != str(sha256).lower():
        return f"{what} {path}: sha256 mismatch: {actual} does not match the pinned {str(sha256).lower()} ({key})"
    return None


#: The sidecar key holding the sha256 of the sidecar's other keys (``sidecar_digest``).
SIDECAR_DIGEST = "sidecar_sha256"


def sidecar_digest(meta: dict) -> str:
    """sha256 of a sidecar's content without its own digest, in canonical JSON (sorted keys,
    no spaces), so a hand edit of any recorded value (``converged``, a metric, the params) shows.
    ``meta`` holds JSON values: read from the file, or normalised by ``checkpoint.sidecar_text``."""
    body = {k: v for k, v in meta.items() if k != SIDECAR_DIGEST}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def sidecar_fault(meta: dict) -> str | None:
    """Why a sidecar cannot be trusted (its values were edited after it was written), or None.
    Sidecars written before the digest existed carry none and are taken as they are."""
    recorded = meta.get(SIDECAR_DIGEST)
    if recorded is None or recorded == sidecar_digest(meta):
        return None
    return f"its content does not match its {SIDECAR_DIGEST} (edited after it was written)"


class HashCache:
    """File sha256s keyed by path, reused while a file's size and mtime are unchanged."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list] = {}
        self.changed = False
        try:
            loaded = json.loads(path.read_text())
            if isinstance(loaded, dict):
                self.entries = loaded
        except (OSError, ValueError):
            pass  # no cache or an unreadable one: every file is hashed again

    def sha256(self, root: Path, rel: Path) -> str:
        """The sha256 of ``root / rel``, from the cache when its size and mtime match.

        Keys are paths relative to the workspace, so a copy that keeps mtimes
        (``cp -a``, the tests' workspace copies) keeps its cache.
        """
        stat = (root / rel).stat()
        key = rel.as_posix()
        entry = self.entries.get(key)
        if isinstance(entry, list) and entry[:2] == [stat.st_size, stat.st_mtime_ns]:
            return str(entry[2])
        digest = file_sha256(root / rel)
        self.entries[key] = [stat.st_size, stat.st_mtime_ns, digest]
        self.changed = True
        return digest

    def save(self) -> None:
        """Write the cache atomically (a concurrent reader sees the old or the new one)."""
        if not self.changed:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(self.entries, sort_keys=True))
        os.replace(tmp, self.path)


def _read_object(path: Path) -> dict | None:
    """The JSON object in ``path``, or None when it is unreadable or not an object."""
    try:
        return read_json_object(path, "record")
    except JSONFileError:
        return None


def _finished(path: Path) -> bool:
    """``path`` (relative to the workspace) is no temporary file or folder of an atomic writer,
    nor a training's resume state."""
    return not any(part.startswith(".") for part in path.parts) and not path.name.endswith(".resume.safetensors")


def checkpoint_problems(root: Path, models: str, cache: HashCache) -> list[str]:
    """Checkpoints under ``root / models`` whose weights do not match their sidecar, or whose
    sidecar was edited (``sidecar_fault``).

    Weights without a sidecar are skipped: the sidecar is renamed into place
    last, so such a checkpoint was never finished and Snakemake reruns its job.
    """
    problems = []
    for weights in sorted((root / models).rglob("*.safetensors")):
        rel = weights.relative_to(root)
        sidecar = weights.with_suffix(".json")
        if not _finished(rel) or not sidecar.is_file():
            continue
        meta = _read_object(sidecar)
        if meta is None:
            problems.append(f"{rel.with_suffix('.json')}: unreadable checkpoint sidecar (expected a JSON object)")
        elif cache.sha256(root, rel) != meta.get("weights_sha256"):
            problems.append(f"{rel}: sha256 does not match its sidecar's weights_sha256")
        elif fault := sidecar_fault(meta):
            problems.append(f"{rel.with_suffix('.json')}: {fault}")
    return problems


def dataset_problems(root: Path, data: str, cache: HashCache) -> list[str]:
    """Dataset folders under ``root / data`` whose files do not match their ``content_hash``."""
    problems = []
    for meta_path in sorted((root / data).rglob("dataset.json")):
        rel = meta_path.parent.relative_to(root)
        if not _finished(rel):
            continue
        meta = _read_object(meta_path)
        names = meta.get("files") if meta else None
        if meta is None or not isinstance(names, list):
            problems.append(f"{rel}/dataset.json: unreadable dataset description (expected a JSON object with 'files')")
            continue
        missing = [name for name in names if not (root / rel / name).is_file()]
        if missing:
            problems.append(f"{rel}: missing {', '.join(missing)} listed in dataset.json")
        elif content_hash(rel, sorted(names), lambda file: cache.sha256(root, file)) != meta.get("content_hash"):
            problems.append(f"{rel}: files do not match dataset.json's content_hash")
    return problems


def structure_problems(root: Path, models: str, data: str) -> list[str]:
    """Split tables and eps_s selection records that are damaged (they carry no hash of their
    own): a split file must be a whole parquet file, a selection record a JSON object."""
    problems = []
    for split in sorted((root / data / "splits").glob("*.parquet")):
        with open(split, "rb") as handle:
            head = handle.read(4)
            handle.seek(max(split.stat().st_size - 4, 0))
            tail = handle.read(4)
        if split.stat().st_size < 12 or head != b"PAR1" or tail != b"PAR1":
            problems.append(f"{split.relative_to(root)}: not a whole parquet file (truncated or overwritten)")
    for record in sorted((root / models).glob("*/selection/*.json")):
        if _read_object(record) is None:
            problems.append(f"{record.relative_to(root)}: unreadable eps_s selection record (expected a JSON object)")
    return problems


def pin_problems(root: Path, pins: Sequence[tuple[str, str | None, str, str]], cache: HashCache) -> list[str]:
    """Outside files (``config.external_pins``: path, sha256, what, key) present but unpinned or
    not matching their pin. A missing one is left to Snakemake, which names it when a job needs it.

    Checked before planning because Snakemake reruns the jobs that read a replaced file, and
    deletes their outputs, before the job's own pin check would refuse it.
    """
    faults = (pin_fault(path, sha256, cache.sha256(root, Path(path)), what, key)
              for path, sha256, what, key in pins if (root / path).is_file())
    return [fault for fault in faults if fault]


def verify_workspace(root: str | Path = ".", models: str = "models", data: str = "data",
                     cache: HashCache | None = None) -> list[str]:
    """Every changed checkpoint and dataset, and every damaged split or selection record, of the
    workspace at ``root``, as messages (``cache``: the workspace's hash cache, loaded if not given)."""
    root = Path(root)
    own = cache is None
    cache = HashCache(root / CACHE) if cache is None else cache
    problems = (checkpoint_problems(root, models, cache) + dataset_problems(root, data, cache)
                + structure_problems(root, models, data))
    if own:
        cache.save()
    return problems


def _refuse(problems: list[str], what: str, remedy: str) -> None:
    if problems:
        lines = "\n".join(f"  - {problem}" for problem in problems)
        raise IntegrityError(f"{what}; stopping before any job is planned (nothing was deleted):\n{lines}\n{remedy}")


def check_workspace(root: str | Path = ".", pins: Sequence[tuple[str, str | None, str, str]] = ()) -> None:
    """Raise :class:`IntegrityError` naming every outside file that does not match its pin
    (``pins``: ``config.external_pins``), else every changed file of the workspace, and how to
    recover. One hash cache serves both."""
    root = Path(root)
    cache = HashCache(root / CACHE)
    try:
        _refuse(pin_problems(root, pins, cache), "outside files do not match their params",
                "Pin the sha256 of the file you trust, or put the pinned file back.")
        _refuse(verify_workspace(root, cache=cache), "files changed after they were written",
                "Restore them from DVC (`dvc checkout --force models` or `data`, then `bash "
                "workflow/scripts/pull.sh` to mark the workspace up to date), or delete the file (a checkpoint: "
                "weights and sidecar; a dataset: its folder) to rebuild it and everything that depends on it.")
    finally:
        cache.save()
