"""Pipeline side of the frequency study (thesis 4.2-4.4, App. A.3-A.5).

- ``cross_dataset``: every variant-trained model on the test containers of
  every variant (thesis Tables A.3-A.5);
- ``model_margins``: subspace-DeepFool margins of one model along the blocks of
  the DCT diagonal and the same blocks of a random orthonormal basis, on a
  seeded subset of test images of each data variant (Figs. 4.3, 4.4, 4.7);
- ``forgetting``: LP u HP -> LP only -> LP u HP, accuracies and margins per
  phase (Fig. 4.8);
- ``adversarial_energy``: DCT energy of the PGD perturbations made during
  adversarial training (Fig. 4.12).

Split roles are mapped onto the rows of derived datasets by
``fillrobust.data.derived``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from fillrobust.data.derived import positions, sample_positions
from fillrobust.data.splits import read_split
from fillrobust.data.store import read_dataset, write_parquet
from fillrobust.device import pick_device, seed_everything

if TYPE_CHECKING:  # the functions below import these when called
    from fillrobust.evaluate.margins import DCTSubspaces, RandomBasisSubspaces
    from fillrobust.evaluate.synthetic_margins import SyntheticConfig

ORIGINAL = "original"
BASES = ("dct", "random")


# ------------------------------------------------------------------ cross-dataset

# Thesis Table A.4, ResNet-18 on CIFAR-10 (10 classes: chance 10 %), trained -> tested.
PAPER_CROSS = {
    (ORIGINAL, ORIGINAL): 90.05, (ORIGINAL, "flipped"): 10.0, (ORIGINAL, "lowpass"): 46.99,
    ("flipped", ORIGINAL): 9.91, ("flipped", "flipped"): 88.67, ("flipped", "lowpass"): 9.97,
    ("lowpass", ORIGINAL): 85.47, ("lowpass", "flipped"): 10.45, ("lowpass", "lowpass"): 84.77,
}


def _accuracy(model: torch.nn.Module, images: np.ndarray, labels: np.ndarray, pos: np.ndarray,
              device: torch.device, batch_size: int) -> float:
    from fillrobust.evaluate.clean import predict

    if len(pos) == 0:
        return float("nan")
    return float((predict(model, images, pos, device, batch_size) == labels[pos]).mean())


def cross_dataset(models: Sequence[tuple[str, str, str]], datasets: Mapping[str, str],
                  splits: Mapping[str, str], params: Mapping[str, Any], device: str = "auto",
                  threads: int | None = None) -> pd.DataFrame:
    """Accuracy (%) of every (split, trained-on variant, weights) on every test variant.

    Wide table shaped like thesis Tables A.3-A.5: one row per (split, trained
    on), one column per tested-on variant, and ``paper_<variant>`` columns with
    the ResNet-18 / CIFAR-10 numbers of Table A.4 where it has them.
    """
    from fillrobust.evaluate.clean import load_trained

    seed_everything(0, threads)
    dev = pick_device(device)
    opened = {name: read_dataset(path) for name, path in datasets.items()}
    rows = []
    for split_name, variant, weights in models:
        model, info = load_trained(weights, dev)
        split = read_split(splits[split_name])
        row: dict[str, Any] = {"split": split_name, "trained_on": variant}
        for name, ds in opened.items():
            if list(info["classes"]) != ds.classes:
                raise ValueError(f"{weights}: classes {info['classes']} differ from {ds.path}'s {ds.classes}")
            pos = positions(ds.manifest, split, "test")
            labels = ds.manifest["label"].to_numpy().astype(np.int64)
            row[name] = 100 * _accuracy(model, ds.images, labels, pos=pos, device=dev,
                                        batch_size=int(params["batch_size"]))
        row["n_test"] = int(len(positions(opened[next(iter(opened))].manifest, split, "test")))
        row["converged"] = info.get("converged")
        rows.append(row)
    table = pd.DataFrame(rows)
    for name in datasets:
        table[f"paper_{name}"] = [PAPER_CROSS.get((t, name), np.nan) for t in table["trained_on"]]
    return table


# ------------------------------------------------------------------------ margins


def margin_params(params: Mapping[str, Any]) -> dict[str, Any]:
    """The subspace-DeepFool settings (``MarginParams``' fields) among a margins parameter slice."""
    from dataclasses import fields

    from fillrobust.evaluate.margins import MarginParams

    return {f.name: params[f.name] for f in fields(MarginParams) if f.name in params}


def subspace_family(basis: str, side: int, block: int, stride: int,
                    seed: int) -> DCTSubspaces | RandomBasisSubspaces:
    """DCT-diagonal blocks (``dct``) or the same blocks of a seeded random basis (``random``)."""
    from fillrobust.evaluate.margins import DCTSubspaces, RandomBasisSubspaces, diagonal_blocks

    masks = diagonal_blocks(side, block, stride)
    if basis == "dct":
        return DCTSubspaces(masks)
    if basis == "random":
        return RandomBasisSubspaces(masks, seed)
    raise ValueError(f"unknown margin basis {basis!r}; valid: {list(BASES)}")


def image_margins(model: torch.nn.Module, x: torch.Tensor, params: Mapping[str, Any],
                  bases: Sequence[str] | None = None) -> pd.DataFrame:
    """Margins of images ``x`` [N, C, H, W] in every subspace of every basis.

    Long frame: basis, subspace (block number, low to high frequency), image
    (row of ``x``), margin (``inf`` where none was found). The reference class
    is the model's prediction (distance to the decision boundary).
    """
    from fillrobust.evaluate.margins import subspace_margins

    side = int(x.shape[-1])
    if x.shape[-2] != side:
        raise ValueError(f"margins need square images, got {tuple(x.shape[-2:])}")
    frames = []
    for basis in bases or params["bases"]:
        family = subspace_family(basis, side, int(params["block"]), int(params["stride"]),
                                 int(params.get("seed", 0)))
        margins = subspace_margins(model, x, None, family, margin_params(params)).cpu().numpy()
        n_sub, n = margins.shape
        frames.append(pd.DataFrame({"basis": basis, "subspace": np.repeat(np.arange(n_sub), n),
                                    "image": np.tile(np.arange(n), n_sub),
                                    "margin": margins.reshape(-1).astype(np.float64)}))
    return pd.concat(frames, ignore_index=True)


def model_margins(weights: str, label: str, datasets: Mapping[str, str], split_path: str,
                  split_name: str, params: Mapping[str, Any], out: str, device: str = "auto",
                  threads: int | None = None) -> pd.DataFrame:
    """Margins of one checkpoint on ``n_images`` test images of each data variant.

    The same source indices are used for every variant (seeded choice among the
    test containers). Writes a long parquet: split, model, data, basis,
    subspace, image, index, label, prediction, margin.
    """
    from fillrobust.evaluate.clean import load_trained
    from fillrobust.train.loop import to_batch

    seed_everything(int(params.get("seed", 0)), threads)
    dev = pick_device(device)
    model, _ = load_trained(weights, dev)
    for p in model.parameters():
        p.requires_grad_(False)
    split = read_split(split_path)
    frames = []
    for name, path in datasets.items():
        ds = read_dataset(path)
        pos = sample_positions(positions(ds.manifest, split, "test"), int(params["n_images"]),
                               int(params.get("seed", 0)))
        x = to_batch(ds.images, pos, dev).contiguous()
        with torch.no_grad():
            pred = model(x).argmax(1).cpu().numpy()
        labels = ds.manifest["label"].to_numpy()[pos]
        frame = image_margins(model, x, params)
        for column, value in (("data", name), ("model", label), ("split", split_name)):
            frame.insert(0, column, value)
        frame["index"] = ds.manifest["index"].to_numpy()[pos][frame["image"]]
        frame["label"] = labels[frame["image"]]
        frame["prediction"] = pred[frame["image"]]
        frames.append(frame)
        print(f"{label} on {name}: {len(pos)} images, accuracy {(pred == labels).mean():.3f}", flush=True)
    table = pd.concat(frames, ignore_index=True)
    write_parquet(out, table)
    return table


def margin_summary_table(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Per (split, model, data, basis, subspace): p5 / median / p95 of the finite
    margins, their share ``found``, and the accuracy (%) on the measured images."""
    from fillrobust.evaluate.margins import margin_summary

    rows = []
    for frame in frames:
        keys = ["split", "model", "data", "basis"]
        for key, group in frame.groupby(keys, sort=False):
            wide = group.pivot(index="subspace", columns="image", values="margin").sort_index()
            summary = margin_summary(wide.to_numpy(), list(wide.index))
            first = group[group["subspace"] == group["subspace"].min()]
            acc = 100 * float((first["label"] == first["prediction"]).mean())
            summary.insert(0, "accuracy", acc)
            summary.insert(0, "n", wide.shape[1])
            for name, value in reversed(list(zip(keys, key, strict=True))):
                summary.insert(0, name, value)
            rows.append(summary)
    return pd.concat(rows, ignore_index=True)


# ---------------------------------------------------------------------- forgetting

# Thesis 4.3.3 (DenseNet-121, CIFAR-10): test accuracy (%) on T_LP and T_HP per phase.
FORGETTING_PHASES = ("LP+HP", "LP only", "LP+HP again")
PAPER_FORGETTING = {"LP+HP": (86.59, 57.29), "LP only": (87.81, 10.01), "LP+HP again": (86.1, 59.11)}


def _fresh_model(hyper: Mapping[str, Any], num_classes: int, seed: int, dev: torch.device):
    from fillrobust.train.strategies import prepare

    prepared = prepare("ST", dict(hyper), num_classes, seed)
    model = prepared.model.to(dev)
    if hyper.get("channels_last", True):
        model = model.to(memory_format=torch.channels_last)
    return model


def _margin_medians(model: torch.nn.Module, x: torch.Tensor, params: Mapping[str, Any]) -> np.ndarray:
    model.eval()
    frame = image_margins(model, x, params, bases=["dct"])
    wide = frame.pivot(index="subspace", columns="image", values="margin").sort_index().to_numpy()
    return np.array([np.median(row[np.isfinite(row)]) if np.isfinite(row).any() else np.nan for row in wide])


def majority_share(labels: np.ndarray) -> float:
    """Accuracy (%) of always answering the most frequent label: what a model that
    ignores its input scores, the floor a learned accuracy must beat."""
    return 100 * float(np.bincount(np.asarray(labels, dtype=np.int64)).max()) / max(len(labels), 1)


def forgetting(dataset_dir: str, split_path: str, hyper: Mapping[str, Any], params: Mapping[str, Any],
               seed: int = 0, device: str = "auto", threads: int | None = None) -> pd.DataFrame:
    """Thesis 4.3.3 / Fig. 4.8 on the ``lp_hp`` dataset of a split.

    Phase 1 trains the ST recipe (``hyper``, with ``params['epochs']`` and
    ``params['lr']``) on the train containers of LP u HP; phase 2 continues on
    LP only, phase 3 on LP u HP again (``finetune_epochs``, ``finetune_lr``, the
    linear decay restarting each phase). After every phase: accuracy (%) on the
    LP and HP test images and the median DCT-diagonal margins of ``n_images``
    LP test images. One row per (phase, subspace). ``hp_majority``: the HP accuracy
    of always answering the most frequent class of the HP test images (a constant
    prediction reaches it without learning anything from HP images).
    """
    from fillrobust.train.loop import TrainData, fit, to_batch

    seed_everything(seed, threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    if ds.meta.get("variant") != "lp_hp":
        raise ValueError(f"{dataset_dir}: forgetting needs the lp_hp dataset, got variant {ds.meta.get('variant')!r}")
    split = read_split(split_path)
    labels = ds.manifest["label"].to_numpy().astype(np.int64)
    pos = {(role, part): positions(ds.manifest, split, role, part)
           for role in ("train", "val", "test") for part in (None, "lowpass", "highpass")}
    model = _fresh_model(hyper, len(ds.classes), seed, dev)
    probe = to_batch(ds.images, sample_positions(pos["test", "lowpass"], int(params["n_images"]), seed), dev)
    phases = [
        (FORGETTING_PHASES[0], None, {"epochs": params["epochs"], "lr": params["lr"]}),
        (FORGETTING_PHASES[1], "lowpass", {"epochs": params["finetune_epochs"], "lr": params["finetune_lr"]}),
        (FORGETTING_PHASES[2], None, {"epochs": params["finetune_epochs"], "lr": params["finetune_lr"]}),
    ]
    rows, hp_majority = [], majority_share(labels[pos["test", "highpass"]])
    for number, (phase, part, override) in enumerate(phases, start=1):
        data = TrainData(ds.images, labels, pos["train", part], pos["val", part])
        fit(model, data, {**hyper, **override, "keep": "last"}, seed + number, dev,
            log=lambda line, phase=phase: print(f"[{phase}] {line}", flush=True))
        model.eval()
        acc = {p: 100 * _accuracy(model, ds.images, labels, pos=pos["test", p], device=dev, batch_size=256)
               for p in ("lowpass", "highpass")}
        medians = _margin_medians(model, probe, params)
        paper = PAPER_FORGETTING[phase]
        for sub, value in enumerate(medians):
            rows.append({"phase": number, "trained_on": phase, "lp_accuracy": acc["lowpass"],
                         "hp_accuracy": acc["highpass"], "hp_majority": hp_majority, "paper_lp_accuracy": paper[0],
                         "paper_hp_accuracy": paper[1], "subspace": sub, "median_margin": value})
        print(f"phase {number} ({phase}): LP {acc['lowpass']:.2f} % HP {acc['highpass']:.2f} %", flush=True)
    return pd.DataFrame(rows)


# ------------------------------------------------ PGD perturbation energy during AT


def block_energy(delta: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """l2 norm of ``delta`` [B, C, H, W] inside each DCT block of ``masks`` [R, H, W] -> [B, R]."""
    from fillrobust.data.frequency import dct2

    power = dct2(delta.float()).pow(2).sum(1)  # [B, H, W], summed over channels
    return torch.einsum("bhw,rhw->br", power, masks.to(power)).clamp_min(0).sqrt()


#: Side (px) at which ``frequency.energy.eps`` is given: the thesis' eps = 1 of Fig. 4.12
#: is an l2 radius on 32-px CIFAR-10 images.
ENERGY_EPS_SIDE = 32


def energy_eps(eps: float, side: int) -> float:
    """The l2 radius of Fig. 4.12's PGD at ``side``-px images: ``eps * sqrt(side^2 / 32^2)``.

    The thesis' eps is already an eps at 32 px, so it is used as is at 32 px;
    other sides keep the same per-pixel strength. ``train.eps_scale`` (which
    maps the ImageNet papers' 224-px eps to the crops) does not apply here.
    """
    return float(eps) * float(np.sqrt(side**2 / ENERGY_EPS_SIDE**2))


def adversarial_energy(dataset_dir: str, split_path: str, hyper: Mapping[str, Any],
                       params: Mapping[str, Any], seed: int = 0, device: str = "auto",
                       threads: int | None = None) -> pd.DataFrame:
    """Thesis Fig. 4.12: energy of the PGD perturbations made while adversarially training.

    Trains the AT recipe (``hyper`` with a resolved ``adversarial`` block and
    ``params['epochs']``; its eps is the thesis' 32-px eps, see
    :func:`energy_eps`) from scratch and records, per epoch and DCT-diagonal
    block, the 95th percentile (and median) over the epoch's training images of
    ``||P_block delta||_2`` and of its share ``||P_block delta||_2 / ||delta||_2``.
    """
    from fillrobust.evaluate.margins import diagonal_blocks
    from fillrobust.train.loop import TrainData, fit
    from fillrobust.train.strategies import adversarial_step

    seed_everything(seed, threads)
    dev = pick_device(device)
    ds = read_dataset(dataset_dir)
    split = read_split(split_path)
    labels = ds.manifest["label"].to_numpy().astype(np.int64)
    data = TrainData(ds.images, labels, positions(ds.manifest, split, "train"),
                     positions(ds.manifest, split, "val"))
    side = int(ds.images.shape[1])
    masks = diagonal_blocks(side, int(params["block"]), int(params["stride"]))
    eps = energy_eps(hyper["adversarial"]["eps"], side)  # not train.eps_scale: see energy_eps
    records: list[torch.Tensor] = []

    def record(x: torch.Tensor, x_adv: torch.Tensor) -> None:
        delta = (x_adv - x).detach()
        energy = block_energy(delta, masks)
        total = delta.flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-12)
        records.append(torch.stack([energy, energy / total], 0).cpu())

    # The training step of strategy AT itself, at the thesis' eps (eps_scale 1: eps is already in pixels here).
    step = adversarial_step({**hyper["adversarial"], "eps": eps, "eps_scale": 1.0}, seed, observe=record)

    per_epoch: list[torch.Tensor] = []

    def log(line: str) -> None:
        print(line, flush=True)
        per_epoch.append(torch.cat(records, 1))
        records.clear()

    model = _fresh_model(hyper, len(ds.classes), seed, dev)
    fit(model, data, {**hyper, "epochs": params["epochs"], "keep": "last"}, seed=seed, device=dev,
        step=step, log=log)
    rows = []
    for epoch, rec in enumerate(per_epoch, start=1):
        values = rec.double().numpy()  # [2, N, R]
        for sub in range(values.shape[2]):
            norm, share = values[0, :, sub], values[1, :, sub]
            rows.append({"epoch": epoch, "subspace": sub, "p95_norm": float(np.percentile(norm, 95)),
                         "median_norm": float(np.median(norm)), "p95_share": float(np.percentile(share, 95)),
                         "median_share": float(np.median(share)), "n": int(norm.size),
                         "eps": eps})
    return pd.DataFrame(rows)


# ------------------------------------------------------------- synthetic (T1, T2)


def synthetic_config(params: Mapping[str, Any], **override: Any) -> SyntheticConfig:
    """``SyntheticConfig`` from the ``synthetic`` parameter slice (+ overrides)."""
    import dataclasses

    from fillrobust.evaluate.margins import MarginParams
    from fillrobust.evaluate.synthetic_margins import SyntheticConfig

    fields = {f.name for f in dataclasses.fields(SyntheticConfig)} - {"margin", "model"}
    values = {k: v for k, v in params.items() if k in fields}
    margin = MarginParams.from_mapping(params.get("margin"))
    return SyntheticConfig(**{**values, **override, "margin": margin})


def synthetic_table(params: Mapping[str, Any]) -> pd.DataFrame:
    """Thesis Tables 4.1 (MLP) and A.1 (logistic regression) with the paper's numbers."""
    from fillrobust.evaluate.synthetic_margins import t1_margin_table

    tables = [t1_margin_table(synthetic_config(params, model=m)) for m in params["models"]]
    table = pd.concat(tables, ignore_index=True)
    first = ["model", "subspace", "p5", "paper_p5", "median", "paper_median", "p95", "paper_p95",
             "exact_p5", "exact_median", "exact_p95"]
    return table[first + [c for c in table.columns if c not in first]]


def synthetic_transition(params: Mapping[str, Any]) -> pd.DataFrame:
    """Thesis Fig. 4.10: T2 eps sweep (``transition`` overrides the shared settings).

    Each eps trains its own model from the same seed, so a row does not depend on the
    other eps values: the workflow runs one eps per job and joins them
    (:func:`join_transition`), the same rows as one call with every eps.
    """
    from fillrobust.evaluate.synthetic_margins import t2_eps_sweep

    sweep = dict(params["transition"])
    eps_values = sweep.pop("eps_values")
    return t2_eps_sweep(eps_values, synthetic_config(params, **sweep))


def join_transition(parts: Sequence[str], out: str | None = None) -> pd.DataFrame:
    """Fig. 4.10's sweep from its per-eps parts (one-eps :func:`synthetic_transition` tables), in order.

    Written to ``out`` (parquet) when given.
    """
    from fillrobust.data.store import write_parquet

    table = pd.concat([pd.read_parquet(part) for part in parts], ignore_index=True)
    if out is not None:
        write_parquet(out, table)
    return table
