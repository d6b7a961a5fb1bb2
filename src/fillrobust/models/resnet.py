"""Classifiers that take images in [0, 1]: normalisation lives in the model.

Keeping the normaliser inside the model lets attacks and augmentations work
in pixel space ([0, 1] box, eps in pixel units) as in the papers. A fixed
preprocessing (``models/preprocess.py``: DCT low-pass, gray) sits before the
normaliser; an architecture name ``resnet18+lowpass`` selects it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fillrobust.models.preprocess import PREPROCESSINGS, build_preprocess

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# ResNet "layers" for freezing (ICIP 2021, Sec. 4): stage 1 includes the stem.
STAGES = (("conv1", "bn1", "layer1"), ("layer2",), ("layer3",), ("layer4",))


class Normalize(nn.Module):
    """Per-channel (x - mean) / std with constant buffers."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


class NormalizedModel(nn.Module):
    """``net(normalize(preprocess(x)))``: a classifier over images in [0, 1].

    ``preprocess`` (default none) is parameter-free, so it adds no state-dict keys.
    """

    def __init__(self, net: nn.Module, mean: tuple[float, ...] = IMAGENET_MEAN,
                 std: tuple[float, ...] = IMAGENET_STD,
                 preprocess: str = "none") -> None:
        super().__init__()
        self.preprocess = build_preprocess(preprocess)
        self.normalize = Normalize(mean, std)
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(self.preprocess(x)))


# ResNet-18 and the VGG layers are written out here rather than imported from
# torchvision: importing torchvision costs ~3 s per job (it pulls in
# torch._dynamo), more than a clean evaluation's compute. Module names,
# construction order and initialisation are torchvision 0.2x's, so the state
# dicts and the seeded initial weights are bit-identical (tests/unit/test_resnet.py).


class _CentreTap(torch.autograd.Function):
    """``weight[:, :, 1:2, 1:2]`` whose gradient comes back in the weight's own layout.

    Autograd's slice would return a zero-padded gradient in the plain layout, which
    AccumulateGrad then reorders into the channels_last weight's: about 1 ms for each
    256x256x3x3 weight, 9 % of a ``resnet18_half`` step. Same values, other strides.
    """

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor) -> torch.Tensor:
        ctx.shape = weight.shape
        ctx.layout = (torch.channels_last if weight.is_contiguous(memory_format=torch.channels_last)
                      else torch.contiguous_format)
        return weight[:, :, 1:2, 1:2]

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        full = torch.empty(ctx.shape, dtype=grad.dtype, device=grad.device, memory_format=ctx.layout).zero_()
        full[:, :, 1:2, 1:2] = grad
        return full


def _engine_needs(ctx: Any, index: int) -> bool:
    """Whether this backward pass uses the gradient of the Function's input ``index``.

    A custom Function's ``needs_input_grad`` only says the input requires grad; an attack's
    ``autograd.grad`` w.r.t. the image never uses the weights' gradient, which ``nn.Conv2d``'s
    node then skips. The engine's own answer: ``torch._C._will_engine_execute_node`` (what
    ``torch.autograd.graph.register_multi_grad_hook`` uses); it raises for a leaf that
    ``autograd.grad`` was asked for (needed), and where it is missing every gradient is made.
    """
    node = ctx.next_functions[index][0]
    if node is None:
        return False
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    if will_execute is None:
        return bool(ctx.needs_input_grad[index])
    try:
        return bool(will_execute(node))
    except RuntimeError:  # a leaf input of autograd.grad: its gradient is the answer
        return True


def _weight_grad_by_image(x: torch.Tensor, grad: torch.Tensor, shape: torch.Size,
                          stride: tuple[int, ...]) -> torch.Tensor:
    """The 3x3 (padding 1) convolution's weight gradient, summed image by image.

    One matrix product per image (its output positions x the 3x3 x channels window), added to
    the running sum in image order: the order of oneDNN's gemm-based kernel, which it picks for
    small maps on AVX2 CPUs, without its per-image passes over a reordered copy. Returned in
    the channels_last layout.
    """
    n, channels = x.shape[:2]
    padded = nn.functional.pad(x, (1, 1, 1, 1)).contiguous(memory_format=torch.channels_last)
    out_h, out_w = grad.shape[-2:]
    s_n, s_c, s_h, s_w = padded.stride()
    windows = padded.as_strided((n, out_h, out_w, 3, 3, channels),
                                (s_n, stride[0] * s_h, stride[1] * s_w, s_h, s_w, s_c))
    cols = windows.reshape(n, out_h * out_w, 9 * channels)
    rows = grad.permute(0, 2, 3, 1).reshape(n, out_h * out_w, shape[0])
    total = torch.zeros(shape[0], 9 * channels, dtype=x.dtype)
    for image in range(n):
        total.addmm_(rows[image].t(), cols[image])
    return total.view(shape[0], 3, 3, channels).permute(0, 3, 1, 2)


