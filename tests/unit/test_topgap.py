"""Top-GAP model (papers/topgap-size-priors-cnn.txt): pooling, CAM mode, ablation switches."""

from __future__ import annotations

import pytest
import torch

from fillrobust.models.resnet import build_model
from fillrobust.models.topgap import (
    TopGapConfig,
    build_topgap,
    k_pixels,
    load_backbone_weights,
    min_max,
    top_gap,
    topgap_loss,
)


def _cam(seed: int = 0) -> torch.Tensor:
    return torch.randn(3, 4, 6, 5, generator=torch.Generator().manual_seed(seed))


def test_top_gap_is_gap_at_all_locations_and_gmp_at_one():
    cam = _cam()
    torch.testing.assert_close(top_gap(cam, 30), cam.mean((2, 3)))
    torch.testing.assert_close(top_gap(cam, 1), cam.amax((2, 3)))
    assert not torch.allclose(top_gap(cam, 5), cam.mean((2, 3)))


def test_top_gap_mean_of_k_largest():
    cam = torch.arange(9.0).view(1, 1, 3, 3)
    assert top_gap(cam, 3).item() == pytest.approx((8 + 7 + 6) / 3)


def test_gradient_reaches_only_top_k_locations():
    cam = _cam(1).requires_grad_(True)
    k = 4
    top_gap(cam, k).sum().backward()
    flat_grad = cam.grad.flatten(2)
    chosen = cam.detach().flatten(2).topk(k, dim=2).indices
    mask = torch.zeros_like(flat_grad, dtype=torch.bool).scatter_(2, chosen, True)
    assert torch.all(flat_grad[~mask] == 0)
    torch.testing.assert_close(flat_grad[mask], torch.full_like(flat_grad[mask], 1.0 / k))


def test_k_pixels_fraction_of_the_map():
    assert k_pixels(64 / 56**2, 56 * 56) == 64
    assert k_pixels(0.001, 64) == 1
    assert k_pixels(1.0, 64) == 64


def test_min_max_range_and_constant_map():
    scaled = min_max(_cam(2))
    assert scaled.amin((2, 3)).eq(0).all() and scaled.amax((2, 3)).eq(1).all()
    assert min_max(torch.ones(1, 1, 2, 2)).eq(0).all()


def _model(**kw) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_topgap(TopGapConfig(**kw), num_classes=4)


def test_cam_mode_shape_range_and_mode_restored():
    model = _model(k=0.25, dropout=0.3)
    model.train()
    x = torch.rand(2, 3, 32, 32)
    cam = model.cam_mode(x)
    assert cam.shape == (2, 4, 8, 8)  # last 4 ResNet-18 maps: stride 4
    assert cam.min() >= 0 and cam.max() <= 1
    assert cam.amax((2, 3)).eq(1).all()
    assert model.training  # restored
    # deterministic (dropout off, BatchNorm frozen in CAM mode)
    torch.testing.assert_close(model.cam_mode(x), cam)


def test_prediction_mode_logits_are_top_gap_of_cam():
    model = _model(k=0.25).eval()
    x = torch.rand(2, 3, 32, 32)
    cam, logits = model.cam_and_logits(x)
    torch.testing.assert_close(logits, top_gap(cam, 16))
    torch.testing.assert_close(model(x), logits)


def test_architecture_name_round_trip_and_registry():
    config = TopGapConfig(k=0.05, levels=3, fpn=True, dropout=0.2)
    assert TopGapConfig.parse(config.name()) == config
    model = build_model(config.name(), 4)
    assert model.net.config == config and model.net.cam_stride == 8
    with pytest.raises(ValueError, match="unknown key"):
        TopGapConfig.parse("topgap(colour=red)")
    with pytest.raises(ValueError, match="topgap.k"):
        TopGapConfig(k=0.0)


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_fpn_switch_removes_the_pyramid():
    with_fpn, without = _model(fpn=True), _model(fpn=False)
    extra = sum(256 * c * 9 + 256 for c in (64, 128, 256, 512)) + 4 * 256 + 4 - (4 * 512 + 4)
    assert _n_params(with_fpn) - _n_params(without) == extra
    assert len(without.net.lateral) == 0
    assert without.cam_mode(torch.rand(1, 3, 32, 32)).shape[-2:] == (1, 1)  # the last map only


def test_topgap_switch_changes_pooling_only():
    on, off = _model(k=0.1, topgap=True), _model(k=0.1, topgap=False)
    off.load_state_dict(on.state_dict())  # same weights: only the pooling differs
    x = torch.rand(2, 3, 32, 32)
    on.eval(), off.eval()
    cam = on.cam_mode(x)
    torch.testing.assert_close(cam, off.cam_mode(x))
    raw = on.cam(x)
    torch.testing.assert_close(off(x), raw.mean((2, 3)))
    assert not torch.allclose(on(x), off(x))


def test_l1_switch_adds_the_cam_norm():
    cam, y = _cam(3), torch.tensor([0, 1, 2])
    logits = top_gap(cam, 3)
    plain, with_l1 = topgap_loss(cam, logits, y, 0.0), topgap_loss(cam, logits, y, 1.0)
    torch.testing.assert_close(with_l1 - plain, cam.abs().mean())


