"""Split roles on frequency-derived datasets, and training on them (thesis App. A.2).

A derived dataset (``fillrobust.data.frequency``) keeps the source ``index`` in
its manifest, and ``lp_hp`` holds every image twice (low-pass rows, then
high-pass rows), so split files, which select by index, are mapped onto row
positions here.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from fillrobust.data.splits import indices, read_split
from fillrobust.data.store import read_dataset


def positions(manifest: pd.DataFrame, split: pd.DataFrame, role: str,
              variant: str | None = None) -> np.ndarray:
    """Row positions of ``manifest`` whose source index has ``role`` in ``split``.

    ``variant`` selects the rows of one part of a stacked dataset (``lp_hp``:
    ``lowpass`` or ``highpass``); None keeps every row.
    """
    keep = manifest["index"].isin(indices(split, role)).to_numpy()
    if variant is not None:
        if "variant" not in manifest.columns:
            raise ValueError(f"the dataset has no 'variant' column to select {variant!r} from")
        keep = keep & (manifest["variant"] == variant).to_numpy()
    return np.flatnonzero(keep)


def positional_split(manifest: pd.DataFrame, split: pd.DataFrame) -> pd.DataFrame:
    """The split re-expressed on row positions (``index`` = position) of a dataset."""
    parts = [pd.DataFrame({"index": positions(manifest, split, role), "role": role})
             for role in ("train", "val", "test")]
    return pd.concat(parts, ignore_index=True).sort_values("index", kind="stable").reset_index(drop=True)


def train_variant(dataset_dir: str, split_path: str, strategy: str, params: dict[str, Any], seed: int,
                  out: str, device: str, threads: int | None, split_name: str, variant: str) -> dict[str, Any]:
    """Train ``strategy``'s recipe on a (derived) dataset; the sidecar records the variant."""
    from fillrobust.train.run import run_training

    manifest = read_dataset(dataset_dir).manifest
    mapped = positional_split(manifest, read_split(split_path))
    with tempfile.TemporaryDirectory() as tmp:
        mapped_path = str(Path(tmp) / "split.parquet")
        mapped.to_parquet(mapped_path, index=False)
        return run_training(dataset_dir=dataset_dir, split_path=mapped_path, strategy=strategy, params=params,
                            seed=seed, out=out, device=device, threads=threads, split_name=split_name,
                            extra={"variant": variant, "split_file": split_path})


def sample_positions(pos: np.ndarray, n: int, seed: int) -> np.ndarray:
    """A seeded, sorted subset of ``n`` positions (all when fewer)."""
    if len(pos) <= n:
        return np.sort(pos)
    return np.sort(np.random.default_rng(seed).choice(pos, size=n, replace=False))
