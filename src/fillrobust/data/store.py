"""Dataset store: the on-disk contract every dataset of the pipeline follows.

A dataset is a folder holding

- ``images.npy``: uint8 array N x H x W x 3, read memory-mapped;
- ``manifest.parquet``: one row per image, at least ``index`` and ``label``;
- ``dataset.json``: name, classes, image size, provenance and a content hash;
- ``masks.npy`` (optional): uint8 array N x H x W.

Writers build the folder under a temporary name beside the target and rename
it into place at the end, so a killed job never leaves a folder that looks
finished.
"""

from __future__ import annotations

import json
import tokenize
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fillrobust.data.atomic import JSONFileError, read_json_object

# The atomic writers live in the light data/atomic.py; re-exported so existing imports work.
from fillrobust.data.atomic import atomic_dir as atomic_dir
from fillrobust.data.atomic import atomic_write as atomic_write
from fillrobust.data.atomic import atomic_write_bytes as atomic_write_bytes
from fillrobust.data.atomic import atomic_write_text as atomic_write_text
from fillrobust.data.atomic import write_json as write_json

# Hashing lives in the light io/integrity.py (the Snakefile's workspace check); re-exported here.
from fillrobust.io.integrity import content_hash
from fillrobust.io.integrity import file_sha256 as file_sha256

IMAGES = "images.npy"
MASKS = "masks.npy"
MANIFEST = "manifest.parquet"
META = "dataset.json"


class DatasetError(ValueError):
    """A dataset folder is missing, incomplete or inconsistent."""


@dataclass
class Dataset:
    """A dataset opened from disk; ``images`` and ``masks`` are memory-mapped."""

    path: Path
    images: np.ndarray
    manifest: pd.DataFrame
    meta: dict[str, Any]
    masks: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])


def write_parquet(path: str | Path, frame: pd.DataFrame) -> None:
    """Write a DataFrame to parquet atomically (no pandas index)."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


def _check_arrays(images: np.ndarray, manifest: pd.DataFrame, masks: np.ndarray | None) -> None:
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise DatasetError(f"images must be uint8 N x H x W x 3, got {images.dtype} {images.shape}")
    if len(manifest) != images.shape[0]:
        raise DatasetError(f"manifest has {len(manifest)} rows but there are {images.shape[0]} images")
    for column in ("index", "label"):
        if column not in manifest.columns:
            raise DatasetError(f"manifest lacks the column '{column}'")
    if masks is not None and masks.shape != images.shape[:3]:
        raise DatasetError(f"masks must be N x H x W = {images.shape[:3]}, got {masks.shape}")


def _finish(tmp: Path, manifest: pd.DataFrame, meta: dict[str, Any], images: np.ndarray,
            has_masks: bool) -> None:
    for key in ("name", "classes"):
        if key not in meta:
            raise DatasetError(f"dataset meta lacks '{key}'")
    manifest.to_parquet(tmp / MANIFEST, index=False)
    names = sorted([IMAGES, MANIFEST] + ([MASKS] if has_masks else []))
    full_meta = dict(meta)
    full_meta.update(
        count=int(images.shape[0]),
        image_size=[int(images.shape[1]), int(images.shape[2])],
        files=names,
        content_hash=content_hash(tmp, names),
    )
    (tmp / META).write_text(json.dumps(full_meta, indent=2, sort_keys=True) + "\n")


@contextmanager
def dataset_writer(
    out_dir: str | Path, count: int, height: int, width: int, with_masks: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray | None, Any]]:
    """Write a large dataset chunk by chunk through memory-mapped arrays.

    Yields ``(images, masks, commit)``: fill the memory-mapped ``images``
    (and ``masks``), then call ``commit(manifest, meta)``. The folder appears
    at ``out_dir`` only if ``commit`` was called and the block exits cleanly.
    """
    committed = []
    with atomic_dir(out_dir) as tmp:
        images = np.lib.format.open_memmap(tmp / IMAGES, "w+", np.uint8, (count, height, width, 3))
        masks = (np.lib.format.open_memmap(tmp / MASKS, "w+", np.uint8, (count, height, width))
                 if with_masks else None)

        def commit(manifest: pd.DataFrame, meta: dict[str, Any]) -> None:
            manifest = manifest.reset_index(drop=True)
            _check_arrays(images, manifest, masks)
            images.flush()
            if masks is not None:
                masks.flush()
            _finish(tmp, manifest, meta, images, masks is not None)
            committed.append(True)

        yield images, masks, commit
        if not committed:
            raise DatasetError(f"{out_dir}: dataset_writer closed without commit()")


def write_dataset(
    out_dir: str | Path,
    images: np.ndarray,
    manifest: pd.DataFrame,
    meta: dict[str, Any],
    masks: np.ndarray | None = None,
) -> Path:
    """Write a dataset folder atomically and return its path.

    ``meta`` must hold ``name`` and ``classes``; the image size, count and a
    content hash over all files are added here.
    """
    manifest = manifest.reset_index(drop=True)
    _check_arrays(images, manifest, masks)
    with atomic_dir(out_dir) as tmp:
        np.save(tmp / IMAGES, np.ascontiguousarray(images))
        if masks is not None:
            np.save(tmp / MASKS, np.ascontiguousarray(masks.astype(np.uint8)))
        _finish(tmp, manifest, meta, images, masks is not None)
    return Path(out_dir)


def _load_array(file: Path) -> np.ndarray:
    """Memory-map one .npy file of a dataset; a damaged one is named, and never unpickled."""
    try:
        return np.load(file, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, tokenize.TokenError) as err:  # a torn header can fail to tokenize
        # numpy reads a damaged magic string as a pickle and advises loading it unsafely: never.
        reason = "a damaged header, or pickled objects" if "pickle" in str(err) else str(err)
        raise DatasetError(f"{file}: unreadable dataset file ({reason}); expected a plain numeric .npy array"
                           ) from err


def read_dataset(path: str | Path, verify: bool = False) -> Dataset:
    """Open a dataset folder; images and masks stay memory-mapped.

    With ``verify`` the content hash is recomputed and compared.
    """
    path = Path(path)
    meta_path = path / META
    if not meta_path.is_file():
        raise DatasetError(f"{path}: not a dataset folder (no {META}); was it written completely?")
    try:
        meta = read_json_object(meta_path, "dataset description")
    except JSONFileError as err:  # a DatasetError, as every other problem of the folder
        raise DatasetError(str(err)) from err
    for name in meta.get("files", [IMAGES, MANIFEST]):
        if not (path / name).is_file():
            raise DatasetError(f"{path}: missing {name} listed in {META}")
    if verify and content_hash(path, sorted(meta["files"])) != meta.get("content_hash"):
        raise DatasetError(f"{path}: content hash mismatch; files were changed after writing")
    images = _load_array(path / IMAGES)
    masks = _load_array(path / MASKS) if (path / MASKS).is_file() else None
    try:
        manifest = pd.read_parquet(path / MANIFEST)
    except (ValueError, OSError) as err:
        raise DatasetError(f"{path / MANIFEST}: unreadable dataset file ({err}); expected a parquet table") from err
    _check_arrays(images, manifest, masks)
    return Dataset(path=path, images=images, manifest=manifest, meta=meta, masks=masks)
