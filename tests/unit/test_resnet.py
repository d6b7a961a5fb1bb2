"""The torchvision-free ResNet-18 and VGG-11-BN layers are torchvision's:
same state-dict keys, same seeded initial weights, same outputs."""

from __future__ import annotations

import pytest
import torch
import torchvision

from fillrobust.models.resnet import build_model


def _reference(arch: str, num_classes: int) -> torch.nn.Module:
    if arch == "resnet18":
        return torchvision.models.resnet18(weights=None, num_classes=num_classes)
    from torchvision.models.vgg import cfgs, make_layers

    width = 0.5 if arch == "vgg11_bn_half" else 1.0
    cfg = [v if v == "M" else max(1, int(v * width)) for v in cfgs["A"][:-1]]
    head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(cfg[-1], num_classes))
    return torch.nn.Sequential(make_layers(cfg, batch_norm=True), head)  # the head draws first, as vgg11_bn


@pytest.mark.parametrize("arch", ["resnet18", "vgg11_bn_half"])
def test_same_weights_and_outputs_as_torchvision(arch):
    torch.manual_seed(3)
    ours = build_model(arch, 4).net
    torch.manual_seed(3)
    ref = _reference(arch, 4)
    a, b = ours.state_dict(), ref.state_dict()
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key
    x = torch.rand(3, 3, 32, 32)
    ours.train(), ref.train()
    assert torch.equal(ours(x), ref(x))
    ours.eval(), ref.eval()
    assert torch.equal(ours(x), ref(x))


def test_model_building_does_not_import_torchvision():
    import subprocess
    import sys

    code = ("import sys; from fillrobust.models.resnet import build_model; build_model('resnet18', 4); "
            "build_model('vgg11_bn_half', 4); print('torchvision' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


@pytest.mark.parametrize(("arch", "factor"), [("resnet18_half", 2), ("resnet18_quarter", 4)])
def test_narrow_resnet18_is_resnet18_at_a_fraction_of_the_channels(arch, factor):
    full, narrow = build_model("resnet18", 4).net, build_model(arch, 4).net
    full_state, narrow_state = full.state_dict(), narrow.state_dict()
    assert list(full_state) == list(narrow_state)  # same depth, stages and module names
    for key, value in full_state.items():
        if value.dim() == 4:  # conv weights: out and in channels divided (the stem keeps its 3 inputs)
            assert narrow_state[key].shape[0] * factor == value.shape[0], key
            assert narrow_state[key].shape[1] * (factor if value.shape[1] > 3 else 1) == value.shape[1], key
    assert narrow.fc.in_features == 512 // factor
    count = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert 0.9 < count(narrow) / count(full) * factor**2 < 1.1  # parameters (and FLOPs) / factor^2
    assert build_model(arch, 4)(torch.rand(2, 3, 32, 32)).shape == (2, 4)
