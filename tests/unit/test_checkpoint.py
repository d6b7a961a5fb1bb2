"""Checkpoints: round trip, tamper detection, mismatch errors, no pickle."""

import json
import subprocess
import sys

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


KILLED_SAVE = """
import os, signal, sys
import torch
from fillrobust.io import checkpoint
from fillrobust.models.resnet import build_model
checkpoint.os.replace = lambda *a: os.kill(os.getpid(), signal.SIGKILL)  # killed before its renames
checkpoint.save_checkpoint(build_model("resnet18_quarter", 4), sys.argv[1], {})
"""


def test_a_save_removes_what_a_killed_save_left(tmp_path):
    """A save SIGKILLed between writing and renaming leaves its temporary files; the next save of
    the same checkpoint removes them (they would otherwise be versioned with the model folder)."""
    path = tmp_path / "model.safetensors"
    killed = subprocess.run([sys.executable, "-c", KILLED_SAVE, str(path)], capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr
    left = sorted(p.name for p in tmp_path.iterdir())
    assert len(left) == 2 and all(name.startswith((".model.json.tmp-", ".model.safetensors.tmp-")) for name in left)
    (tmp_path / ".other.safetensors.tmp-12345678").write_bytes(b"another output's")
    save_checkpoint(build_model("resnet18_quarter", 4), path, {})
    assert sorted(p.name for p in tmp_path.iterdir()) == [".other.safetensors.tmp-12345678", "model.json",
                                                         "model.safetensors"]


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


def test_edited_sidecar_refused(tmp_path):
    """A recorded value edited by hand (here: an unconverged model marked converged) would feed
    the tables silently; the sidecar's digest of its own content refuses it, in the jobs and
    in the workspace check before planning."""
    from fillrobust.io.integrity import verify_workspace

    path = tmp_path / "models/S1/ST/seed0/model.safetensors"
    save_checkpoint(build_model("resnet18_quarter", 4), path, {"converged": False, "final_train_accuracy": 0.8,
                                                                "history": [{"loss": 1 / 3}]})
    load_checkpoint(build_model("resnet18_quarter", 4), path)  # as written: accepted (floats round-trip)
    assert verify_workspace(tmp_path) == []
    text = sidecar_path(path).read_text()
    sidecar_path(path).write_text(text.replace('"converged": false', '"converged": true'))
    with pytest.raises(CheckpointError, match="model.json: its content does not match its sidecar_sha256"):
        load_checkpoint(build_model("resnet18_quarter", 4), path)
    assert verify_workspace(tmp_path) == ["models/S1/ST/seed0/model.json: its content does not match its "
                                          "sidecar_sha256 (edited after it was written)"]
    # sidecars written before the digest existed are taken as they are
    info = json.loads(text)
    del info["sidecar_sha256"]
    sidecar_path(path).write_text(json.dumps(info))
    load_checkpoint(build_model("resnet18_quarter", 4), path)
