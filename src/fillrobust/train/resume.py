"""Epoch checkpoints a restarted training continues from.

A SLURM time limit, a preemption or a power loss kills a training job; the
rerun loses at most the epoch in progress and the epochs of the last
``interval_s()`` seconds (30 s; ``FILLROBUST_RESUME_EVERY_S``, 0 = after every
epoch, inf = never). After an epoch that ends at least that long after the
last state was written (or the training started), the loop writes the whole
training state next to the job's output (docs/operations.md says why not after
every epoch): ``<out>.resume.safetensors``
holds the tensors and, in its header, the rest as JSON (never a pickle) and a
sha256 of both, so one atomic rename writes a consistent state together with
its checksum; ``<out>.resume.json`` repeats the metadata for people and tools.
A state that fails its checksum or cannot be restored (a flipped byte, a torn
or hand-edited file) is reported by name, removed, and training starts over:
a damaged state never continues a run. A restarted job whose fingerprint (strategy parameters, seed, data)
matches continues after the recorded epoch; the final checkpoint is then
byte-identical to an uninterrupted run on CPU, because every source of
randomness (the sampler's generator, torch's, numpy's and Python's global
generators) is restored with the weights, the optimiser and the schedule.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file
from safetensors.torch import save as tensors_to_bytes
from torch import nn

from fillrobust.data.atomic import atomic_write_bytes, atomic_write_text, remove_strays

FORMAT = 3  # 2: the metadata lives in the tensor file's header; 3: with a sha256 of the state


@dataclass
class Resumed:
    """What a restarted loop needs besides the restored objects."""

    epoch: int
    history: list[dict[str, float]]
    best_val: float
    best_state: dict[str, torch.Tensor] | None


#: environment variable: least seconds between two written states (0: after every epoch)
INTERVAL_ENV = "FILLROBUST_RESUME_EVERY_S"
DEFAULT_INTERVAL_S = 30.0


def interval_s() -> float:
    """Least seconds between two written training states (``FILLROBUST_RESUME_EVERY_S``, default 30)."""
    raw = os.environ.get(INTERVAL_ENV, "")
    if not raw.strip():
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not value >= 0:  # NaN too
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected seconds, a number >= 0 "
                         "(0: a state after every epoch, inf: none)")
    return value


#: header key of the state file holding the JSON metadata
META_KEY = "fillrobust_resume"
#: header key holding the sha256 of the metadata and the tensors (``state_digest``)
DIGEST_KEY = "fillrobust_resume_sha256"


class CorruptResume(ValueError):
    """A resume state that cannot be trusted: unreadable, failing its checksum or incomplete."""


def state_digest(meta_text: str, tensors: dict[str, torch.Tensor]) -> str:
    """sha256 of the metadata text and every tensor (name, dtype, shape, bytes) in name order.

    Computed from the tensors rather than the file so that it can live in the
    file's own header: the state and its checksum then appear in one rename.
    """
    digest = hashlib.sha256(meta_text.encode("utf-8"))
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous()
        digest.update(f"\0{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())  # the buffer, not a copy
    return digest.hexdigest()


def paths(base: str | Path) -> tuple[Path, Path]:
    """The tensor and JSON files of the resume state of output ``base``."""
    return Path(f"{base}.resume.safetensors"), Path(f"{base}.resume.json")


def discard(base: str | Path) -> None:
    """Remove the resume state (once the final checkpoint is written), with any temporary
    file a writer killed mid-write left beside it."""
    for path in paths(base):
        path.unlink(missing_ok=True)
        remove_strays(path)


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
    header = {META_KEY: text, DIGEST_KEY: state_digest(text, tensors)}
    atomic_write_bytes(tensor_path, tensors_to_bytes(tensors, metadata=header))
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


def _read_header(tensor_path: Path) -> tuple[dict[str, str], dict[str, Any]]:
    """The state file's header strings and the metadata they hold; ``CorruptResume`` when unreadable."""
    try:
        with safe_open(str(tensor_path), "pt") as handle:
            header = handle.metadata() or {}
        meta = json.loads(header[META_KEY])
    except (OSError, ValueError, KeyError, SafetensorError) as err:
        raise CorruptResume(f"unreadable header: {type(err).__name__}: {err}") from err
    if not isinstance(meta, dict):
        raise CorruptResume(f"header metadata is a JSON {type(meta).__name__}, expected an object")
    return header, meta


