"""Transfer strategies: frozen stages, source import, eps selection, param resolution."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torchvision

from fillrobust.config import ConfigError, load_params, resolve_selected, strategy_params, validate
from fillrobust.io.checkpoint import load_checkpoint, save_checkpoint
from fillrobust.models.pretrained import PretrainedError, import_checkpoint
from fillrobust.models.resnet import build_model
from fillrobust.report.selection import pick_best
from fillrobust.train.loop import TrainData, fit
from fillrobust.train.strategies import prepare


@pytest.fixture(scope="module")
def params(root):
    return load_params(root / "params.yaml")


def _source(tmp_path, classes=12):
    torch.manual_seed(1)
    model = build_model("resnet18", classes)
    path = tmp_path / "source" / "model.safetensors"
    save_checkpoint(model, path, {"architecture": "resnet18", "classes": [str(i) for i in range(classes)],
                                  "strategy": "SOURCE", "eps": 0.5})
    return path


def _tiny_data(n=48, side=16):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    labels = (np.arange(n) % 4).astype(np.int64)
    return TrainData(images, labels, np.arange(n - 8), np.arange(n - 8, n))


HYPER = {"epochs": 1, "batch_size": 8, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4,
         "balanced_sampling": True}


@pytest.mark.parametrize("frozen", [0, 2, 4])
def test_frozen_stages_keep_source_weights_and_statistics(tmp_path, frozen):
    source = _source(tmp_path)
    params = {"init": "source", "source_eps": 0.5, "frozen_stages": frozen}
    prepared = prepare("ST-FT", params, 4, seed=0, source_weights=str(source))
    before = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    fit(prepared.model, _tiny_data(), HYPER, 0, torch.device("cpu"), prepared.step,
        prepared.set_train_mode, log=lambda _: None)
    after = prepared.model.state_dict()
    stages = ["net.conv1.", "net.bn1.", "net.layer1.", "net.layer2.", "net.layer3.", "net.layer4."]
    frozen_prefixes = stages[: 2 + frozen] if frozen else []
    for key, value in after.items():
        if key.endswith("num_batches_tracked"):
            continue
        same = torch.equal(value, before[key])
        if any(key.startswith(p) for p in frozen_prefixes):
            assert same, f"{key} changed although frozen"
        elif key.startswith("net.fc.") or (frozen < 4 and key.startswith("net.layer4.")):
            assert not same, f"{key} did not train"
    assert prepared.model.net.fc.out_features == 4
    assert prepared.parent["eps"] == 0.5


def test_source_weights_loaded_and_head_replaced(tmp_path):
    source = _source(tmp_path)
    reference = build_model("resnet18", 12)
    load_checkpoint(reference, source)
    prepared = prepare("AT-FT", {"init": "source", "source_eps": 0.5, "frozen_stages": 1}, 4, 0, str(source))
    assert torch.equal(prepared.model.net.layer3[0].conv1.weight, reference.net.layer3[0].conv1.weight)
    assert prepared.model.net.fc.weight.shape == (4, 512)


def test_adversarial_strategy_trains(tmp_path):
    params = {"init": "scratch", "adversarial": {"eps": 1.0, "eps_scale": 0.5, "norm": "l2", "steps": 2,
                                                 "step_factor": 2.5, "random_start": True, "bn_mode": "eval"}}
    prepared = prepare("AT", params, 4, seed=0)
    history = fit(prepared.model, _tiny_data(), HYPER, 0, torch.device("cpu"), prepared.step,
                  prepared.set_train_mode, log=lambda _: None)
    assert np.isfinite(history.final()["loss"])


def test_every_strategy_resolves(params):
    for strategy in params["train"]["strategies"]:
        resolved = resolve_selected(strategy_params(params, strategy), 0.5)
        assert "selected" not in json.dumps(resolved), strategy
    at_aft = resolve_selected(strategy_params(params, "AT-AFT"), 0.5)
    assert at_aft["source_eps"] == 0.5 and at_aft["adversarial"]["eps"] == 0.5  # eps_t = eps_s
    assert strategy_params(params, "ST-AFT")["adversarial"]["eps"] == 0.05
    assert strategy_params(params, "ST-FT_L3")["frozen_stages"] == 3
    sweep = strategy_params(params, "AT-FT_eps1")
    assert sweep["source_eps"] == 1.0 and sweep["frozen_stages"] == 1
    with pytest.raises(ConfigError, match="no selection"):
        resolve_selected(strategy_params(params, "AT"), None)


def test_source_cross_checks(params):
    import copy

    bad = copy.deepcopy(params)
    bad["sensitivity"]["eps_source"]["values"] = [0.05, 7]
    with pytest.raises(ConfigError, match="sensitivity.eps_source.values: 7"):
        validate(bad)
    bad = copy.deepcopy(params)
    bad["source"]["synth"]["size"] = 48
    with pytest.raises(ConfigError, match="must equal data.crop.size"):
        validate(bad)


def test_eps_selection_picks_the_maximum():
    assert pick_best({0.05: [0.6, 0.7], 0.5: [0.9, 0.8], 1.0: [0.85, 0.84]}) == 0.5
    assert pick_best({1.0: [0.7], 0.05: [0.7]}) == 0.05  # ties: the smaller eps
    with pytest.raises(ValueError):
        pick_best({})


def _robustness_file(tmp_path, eps=0.5):
    torch.manual_seed(3)
    net = torchvision.models.resnet18(weights=None)
    state = {}
    for k, v in net.state_dict().items():
        state[f"module.model.{k}"] = v
        state[f"module.attacker.model.{k}"] = v
    state["module.normalizer.new_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    state["module.normalizer.new_std"] = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    path = tmp_path / f"resnet18_l2_eps{eps}.ckpt"
    torch.save({"model": state, "epoch": 90, "schedule": None}, path)
    return path, net


def test_import_robustness_checkpoint(tmp_path):
    from fillrobust.data.store import file_sha256

    path, net = _robustness_file(tmp_path)
    out = tmp_path / "models" / "model.safetensors"
    info = import_checkpoint(str(path), file_sha256(path), "robustness", 0.5, str(out))
    model = build_model("resnet18", 1000)
    sidecar = load_checkpoint(model, out)
    assert sidecar["eps"] == 0.5 and sidecar["source_sha256"] == info["source_sha256"]
    x = torch.rand(2, 3, 32, 32)
    mean, std = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    net.eval()
    model.eval()
    torch.testing.assert_close(model(x), net((x - mean) / std))


def test_import_refuses_bad_files(tmp_path):
    from fillrobust.data.store import file_sha256

    path, _ = _robustness_file(tmp_path)
    with pytest.raises(PretrainedError, match="does not match the pinned"):
        import_checkpoint(str(path), "0" * 64, "robustness", 0.5, str(tmp_path / "o.safetensors"))
    evil = tmp_path / "evil.ckpt"
    torch.save({"model": {"module.model.x": torch.zeros(1)}, "payload": np.random.default_rng(0)}, evil)
    with pytest.raises(PretrainedError, match="weights_only=True"):
        import_checkpoint(str(evil), file_sha256(evil), "robustness", 0.5, str(tmp_path / "o.safetensors"))
    tv = tmp_path / "tv.pth"
    torch.save({"conv1.weight": torch.zeros(3)}, tv)
    with pytest.raises(PretrainedError, match="do not fit|not a ResNet-18"):
        import_checkpoint(str(tv), file_sha256(tv), "torchvision", 0.0, str(tmp_path / "o.safetensors"))
    assert not (tmp_path / "o.safetensors").exists()


def test_da_prime_augments_every_batch(params):
    """DA-PRIME: the loss is computed on PRIME-augmented images, drawn per seed."""
    resolved = strategy_params(params, "DA-PRIME")
    assert resolved["augment"]["name"] == "prime" and resolved["keep"] == "best_val"
    prepared = prepare("DA-PRIME", resolved, 4, seed=0)
    plain = prepare("ST", {"init": "scratch", "arch": resolved["arch"]}, 4, seed=0)
    data = _tiny_data()
    x = torch.from_numpy(data.images[:8]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data.labels[:8])
    prepared.model.load_state_dict(plain.model.state_dict())
    prepared.model.eval()
    plain.model.eval()
    loss_aug, _ = prepared.step(prepared.model, x, y)
    loss_plain, _ = plain.step(plain.model, x, y)
    assert not torch.isclose(loss_aug, loss_plain)
    again = prepare("DA-PRIME", resolved, 4, seed=0)
    again.model.load_state_dict(plain.model.state_dict())
    again.model.eval()
    assert torch.equal(again.step(again.model, x, y)[0], loss_aug)  # same seed, same augmentation
    history = fit(prepared.model, data, dict(HYPER, keep="best_val"), 0, torch.device("cpu"), prepared.step,
                  prepared.set_train_mode, log=lambda _: None)
    assert np.isfinite(history.final()["loss"])
    with pytest.raises(ValueError, match="unknown name"):
        prepare("DA-PRIME", dict(resolved, augment={"name": "cutout"}), 4)


def test_jsd_option_adds_the_consistency_term(params):
    """augment.jsd_weight: CE on the clean view plus weight * JSD of (clean, view 1, view 2)."""
    from fillrobust.augment.prime import jsd_loss

    resolved = strategy_params(params, "DA-PRIME")
    jsd = dict(resolved, augment={**resolved["augment"], "jsd_weight": 12.0})
    prepared = prepare("DA-PRIME", jsd, 4, seed=0)
    prepared.model.eval()
    data = _tiny_data()
    x = torch.from_numpy(data.images[:8]).permute(0, 3, 1, 2).float() / 255
    y = torch.from_numpy(data.labels[:8])
    loss, logits = prepared.step(prepared.model, x, y)
    with torch.no_grad():
        clean = prepared.model(x)
    torch.testing.assert_close(logits, clean)  # the returned logits are the clean view's
    ce = torch.nn.functional.cross_entropy(clean, y)
    assert loss > ce  # the JSD term is positive for distinct views
    assert abs(float(jsd_loss(clean, clean, clean))) < 1e-6  # identical views: no penalty
    with pytest.raises(ValueError, match="jsd_weight.*cross-entropy"):
        prepare("AT-DA-PRIME", dict(jsd, init="scratch", adversarial={"eps": 0.5, "steps": 1, "norm": "l2",
                                                                    "random_start": True, "bn_mode": "eval",
                                                                    "step_factor": 2.5}), 4)
