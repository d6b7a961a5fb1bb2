"""Top-GAP evaluation: IoU, sparsity, GradCAM, and one model's evaluation end to end."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from fillrobust.evaluate.localisation import evaluate_topgap, gradcam, iou, robust_rows, sparsity

CLASSES = ["0%", "50%", "90%", "unknown"]


def test_iou_of_a_known_mask_pair():
    cam = torch.zeros(1, 4, 4)
    cam[0, :2, :] = 1.0  # top half predicted (8 px)
    mask = torch.zeros(1, 4, 4, dtype=torch.uint8)
    mask[0, :, :2] = 1  # left half true (8 px): intersection 4, union 12
    assert iou(cam, mask, 0.5)[0] == pytest.approx(4 / 12)
    assert iou(cam, mask, 0.5)[0] < iou(cam, cam.to(torch.uint8), 0.5)[0] == 1.0
    empty = torch.zeros(1, 4, 4)
    assert math.isnan(iou(empty, empty.to(torch.uint8), 0.5)[0])  # nothing predicted, nothing true


def test_sparsity_is_the_mean_of_the_scaled_map():
    maps = torch.tensor([[[0.0, 1.0], [0.0, 0.0]], [[1.0, 1.0], [1.0, 0.0]]])
    np.testing.assert_allclose(sparsity(maps), [0.25, 0.75])


def test_robust_accuracy_definitions_differ():
    rows = robust_rows(np.array([0, 1, 2]), np.array([0, 2, 2]), np.array([1, 1, 2]))
    assert rows["unchanged"].tolist() == [True, False, True]  # paper: prediction kept
    assert rows["correct"].tolist() == [False, False, True]  # usual: still right


def test_gradcam_is_nonnegative_at_the_stage_resolution():
    from fillrobust.models.resnet import build_model

    torch.manual_seed(0)
    model = build_model("resnet18", 4).eval()
    maps = gradcam(model, torch.rand(2, 3, 32, 32), torch.tensor([0, 3]), "layer2")
    assert maps.shape == (2, 4, 4) and (maps >= 0).all()
    assert all(p.grad is None for p in model.parameters())  # no gradients left behind
    with pytest.raises(ValueError, match="gradcam_layer"):
        gradcam(model, torch.rand(1, 3, 32, 32), torch.tensor([0]), "layer9")


def _dataset(tmp_path):
    from fillrobust.data.store import write_dataset

    rng = np.random.default_rng(0)
    n, size = 16, 16
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 4:12, 5:11] = 1
    manifest = pd.DataFrame({"index": np.arange(n), "label": np.arange(n) % 4,
                             "container": np.where(np.arange(n) % 2, "red_cup", "wine_glass")})
    write_dataset(tmp_path / "ccm", images, manifest, {"name": "t", "classes": CLASSES}, masks)
    split = pd.DataFrame({"index": np.arange(n), "role": ["train"] * 4 + ["test"] * 12})
    split.to_parquet(tmp_path / "S1.parquet")
    return tmp_path / "ccm", tmp_path / "S1.parquet"


@pytest.mark.parametrize("topgap_head", [True, False])
def test_evaluate_one_model_end_to_end(tmp_path, topgap_head):
    from fillrobust.io.checkpoint import save_checkpoint
    from fillrobust.models.resnet import build_model
    from fillrobust.models.topgap import TopGapConfig, build_topgap, describe

    data, split = _dataset(tmp_path)
    torch.manual_seed(0)
    model = build_topgap(TopGapConfig(k=0.25), 4) if topgap_head else build_model("resnet18", 4)
    info = {"architecture": "resnet18", "classes": CLASSES, "strategy": "X", **describe(model)}
    save_checkpoint(model, tmp_path / "m" / "model.safetensors", info)
    params = {"images": 10, "batch_size": 4, "seed": 0, "thresholds": [0.3, 0.6], "gradcam_layer": "layer1",
              "overlays": 1, "threats": {"fgsm": {"attack": "fgsm", "params": {"eps": 0.03}}}}
    summary = evaluate_topgap(str(data), str(split), str(tmp_path / "m" / "model.safetensors"), params,
                              out_dir=str(tmp_path / "out"), device="cpu", threads=1)
    frame = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    clean, adv = frame[frame.threat == "clean"].set_index("index"), frame[frame.threat == "fgsm"].set_index("index")
    assert len(clean) == 10 and set(clean.index) <= set(range(4, 16))
    expected = (adv["prediction"] == clean.loc[adv.index, "prediction"]).mean()
    assert summary["threats"]["fgsm"]["robust_unchanged"] == pytest.approx(expected)
    assert summary["threats"]["fgsm"]["robust_correct"] == pytest.approx((adv["prediction"] == adv["label"]).mean())
    assert summary["method"] == ("cam" if topgap_head else "gradcam@layer1")
    assert 0 <= summary["sparsity"] <= 1 and 0 <= summary["iou"] <= 1
    assert summary["iou"] == max(summary["iou_by_threshold"].values())
    maps = np.load(tmp_path / "out" / "maps.npz")
    assert maps["maps"].shape == (2, 16, 16) and maps["maps"].dtype == np.uint8  # one per container
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["n"] == 10


def test_an_image_count_beyond_the_test_set_evaluates_every_test_image_once(tmp_path):
    """The default's ``images: 1000000`` (the paper: every test image) takes the whole test set."""
    from fillrobust.io.checkpoint import save_checkpoint
    from fillrobust.models.topgap import TopGapConfig, build_topgap, describe

    data, split = _dataset(tmp_path)
    torch.manual_seed(0)
    model = build_topgap(TopGapConfig(k=0.25), 4)
    save_checkpoint(model, tmp_path / "m" / "model.safetensors",
                    {"architecture": "resnet18", "classes": CLASSES, "strategy": "X", **describe(model)})
    params = {"images": 1000000, "batch_size": 5, "seed": 0, "thresholds": [0.5], "gradcam_layer": "layer1",
              "overlays": 1, "threats": {"fgsm": {"attack": "fgsm", "params": {"eps": 0.03}}}}
    summary = evaluate_topgap(str(data), str(split), str(tmp_path / "m" / "model.safetensors"), params,
                              out_dir=str(tmp_path / "out"), device="cpu", threads=1)
    frame = pd.read_parquet(tmp_path / "out" / "predictions.parquet")
    for threat in ("clean", "fgsm"):
        assert sorted(frame.loc[frame.threat == threat, "index"]) == list(range(4, 16))  # the 12 test images
    assert summary["n"] == 12
