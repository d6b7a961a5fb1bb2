"""Training: the loop learns, and the same seed gives the same bytes."""

import numpy as np
import torch

from fillrobust.data.splits import make_split
from fillrobust.io.checkpoint import load_checkpoint
from fillrobust.models.resnet import build_model
from fillrobust.train.run import run_training


def _split(tmp_path, crops):
    from fillrobust.data.store import read_dataset

    manifest = read_dataset(crops).manifest
    split = make_split(manifest, ["red_cup", "beer_cup", "green_glass", "wine_glass"],
                       ["champagne_flute"], 0.25, 0, "S1")
    split.to_parquet(tmp_path / "S1.parquet", index=False)
    return tmp_path / "S1.parquet"


PARAMS = {"init": "scratch", "lr": 0.05, "epochs": 2, "batch_size": 8, "momentum": 0.9,
          "weight_decay": 5e-4, "balanced_sampling": True, "channels_last": True}


def test_same_seed_same_bytes(tmp_path, tiny_ccm):
    split = _split(tmp_path, tiny_ccm / "crops")
    for name in ("a", "b"):
        run_training(str(tiny_ccm / "crops"), str(split), "ST", PARAMS, 3, str(tmp_path / name / "model.safetensors"),
                     "cpu", 1, "S1")
    a = (tmp_path / "a" / "model.safetensors").read_bytes()
    assert a == (tmp_path / "b" / "model.safetensors").read_bytes()
    info = load_checkpoint(build_model("resnet18", 4), tmp_path / "a" / "model.safetensors")
    assert info["strategy"] == "ST" and len(info["history"]) == 2
    assert 0 <= info["final_metrics"]["train_accuracy"] <= 1


def test_loop_learns_an_easy_task():
    """Bright vs dark images: a few epochs must reach near-perfect accuracy."""
    from fillrobust.train.loop import TrainData, accuracy, fit

    rng = np.random.default_rng(0)
    labels = np.arange(128) % 2
    base = np.where(labels[:, None, None, None] == 1, 170, 60)
    images = np.clip(base + rng.integers(-50, 50, (128, 16, 16, 3)), 0, 255).astype(np.uint8)
    data = TrainData(images, labels.astype(np.int64), np.arange(96), np.arange(96, 128))
    torch.manual_seed(0)
    model = build_model("resnet18", 2)
    hyper = dict(PARAMS, epochs=4, batch_size=16, lr=0.01)
    history = fit(model, data, hyper, seed=0, device=torch.device("cpu"), log=lambda _: None)
    assert history.epochs[-1]["loss"] < history.epochs[0]["loss"]
    assert accuracy(model, images, labels, data.val_idx, torch.device("cpu")) >= 0.9
    assert history.final()["val_accuracy"] >= 0.9