class _ImageOrderConv(torch.autograd.Function):
    """``conv2d(x, weight, padding=1)`` whose weight gradient is ``_weight_grad_by_image``'s.

    The forward and the input gradient are ``nn.Conv2d``'s own kernels.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride = stride
        return nn.functional.conv2d(x, weight, stride=stride, padding=1)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_w = None
        if _engine_needs(ctx, 0):
            grad_x = torch.ops.aten.convolution_backward(
                grad, x, weight, bias_sizes=None, stride=ctx.stride, padding=(1, 1), dilation=(1, 1),
                transposed=False, output_padding=(0, 0), groups=1, output_mask=(True, False, False))[0]
        if _engine_needs(ctx, 1):
            grad_w = _weight_grad_by_image(x, grad, weight.shape, ctx.stride)
        return grad_x, grad_w, None


#: Per probe key (path, shapes, strides, stride, threads): whether that small-map path gives the
#: 3x3 kernel's bytes (``_same_bytes``).
_SAME_BYTES: dict[tuple[Any, ...], bool] = {}


def _same_bytes(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...],
                path: Callable[[torch.Tensor, torch.Tensor, tuple[int, ...]], torch.Tensor]) -> bool:
    """Whether, for tensors shaped and laid out as ``x`` and ``weight``, ``path(x, weight, stride)`` gives
    the 3x3 convolution's bytes: outputs, input and weight gradients.

    oneDNN picks its kernels, and so the order of the sums, by shapes, strides, threads and the
    CPU, never by values: one probe per key on random data (a private generator, so no job's
    random stream moves) decides for every later call.
    """
    key = (path.__name__, tuple(x.shape), x.stride(), tuple(weight.shape), weight.stride(), stride,
           torch.get_num_threads())
    if key not in _SAME_BYTES:
        generator = torch.Generator().manual_seed(0)

        def leaf(like: torch.Tensor) -> torch.Tensor:
            data = torch.randn(like.shape, generator=generator)
            return torch.empty_strided(like.shape, like.stride()).copy_(data).requires_grad_()

        with torch.inference_mode(False), torch.enable_grad():
            xa, wa = leaf(x), leaf(weight)
            xb, wb = xa.detach().clone().requires_grad_(), wa.detach().clone().requires_grad_()
            full = nn.functional.conv2d(xa, wa, stride=stride, padding=1)
            fast = path(xb, wb, stride)
            grad = torch.randn(full.shape, generator=generator)
            grads = torch.autograd.grad(full, (xa, wa), grad) + torch.autograd.grad(fast, (xb, wb), grad)
        _SAME_BYTES[key] = torch.equal(full, fast) and all(
            torch.equal(a, b) for a, b in zip(grads[:2], grads[2:], strict=True))
    return _SAME_BYTES[key]


class Conv3x3(nn.Conv2d):
    """torchvision's 3x3 convolution (padding 1, no bias), with faster paths on the smallest maps.

    At 32 px the last two stages run on 2x2 and 1x1 maps. On a 1x1 map only the centre tap
    meets the image (the other eight multiply padding), and oneDNN's 3x3 kernel there (with
    the reorder of its weight gradient, ``_CentreTap``) costs far more than the centre tap's
    1x1 convolution. On 2x2 maps while training (train mode; attacks and evaluations never use
    the weights' gradient), oneDNN's weight gradient on AVX2 CPUs is a gemm-based kernel that
    sums image by image, which ``_ImageOrderConv`` reproduces in fewer passes.
    ``bench_train``'s small-maps line: 1.15-1.20x a ``resnet18_half`` train step on an
    AVX-512 CPU (Zen 5), 1.45-1.48x on an AVX2 one (Zen 3; the 1x1 path alone 1.40x). Each
    path runs only where it gives the 3x3 kernel's bytes (``_same_bytes``: fp32 on the CPU,
    channels_last weights, a probe per shape), so trained models do not change; otherwise
    (the plain layout, autocast, the GPU, shapes, threads or CPUs whose kernels sum in
    another order, larger maps) ``nn.Conv2d``'s path runs.
    """

    #: False: always ``nn.Conv2d``'s path (``use_small_map_paths``; the benchmarks' and tests' reference).
    small_maps = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.small_maps and x.device.type == "cpu" and x.dtype == torch.float32
                and not torch.is_autocast_enabled("cpu")
                and self.weight.is_contiguous(memory_format=torch.channels_last)):
            return super().forward(x)
        if x.shape[-2:] == (1, 1) and _same_bytes(x, self.weight, self.stride, _centre_tap_conv):
            return _centre_tap_conv(x, self.weight, self.stride)
        if (x.shape[-2:] == (2, 2) and self.training and self.weight.requires_grad and torch.is_grad_enabled()
                and _same_bytes(x, self.weight, self.stride, _image_order_conv)):
            return _image_order_conv(x, self.weight, self.stride)
        return super().forward(x)


def _centre_tap_conv(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...] = (1, 1)) -> torch.Tensor:
    """A 3x3 convolution (padding 1) on a 1x1 map: the centre tap's 1x1 convolution."""
    return nn.functional.conv2d(x, _CentreTap.apply(weight), stride=stride)


