"""One training job: dataset + split + strategy + seed -> checkpoint."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fillrobust.data.splits import indices
from fillrobust.data.store import read_dataset
from fillrobust.device import pick_device, seed_everything
from fillrobust.io.checkpoint import save_checkpoint
from fillrobust.train.loop import TrainData, fit
from fillrobust.train.strategies import prepare


def run_training(
    dataset_dir: str, split_path: str, strategy: str, params: dict[str, Any], seed: int,
    out: str, device: str = "auto", threads: int | None = None, split_name: str = "",
) -> dict[str, Any]:
    """Train ``strategy`` on the train role of a split and save the checkpoint."""
    seed_everything(seed, threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    split = pd.read_parquet(split_path)
    labels = ds.manifest["label"].to_numpy().astype(np.int64)
    data = TrainData(ds.images, labels, indices(split, "train"), indices(split, "val"))
    print(f"train {strategy} split={split_name} seed={seed} device={dev} "
          f"n_train={len(data.train_idx)} n_val={len(data.val_idx)}", flush=True)
    prepared = prepare(strategy, params, len(ds.classes))
    model = prepared.model.to(dev)
    if params.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    tic = time.perf_counter()
    history = fit(model, data, params, seed, dev, prepared.step, prepared.set_train_mode,
                  log=lambda line: print(line, flush=True))
    final = history.final()
    info = {
        "architecture": params.get("arch", "resnet18"), "classes": ds.classes, "strategy": strategy,
        "split": split_name, "seed": seed, "params": params, "parent": prepared.parent,
        "dataset_hash": ds.meta.get("content_hash"), "image_size": ds.meta.get("image_size"),
        "final_metrics": final, "history": history.epochs,
    }
    save_checkpoint(model, Path(out), info)
    print(f"done in {time.perf_counter() - tic:.1f} s: {final}", flush=True)
    return info