def _read_verified(tensor_path: Path, header: dict[str, str]) -> dict[str, torch.Tensor]:
    """All tensors of the state file, after checking them against the header's sha256."""
    try:
        tensors = load_file(str(tensor_path))
    except (OSError, ValueError, SafetensorError) as err:
        raise CorruptResume(f"unreadable tensors: {type(err).__name__}: {err}") from err
    expected, actual = header.get(DIGEST_KEY), state_digest(header[META_KEY], tensors)
    if expected != actual:
        raise CorruptResume(f"sha256 {actual[:16]}... does not match the recorded {str(expected)[:16]}...")
    return tensors


def _snapshot(*, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
              generator: torch.Generator, step: Any, scaler: torch.amp.GradScaler | None) -> Callable[[], None]:
    """Record the objects a restore changes; the returned function puts them back.

    A restore that fails half-way (e.g. a tensor missing after the weights were
    loaded) must leave the run exactly as a fresh start, or its bytes differ.
    """
    weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
    opt, sched = copy.deepcopy(optimizer.state_dict()), copy.deepcopy(scheduler.state_dict())
    rng = (generator.get_state(), torch.get_rng_state(), np.random.get_state(), random.getstate())
    gens = step_generators(step)
    gen_states = [g.get_state() if isinstance(g, torch.Generator) else copy.deepcopy(g.bit_generator.state)
                  for g in gens]
    scale = copy.deepcopy(scaler.state_dict()) if scaler is not None else None

    def undo() -> None:
        model.load_state_dict(weights)
        optimizer.load_state_dict(opt)
        scheduler.load_state_dict(copy.deepcopy(sched))
        generator.set_state(rng[0])
        torch.set_rng_state(rng[1])
        np.random.set_state(rng[2])
        random.setstate(rng[3])
        for gen, state in zip(gens, gen_states, strict=True):
            if isinstance(gen, torch.Generator):
                gen.set_state(state)
            else:
                gen.bit_generator.state = state
        if scaler is not None and scale:
            scaler.load_state_dict(scale)

    return undo


def _restore(meta: dict[str, Any], tensors: dict[str, torch.Tensor], *, model: nn.Module,
             optimizer: torch.optim.Optimizer, scheduler: torch.optim.lr_scheduler.LRScheduler,
             generator: torch.Generator, step: Any, scaler: torch.amp.GradScaler | None) -> Resumed:
    """Load a verified state into the given objects."""
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
    return Resumed(meta["epoch"], meta["history"], best_val, best)


def _start_over(base: str | Path, reason: str) -> None:
    """Report a damaged state by name and remove it, so the run starts from epoch 1."""
    print(f"resume: resume file {paths(base)[0]} is corrupt ({reason}); ignoring it and starting "
          "from epoch 1", flush=True)
    discard(base)


def load(base: str | Path, *, fingerprint: str, model: nn.Module, optimizer: torch.optim.Optimizer,
         scheduler: torch.optim.lr_scheduler.LRScheduler, generator: torch.Generator,
         step: Any = None, scaler: torch.amp.GradScaler | None = None) -> Resumed | None:
    """Restore the state saved for ``base`` into the given objects; None when there is none.

    A state of another run (different fingerprint or format) is ignored with a
    message. A damaged one (unreadable, failing its sha256, lacking an entry,
    or failing to restore for any reason) is reported, removed, and the objects
    are left as they were: training then starts from scratch, as without it.
    """
    tensor_path = paths(base)[0]
    if not tensor_path.exists():
        return None
    try:
        header, meta = _read_header(tensor_path)
        if meta.get("format") == FORMAT:  # an older format has no checksum: another run's below
            tensors = _read_verified(tensor_path, header)
    except CorruptResume as err:
        _start_over(base, str(err))
        return None
    if meta.get("format") != FORMAT or meta.get("fingerprint") != fingerprint:
        print(f"resume: {tensor_path.name} belongs to another run (parameters, seed, data or format "
              "differ); starting from scratch", flush=True)
        return None
    objects = {"model": model, "optimizer": optimizer, "scheduler": scheduler, "generator": generator,
               "step": step, "scaler": scaler}
    undo = _snapshot(**objects)
    try:
        resumed = _restore(meta, tensors, **objects)
    except Exception as err:  # any failure of a restore: start over, from a clean slate
        undo()
        reason = f"missing entry {err}" if isinstance(err, KeyError) else f"{type(err).__name__}: {err}"
        _start_over(base, reason)
        return None
    print(f"resume: continuing after epoch {resumed.epoch} from {tensor_path.name}", flush=True)
    return resumed
