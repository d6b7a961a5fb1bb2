"""The perturbation benchmark of one trained model: attacks and corruptions.

Threats are named in params (``evaluate.threats``: name -> attack from the
registry, its params, an optional smaller image count for expensive attacks).
All threats of a model run in one job: the model and data are loaded once and
the ~4 s ``import torch`` is paid once per model, not once per threat.

- White-box attacks run on the evaluated model over the first ``images`` of the
  container-balanced benchmark order (:func:`corruptions.benchmark_order`).
- Transfer attacks (MI-FGSM, M-TLAT) are made once per split on the surrogate
  (:func:`build_transfer_set`) and every model is evaluated on those images.
- Corruptions are read from the split's corrupted set; BatchNorm adaptation
  (``evaluate.bn_adaptation``) applies to them.

Each job writes per-image predictions (``threat``, ``severity``, perturbation
``norm``) and a summary with accuracies, R = A_perturbed / A_clean (M-TLAT) and
median norms of the minimal attacks over the images they succeeded on.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from fillrobust.attacks.norms import per_image_norm
from fillrobust.attacks.registry import get_attack, run_attack
from fillrobust.data.splits import indices, read_split
from fillrobust.data.store import read_dataset, write_dataset, write_json, write_parquet
from fillrobust.device import pick_device, seed_everything
from fillrobust.evaluate import bn_adapt
from fillrobust.evaluate.clean import load_trained
from fillrobust.evaluate.corruptions import IMAGENET_C, MTLAT, benchmark_order
from fillrobust.io.checkpoint import CheckpointError
from fillrobust.train.loop import to_batch

MINIMAL = ("deepfool", "sparsefool", "cw_l2")  # attacks whose perturbation size is reported


def attack_params(spec: dict[str, Any], eps_scale: float) -> dict[str, Any]:
    """A threat's attack params; l2 radii in the papers' units are scaled (``scale_eps``)."""
    params = dict(spec.get("params") or {})
    if spec.get("scale_eps") and "eps" in params:
        params["eps"] = params["eps"] * eps_scale
    return params


def _norm_kind(attack: str) -> str:
    return {"l0": "l0", "l2": "l2"}.get(get_attack(attack).norm, "inf")


def _attack_batches(model: torch.nn.Module, images: np.ndarray, positions: np.ndarray, labels: np.ndarray,
                    attack: str, params: dict[str, Any], seed: int, device: torch.device,
                    batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Predictions on the adversarial images and the perturbation norms."""
    preds, norms = [], []
    generator = torch.Generator(device=device).manual_seed(seed)
    kind = _norm_kind(attack)
    for start in range(0, len(positions), batch_size):
        x = to_batch(images, positions[start: start + batch_size], device)
        y = torch.tensor(labels[start: start + batch_size], device=device)
        x_adv = run_attack(attack, model, x, y, params, generator=generator)
        with torch.no_grad():
            preds.append(model(x_adv).argmax(1).cpu().numpy())
        delta = x_adv - x
        if kind == "l0":  # pixels changed in any channel (SparseFool's measure)
            norms.append((delta.abs().amax(1) > 0).flatten(1).sum(1).float().cpu().numpy())
        else:
            norms.append(per_image_norm(delta, 2 if kind == "l2" else "inf").cpu().numpy())
    return np.concatenate(preds), np.concatenate(norms)


@torch.no_grad()
def _predict(model: torch.nn.Module, images: np.ndarray, positions: np.ndarray, device: torch.device,
             batch_size: int, bn: tuple[int, int] | None = None) -> np.ndarray:
    """Arg-max predictions; with ``bn = (n, N)`` in groups of n under eq. 5.7."""
    step = bn[0] if bn else batch_size
    out = []
    for start in range(0, len(positions), step):
        x = to_batch(images, positions[start: start + step], device)
        if bn:
            with bn_adapt.adapted(model, *bn):
                out.append(model(x).argmax(1).cpu().numpy())
        else:
            out.append(model(x).argmax(1).cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.int64)


def _frame(rows: pd.DataFrame, pred: np.ndarray, threat: str, severity: int | np.ndarray,
           norm: np.ndarray | float) -> pd.DataFrame:
    frame = pd.DataFrame({
        "index": rows.index.to_numpy(), "container": rows["container"].to_numpy(),
        "label": rows["label"].to_numpy(), "prediction": pred, "threat": threat,
        "severity": severity, "norm": norm,
    })
    frame["correct"] = frame["label"] == frame["prediction"]
    return frame


def _load(weights: str, classes: list[str], device: torch.device) -> tuple[torch.nn.Module, dict[str, Any]]:
    model, info = load_trained(weights, device)
    if list(info["classes"]) != classes:
        raise CheckpointError(f"{weights}: classes {info['classes']} differ from the dataset's {classes}")
    # channels_last matches the NHWC images (to_batch) and is faster on CPU, as in training.
    return model.to(memory_format=torch.channels_last), info


