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


def _assert_same_as(conv: torch.nn.Module, ref: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Forward and backward through ``conv`` and ``ref``: outputs, input and weight gradients the same
    bytes. Returns both inputs (their ``.grad`` set) and the output gradient used."""
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out, expected = conv(xa), ref(xb)
    grad = torch.randn_like(expected)
    out.backward(grad), expected.backward(grad)
    for ours, theirs in ((out, expected), (xa.grad, xb.grad), (conv.weight.grad, ref.weight.grad)):
        assert ours.shape == theirs.shape and torch.equal(ours, theirs)
    return xa, xb, grad


@pytest.mark.parametrize("batch", [2, 16, 64])
@pytest.mark.parametrize("channels_last", [False, True])
def test_conv3x3_on_1x1_maps_is_the_convolution_byte_for_byte(batch, channels_last):
    """On a 1x1 map Conv3x3 gives nn.Conv2d's outputs and gradients (input and every tap, the
    eight padding taps 0) byte for byte: it takes the centre tap's 1x1 path only where a probe
    of that shape found the same bytes (channels_last weights), else nn.Conv2d's."""
    from fillrobust.models import resnet

    torch.manual_seed(0)
    conv = resnet.Conv3x3(64, 128, kernel_size=3, padding=1, bias=False)
    ref = torch.nn.Conv2d(64, 128, kernel_size=3, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    x = torch.randn(batch, 64, 1, 1)
    if channels_last:
        conv, ref = conv.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    _assert_same_as(conv, ref, x)
    assert not conv.weight.grad[:, :, [0, 2]].any() and not conv.weight.grad[:, :, 1, [0, 2]].any()
    probed = any(key[1] == tuple(x.shape) and key[3] == (128, 64, 3, 3) for key in resnet._SAME_BYTES)
    assert probed == channels_last  # the plain layout never tries the 1x1 path


@pytest.mark.parametrize("stride", [1, 2])
def test_conv3x3_on_2x2_maps_is_the_convolution_byte_for_byte(stride, monkeypatch):
    """On a 2x2 map (channels_last, training, one thread as the jobs) Conv3x3 gives nn.Conv2d's
    outputs and both gradients byte for byte, whether or not its probe let the image-order
    weight gradient run (it does on AVX2 CPUs; with two threads oneDNN splits the images and
    the probe refuses); an attack's gradient w.r.t. the image makes no weight gradient."""
    from fillrobust.models import resnet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _check_2x2(resnet, stride, monkeypatch)
    finally:
        torch.set_num_threads(threads)


def _check_2x2(resnet, stride: int, monkeypatch) -> None:
    torch.manual_seed(0)
    planes = 128 * stride  # the third stage's and the fourth's first (resnet18_half at 32 px)
    conv = resnet.Conv3x3(128, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    ref = torch.nn.Conv2d(128, planes, kernel_size=3, stride=stride, padding=1, bias=False)
    ref.load_state_dict(conv.state_dict())
    conv, ref = conv.to(memory_format=torch.channels_last), ref.to(memory_format=torch.channels_last)
    x = torch.randn(32, 128, 2, 2).contiguous(memory_format=torch.channels_last)
    xa, xb, grad = _assert_same_as(conv, ref, x)
    agreed = [v for key, v in resnet._SAME_BYTES.items()
              if key[0] == "_image_order_conv" and key[1] == tuple(x.shape) and key[5:] == ((stride, stride), 1)]
    taken = conv(x).grad_fn.name() == "_ImageOrderConvBackward"
    assert agreed == [taken]  # the path runs exactly where the probe found the same bytes (CPU-dependent)
    calls = []
    original = resnet._weight_grad_by_image
    monkeypatch.setattr(resnet, "_weight_grad_by_image", lambda *args: calls.append(1) or original(*args))
    (image_grad,) = torch.autograd.grad((conv(xa) * grad).sum(), xa)
    assert torch.equal(image_grad, xb.grad) and calls == []  # an attack's gradient: no weight gradient made
    conv(xa).backward(grad)
    assert calls == [1] * taken
    assert conv.eval()(x).grad_fn.name() == "ConvolutionBackward0"  # evaluations: nn.Conv2d's path


def test_weight_grad_by_image_is_the_image_order_sum():
    """``_weight_grad_by_image`` is the weight gradient (to float rounding; its bytes are the
    probe's business), laid out channels_last."""
    from fillrobust.models.resnet import _weight_grad_by_image

    torch.manual_seed(0)
    x = torch.randn(8, 16, 2, 2, dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(24, 16, 3, 3, dtype=torch.float64)
    for stride in (1, 2):
        out = torch.nn.functional.conv2d(x, w, stride=stride, padding=1)
        grad = torch.randn_like(out)
        expected = torch.ops.aten.convolution_backward(
            grad, x, w, None, (stride, stride), (1, 1), (1, 1), False, (0, 0), 1, (False, True, False))[1]
        ours = _weight_grad_by_image(x, grad, w.shape, (stride, stride))
        assert ours.is_contiguous(memory_format=torch.channels_last)
        assert torch.allclose(ours, expected, rtol=1e-12, atol=1e-12)


def test_conv3x3_probe_refuses_a_tap_that_sums_otherwise(monkeypatch):
    """A 1x1 path whose bytes differ (here a tap scaled by 1 + 2^-20) fails the probe, and the
    convolution then runs nn.Conv2d's path: the same bytes as before."""
    from fillrobust.models import resnet

    monkeypatch.setattr(resnet, "_SAME_BYTES", {})
    original = resnet._CentreTap.apply
    monkeypatch.setattr(resnet._CentreTap, "apply", lambda weight: original(weight) * (1 + 2**-20))
    torch.manual_seed(0)
    conv = resnet.Conv3x3(64, 128, kernel_size=3, padding=1, bias=False).to(memory_format=torch.channels_last)
    x = torch.randn(64, 64, 1, 1).contiguous(memory_format=torch.channels_last)
    out = conv(x)
    assert list(resnet._SAME_BYTES.values()) == [False]
    assert torch.equal(out, torch.nn.functional.conv2d(x, conv.weight, padding=1))


def test_conv3x3_keeps_a_channels_last_training_byte_for_byte():
    """Ten SGD steps of resnet18_half at 32 px (its last stage on 1x1 maps), channels_last, one
    thread: every parameter the same bytes with Conv3x3's small-map paths (1x1 and 2x2 maps) as
    with nn.Conv2d's."""
    from fillrobust.models.resnet import use_small_map_paths

    def train(plain: bool) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        model = use_small_map_paths(build_model("resnet18_half", 4), not plain)
        model = model.to(memory_format=torch.channels_last).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        x = torch.rand(32, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        y = torch.arange(32) % 4
        for _ in range(10):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
        return model.state_dict()

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the pipeline's jobs (params.yaml threads: 1)
    try:
        ours, plain = train(False), train(True)
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(ours[key], plain[key]) for key in ours)
