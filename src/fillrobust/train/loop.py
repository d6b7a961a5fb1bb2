"""The training loop shared by every strategy.

Strategies differ only in how the model is initialised, which parameters
train, and the loss of one batch (a ``StepFn``); the loop owns sampling,
the optimiser, the schedule, logging and the choice of the kept epoch.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from fillrobust.device import autocast, grad_scaler
from fillrobust.train.resume import interval_s as resume_interval_s
from fillrobust.train.resume import load as load_resume
from fillrobust.train.resume import save as save_resume
from fillrobust.train.sampler import epoch_order
from fillrobust.train.schedule import build_optimizer, build_schedule

# (model, images in [0,1], labels) -> (loss, logits used for train accuracy)
StepFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]


@dataclass
class TrainData:
    """Images (memory-mapped uint8 NHWC), labels, and the positions to use."""

    images: np.ndarray
    labels: np.ndarray
    train_idx: np.ndarray
    val_idx: np.ndarray


@dataclass
class History:
    """Per-epoch metrics and the summary stored in the checkpoint sidecar."""

    epochs: list[dict[str, float]] = field(default_factory=list)

    def final(self) -> dict[str, float]:
        return dict(self.epochs[-1]) if self.epochs else {}


def host_rows(images: np.ndarray, positions: np.ndarray) -> torch.Tensor:
    """The uint8 NHWC rows at ``positions``, in their order, as a host tensor.

    Sorting the positions makes memory-mapped reads sequential; the caller's
    order is restored afterwards.
    """
    order = np.argsort(positions, kind="stable")
    rows = np.empty((len(positions),) + images.shape[1:], dtype=np.uint8)
    rows[order] = images[positions[order]]
    return torch.from_numpy(rows)


def to_device(host: torch.Tensor, device: torch.device, pin: bool = True) -> torch.Tensor:
    """uint8 NHWC host rows -> float NCHW in [0, 1] on ``device`` (channels_last memory layout).
    On CUDA the rows go through pinned memory (``pin``, ``train.*.pin_memory``), so the
    copy runs asynchronously."""
    if pin and torch.device(device).type == "cuda" and not host.is_pinned():
        host = host.pin_memory()
    x = host.to(device, non_blocking=True)
    return x.permute(0, 3, 1, 2).float().div_(255.0)


def to_batch(images: np.ndarray, positions: np.ndarray, device: torch.device, pin: bool = True) -> torch.Tensor:
    """uint8 NHWC rows at ``positions`` -> float NCHW in [0, 1] on ``device`` (see ``to_device``)."""
    return to_device(host_rows(images, positions), device, pin)


class _Rows(torch.utils.data.Dataset):
    """Batch ``i`` of an epoch: the host rows of ``batches[i]`` (a loader worker reads it)."""

    def __init__(self, images: np.ndarray, batches: list[np.ndarray]) -> None:
        self.images, self.batches = images, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return host_rows(self.images, self.batches[i])


def epoch_batches(images: np.ndarray, batches: list[np.ndarray], workers: int = 0,
                  pin: bool = False) -> Iterator[torch.Tensor]:
    """The host rows of each batch, in order. With ``workers`` > 0
    (``train.*.loader_workers``), a DataLoader reads them ahead in that many forked
    processes (pinned when ``pin``); the batches, their order and so the bytes of a
    training are the same as without (the sampling stays in the training process)."""
    if workers <= 0:
        return (host_rows(images, b) for b in batches)
    return iter(torch.utils.data.DataLoader(
        _Rows(images, batches), batch_size=None, shuffle=False, num_workers=workers, pin_memory=pin,
        multiprocessing_context="fork", prefetch_factor=4))


def random_hflip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror a random half of the batch left-right (a filling level is
    mirror-invariant); drawn from the training generator, so seeded."""
    flip = (torch.rand(len(x), generator=generator) < 0.5).to(x.device)
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(3), x)


