"""Top-GAP evaluation of one model: robust accuracy both ways, CAM sparsity, IoU.

Paper (papers/topgap-...): robust accuracy is the share of images whose
prediction an attack leaves unchanged (FGSM, PGD; Foolbox); we report it and
the usual share still classified correctly, for the same adversarial images
(made against the true labels, as Foolbox is called). CAM sparsity is the mean
of the min-max scaled CAM (Sec. 4.1); localisation is the IoU between the
thresholded CAM and the object's mask (Sec. 4.4; C-CCM's container masks,
``masks.npy``).

Maps are those of the predicted class. A Top-GAP model gives its own CAM
(CAM mode); any other model (ST, AT-FT, ...) a GradCAM at a named ResNet stage
(``gradcam_layer``: the paper's GradCAM uses the last conv map, which is 1x1 at
32 px, hence a parameter). Every map is upsampled (bilinear) to the image
size and min-max scaled there, so CAMs of different strides compare on the
same grid. IoU is computed at each of ``thresholds`` and the best mean IoU
over them is reported with its threshold (the paper picks "the predicted mask
that has the largest overlap"; its threshold rule is not stated).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from fillrobust.data.store import atomic_write
from fillrobust.models.topgap import TopGapModel, min_max


def gradcam(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str) -> torch.Tensor:
    """GradCAM (Selvaraju et al.) of ``target`` at ``model.net.<layer>``: (N, h, w), unscaled.

    ReLU of the channel sum of activations weighted by their spatially averaged
    gradients. The model's mode is left as it is (call in eval mode).
    """
    module = getattr(model.net, layer, None)
    if module is None:
        raise ValueError(f"gradcam_layer: the model has no stage {layer!r} (expected e.g. layer1-layer4)")
    saved: dict[str, torch.Tensor] = {}

    def keep(_m: nn.Module, _i: Any, out: torch.Tensor) -> None:
        out.retain_grad()
        saved["a"] = out

    handle = module.register_forward_hook(keep)
    try:
        with torch.enable_grad():
            logits = model(x)
            logits.gather(1, target[:, None]).sum().backward()
    finally:
        handle.remove()
    acts, grads = saved["a"].detach(), saved["a"].grad
    model.zero_grad(set_to_none=True)
    weights = grads.mean((2, 3), keepdim=True)
    return F.relu((weights * acts).sum(1))


def class_maps(model: nn.Module, x: torch.Tensor, target: torch.Tensor, layer: str) -> tuple[torch.Tensor, str]:
    """Maps of ``target`` at the image size, min-max scaled: (N, H, W) in [0, 1], and the method."""
    if isinstance(model, TopGapModel):
        with torch.no_grad():
            raw = model.cam_mode(x)[torch.arange(len(x)), target]
        method = "cam"
    else:
        raw = gradcam(model, x, target, layer)
        method = f"gradcam@{layer}"
    up = F.interpolate(raw[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return min_max(up).detach(), method


def sparsity(maps: torch.Tensor) -> np.ndarray:
    """Per-image l1 sparsity: the mean of the [0, 1] map (paper: ||X||_1 / nm)."""
    return maps.flatten(1).mean(1).cpu().numpy()


def iou(maps: torch.Tensor, masks: torch.Tensor, threshold: float) -> np.ndarray:
    """Per-image IoU of ``maps >= threshold`` with ``masks > 0``; NaN where both are empty."""
    pred, truth = maps >= threshold, masks > 0
    inter = (pred & truth).flatten(1).sum(1).double()
    union = (pred | truth).flatten(1).sum(1).double()
    out = torch.where(union > 0, inter / union.clamp_min(1), torch.full_like(inter, math.nan))
    return out.cpu().numpy()


def robust_rows(pred_clean: np.ndarray, pred_adv: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per image: unchanged (the paper's robust accuracy) and correct (the usual one)."""
    return {"unchanged": pred_adv == pred_clean, "correct": pred_adv == labels}


def summarise(frame: pd.DataFrame, thresholds: list[float]) -> dict[str, Any]:
    """Clean accuracy, per-threat robust accuracies, sparsity and best-threshold IoU."""
    clean = frame[frame["threat"] == "clean"]
    out: dict[str, Any] = {"n": int(len(clean)), "clean_accuracy": float(clean["correct"].mean()),
                           "sparsity": float(clean["sparsity"].mean()), "threats": {}}
    for threat, part in frame[frame["threat"] != "clean"].groupby("threat", sort=True):
        out["threats"][threat] = {"robust_unchanged": float(part["unchanged"].mean()),
                                  "robust_correct": float(part["correct"].mean())}
    ious = {f"{t:g}": float(np.nanmean(clean[f"iou_{t:g}"])) if clean[f"iou_{t:g}"].notna().any()
            else math.nan for t in thresholds}
    valid = {t: v for t, v in ious.items() if not math.isnan(v)}
    best = max(valid, key=valid.get) if valid else None
    out.update(iou_by_threshold=ious, iou=valid[best] if best else math.nan,
               iou_threshold=float(best) if best else math.nan)
    return out


def _batch_maps(model: nn.Module, x: torch.Tensor, layer: str, masks: torch.Tensor | None,
                thresholds: list[float]) -> tuple[np.ndarray, dict[str, np.ndarray], torch.Tensor, str]:
    """Clean predictions, per-image sparsity / IoU columns and the maps of one batch."""
    with torch.no_grad():
        pred = model(x).argmax(1)
    maps, method = class_maps(model, x, pred, layer)
    cols = {"sparsity": sparsity(maps)}
    for t in thresholds:
        cols[f"iou_{t:g}"] = iou(maps, masks, t) if masks is not None else np.full(len(x), math.nan)
    return pred.cpu().numpy(), cols, maps, method