def test_backbone_weights_from_our_resnet_checkpoint(tmp_path):
    from safetensors.torch import save_file

    torch.manual_seed(1)
    resnet = build_model("resnet18", 20)  # a source model's keys: net.conv1..., net.fc
    path = tmp_path / "source.safetensors"
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, str(path))
    model = build_topgap(TopGapConfig(), 4, weights=str(path))
    torch.testing.assert_close(model.net.backbone.conv1.weight, resnet.net.conv1.weight)
    with pytest.raises(ValueError, match="not found"):
        load_backbone_weights(model.net.backbone, tmp_path / "missing.safetensors")


def test_half_width_native_backbone():
    model = build_topgap(TopGapConfig(backbone="resnet18_half", k=0.25), 4)
    assert model.net.backbone.channels == (32, 64, 128, 256)
    assert [m.shape[1] for m in model.net.backbone(torch.rand(2, 3, 32, 32))] == [32, 64, 128, 256]
    assert model.net.cam_stride == 4 and model(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_native_resnet18_matches_timm_features_only():
    timm = pytest.importorskip("timm")
    native = _model().net.backbone.eval()
    reference = timm.create_model("resnet18", features_only=True, pretrained=False,
                                  out_indices=(1, 2, 3, 4)).eval()
    reference.load_state_dict(native.state_dict())
    x = torch.rand(2, 3, 32, 32)
    for a, b in zip(native(x), reference(x), strict=True):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("backbone", ["efficientnet_b0", "convnext_tiny"])
def test_timm_backbones_selectable(backbone):
    pytest.importorskip("timm")
    model = build_model(TopGapConfig(backbone=backbone, levels=4).name(), 4).eval()
    assert model.net.cam_stride == 4
    with torch.no_grad():
        assert model.cam_mode(torch.rand(1, 3, 32, 32)).shape == (1, 4, 8, 8)


def test_params_validation_knows_the_backbones():
    """config.TOPGAP_BACKBONES (kept there without torch) is the project's own ResNets and the timm ones above."""
    from fillrobust.config import TOPGAP_BACKBONES
    from fillrobust.models.topgap import BACKBONES_NATIVE

    assert set(TOPGAP_BACKBONES) == {*BACKBONES_NATIVE, "efficientnet_b0", "convnext_tiny"}


def _strategy_params(**topgap) -> dict:
    base = {"backbone": "resnet18", "levels": 4, "fpn": True, "width": 256, "topgap": True, "k": 0.1,
            "dropout": 0.0, "l1": True, "lambda": 1.0}
    return {"init": "scratch", "lr": 0.01, "topgap": {**base, **topgap}}


def test_strategy_builds_topgap_model_step_and_sidecar():
    from fillrobust.train.strategies import prepare

    prepared = prepare("TOPGAP", _strategy_params(k=0.25), num_classes=4, seed=0)
    assert prepared.sidecar["head"] == "topgap" and prepared.sidecar["k"] == 0.25
    assert prepared.sidecar["architecture"].startswith("topgap(")
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss, logits = prepared.step(prepared.model, x, y)
    cam = prepared.model.cam(x)  # train mode, no dropout: the same forward
    expected = torch.nn.functional.cross_entropy(logits, y) + cam.abs().mean()
    torch.testing.assert_close(loss, expected)


def test_strategy_l1_switch_and_gap_head():
    from fillrobust.train.strategies import prepare

    prepared = prepare("TOPGAP", _strategy_params(l1=False, topgap=False), num_classes=4, seed=0)
    assert prepared.sidecar["head"] == "gap" and prepared.sidecar["k"] == 1.0
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 3])
    loss, logits = prepared.step(prepared.model, x, y)
    torch.testing.assert_close(loss, torch.nn.functional.cross_entropy(logits, y))


def test_strategy_rejects_what_it_cannot_combine():
    from fillrobust.train.strategies import prepare

    with pytest.raises(ValueError, match="adversarial"):
        prepare("TOPGAP", {**_strategy_params(), "adversarial": {"eps": 0.5}}, 4)
    with pytest.raises(ValueError, match="frozen_stages"):
        prepare("TOPGAP", {**_strategy_params(), "frozen_stages": 1}, 4)
    with pytest.raises(ValueError, match="topgap.k"):
        prepare("TOPGAP", _strategy_params(k=2.0), 4)


def test_outside_backbone_weights_must_be_pinned(tmp_path):
    from safetensors.torch import save_file

    from fillrobust.io.integrity import file_sha256
    from fillrobust.train.strategies import prepare

    torch.manual_seed(2)
    resnet = build_model("resnet18", 20)
    path = tmp_path / "backbone.safetensors"
    save_file({k: v.contiguous() for k, v in resnet.state_dict().items()}, str(path))
    good = file_sha256(path)
    with pytest.raises(ValueError, match=rf"no sha256 pinned \(train.strategies.TOPGAP.topgap.weights_sha256\).*pin {good}"):
        prepare("TOPGAP", _strategy_params(weights=str(path)), 4)
    with pytest.raises(ValueError, match="sha256 mismatch"):
        prepare("TOPGAP", _strategy_params(weights=str(path), weights_sha256="0" * 64), 4)
    prepared = prepare("TOPGAP", _strategy_params(weights=str(path), weights_sha256=good), 4)
    torch.testing.assert_close(prepared.model.net.backbone.conv1.weight, resnet.net.conv1.weight)


def test_params_define_a_valid_topgap_strategy():
    from fillrobust.config import load_params, strategy_params, validate

    config = validate(load_params("params.yaml"))
    params = strategy_params(config, "TOPGAP")
    assert params["topgap"]["lambda"] == 1.0 and params["topgap"]["l1"] is True