def cross_entropy_step(model: nn.Module, x: torch.Tensor,
                       y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Standard training: cross-entropy on the clean batch."""
    logits = model(x)
    return nn.functional.cross_entropy(logits, y), logits


#: Largest frozen-feature cache kept in memory; above it the loop runs the
#: full forward (at 224 px a stage-1 cache would take ~0.8 MB per image).
CACHE_LIMIT_BYTES = 2 << 30


@dataclass
class FrozenFeatures:
    """The fixed prefix's outputs for the train positions, and the trainable rest.

    ``features[i]`` belongs to ``train_idx[i]``; ``suffix(features)`` equals
    ``model(images)`` up to floating-point reordering.
    """

    suffix: nn.Module
    features: torch.Tensor
    stages: int


@torch.no_grad()
def cache_frozen_features(model: nn.Module, data: TrainData, hyper: dict[str, Any], step: StepFn,
                          device: torch.device, chunk: int = 256) -> FrozenFeatures | None:
    """Outputs of the frozen stages for every train image, computed once.

    Only where they cannot change between epochs: ``hyper['cache_frozen_features']``
    on, a plain cross-entropy step (no adversarial example, no augmentation,
    no mirroring), and at least one leading stage without trainable weights
    and in eval mode (call after the strategy's train-mode hook). Otherwise,
    or when the cache would exceed ``CACHE_LIMIT_BYTES``, None.
    """
    if not hyper.get("cache_frozen_features") or step is not cross_entropy_step or hyper.get("hflip"):
        return None
    from fillrobust.models.resnet import frozen_prefix_stages, split_at_stage

    stages = frozen_prefix_stages(model)
    if stages == 0 or len(data.train_idx) == 0:
        return None
    prefix, suffix = split_at_stage(model, stages)
    parts = []
    for start in range(0, len(data.train_idx), chunk):
        parts.append(prefix(to_batch(data.images, data.train_idx[start : start + chunk], device)))
        if parts[0][0].numel() * parts[0].element_size() * len(data.train_idx) > CACHE_LIMIT_BYTES:
            return None
    return FrozenFeatures(suffix, torch.cat(parts), stages)


def _feature_batch(cache: FrozenFeatures, rows: np.ndarray, channels_last: bool) -> torch.Tensor:
    x = cache.features[torch.from_numpy(rows)]
    # the layout the full forward hands the first trainable stage
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.dim() == 4 else x


def _eta(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"


@torch.no_grad()
def accuracy(model: nn.Module, images: np.ndarray, labels: np.ndarray, positions: np.ndarray,
             device: torch.device, batch_size: int = 256) -> float:
    """Clean accuracy (eval mode) on ``positions``; NaN when empty."""
    if len(positions) == 0:
        return float("nan")
    was_training = model.training
    model.eval()
    correct = 0
    for start in range(0, len(positions), batch_size):
        pos = positions[start : start + batch_size]
        pred = model(to_batch(images, pos, device)).argmax(1).cpu().numpy()
        correct += int((pred == labels[pos]).sum())
    model.train(was_training)
    return correct / len(positions)


def fit(
    model: nn.Module,
    data: TrainData,
    hyper: dict[str, Any],
    seed: int,
    device: torch.device,
    step: StepFn = cross_entropy_step,
    set_train_mode: Callable[[nn.Module], None] | None = None,
    log: Callable[[str], None] = print,
    resume: str | None = None,
    fingerprint: str = "",
) -> History:
    """Train ``model`` in place; returns the per-epoch history.

    ``hyper``: epochs, batch_size, lr, momentum, weight_decay,
    balanced_sampling, and optionally ``keep`` = "last" (default, the papers'
    last-epoch model) or "best_val" (the epoch with the best val accuracy).
    ``set_train_mode`` lets a strategy keep frozen BatchNorm layers in eval mode.
    With ``hyper['cache_frozen_features']`` on, frozen leading stages run once
    per image instead of once per step (see ``cache_frozen_features``); same
    result up to floating-point reordering. With ``resume`` (the output path),
    the state after an epoch is saved beside it (at most every
    ``resume.interval_s()`` seconds) and a restarted run with the same
    ``fingerprint`` continues from it (``fillrobust.train.resume``).
    ``hyper['precision']`` (``fp32`` default, ``bf16``, ``fp16``) runs each step
    under autocast (the strategies' attacks stay in fp32, ``device.full_precision``).
    """
    generator = torch.Generator().manual_seed(seed)
    labels = data.labels
    bs = int(hyper["batch_size"])
    n = len(data.train_idx)
    steps = max(n // bs, 1)  # drop the ragged last batch: BatchNorm needs > 1 image
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = build_optimizer(trainable, hyper)  # SGD unless hyper['optimizer'] (M-TLAT: Adam)
    scheduler = build_schedule(optimizer, hyper, steps)  # linear decay unless hyper['schedule']
    history, best, first = History(), (-math.inf, None), 1
    precision = hyper.get("precision", "fp32")  # GPU path: bf16 / fp16 autocast; fp32 keeps the CPU bytes
    scaler = grad_scaler(device, precision)
    every_s = resume_interval_s() if resume else math.inf  # read first: a bad value fails before any work
    restored = resume and load_resume(resume, fingerprint=fingerprint, model=model, optimizer=optimizer,
                                      scheduler=scheduler, generator=generator, step=step, scaler=scaler)
    if restored:
        history.epochs, best, first = restored.history, (restored.best_val, restored.best_state), restored.epoch + 1
    train_mode = set_train_mode or (lambda m: m.train())
    pin = hyper.get("pin_memory", True)
    start = saved_at = time.perf_counter()
    train_mode(model)
    cache = cache_frozen_features(model, data, hyper, step, device)
    if cache is not None:
        log(f"frozen stages 1-{cache.stages}: features of {len(data.train_idx)} train images cached "
            f"{tuple(cache.features.shape[1:])} in {time.perf_counter() - start:.1f} s")
    for epoch in range(first, hyper["epochs"] + 1):
        train_mode(model)
        order = epoch_order(labels[data.train_idx], hyper["balanced_sampling"], generator)
        tic, loss_sum, correct, seen = time.perf_counter(), 0.0, 0, 0
        batches = [order[b * bs : (b + 1) * bs] for b in range(steps)]
        positions = [data.train_idx[rows] for rows in batches]
        workers = int(hyper.get("loader_workers", 0))
        hosts = None if cache is not None else epoch_batches(
            data.images, positions, workers, pin=pin and torch.device(device).type == "cuda")
        for rows, pos in zip(batches, positions, strict=True):
            y = torch.from_numpy(labels[pos]).to(device)
            with autocast(device, precision):
                if cache is not None:
                    loss, logits = step(cache.suffix, _feature_batch(cache, rows, hyper.get("channels_last", True)), y)
                else:
                    x = to_device(next(hosts), device, pin=pin)
                    if hyper.get("hflip"):
                        x = random_hflip(x, generator)
                    loss, logits = step(model, x, y)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            scheduler.step()
            loss_sum += float(loss.detach()) * len(y)
            correct += int((logits.argmax(1) == y).sum())
            seen += len(y)
        seconds = time.perf_counter() - tic
        val = accuracy(model, data.images, labels, data.val_idx, device) if _needs_val(hyper, epoch) else math.nan
        # Timings go to the log only: the history is stored and must be reproducible.
        record = {"epoch": epoch, "loss": loss_sum / seen, "train_accuracy": correct / seen,
                  "val_accuracy": val, "lr": scheduler.get_last_lr()[0]}
        history.epochs.append(record)
        elapsed = time.perf_counter() - start
        shown = dict(record, images_per_s=seen / seconds)
        done = epoch - first + 1
        progress = (f"[{epoch}/{hyper['epochs']} epochs, elapsed {_eta(elapsed)}, "
                    f"ETA {_eta(elapsed / done * (hyper['epochs'] - epoch))}]")
        log(" ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in shown.items())
            + " " + progress)
        if hyper.get("keep", "last") == "best_val" and val > best[0]:
            best = (val, copy.deepcopy(model.state_dict()))
        if time.perf_counter() - saved_at >= every_s:  # never without ``resume`` (every_s inf)
            save_resume(resume, fingerprint=fingerprint, epoch=epoch, model=model, optimizer=optimizer,
                        scheduler=scheduler, generator=generator, history=history.epochs, best_val=best[0],
                        best_state=best[1], step=step, scaler=scaler)
            saved_at = time.perf_counter()
    if best[1] is not None:
        model.load_state_dict(best[1])
    return history


def _needs_val(hyper: dict[str, Any], epoch: int) -> bool:
    return hyper.get("keep", "last") == "best_val" or epoch == hyper["epochs"]
