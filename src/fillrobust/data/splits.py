"""Container-disjoint splits S1/S2/S3 with a stratified validation carve-out,
and SynthSource as a split of its own (the M-TLAT / Top-GAP ImageNet runs)."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from fillrobust.data import SOURCE_SPLIT

ROLES = ("train", "val", "test")
SPLIT_COLUMNS = ("index", "role")
#: what a split file must be, for messages
SPLIT_FORM = "a parquet table with columns index, role (written by `fillrobust split`)"


def make_split(
    manifest: pd.DataFrame, train: list[str], test: list[str], val_fraction: float, seed: int, name: str
) -> pd.DataFrame:
    """Assign every image of the listed containers a role: train, val or test.

    Test images are all images of the ``test`` containers. From the ``train``
    containers a fraction ``val_fraction`` of each (container, label) stratum
    is carved out as validation, so validation measures seen containers.
    Images of containers in neither list are left out.
    """
    missing = sorted(set(train + test) - set(manifest["container"].unique()))
    if missing:
        raise ValueError(f"split {name}: containers {missing} have no images in the dataset")
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    rows = []
    pool = manifest[manifest["container"].isin(train)]
    for _, stratum in pool.groupby(["container", "label"], sort=True):
        idx = stratum["index"].to_numpy()
        idx = idx[rng.permutation(len(idx))]
        n_val = int(round(len(idx) * val_fraction))
        rows.append(pd.DataFrame({"index": idx[:n_val], "role": "val"}))
        rows.append(pd.DataFrame({"index": idx[n_val:], "role": "train"}))
    test_idx = manifest.loc[manifest["container"].isin(test), "index"].to_numpy()
    rows.append(pd.DataFrame({"index": test_idx, "role": "test"}))
    out = pd.concat(rows, ignore_index=True).sort_values("index", kind="stable")
    return out.reset_index(drop=True).astype({"index": "int64", "role": "string"})


def round_robin(queues: list[np.ndarray]) -> np.ndarray:
    """The queues' items taken in turns (first of each, then second of each, ...), so any
    prefix is as balanced over the queues as their lengths allow."""
    longest = max((len(q) for q in queues), default=0)
    return np.array([q[i] for i in range(longest) for q in queues if i < len(q)], dtype=np.int64)


def make_source_split(manifest: pd.DataFrame, train_images: int | None, seed: int) -> pd.DataFrame:
    """SynthSource as a split: train = a class-balanced subset of its ``train`` role
    (``train_images``, None = all of it), test = its ``val`` role (the images the
    source models never trained on, as ImageNet's validation set is the papers' test set).
    """
    pool = manifest[manifest["role"] == "train"]
    if train_images is not None and train_images > len(pool):
        raise ValueError(f"split {SOURCE_SPLIT}: train_images {train_images} > the {len(pool)} "
                         "train images of SynthSource (source.synth.images)")
    rng = np.random.default_rng([seed, zlib.crc32(SOURCE_SPLIT.encode())])
    queues = [s["index"].to_numpy()[rng.permutation(len(s))] for _, s in pool.groupby("label", sort=True)]
    order = round_robin(queues)  # any prefix is class-balanced
    train = np.sort(order[:train_images] if train_images is not None else order)
    test = manifest.loc[manifest["role"] == "val", "index"].to_numpy()
    if not len(test):
        raise ValueError(f"split {SOURCE_SPLIT}: SynthSource has no val images (source.synth.val_fraction is 0)")
    out = pd.concat([pd.DataFrame({"index": train, "role": "train"}),
                     pd.DataFrame({"index": test, "role": "test"})], ignore_index=True)
    return out.sort_values("index", kind="stable").reset_index(drop=True).astype({"index": "int64",
                                                                                  "role": "string"})


def read_split(path: str | Path) -> pd.DataFrame:
    """The split file at ``path``; a missing, unreadable or incomplete one is named with what was expected."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"split file not found: {path} (expected {SPLIT_FORM})")
    try:
        split = pd.read_parquet(path)
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid is a ValueError
        raise ValueError(f"{path}: unreadable split file ({err}); expected {SPLIT_FORM}") from err
    missing = [c for c in SPLIT_COLUMNS if c not in split.columns]
    if missing:
        raise ValueError(f"{path}: split file lacks columns {missing}; expected {SPLIT_FORM}")
    return split


def indices(split: pd.DataFrame, role: str) -> np.ndarray:
    """Dataset indices of one role, ascending."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return np.sort(split.loc[split["role"] == role, "index"].to_numpy())


def write_split(dataset_dir: str, name: str, params: dict, out: str) -> pd.DataFrame:
    """Build split ``name`` from ``params`` (membership, val_fraction, seed) and save it;
    :data:`SOURCE_SPLIT` from SynthSource with ``params`` train_images, seed."""
    from fillrobust.data.store import read_dataset, write_parquet

    manifest = read_dataset(dataset_dir).manifest
    if name == SOURCE_SPLIT:
        split = make_source_split(manifest, params.get("train_images"), seed=params["seed"])
    else:
        members = params["membership"][name]
        split = make_split(manifest, list(members["train"]), list(members["test"]),
                           val_fraction=params["val_fraction"], seed=params["seed"], name=name)
    write_parquet(out, split)
    return split
