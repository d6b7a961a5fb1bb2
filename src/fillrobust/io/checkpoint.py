"""Checkpoints: ``model.safetensors`` + ``model.json`` sidecar, never pickle.

The sidecar records architecture, classes, strategy, resolved params, parent
checkpoint hash, seed, git revision, library versions, the CPU it ran on and final metrics, and
the sha256 of the weights file, so a tampered or mismatched file is refused
with a clear message before any weight is used; and the sha256 of its own other
keys (``sidecar_sha256``), so a hand edit of a recorded value is refused too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from fillrobust.data.atomic import (
    JSONFileError,
    atomic_write_text,
    read_json_object,
    remove_strays,
    temp_sibling,
)
from fillrobust.data.store import file_sha256
from fillrobust.io.integrity import SIDECAR_DIGEST, sidecar_digest, sidecar_fault
from fillrobust.io.provenance import git_revision, library_versions, machine


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, tampered with or does not fit the model."""


def sidecar_path(weights: str | Path) -> Path:
    """The JSON sidecar that belongs to a weights file."""
    return Path(weights).with_suffix(".json")


def sidecar_text(meta: dict[str, Any]) -> str:
    """The sidecar file's text: ``meta`` stamped with the digest of its content."""
    meta = json.loads(json.dumps(meta, default=str))  # the values as the file will hold them
    meta[SIDECAR_DIGEST] = sidecar_digest(meta)
    return json.dumps(meta, indent=2, sort_keys=True) + "\n"


def write_sidecar(weights: str | Path, meta: dict[str, Any]) -> None:
    """Write (atomically) the sidecar of an existing checkpoint, e.g. relabelled."""
    atomic_write_text(sidecar_path(weights), sidecar_text(meta))


def save_checkpoint(model: torch.nn.Module, weights: str | Path, info: dict[str, Any]) -> str:
    """Save weights and sidecar atomically; returns the weights' sha256.

    Both files are written under temporary names first; the sidecar is renamed
    last, so a checkpoint without a matching sidecar never looks finished.
    """
    weights = Path(weights)
    weights.parent.mkdir(parents=True, exist_ok=True)
    tmp_w, tmp_j = temp_sibling(weights), temp_sibling(sidecar_path(weights))
    try:
        state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp_w))
        digest = file_sha256(tmp_w)
        meta = dict(info, weights_sha256=digest, git_revision=git_revision(),
                    libraries=library_versions(), machine=machine())
        tmp_j.write_text(sidecar_text(meta))
        os.replace(tmp_w, weights)
        os.replace(tmp_j, sidecar_path(weights))
        remove_strays(weights)  # a save killed before its renames left its temporary files
        remove_strays(sidecar_path(weights))
    finally:
        tmp_w.unlink(missing_ok=True)
        tmp_j.unlink(missing_ok=True)
    return digest


def read_sidecar(weights: str | Path) -> dict[str, Any]:
    """The sidecar of a checkpoint, checked to exist, to hold a JSON object and to match its digest."""
    path = sidecar_path(weights)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint sidecar missing (expected next to {weights})")
    try:
        info = read_json_object(path, "checkpoint sidecar")
    except JSONFileError as err:
        raise CheckpointError(str(err)) from err
    if fault := sidecar_fault(info):
        raise CheckpointError(f"{path}: {fault}")
    return info


def load_checkpoint(model: torch.nn.Module, weights: str | Path, strict: bool = True) -> dict[str, Any]:
    """Load weights into ``model`` after verifying their hash; returns the sidecar."""
    weights = Path(weights)
    if not weights.is_file():
        raise CheckpointError(f"{weights}: checkpoint weights missing")
    info = read_sidecar(weights)
    actual = file_sha256(weights)
    if info.get("weights_sha256") != actual:
        raise CheckpointError(f"{weights}: sha256 {actual} does not match the sidecar's "
                              f"{info.get('weights_sha256')}; the file was changed or is corrupt")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError) as err:
        raise CheckpointError(f"{weights}: not a readable safetensors file ({err})") from err
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as err:  # shape mismatch
        raise CheckpointError(f"{weights}: does not fit the model ({err})") from err
    if strict and (missing or unexpected):
        raise CheckpointError(f"{weights}: does not fit the model: missing {missing[:5]}, "
                              f"unexpected {unexpected[:5]}")
    return info
