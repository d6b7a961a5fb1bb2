"""A missing, unreadable or incomplete split file is named with what was expected."""

from __future__ import annotations

import pandas as pd
import pytest

from fillrobust import cli


def test_read_split_names_the_file_and_the_expected_form(tmp_path):
    from fillrobust.data.splits import read_split

    path = tmp_path / "S1.parquet"
    with pytest.raises(FileNotFoundError, match=f"split file not found: {path} \\(expected a parquet table "
                                                "with columns index, role"):
        read_split(path)
    path.write_bytes(b"PAR1 not parquet")
    with pytest.raises(ValueError, match=r"S1\.parquet: unreadable split file \(.*\); expected a parquet table"):
        read_split(path)
    pd.DataFrame({"index": [0, 1]}).to_parquet(path)
    with pytest.raises(ValueError, match=r"S1\.parquet: split file lacks columns \['role'\]"):
        read_split(path)
    pd.DataFrame({"index": [0, 1], "role": ["train", "test"]}).to_parquet(path)
    assert read_split(path)["role"].tolist() == ["train", "test"]


def test_evaluate_clean_with_a_missing_split_says_what_it_expected(tmp_path, tiny_ccm, capsys):
    """It used to print only `error: /tmp/nosuch.parquet`."""
    from fillrobust.data.store import read_dataset
    from fillrobust.io.checkpoint import save_checkpoint
    from fillrobust.models.resnet import build_model

    classes = read_dataset(tiny_ccm / "crops").classes
    weights = tmp_path / "model.safetensors"
    save_checkpoint(build_model("resnet18", len(classes)), weights,
                    {"architecture": "resnet18", "classes": classes, "strategy": "ST", "seed": 0})
    missing = tmp_path / "nosuch.parquet"
    code = cli.main(["evaluate-clean", "--params", '{"batch_size": 8}', "--dataset", str(tiny_ccm / "crops"),
                     "--split", str(missing), "--checkpoint", str(weights), "--out", str(tmp_path / "out"),
                     "--device", "cpu", "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 2 and f"error: split file not found: {missing} (expected a parquet table" in err, err
    assert not (tmp_path / "out").exists()
