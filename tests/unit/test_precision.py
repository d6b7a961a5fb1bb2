"""The GPU path's mixed precision, exercised on CPU: bf16 autocast trains, fp32 keeps the bytes,
attacks inside an autocast step stay in fp32."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from fillrobust.config import ConfigError, load_params, validate
from fillrobust.device import autocast, full_precision, grad_scaler
from fillrobust.models.resnet import build_model
from fillrobust.train.loop import TrainData, fit

HYPER = {"epochs": 2, "batch_size": 16, "lr": 0.01, "momentum": 0.9, "weight_decay": 5e-4,
         "balanced_sampling": False, "channels_last": True}


# 32 px, not 16: at 16 px layer4's first convolution (3x3, stride 2) sees a 1x1 map, and
# torch 2.14's CPU bf16 weight gradient for that shape reads uninitialised memory in the
# padding taps (NaN in 39 of 150 trials, measured; fp32, or a 2x2 map, 0 of 150;
# docs/full-scale.md). The default network at the default size: layer4 sees 2x2.
SIDE = 32


def _data() -> TrainData:
    rng = np.random.default_rng(0)
    labels = np.arange(64) % 2
    base = np.where(labels[:, None, None, None] == 1, 170, 60)
    images = np.clip(base + rng.integers(-50, 50, (64, SIDE, SIDE, 3)), 0, 255).astype(np.uint8)
    return TrainData(images, labels.astype(np.int64), np.arange(48), np.arange(48, 64))


def _train(**extra) -> tuple[dict[str, torch.Tensor], list[dict]]:
    torch.manual_seed(0)
    model = build_model("resnet18_half", 2)
    history = fit(model, _data(), dict(HYPER, **extra), seed=0, device=torch.device("cpu"), log=lambda _: None)
    return model.state_dict(), history.epochs


def test_fp32_is_the_unchanged_path_and_bf16_really_autocasts():
    plain, _ = _train()
    fp32, _ = _train(precision="fp32")
    bf16, history = _train(precision="bf16")
    assert all(torch.equal(plain[k], fp32[k]) for k in plain)  # same bytes as before the option existed
    assert all(v.dtype == plain[k].dtype for k, v in bf16.items())  # weights stay fp32 (autocast, not .half())
    assert any(not torch.equal(plain[k], bf16[k]) for k in plain if plain[k].is_floating_point())
    assert np.isfinite(history[-1]["loss"]) and history[-1]["loss"] < history[0]["loss"] + 0.5


def test_attack_inside_an_autocast_step_is_the_fp32_attack():
    from fillrobust.train.strategies import adversarial_step

    adv = {"eps": 0.5, "eps_scale": 1.0, "steps": 2, "norm": "l2", "random_start": True,
           "bn_mode": "eval", "step_factor": 2.5}
    torch.manual_seed(0)
    model = build_model("resnet18", 2)
    x, y = torch.rand(8, 3, 16, 16), torch.arange(8) % 2
    seen = []
    for precision in ("fp32", "bf16"):  # a fresh copy each: the step's forward moves BatchNorm statistics
        step = adversarial_step(adv, seed=0, observe=lambda _x, x_adv: seen.append(x_adv))
        with autocast(torch.device("cpu"), precision):
            loss, _ = step(copy.deepcopy(model), x, y)
        assert loss.dtype == torch.float32
    assert seen[1].dtype == torch.float32 and torch.equal(seen[0], seen[1])
    with autocast(torch.device("cpu"), "bf16"), full_precision(x):
        assert model(x).dtype == torch.float32


def test_precision_is_checked():
    with pytest.raises(ValueError, match="precision"):
        autocast(torch.device("cpu"), "fp8")
    assert grad_scaler(torch.device("cpu"), "fp16").is_enabled()
    assert not grad_scaler(torch.device("cpu"), "bf16").is_enabled()


def test_schema_knows_precision(root):
    params = load_params(root / "params.yaml")
    params["train"]["defaults"]["precision"] = "bf16"
    validate(params)
    params["train"]["defaults"]["precision"] = "fp8"
    with pytest.raises(ConfigError, match="train.defaults.precision"):
        validate(params)


def test_fp16_loss_scale_survives_a_resume(tmp_path):
    """A resumed fp16 run continues with the loss scale it had, not the initial one."""
    from fillrobust.train import resume

    torch.manual_seed(0)
    model = build_model("resnet18", 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda _: 1.0)
    scaler = grad_scaler(torch.device("cpu"), "fp16")
    scaler.scale(torch.ones(()))  # creates the scale tensor
    scaler.update(new_scale=77.0)
    common = {"fingerprint": "f", "model": model, "optimizer": optimizer, "scheduler": scheduler,
              "generator": torch.Generator().manual_seed(0)}
    resume.save(tmp_path / "m", epoch=1, history=[], best_val=float("-inf"), best_state=None,
                scaler=scaler, **common)
    fresh = grad_scaler(torch.device("cpu"), "fp16")
    assert resume.load(tmp_path / "m", scaler=fresh, **common) is not None
    assert fresh.get_scale() == 77.0 != grad_scaler(torch.device("cpu"), "fp16").get_scale()


def test_determinism_switch_and_pinned_batches(root):
    from fillrobust.device import seed_everything
    from fillrobust.train.loop import to_batch

    try:
        seed_everything(0, deterministic=False)  # the GPU path's fast kernels
        assert not torch.are_deterministic_algorithms_enabled() and torch.backends.cudnn.benchmark
    finally:
        seed_everything(0)  # the default: deterministic, no autotuning
    assert torch.are_deterministic_algorithms_enabled() and not torch.backends.cudnn.benchmark
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 3), dtype=np.uint8)
    positions = np.array([4, 1, 3])
    pinned = to_batch(images, positions, torch.device("cpu"), pin=True)  # CPU: no pinning, same batch
    assert torch.equal(pinned, to_batch(images, positions, torch.device("cpu"), pin=False))
    assert torch.equal(pinned[0], torch.from_numpy(images[4]).permute(2, 0, 1).float() / 255)
    params = load_params(root / "params.yaml")
    params["train"]["defaults"].update(deterministic=False, pin_memory=False)
    validate(params)
    params["train"]["defaults"]["pin_memory"] = "yes"
    with pytest.raises(ConfigError, match="pin_memory"):
        validate(params)


def test_loader_workers_read_the_same_batches_in_the_same_order(root):
    """Batches read ahead by DataLoader workers (train.*.loader_workers) give the same bytes."""
    from fillrobust.train.loop import epoch_batches

    images = np.random.default_rng(1).integers(0, 256, (40, 4, 4, 3), dtype=np.uint8)
    batches = [np.array([7, 3, 30]), np.array([1, 39, 2]), np.array([12])]
    plain = list(epoch_batches(images, batches))
    ahead = list(epoch_batches(images, batches, workers=2))
    assert len(ahead) == 3 and all(torch.equal(a, b) for a, b in zip(plain, ahead, strict=True))
    assert torch.equal(plain[0][1], torch.from_numpy(images[3]))
    base, _ = _train()
    workers, _ = _train(loader_workers=2)
    assert all(torch.equal(base[k], workers[k]) for k in base)  # the same checkpoint bytes
    params = load_params(root / "params.yaml")
    params["train"]["defaults"]["loader_workers"] = -1
    with pytest.raises(ConfigError, match="loader_workers"):
        validate(params)
