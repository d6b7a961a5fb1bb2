"""Clean evaluation: per-image predictions of a checkpoint on a split's test set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from fillrobust.data.splits import indices
from fillrobust.data.store import read_dataset, write_json, write_parquet
from fillrobust.device import pick_device, seed_everything
from fillrobust.io.checkpoint import CheckpointError, load_checkpoint, read_sidecar
from fillrobust.models.resnet import build_model
from fillrobust.train.loop import to_batch

PREDICTION_COLUMNS = ["index", "container", "label", "prediction", "threat", "severity", "norm"]


def load_trained(weights: str, device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Build the sidecar's architecture, load and verify the weights, eval mode."""
    info = read_sidecar(weights)
    for key in ("architecture", "classes"):
        if key not in info:
            raise CheckpointError(f"{weights}: sidecar lacks '{key}'")
    model = build_model(info["architecture"], len(info["classes"]))
    load_checkpoint(model, weights)
    return model.to(device).eval(), info


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, positions: np.ndarray, device: torch.device,
            batch_size: int) -> np.ndarray:
    """Arg-max predictions for ``positions``, batched."""
    out = np.empty(len(positions), dtype=np.int64)
    for start in range(0, len(positions), batch_size):
        pos = positions[start : start + batch_size]
        out[start : start + len(pos)] = model(to_batch(images, pos, device)).argmax(1).cpu().numpy()
    return out


def evaluate_clean(dataset_dir: str, split_path: str, weights: str, params: dict[str, Any],
                   out_dir: str, device: str = "auto", threads: int | None = None,
                   strategy: str | None = None) -> dict[str, Any]:
    """Write ``predictions.parquet`` and ``summary.json`` for the test role.

    ``strategy`` labels the results (e.g. ``ST-FT`` for the ``ST-FT_L1``
    sweep model it is); by default the checkpoint's own strategy.
    """
    seed_everything(0, threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    model, info = load_trained(weights, dev)
    if list(info["classes"]) != ds.classes:
        raise CheckpointError(f"{weights}: classes {info['classes']} differ from the dataset's {ds.classes}")
    split = pd.read_parquet(split_path)
    by_index = ds.manifest.set_index("index")
    test, val = indices(split, "test"), indices(split, "val")
    pred = predict(model, ds.images, test, dev, params["batch_size"])
    rows = by_index.loc[test]
    frame = pd.DataFrame({
        "index": test, "container": rows["container"].to_numpy(), "label": rows["label"].to_numpy(),
        "prediction": pred, "threat": "clean", "severity": 0, "norm": 0.0,
    })
    frame["correct"] = frame["label"] == frame["prediction"]
    val_pred = predict(model, ds.images, val, dev, params["batch_size"])
    val_acc = float((val_pred == by_index.loc[val, "label"].to_numpy()).mean()) if len(val) else float("nan")
    summary = {
        "strategy": strategy or info["strategy"], "model": info["strategy"],
        "split": info.get("split"), "seed": info["seed"],
        "n": len(frame), "accuracy": float(frame["correct"].mean()) if len(frame) else float("nan"),
        "per_container": frame.groupby("container")["correct"].mean().round(6).to_dict(),
        "train_accuracy": info["final_metrics"].get("train_accuracy"),
        "val_accuracy": val_acc,
        "weights_sha256": info["weights_sha256"],
    }
    write_parquet(f"{out_dir}/predictions.parquet", frame)
    write_json(f"{out_dir}/summary.json", summary)
    return summary
