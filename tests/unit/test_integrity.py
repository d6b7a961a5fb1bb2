"""The workspace check that stops Snakemake before a changed checkpoint or dataset costs anything."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fillrobust.config import external_pins, load_params
from fillrobust.data.store import write_dataset
from fillrobust.io import integrity
from fillrobust.io.integrity import IntegrityError, check_workspace, file_sha256, verify_workspace


def _checkpoint(folder: Path, payload: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    weights = folder / "model.safetensors"
    weights.write_bytes(payload)
    (folder / "model.json").write_text(json.dumps({"weights_sha256": file_sha256(weights)}))
    return weights


def _dataset(folder: Path) -> Path:
    images = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    manifest = pd.DataFrame({"index": [0, 1], "label": [0, 1]})
    write_dataset(folder, images, manifest, {"name": "t", "classes": ["a", "b"]})
    return folder


def _flip_last_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    stat = path.stat()
    path.write_bytes(bytes(data))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))  # coarse clocks: a new mtime


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    _checkpoint(tmp_path / "models/S1/ST/seed0")
    _dataset(tmp_path / "data/ccm")
    return tmp_path


def test_untouched_workspace_passes(workspace):
    assert verify_workspace(workspace) == []
    check_workspace(workspace)
    assert (workspace / integrity.CACHE).is_file()


def test_changed_checkpoint_and_dataset_are_named(workspace):
    _flip_last_byte(workspace / "models/S1/ST/seed0/model.safetensors")
    _flip_last_byte(workspace / "data/ccm/images.npy")
    with pytest.raises(IntegrityError) as err:
        check_workspace(workspace)
    message = str(err.value)
    assert "models/S1/ST/seed0/model.safetensors: sha256 does not match" in message
    assert "data/ccm: files do not match dataset.json's content_hash" in message
    assert "nothing was deleted" in message and "dvc checkout --force" in message


def test_unfinished_and_unreadable_files(workspace):
    # weights whose sidecar was never renamed into place, a resume state and a
    # temporary folder are work in progress, not results
    (workspace / "models/S2/ST/seed0").mkdir(parents=True)
    (workspace / "models/S2/ST/seed0/model.safetensors").write_bytes(b"half")
    (workspace / "models/S1/ST/seed0/model.resume.safetensors").write_bytes(b"state")
    _checkpoint(workspace / "models/.S3.tmp-1234/ST/seed0").write_bytes(b"changed")
    assert verify_workspace(workspace) == []
    (workspace / "models/S1/ST/seed0/model.json").write_text("[1, 2]")
    (workspace / "data/ccm/images.npy").unlink()
    problems = verify_workspace(workspace)
    assert problems == ["models/S1/ST/seed0/model.json: unreadable checkpoint sidecar (expected a JSON object)",
                        "data/ccm: missing images.npy listed in dataset.json"]


def test_cache_skips_unchanged_files_and_rehashes_rewritten_ones(workspace, monkeypatch):
    verify_workspace(workspace)
    hashed = []
    real = integrity.file_sha256
    monkeypatch.setattr(integrity, "file_sha256", lambda path: hashed.append(Path(path).name) or real(path))
    assert verify_workspace(workspace) == [] and hashed == []
    _flip_last_byte(workspace / "models/S1/ST/seed0/model.safetensors")
    assert len(verify_workspace(workspace)) == 1 and hashed == ["model.safetensors"]


def test_a_corrupt_cache_is_rebuilt(workspace):
    (workspace / integrity.CACHE).parent.mkdir(parents=True, exist_ok=True)
    (workspace / integrity.CACHE).write_text("{not json")
    assert verify_workspace(workspace) == []
    assert isinstance(json.loads((workspace / integrity.CACHE).read_text()), dict)


def test_damaged_split_and_selection_records_are_named(workspace):
    import pandas as pd

    splits = workspace / "data/splits"
    splits.mkdir(parents=True)
    pd.DataFrame({"index": [0, 1], "role": ["train", "test"]}).to_parquet(splits / "S1.parquet")
    (workspace / "models/S1/selection").mkdir(parents=True)
    (workspace / "models/S1/selection/eps_source.json").write_text('{"chosen": 0.05}')
    assert verify_workspace(workspace) == []
    whole = (splits / "S1.parquet").read_bytes()
    (splits / "S1.parquet").write_bytes(whole[: len(whole) // 2])
    (workspace / "models/S1/selection/eps_source.json").write_text('{"chosen": ')
    assert verify_workspace(workspace) == [
        "data/splits/S1.parquet: not a whole parquet file (truncated or overwritten)",
        "models/S1/selection/eps_source.json: unreadable eps_s selection record (expected a JSON object)"]


def test_outside_files_are_checked_against_their_pins_before_planning(tmp_path):
    """A replaced or unpinned source checkpoint / backbone file stops the run at planning, naming
    the file, its param and its hash; before, Snakemake reran the importing job (deleting its
    old output) and the job refused the file. Absent files are left to Snakemake."""
    root = Path(__file__).resolve().parents[2]
    paper = load_params(root / "params.yaml", root / "params" / "paper.yaml")
    pins = external_pins(paper)
    keys = [key for _, _, _, key in pins]
    assert "source.imports.0.sha256" in keys and "data.ccm.detector.sha256" in keys
    check_workspace(tmp_path, pins)  # none of the files is here: nothing to refuse yet
    ckpt = tmp_path / paper["source"]["imports"]["0"]["path"]
    ckpt.parent.mkdir(parents=True)
    ckpt.write_bytes(b"robust resnet")
    with pytest.raises(IntegrityError, match=rf"source checkpoint {ckpt.relative_to(tmp_path)}: no sha256 pinned "
                       rf"\(source.imports.0.sha256\); if this is the file you trust, pin {file_sha256(ckpt)}"):
        check_workspace(tmp_path, pins)
    paper["source"]["imports"]["0"]["sha256"] = file_sha256(ckpt)
    check_workspace(tmp_path, external_pins(paper))
    ckpt.write_bytes(b"another file")
    with pytest.raises(IntegrityError, match="sha256 mismatch: .* does not match the pinned"):
        check_workspace(tmp_path, external_pins(paper))


def test_topgap_weights_pins_are_reported_where_written():
    root = Path(__file__).resolve().parents[2]
    params = load_params(root / "params.yaml")
    assert external_pins(params) == []  # the embedded default reads no outside file
    params["train"]["strategies"]["TOPGAP"]["topgap"].update(weights="w.safetensors", weights_sha256="a" * 64)
    pins = external_pins(params)
    assert ("w.safetensors", "a" * 64, "Top-GAP backbone weights",
            "train.strategies.TOPGAP.topgap.weights_sha256") in pins
    assert len({key for *_, key in pins}) == len(pins)
