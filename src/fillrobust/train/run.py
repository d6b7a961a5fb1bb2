"""One training job: dataset + split + strategy + seed -> checkpoint."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fillrobust.data.atomic import read_json_object
from fillrobust.data.splits import indices, read_split
from fillrobust.data.store import read_dataset
from fillrobust.device import pick_device, seed_everything
from fillrobust.io.checkpoint import save_checkpoint
from fillrobust.job_params import eps_label, model_preprocess, resolve_selected
from fillrobust.models.resnet import architecture_name
from fillrobust.train.convergence import convergence
from fillrobust.train.loop import TrainData, fit
from fillrobust.train.resume import discard as discard_resume
from fillrobust.train.strategies import prepare


def selected_eps(selection: str | None) -> float | None:
    """The eps_s chosen by the sweep, from its selection file."""
    if not selection:
        return None
    eps = read_json_object(selection, "eps selection file", ["selected_eps"])["selected_eps"]
    try:
        return float(eps)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{selection}: selected_eps must be a number, got {eps!r}") from err


def source_weights_for(params: dict[str, Any], source_dir: str | None) -> str | None:
    """Path of the source checkpoint a strategy starts from (None for scratch)."""
    if params.get("init") != "source":
        return None
    if not source_dir:
        raise ValueError("init 'source' needs --source-dir")
    return str(Path(source_dir) / f"eps{eps_label(params['source_eps'])}" / "model.safetensors")


def load_train_data(dataset_dir: str, split_path: str | None,
                    val_source: str = "val") -> tuple[TrainData, list[str], str]:
    """Train positions and the ones ``keep: best_val`` selects on (role ``val_source``: ``val``
    or, as thesis 5.5.4, ``test``), from a split file or the manifest's ``role`` column."""
    ds = read_dataset(dataset_dir)
    labels = ds.manifest["label"].to_numpy().astype(np.int64)
    roles = read_split(split_path) if split_path else ds.manifest[["index", "role"]]
    data = TrainData(ds.images, labels, indices(roles, "train"), indices(roles, val_source))
    return data, ds.classes, ds.meta.get("content_hash", "")


def run_fingerprint(strategy: str, params: dict[str, Any], seed: int, dataset_hash: str,
                    split_path: str | None) -> str:
    """What an epoch state must match to be resumed: parameters, seed, data and split."""
    split = hashlib.sha256(Path(split_path).read_bytes()).hexdigest() if split_path else ""
    text = json.dumps({"strategy": strategy, "params": params, "seed": seed, "data": dataset_hash,
                       "split": split, "threads": torch.get_num_threads()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def run_training(
    dataset_dir: str, split_path: str | None, strategy: str, params: dict[str, Any], seed: int,
    out: str, device: str = "auto", threads: int | None = None, split_name: str = "",
    selection: str | None = None, source_dir: str | None = None, extra: dict[str, Any] | None = None,
    eval_out: str | None = None,
) -> dict[str, Any]:
    """Train ``strategy`` on the train role of a split and save the checkpoint.

    ``selection``: the eps sweep's selection file, for strategies whose eps is
    ``"selected"``; ``source_dir``: folder of the source models (``eps{e}/``);
    ``eval_out``: folder for the clean evaluation of the test role, run while
    the model is in memory (saves a process start and a load per model).
    """
    seed_everything(seed, threads, deterministic=params.get("deterministic", True))
    dev = pick_device(device)
    params = resolve_selected(params, selected_eps(selection))
    data, classes, dataset_hash = load_train_data(dataset_dir, split_path, params.get("val_source", "val"))
    print(f"train {strategy} split={split_name} seed={seed} device={dev} "
          f"n_train={len(data.train_idx)} n_val={len(data.val_idx)} params={json.dumps(params)}", flush=True)
    prepared = prepare(strategy, params, len(classes), seed, source_weights_for(params, source_dir))
    model = prepared.model.to(dev)
    if params.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    tic = time.perf_counter()
    history = fit(model, data, params, seed=seed, device=dev, step=prepared.step,
                  set_train_mode=prepared.set_train_mode,
                  log=lambda line: print(line, flush=True),
                  resume=out, fingerprint=run_fingerprint(strategy, params, seed, dataset_hash, split_path))
    final = history.final()
    info = {
        "architecture": architecture_name(params.get("arch", "resnet18"), model_preprocess(params)),
        "classes": classes, "strategy": strategy,
        "split": split_name, "seed": seed, "params": params, "parent": prepared.parent,
        "dataset_hash": dataset_hash, "final_metrics": final, "history": history.epochs,
        **convergence(final, params),  # final train accuracy, threshold, converged flag
        **(prepared.sidecar or {}),  # Top-GAP: its architecture name, head, k
        **(extra or {}),
    }
    info["weights_sha256"] = save_checkpoint(model, Path(out), info)
    discard_resume(out)  # the finished checkpoint supersedes the epoch state
    print(f"done in {time.perf_counter() - tic:.1f} s: {final}", flush=True)
    if eval_out:
        if not split_path:
            raise ValueError("eval_out: a clean evaluation needs a split file (--split)")
        from fillrobust.evaluate.clean import evaluate_in_memory

        summary = evaluate_in_memory(model, info, dataset_dir, split_path=split_path, out_dir=eval_out,
                                     device=dev)
        print(f"clean test accuracy {summary['accuracy']:.4f} (n={summary['n']}) -> {eval_out}", flush=True)
    return info
