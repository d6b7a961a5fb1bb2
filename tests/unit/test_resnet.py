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
    # At 64 px every ResNet map is >= 2x2 at stride 1: the same kernels, the same bytes. At 32 px
    # the last stage's 1x1 maps take Conv3x3's product (sums in another order).
    for size, exact in ((64, True), (32, arch != "resnet18")):
        x = torch.rand(3, 3, size, size)
        for train in (True, False):
            ours.train(train), ref.train(train)
            if exact:
                assert torch.equal(ours(x), ref(x)), (size, train)
            else:
                torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("size", [1, 2, 3])
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv3x3_on_small_maps_is_the_convolution(size, stride, channels_last):
    """Conv3x3 computes the 1x1 and the 2x2-at-stride-2 maps without the padding taps: same
    outputs and same gradients (input and every weight tap, the unused ones 0) as nn.Conv2d."""
    from fillrobust.models.resnet import Conv3x3

    torch.manual_seed(0)
    conv = Conv3x3(6, 5, kernel_size=3, stride=stride, padding=1, bias=False)
    ref = torch.nn.Conv2d(6, 5, kernel_size=3, stride=stride, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(4, 6, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = conv(xa), ref(xb)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    grad = torch.randn_like(expected)
    out.backward(grad), expected.backward(grad)
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(conv.weight.grad, ref.weight.grad, rtol=1e-5, atol=1e-5)
    if size == 1:
        assert not conv.weight.grad[:, :, [0, 2]].any() and not conv.weight.grad[:, :, 1, [0, 2]].any()


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
