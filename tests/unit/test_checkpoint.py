"""Checkpoints: round trip, tamper detection, mismatch errors, no pickle."""

import json

import pytest
import torch

from fillrobust.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, sidecar_path
from fillrobust.models.resnet import build_model


def test_round_trip_and_sidecar(tmp_path):
    torch.manual_seed(0)
    model = build_model("resnet18", 4)
    digest = save_checkpoint(model, tmp_path / "model.safetensors", {"strategy": "ST", "seed": 0})
    other = build_model("resnet18", 4)
    info = load_checkpoint(other, tmp_path / "model.safetensors")
    assert info["weights_sha256"] == digest and info["strategy"] == "ST"
    assert "torch" in info["libraries"] and info["git_revision"]
    # same seed, same bytes holds per kind of CPU: the sidecar says which one trained it
    assert info["machine"]["cpu"] and info["machine"]["cpu"] != "unknown"
    assert info["machine"]["torch_cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    for (k, a), b in zip(model.state_dict().items(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors"]


def test_tampered_weights_refused(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(build_model("resnet18", 4), path, {})
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match the sidecar"):
        load_checkpoint(build_model("resnet18", 4), path)


def test_missing_or_corrupt_sidecar(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(build_model("resnet18", 4), path, {})
    sidecar_path(path).write_text("{not json")
    with pytest.raises(CheckpointError, match="corrupt checkpoint sidecar"):
        load_checkpoint(build_model("resnet18", 4), path)
    sidecar_path(path).unlink()
    with pytest.raises(CheckpointError, match="sidecar missing"):
        load_checkpoint(build_model("resnet18", 4), path)


def test_wrong_architecture(tmp_path):
    path = tmp_path / "model.safetensors"
    save_checkpoint(build_model("resnet18", 10), path, {})
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(build_model("resnet18", 4), path)
    info = json.loads(sidecar_path(path).read_text())
    assert len(info["weights_sha256"]) == 64
