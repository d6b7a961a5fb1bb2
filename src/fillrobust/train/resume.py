"""Epoch checkpoints a restarted training continues from.

A SLURM time limit, a preemption or a power loss kills a training job; the
rerun loses at most the epoch in progress. After every epoch the loop writes
the whole training state next to the job's output: ``<out>.resume.safetensors``
holds the tensors and, in its header, the rest as JSON (never a pickle), so one
atomic rename writes a consistent state; ``<out>.resume.json`` repeats the
metadata for people and tools. A restarted job whose fingerprint (strategy parameters, seed, data)
matches continues after the recorded epoch; the final checkpoint is then
byte-identical to an uninterrupted run on CPU, because every source of
randomness (the sampler's generator, torch's, numpy's and Python's global
generators) is restored with the weights, the optimiser and the schedule.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as tensors_to_bytes
from torch import nn

from fillrobust.data.atomic import atomic_write_bytes, atomic_write_text

FORMAT = 2  # 2: the metadata lives in the tensor file's header


@dataclass
class Resumed:
    """What a restarted loop needs besides the restored objects."""

    epoch: int
    history: list[dict[str, float]]
    best_val: float
    best_state: dict[str, torch.Tensor] | None


#: header key of the state file holding the JSON metadata
META_KEY = "fillrobust_resume"


def paths(base: str | Path) -> tuple[Path, Path]:
    """The tensor and JSON files of the resume state of output ``base``."""
    return Path(f"{base}.resume.safetensors"), Path(f"{base}.resume.json")


def discard(base: str | Path) -> None:
    """Remove the resume state (once the final checkpoint is written), with any temporary
    file a writer killed mid-write left beside it."""
    for path in paths(base):
        path.unlink(missing_ok=True)
        for stray in path.parent.glob(f".{path.name}.tmp-*"):
            stray.unlink(missing_ok=True)


def _rng_json() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, state, gauss = random.getstate()
    return {"numpy": [kind, keys.tolist(), pos, has_gauss, cached], "python": [version, list(state), gauss]}


def _set_rng(saved: dict[str, Any]) -> None:
    kind, keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np.asarray(keys, dtype=np.uint32), pos, has_gauss, cached))
    version, state, gauss = saved["python"]
    random.setstate((version, tuple(state), gauss))


def step_generators(step: Any) -> list[Any]:
    """Every random generator a batch step closes over, in a fixed order.

    Strategies keep their own seeded streams (PGD random starts, augmentation
    draws, Mixup / target draws) inside the step's closure; a resumed run must
    continue each of them. Walks closures, nested steps and fillrobust helper
    objects (e.g. ``mixing.Draws``); models are skipped.
    """
    found: list[Any] = []
    seen: set[int] = set()

    def visit(obj: Any) -> None:
        if id(obj) in seen or isinstance(obj, nn.Module):
            return
        seen.add(id(obj))
        if isinstance(obj, (torch.Generator, np.random.Generator)):
            found.append(obj)
        elif callable(obj) and getattr(obj, "__closure__", None):
            for cell in obj.__closure__:
                try:
                    visit(cell.cell_contents)
                except ValueError:  # an empty cell
                    continue
        elif type(obj).__module__.startswith("fillrobust") and hasattr(obj, "__dict__"):
            for value in vars(obj).values():
                visit(value)

    visit(step)
    return found


def save(base: str | Path, *, fingerprint: str, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
         history: list[dict[str, float]], best_val: float, best_state: dict[str, torch.Tensor] | None,
         step: Any = None, scaler: torch.amp.GradScaler | None = None) -> None:
    """Write the training state after ``epoch`` (tensors first, then the JSON that names them)."""
    tensors = {f"model/{k}": v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    if best_state is not None:
        tensors |= {f"best/{k}": v.detach().contiguous().clone() for k, v in best_state.items()}
    opt = optimizer.state_dict()
    opt_scalars: dict[str, dict[str, Any]] = {}
    for idx, entry in opt["state"].items():
        for key, value in entry.items():
            if torch.is_tensor(value):
                tensors[f"optim/{idx}/{key}"] = value.detach().contiguous().clone()
            else:
                opt_scalars.setdefault(str(idx), {})[key] = value
    tensors["rng/generator"] = generator.get_state()
    tensors["rng/torch"] = torch.get_rng_state()
    step_numpy = {}
    for i, gen in enumerate(step_generators(step)):
        if isinstance(gen, torch.Generator):
            tensors[f"rng/step/{i}"] = gen.get_state()
        else:
            step_numpy[str(i)] = gen.bit_generator.state
    sched = {k: v for k, v in scheduler.state_dict().items() if k != "lr_lambdas"}
    meta = {"format": FORMAT, "fingerprint": fingerprint, "epoch": epoch, "history": history,
            "best_val": best_val if np.isfinite(best_val) else None, "has_best": best_state is not None,
            "optim_groups": opt["param_groups"], "optim_scalars": opt_scalars, "scheduler": sched,
            "rng": _rng_json(), "step_rng": step_numpy,
            "scaler": scaler.state_dict() if scaler is not None else {}}  # fp16 loss scale ({} when off)
    tensor_path, json_path = paths(base)
    # The state is the tensor file alone (its header carries the metadata), written in one atomic
    # rename: a kill between two files' renames would otherwise pair epoch N's metadata with epoch
    # N+1's weights. The JSON beside it repeats the metadata for people and tools.
    text = json.dumps(meta)
    atomic_write_bytes(tensor_path, tensors_to_bytes(tensors, metadata={META_KEY: text}))
    atomic_write_text(json_path, text)


def _match_layouts(optimizer: torch.optim.Optimizer) -> None:
    """Give each restored state tensor its parameter's memory layout (channels_last).

    The saved tensors are contiguous; an optimiser step on a buffer laid out
    unlike its parameter takes another kernel path whose rounding differs, and
    the resumed run would drift from the uninterrupted one.
    """
    for group in optimizer.param_groups:
        for param in group["params"]:
            entry = optimizer.state.get(param, {})
            for key, value in entry.items():
                if torch.is_tensor(value) and value.shape == param.shape:
                    entry[key] = torch.empty_like(param, dtype=value.dtype).copy_(value)


def load(base: str | Path, *, fingerprint: str, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
         step: Any = None, scaler: torch.amp.GradScaler | None = None) -> Resumed | None:
    """Restore the state saved for ``base`` into the given objects; None when there is none.

    A state of another run (different fingerprint) or an unreadable one is
    ignored with a message: training then starts from scratch, as without it.
    """
    tensor_path, json_path = paths(base)
    if not tensor_path.exists():
        return None
    try:
        with safe_open(str(tensor_path), "pt") as handle:
            meta = json.loads((handle.metadata() or {})[META_KEY])
        if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
            print(f"resume: {tensor_path.name} belongs to another run (parameters, seed or data differ); "
                  "starting from scratch", flush=True)
            return None
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, KeyError, SafetensorError) as err:  # a torn or foreign file: start over
        print(f"resume: ignoring unreadable {tensor_path.name}: {err}", flush=True)
        return None
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model/")})
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, idx, name = key.split("/", 2)
            state.setdefault(int(idx), {})[name] = value
    for idx, scalars in meta["optim_scalars"].items():
        state.setdefault(int(idx), {}).update(scalars)
    optimizer.load_state_dict({"state": state, "param_groups": meta["optim_groups"]})
    _match_layouts(optimizer)
    scheduler.load_state_dict(dict(meta["scheduler"], lr_lambdas=[None] * len(optimizer.param_groups)))
    generator.set_state(tensors["rng/generator"])
    torch.set_rng_state(tensors["rng/torch"])
    _set_rng(meta["rng"])
    for i, gen in enumerate(step_generators(step)):
        if isinstance(gen, torch.Generator):
            gen.set_state(tensors[f"rng/step/{i}"])
        else:
            gen.bit_generator.state = meta["step_rng"][str(i)]
    if scaler is not None and meta.get("scaler"):
        scaler.load_state_dict(meta["scaler"])
    best = {k[5:]: v for k, v in tensors.items() if k.startswith("best/")} if meta["has_best"] else None
    best_val = meta["best_val"] if meta["best_val"] is not None else -float("inf")
    print(f"resume: continuing after epoch {meta['epoch']} from {tensor_path.name}", flush=True)
    return Resumed(meta["epoch"], meta["history"], best_val, best)