def _image_order_conv(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, ...] = (1, 1)) -> torch.Tensor:
    """A 3x3 convolution (padding 1) whose weight gradient sums image by image."""
    return _ImageOrderConv.apply(x, weight, stride)


def use_small_map_paths(model: nn.Module, on: bool) -> nn.Module:
    """Turn ``Conv3x3``'s small-map paths on or off in every 3x3 convolution of ``model``; returns it."""
    for module in model.modules():
        if isinstance(module, Conv3x3):
            module.small_maps = on
    return model


def _conv3x3(inplanes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    return Conv3x3(inplanes, planes, kernel_size=3, stride=stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """torchvision's ResNet basic block (two 3x3 convolutions and a shortcut)."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = _conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += identity
        return self.relu(out)


class ResNet(nn.Module):
    """torchvision's ``ResNet`` with basic blocks (``layers`` per stage), ImageNet stem."""

    def __init__(self, layers: tuple[int, int, int, int], num_classes: int, width: float = 1.0) -> None:
        super().__init__()
        planes = [int(c * width) for c in (64, 128, 256, 512)]  # width 1: torchvision's channels
        self.planes = tuple(planes)  # channels of the four stages' outputs
        self.inplanes = planes[0]
        self.conv1 = nn.Conv2d(3, planes[0], kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(planes[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(planes[0], layers[0])
        self.layer2 = self._make_layer(planes[1], layers[1], stride=2)
        self.layer3 = self._make_layer(planes[2], layers[2], stride=2)
        self.layer4 = self._make_layer(planes[3], layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(planes[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _make_layer(self, planes: int, blocks: int, stride: int = 1) -> nn.Sequential:
        downsample = None
        if stride != 1 or self.inplanes != planes:  # built before the block, as torchvision (RNG order)
            downsample = nn.Sequential(nn.Conv2d(self.inplanes, planes, kernel_size=1, stride=stride, bias=False),
                                       nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        layers += [BasicBlock(planes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


#: torchvision's VGG configuration "A" (VGG-11).
VGG11_CFG: tuple[int | str, ...] = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


def _vgg_layers(cfg: list[int | str]) -> nn.Sequential:
    """torchvision's ``vgg.make_layers(cfg, batch_norm=True)``."""
    layers: list[nn.Module] = []
    channels = 3
    for v in cfg:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(v), kernel_size=3, padding=1), nn.BatchNorm2d(int(v)),
                       nn.ReLU(inplace=True)]
            channels = int(v)
    return nn.Sequential(*layers)


def resnet18(num_classes: int) -> NormalizedModel:
    """ResNet-18 (torchvision's ImageNet architecture) with a ``num_classes`` head."""
    return NormalizedModel(ResNet((2, 2, 2, 2), num_classes))


def resnet18_half(num_classes: int) -> NormalizedModel:
    """ResNet-18 at half width (32-256 channels): the same depth, stages and stem with ~1/4 of
    the FLOPs, 3.9x the training images/s on one CPU thread at 32 px (CPU scale; docs/deviations.md)."""
    return NormalizedModel(ResNet((2, 2, 2, 2), num_classes, width=0.5))


def resnet18_quarter(num_classes: int) -> NormalizedModel:
    """ResNet-18 at quarter width (16-128 channels, the widths of CIFAR ResNets): ~1/16 of the
    FLOPs, 9.8x the training images/s on one CPU thread at 32 px (CPU scale; docs/deviations.md)."""
    return NormalizedModel(ResNet((2, 2, 2, 2), num_classes, width=0.25))


def vgg11_bn(num_classes: int, width: float = 1.0) -> NormalizedModel:
    """VGG-11-BN with a CIFAR-style head: the MI-FGSM surrogate of M-TLAT.

    torchvision's VGG-11 ("A") convolutional layers with BatchNorm, without the
    last max-pool (so 16-px inputs still work), then global average pooling and
    one linear layer: the ImageNet head (two 4096-wide layers on 7x7 maps) does
    not fit 32-px crops. ``width`` scales every layer's channels.
    """
    cfg = [v if v == "M" else max(1, int(v * width)) for v in VGG11_CFG[:-1]]
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(cfg[-1], num_classes))
    return NormalizedModel(nn.Sequential(_vgg_layers(cfg), head))


def vgg11_bn_half(num_classes: int) -> NormalizedModel:
    """VGG-11-BN at half width: ~1/4 of the FLOPs, about a ResNet-18's at 32 px (CPU scale)."""
    return vgg11_bn(num_classes, 0.5)


ARCHITECTURES = {"resnet18": resnet18, "resnet18_half": resnet18_half, "resnet18_quarter": resnet18_quarter,
                 "vgg11_bn": vgg11_bn, "vgg11_bn_half": vgg11_bn_half}


def architecture_name(arch: str, preprocess: str | None = "none") -> str:
    """The sidecar's architecture: ``resnet18`` or ``resnet18+lowpass`` (preprocessing inside)."""
    return arch if preprocess in (None, "none") else f"{arch}+{preprocess}"


def frozen_prefix_stages(model: nn.Module) -> int:
    """How many leading ResNet stages (``STAGES``) of ``model`` are fixed:
    no trainable parameter and every module in eval mode (BatchNorm uses, and
    keeps, its running statistics). 0 for other architectures."""
    net = getattr(model, "net", None)
    if not all(hasattr(net, name) for stage in STAGES for name in stage):
        return 0
    count = 0
    for stage in STAGES:
        modules = [getattr(net, name) for name in stage]
        fixed = all(not m.training and not any(p.requires_grad for p in m.parameters())
                    for module in modules for m in module.modules())
        if not fixed:
            break
        count += 1
    return count


def split_at_stage(model: NormalizedModel, stages: int) -> tuple[nn.Module, nn.Module]:
    """``model`` as ``suffix(prefix(x))`` cut after ``stages`` ResNet stages.

    The prefix is preprocess, normaliser, stem and the first ``stages``
    stages; the suffix the remaining stages, pooling and head. Both share the
    model's modules (training the suffix trains the model), and the order of
    operations is torchvision's ``ResNet.forward``.
    """
    if not 1 <= stages <= len(STAGES):
        raise ValueError(f"split_at_stage: expected 1..{len(STAGES)} stages, got {stages}")
    net = model.net
    layers = [net.layer1, net.layer2, net.layer3, net.layer4]
    prefix = nn.Sequential(model.preprocess, model.normalize, net.conv1, net.bn1, net.relu, net.maxpool,
                           *layers[:stages])
    suffix = nn.Sequential(*layers[stages:], net.avgpool, nn.Flatten(1), net.fc)
    return prefix, suffix


def build_model(arch: str, num_classes: int) -> NormalizedModel:
    """Model factory keyed by the architecture names used in params.

    ``arch`` may name a fixed preprocessing after a ``+``: ``resnet18+lowpass``, ``resnet18+gray``.
    """
    if arch.startswith("topgap("):  # Top-GAP: the name carries the head config (models/topgap.py)
        from fillrobust.models.topgap import build_topgap

        return build_topgap(arch, num_classes)
    base, plus, preprocess = arch.partition("+")
    if base not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; expected one of {sorted(ARCHITECTURES)}, "
                         f"optionally +{'|+'.join(PREPROCESSINGS[1:])}")
    if plus and preprocess not in PREPROCESSINGS[1:]:
        raise ValueError(f"architecture {arch!r}: unknown preprocessing {preprocess!r}; expected one of "
                         f"{list(PREPROCESSINGS[1:])}")
    model = ARCHITECTURES[base](num_classes)
    if plus:
        model.preprocess = build_preprocess(preprocess)
    return model