def threat_summary(frame: pd.DataFrame, threats: dict[str, Any]) -> dict[str, Any]:
    """Accuracy, R = A_perturbed / A_clean on the same images, median norms."""
    clean = frame[frame["threat"] == "clean"].set_index("index")["correct"]
    out = {}
    for name in threats:
        part = frame[frame["threat"] == name]
        if part.empty:
            continue
        acc = float(part["correct"].mean())
        clean_acc = float(clean.loc[part["index"]].mean())
        entry = {"n": len(part), "accuracy": acc, "clean_accuracy": clean_acc,
                 "R": acc / clean_acc if clean_acc > 0 else float("nan"),
                 "per_container": part.groupby("container")["correct"].mean().round(6).to_dict()}
        if threats[name]["attack"] in MINIMAL:
            # Over the images the attack succeeded on (right when clean, wrong after
            # it): a failed minimal attack returns the clean image, whose norm 0 is
            # no perturbation size (CW-l2 at kappa 50 often fails on small models).
            hit = part[clean.loc[part["index"]].to_numpy() & ~part["correct"].to_numpy()]
            entry["median_norm"] = float(hit["norm"].median()) if len(hit) else float("nan")
            entry["n_success"] = len(hit)
        out[name] = entry
    return out


def evaluate_threats(dataset_dir: str, split_path: str, weights: str, params: dict[str, Any],
                     out_dir: str, transfer_dir: str | None = None, device: str = "auto",
                     threads: int | None = None, strategy: str | None = None) -> dict[str, Any]:
    """Every threat in ``params["threats"]`` against one model (module docstring)."""
    seed_everything(params["seed"], threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    model, info = _load(weights, ds.classes, dev)
    order = benchmark_order(ds.manifest, indices(read_split(split_path), "test"), params["seed"])
    subset = order[: params["images"]]
    by_index = ds.manifest.set_index("index")
    rows = by_index.loc[subset]
    frames = [_frame(rows, _predict(model, ds.images, subset, dev, params["batch_size"]), "clean", 0, 0.0)]
    transfer = read_dataset(transfer_dir) if transfer_dir else None
    for k, (name, spec) in enumerate(params["threats"].items()):
        if get_attack(spec["attack"]).threat == "transfer":
            frames.append(_transfer_frame(model, transfer, name, dev, params["batch_size"]))
            continue
        pos = subset[: spec.get("images") or params["images"]]
        p = attack_params(spec, params["eps_scale"])
        tic = time.perf_counter()
        pred, norm = _attack_batches(model, ds.images, pos, labels=by_index.loc[pos, "label"].to_numpy(),
                                     attack=spec["attack"], params=p, seed=params["seed"] + k, device=dev,
                                     batch_size=params["attack_batch_size"])
        frames.append(_frame(by_index.loc[pos], pred, name, 0, norm))
        print(f"{name}: accuracy {frames[-1]['correct'].mean():.4f} on {len(pos)} images "
              f"({time.perf_counter() - tic:.1f} s)", flush=True)
    frame = pd.concat(frames, ignore_index=True)
    summary = {"strategy": strategy or info["strategy"], "model": info["strategy"], "split": info.get("split"),
               "seed": info["seed"], "clean_accuracy": float(frames[0]["correct"].mean()),
               "clean_per_container": frames[0].groupby("container")["correct"].mean().round(6).to_dict(),
               "threats": threat_summary(frame, params["threats"]), "weights_sha256": info["weights_sha256"]}
    write_parquet(f"{out_dir}/predictions.parquet", frame)
    write_json(f"{out_dir}/summary.json", summary)
    return summary


def _transfer_frame(model: torch.nn.Module, transfer: Any, name: str, device: torch.device,
                    batch_size: int) -> pd.DataFrame:
    if transfer is None:
        raise ValueError(f"threat {name!r} is a transfer attack but no --transfer set was given")
    manifest = transfer.manifest
    part = manifest[manifest["threat"] == name]
    if part.empty:
        raise ValueError(f"{transfer.path}: no images for threat {name!r}; rebuild the transfer set")
    pred = _predict(model, transfer.images, part["index"].to_numpy(), device, batch_size)
    rows = part.set_index("source_index")[["container", "label"]]
    return _frame(rows, pred, name, 0, part["norm"].to_numpy())


def _transfer_images(model: torch.nn.Module, images: np.ndarray, pos: np.ndarray, labels: np.ndarray,
                     spec: dict[str, Any], params: dict[str, Any], seed: int, device: torch.device) -> np.ndarray:
    """uint8 NHWC adversarial images of one transfer threat."""
    generator = torch.Generator(device=device).manual_seed(seed)
    step, out = params["attack_batch_size"], []
    for start in range(0, len(pos), step):
        x = to_batch(images, pos[start: start + step], device)
        y = torch.tensor(labels[start: start + step], device=device)
        x_adv = run_attack(spec["attack"], model, x, y, attack_params(spec, params["eps_scale"]), generator=generator)
        out.append((x_adv * 255).round().clamp(0, 255).byte().permute(0, 2, 3, 1).cpu().numpy())
    return np.concatenate(out)


def build_transfer_set(dataset_dir: str, split_path: str, surrogate: str, params: dict[str, Any],
                       out_dir: str, device: str = "auto", threads: int | None = None) -> pd.DataFrame:
    """Adversarial images of every transfer threat, made on the surrogate (M-TLAT: VGG).

    Stored as uint8 (the rounding moves each pixel by at most 0.5/255), one
    row per (threat, image), with the l_inf norm after rounding.
    """
    seed_everything(params["seed"], threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    model, _ = _load(surrogate, ds.classes, dev)
    order = benchmark_order(ds.manifest, indices(read_split(split_path), "test"), params["seed"])
    by_index = ds.manifest.set_index("index")
    blocks, parts = [], []
    for k, (name, spec) in enumerate(params["threats"].items()):
        if get_attack(spec["attack"]).threat != "transfer":
            continue
        pos = order[: spec.get("images") or params["images"]]
        labels = by_index.loc[pos, "label"].to_numpy()
        adv = _transfer_images(model, ds.images, pos, labels=labels, spec=spec, params=params,
                               seed=params["seed"] + k, device=dev)
        clean = np.asarray(ds.images[pos])
        blocks.append(adv)
        rows = by_index.loc[pos]
        parts.append(pd.DataFrame({"source_index": pos, "container": rows["container"].to_numpy(),
                                   "label": rows["label"].to_numpy(), "threat": name,
                                   "norm": np.abs(adv.astype(np.int16) - clean).reshape(len(pos), -1).max(1) / 255}))
    if not parts:
        raise ValueError("evaluate.threats: no transfer threat (e.g. attack mifgsm) to build a set for")
    manifest = pd.concat(parts, ignore_index=True)
    manifest.insert(0, "index", np.arange(len(manifest)))
    meta = {"name": "transfer", "classes": ds.classes, "surrogate": surrogate, "params": params}
    write_dataset(out_dir, np.concatenate(blocks), manifest, meta)
    return manifest


def corruption_means(corrupted: pd.Series) -> dict[str, float | None]:
    """Mean accuracy over the ImageNet-C corruptions and, apart, over M-TLAT's four.

    ``corrupted`` is indexed by (corruption, severity). ``accuracy`` averages the
    15 ImageNet-C corruptions only (Hendrycks' mCE set); ``mtlat_accuracy`` the
    rotation, translation, colour and occlusion of M-TLAT. None where a group
    has no corruption in the set.
    """
    names = corrupted.index.get_level_values(0)

    def mean(group: tuple[str, ...]) -> float | None:
        part = corrupted[names.isin(group)]
        return float(part.mean()) if len(part) else None

    return {"accuracy": mean(IMAGENET_C), "mtlat_accuracy": mean(MTLAT)}


def evaluate_corruptions(corrupted_dir: str, weights: str, params: dict[str, Any], out_dir: str,
                         device: str = "auto", threads: int | None = None,
                         strategy: str | None = None) -> dict[str, Any]:
    """Accuracy of one model on its split's corrupted set, optionally with BN adaptation."""
    seed_everything(0, threads)
    dev = pick_device(device)
    ds = read_dataset(corrupted_dir)
    model, info = _load(weights, ds.classes, dev)
    bn = bn_adapt.resolve(params.get("bn_adaptation"))
    frames = []
    for (name, severity), part in ds.manifest.groupby(["corruption", "severity"], sort=False):
        pred = _predict(model, ds.images, part["index"].to_numpy(), device=dev,
                        batch_size=params["batch_size"],
                        bn=None if name == "clean" else bn)
        frames.append(_frame(part.set_index("source_index"), pred, name, int(severity), 0.0))
    frame = pd.concat(frames, ignore_index=True)
    acc = frame.groupby(["threat", "severity"], sort=False)["correct"].mean()
    corrupted = acc.drop("clean", level=0)
    summary = {
        "strategy": strategy or info["strategy"], "model": info["strategy"], "split": info.get("split"),
        "seed": info["seed"], "bn_adaptation": params.get("bn_adaptation"),
        "clean_accuracy": float(acc.loc[("clean", 0)]),
        **corruption_means(corrupted),
        "per_corruption": {c: {str(s): float(v) for (_, s), v in g.items()}
                           for c, g in corrupted.groupby(level=0, sort=False)},
        "weights_sha256": info["weights_sha256"],
    }
    write_parquet(f"{out_dir}/predictions.parquet", frame)
    write_json(f"{out_dir}/summary.json", summary)
    return summary
