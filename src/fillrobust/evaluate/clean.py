"""Clean evaluation: per-image predictions of a checkpoint on a split's test set."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch

from fillrobust.data.splits import indices, read_split
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


#: Batch size of the clean evaluation run inside a training job (rule ``train``).
#: Fixed, not a parameter: per-image predictions in eval mode do not depend on
#: it, and a parameter would make every training rerun when it changed.
FUSED_BATCH_SIZE = 256


def clean_results(model: torch.nn.Module, info: dict[str, Any], ds: Any, split: pd.DataFrame,
                  device: torch.device, batch_size: int, strategy: str | None = None,
                  where: str = "model") -> tuple[pd.DataFrame, dict[str, Any]]:
    """Per-image test predictions and the summary of an eval-mode ``model``.

    ``info`` is the checkpoint sidecar (strategy, split, seed, final_metrics,
    weights_sha256); ``strategy`` labels the results (default: the sidecar's);
    ``where`` names the checkpoint in errors.
    """
    if list(info["classes"]) != ds.classes:
        raise CheckpointError(f"{where}: classes {info['classes']} differ from the "
                              f"dataset's {ds.classes}")
    by_index = ds.manifest.set_index("index")
    test, val = indices(split, "test"), indices(split, "val")
    pred = predict(model, ds.images, test, device, batch_size)
    rows = by_index.loc[test]
    frame = pd.DataFrame({
        "index": test, "container": rows["container"].to_numpy(), "label": rows["label"].to_numpy(),
        "prediction": pred, "threat": "clean", "severity": 0, "norm": 0.0,
    })
    frame["correct"] = frame["label"] == frame["prediction"]
    val_pred = predict(model, ds.images, val, device, batch_size)
    val_acc = float((val_pred == by_index.loc[val, "label"].to_numpy()).mean()) if len(val) else float("nan")
    summary = {
        "strategy": strategy or info["strategy"], "model": info["strategy"],
        "split": info.get("split"), "seed": info["seed"],
        "n": len(frame), "accuracy": float(frame["correct"].mean()) if len(frame) else float("nan"),
        "per_container": frame.groupby("container")["correct"].mean().round(6).to_dict(),
        "train_accuracy": info["final_metrics"].get("train_accuracy"),
        "converged": info.get("converged"),  # None: a sidecar from before the flag, or an import
        "val_accuracy": val_acc,
        "weights_sha256": info["weights_sha256"],
    }
    return frame, summary


def write_clean(out_dir: str, frame: pd.DataFrame, summary: dict[str, Any]) -> None:
    """Write ``predictions.parquet`` and ``summary.json`` (each atomically)."""
    write_parquet(f"{out_dir}/predictions.parquet", frame)
    write_json(f"{out_dir}/summary.json", summary)


def evaluate_in_memory(model: torch.nn.Module, info: dict[str, Any], dataset_dir: str, split_path: str,
                       out_dir: str, device: torch.device) -> dict[str, Any]:
    """Clean evaluation of a just-trained model, inside the training job.

    The model is evaluated in the contiguous memory layout that
    ``load_trained`` gives, with ``FUSED_BATCH_SIZE``, so the results are the
    ones a separate ``fillrobust evaluate`` of the saved checkpoint writes.
    Leaves the model in eval mode and contiguous layout.
    """
    model = model.to(memory_format=torch.contiguous_format).eval()
    frame, summary = clean_results(model, info, read_dataset(dataset_dir), split=read_split(split_path),
                                   device=device, batch_size=FUSED_BATCH_SIZE,
                                   where=f"{info['strategy']} (trained in memory)")
    write_clean(out_dir, frame, summary)
    return summary


def evaluate_clean(dataset_dir: str, split_path: str, weights: str, params: dict[str, Any],
                   out_dir: str, device: str = "auto", threads: int | None = None,
                   strategy: str | None = None) -> dict[str, Any]:
    """Write ``predictions.parquet`` and ``summary.json`` for the test role.

    ``strategy`` labels the results (e.g. ``ST-FT`` for the ``ST-FT_L1``
    sweep model it is); by default the checkpoint's own strategy.
    """
    seed_everything(0, threads)
    dev = pick_device(device)
    model, info = load_trained(weights, dev)
    frame, summary = clean_results(model, info, read_dataset(dataset_dir), split=read_split(split_path),
                                   device=dev, batch_size=params["batch_size"], strategy=strategy,
                                   where=weights)
    write_clean(out_dir, frame, summary)
    return summary