def evaluate_topgap(dataset_dir: str, split_path: str, weights: str, params: dict[str, Any], out_dir: str,
                    device: str = "auto", threads: int | None = None, strategy: str | None = None) -> dict[str, Any]:
    """One model's Top-GAP evaluation on the split's first ``params['images']`` test images
    (container-balanced order): ``predictions.parquet``, ``maps.npz`` (maps of the first
    ``overlays`` images per container, uint8) and ``summary.json`` in ``out_dir``; ``strategy``
    labels the results (default: the checkpoint's strategy).

    ``params``: images, batch_size, seed, threats (name -> {attack, params}, run
    through the attack registry), thresholds, gradcam_layer, overlays.
    """
    from pathlib import Path

    from fillrobust.attacks.registry import run_attack
    from fillrobust.data.splits import indices, read_split
    from fillrobust.data.store import read_dataset, write_json, write_parquet
    from fillrobust.device import pick_device, seed_everything
    from fillrobust.evaluate.clean import load_trained
    from fillrobust.evaluate.corruptions import benchmark_order
    from fillrobust.models.topgap import describe
    from fillrobust.train.loop import to_batch

    seed_everything(params["seed"], threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    model, info = load_trained(weights, dev)
    if list(info["classes"]) != ds.classes:
        raise ValueError(f"{weights}: classes {info['classes']} differ from the dataset's {ds.classes}")
    order = benchmark_order(ds.manifest, indices(read_split(split_path), "test"), params["seed"])
    positions = order[: params["images"]]
    manifest = ds.manifest.set_index("index")
    labels = manifest.loc[positions, "label"].to_numpy()
    thresholds = [float(t) for t in params["thresholds"]]
    generator = torch.Generator(device=dev).manual_seed(params["seed"])
    frames, kept, method = [], {}, ""
    base = {"index": positions, "container": manifest.loc[positions, "container"].to_numpy(), "label": labels}
    clean_pred = np.empty(len(positions), dtype=np.int64)
    adv_pred = {name: np.empty(len(positions), dtype=np.int64) for name in params["threats"]}
    cols: dict[str, list[np.ndarray]] = {}
    bs = int(params["batch_size"])
    for start in range(0, len(positions), bs):
        pos = positions[start: start + bs]
        x = to_batch(ds.images, pos, dev)
        m = None if ds.masks is None else torch.from_numpy(np.asarray(ds.masks[pos])).to(dev)
        pred, batch_cols, maps, method = _batch_maps(model, x, params["gradcam_layer"], m, thresholds)
        clean_pred[start: start + len(pos)] = pred
        for key, value in batch_cols.items():
            cols.setdefault(key, []).append(value)
        # uint8 copies of the batch's maps, one conversion per batch; the overlay images are picked after
        kept.update(zip(pos.tolist(), (maps * 255 + 0.5).to(torch.uint8).cpu().numpy(), strict=True))
        y = torch.from_numpy(np.array(labels[start: start + len(pos)], dtype=np.int64)).to(dev)
        for name, threat in params["threats"].items():
            x_adv = run_attack(threat["attack"], model, x, y, threat.get("params"), generator=generator)
            with torch.no_grad():
                adv_pred[name][start: start + len(pos)] = model(x_adv).argmax(1).cpu().numpy()
    clean = pd.DataFrame({**base, "threat": "clean", "prediction": clean_pred,
                          **{k: np.concatenate(v) for k, v in cols.items()}})
    clean["correct"], clean["unchanged"] = clean["prediction"] == clean["label"], True
    frames.append(clean)
    for name, pred in adv_pred.items():
        frame = pd.DataFrame({**base, "threat": name, "prediction": pred})
        for key, value in robust_rows(clean_pred, pred, labels).items():
            frame[key] = value
        frames.append(frame)
    frame = pd.concat(frames, ignore_index=True)
    summary = summarise(frame, thresholds)
    head = describe(model)
    summary.update(label=strategy or info.get("strategy"), strategy=info.get("strategy"), method=method,
                   head=head.get("head"), k=head.get("k"), has_masks=ds.masks is not None,
                   converged=info.get("converged"), weights_sha256=info.get("weights_sha256"),
                   params=params, gradcam_layer=None if method == "cam" else params["gradcam_layer"])
    overlay = _overlay_choice(clean, int(params.get("overlays", 2)))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _save_maps(out_dir / "maps.npz", overlay, np.stack([kept[int(i)] for i in overlay]) if len(overlay) else None)
    write_parquet(out_dir / "predictions.parquet", frame)
    write_json(out_dir / "summary.json", summary)
    return summary


def _overlay_choice(clean: pd.DataFrame, per_container: int) -> np.ndarray:
    """The first ``per_container`` evaluated images of each container (benchmark order)."""
    picked = clean.groupby("container", sort=True).head(per_container)
    return picked.sort_values(["container", "index"])["index"].to_numpy(dtype=np.int64)


def _save_maps(path: Any, index: np.ndarray, maps: np.ndarray | None) -> None:
    """Atomic ``np.savez`` of the overlay maps (index, uint8 maps)."""
    empty = np.zeros((0, 1, 1), np.uint8)
    atomic_write(path, lambda tmp: np.savez(tmp, index=index, maps=maps if maps is not None else empty),
                 suffix=".npz")
