"""Relabelled clean evaluations (ST-FT = ST-FT_L1, adopted AT-FT): same predictions, new labels."""

from __future__ import annotations

import json

import pytest

from fillrobust.evaluate.alias import relabel_clean


def test_relabel_copies_predictions_and_rewrites_labels(tmp_path):
    src = tmp_path / "ST-FT_L1" / "clean"
    src.mkdir(parents=True)
    (src / "predictions.parquet").write_bytes(b"PAR1 not really parquet PAR1")
    (src / "summary.json").write_text(json.dumps({"strategy": "ST-FT_L1", "model": "ST-FT_L1", "accuracy": 0.5}))
    out = tmp_path / "ST-FT" / "clean"
    summary = relabel_clean(src, out, "ST-FT", log=tmp_path / "log.txt")
    assert (out / "predictions.parquet").read_bytes() == (src / "predictions.parquet").read_bytes()
    assert json.loads((out / "summary.json").read_text()) == summary == {
        "strategy": "ST-FT", "model": "ST-FT_L1", "accuracy": 0.5}
    assert "strategy ST-FT" in (tmp_path / "log.txt").read_text()
    adopted = relabel_clean(src, tmp_path / "AT-FT" / "clean", "AT-FT", model="AT-FT")
    assert adopted["model"] == adopted["strategy"] == "AT-FT"
    assert sorted(p.name for p in out.iterdir()) == ["predictions.parquet", "summary.json"]  # no temp files left


def test_relabel_names_what_is_missing(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "summary.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match=r"lacks \['predictions.parquet'\]"):
        relabel_clean(tmp_path / "src", tmp_path / "out", "ST-FT")
    assert not (tmp_path / "out").exists()
