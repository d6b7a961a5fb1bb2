"""Cached frozen features: fine-tuning on the frozen stages' outputs, computed
once, gives the full forward's weights and losses (up to float reordering)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fillrobust.io.checkpoint import save_checkpoint
from fillrobust.models.resnet import build_model, frozen_prefix_stages, split_at_stage
from fillrobust.train.loop import TrainData, cache_frozen_features, fit
from fillrobust.train.strategies import prepare

HYPER = {"epochs": 2, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
         "balanced_sampling": True, "channels_last": True}
CPU = torch.device("cpu")


@pytest.fixture(scope="module", params=["resnet18", "resnet18_half"])
def source(tmp_path_factory, request):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("source") / "model.safetensors"
    save_checkpoint(build_model(request.param, 6), path, {"architecture": request.param,
                                                          "classes": [str(i) for i in range(6)], "strategy": "SOURCE"})
    return str(path)


def _data(n=48, side=16):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    return TrainData(images, (np.arange(n) % 4).astype(np.int64), np.arange(n - 8), np.arange(n - 8, n))


def _train(source, frozen, cache, extra=None):
    params = {"init": "source", "source_eps": 0, "frozen_stages": frozen, **(extra or {})}
    prepared = prepare("ST-FT", params, 4, seed=0, source_weights=source)
    model = prepared.model.to(memory_format=torch.channels_last)
    lines = []
    history = fit(model, _data(), dict(HYPER, **(extra or {}), cache_frozen_features=cache), 0, CPU,
                  prepared.step, prepared.set_train_mode, log=lines.append)
    return model, history, lines


@pytest.mark.parametrize("frozen", [1, 3, 4])
def test_cached_features_train_the_same_weights(source, frozen):
    full, full_history, full_log = _train(source, frozen, cache=False)
    cached, cached_history, cached_log = _train(source, frozen, cache=True)
    assert not any("cached" in line for line in full_log)
    assert any(f"frozen stages 1-{frozen}" in line for line in cached_log)
    for key, value in full.state_dict().items():
        torch.testing.assert_close(cached.state_dict()[key], value, rtol=1e-4, atol=1e-5, msg=key)
    for a, b in zip(full_history.epochs, cached_history.epochs, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["train_accuracy"] == b["train_accuracy"]
        assert a["val_accuracy"] == pytest.approx(b["val_accuracy"], nan_ok=True)
    assert full_history.epochs[-1]["loss"] != full_history.epochs[0]["loss"]  # it did train


def test_perturbed_or_unfrozen_training_keeps_the_full_forward(source):
    data = _data()
    on = dict(HYPER, cache_frozen_features=True)
    adv = {"adversarial": {"eps": 0.5, "norm": "l2", "steps": 1, "step_factor": 2.5, "random_start": True,
                           "bn_mode": "eval"}}
    cases = [({"frozen_stages": 1, **adv}, on), ({"frozen_stages": 1, "augment": {"name": "gray"}}, on),
             ({"frozen_stages": 1}, dict(on, hflip=True)), ({"frozen_stages": 0}, on),
             ({"frozen_stages": 1}, dict(HYPER, cache_frozen_features=False))]
    for extra, hyper in cases:
        prepared = prepare("X", {"init": "source", "source_eps": 0, **extra}, 4, 0, source)
        prepared.set_train_mode(prepared.model)
        assert cache_frozen_features(prepared.model, data, hyper, prepared.step, CPU) is None, extra
    prepared = prepare("X", {"init": "source", "source_eps": 0, "frozen_stages": 2}, 4, 0, source)
    prepared.set_train_mode(prepared.model)
    cache = cache_frozen_features(prepared.model, data, on, prepared.step, CPU)
    channels = prepared.model.net.layer2[-1].conv2.out_channels  # 128, or 64 at half width
    assert cache.stages == 2 and tuple(cache.features.shape) == (40, channels, 2, 2)


def test_split_model_is_the_model(source):
    model = build_model("resnet18", 4).eval()
    x = torch.rand(5, 3, 16, 16)
    for stages in range(1, 5):
        prefix, suffix = split_at_stage(model, stages)
        torch.testing.assert_close(suffix(prefix(x)), model(x))
    assert frozen_prefix_stages(model.train()) == 0  # trainable and in train mode: nothing fixed
    assert frozen_prefix_stages(build_model("vgg11_bn_half", 4)) == 0
