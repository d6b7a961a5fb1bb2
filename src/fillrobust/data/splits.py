"""Container-disjoint splits S1/S2/S3 with a stratified validation carve-out."""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd

ROLES = ("train", "val", "test")


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


def indices(split: pd.DataFrame, role: str) -> np.ndarray:
    """Dataset indices of one role, ascending."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, got {role!r}")
    return np.sort(split.loc[split["role"] == role, "index"].to_numpy())


def write_split(dataset_dir: str, name: str, params: dict, out: str) -> pd.DataFrame:
    """Build split ``name`` from ``params`` (membership, val_fraction, seed) and save it."""
    from fillrobust.data.store import read_dataset, write_parquet

    members = params["membership"][name]
    manifest = read_dataset(dataset_dir).manifest
    split = make_split(manifest, list(members["train"]), list(members["test"]),
                       val_fraction=params["val_fraction"], seed=params["seed"], name=name)
    write_parquet(out, split)
    return split
