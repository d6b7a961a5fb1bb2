"""Bad JSON files (a summary, a sidecar, a selection) give one clear error naming the file and
what was expected: a JSON object, with the keys its reader needs."""

from __future__ import annotations

import json

import pytest

from fillrobust import cli
from fillrobust.data.atomic import JSONFileError, read_json_object
from fillrobust.evaluate.alias import relabel_clean
from fillrobust.io.checkpoint import CheckpointError, read_sidecar
from fillrobust.report.tables import filling_per_container
from fillrobust.train.run import selected_eps

BAD = {  # file text -> what the message must say
    '{"split": "S1", strategy: 1}': r"corrupt evaluation summary: not valid JSON \(Expecting property name",
    '["S1", "ST"]': r"corrupt evaluation summary: a JSON array; expected a JSON object",
    '"S1"': r"a JSON string; expected a JSON object",
    "\xff\xfe": r"not UTF-8 text",
}


@pytest.mark.parametrize("text", list(BAD))
def test_read_json_object_names_the_file_and_the_expected_object(tmp_path, text):
    path = tmp_path / "summary.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(JSONFileError, match=BAD[text]) as err:
        read_json_object(path, "evaluation summary")
    assert str(err.value).startswith(f"{path}: ")


def test_read_json_object_missing_file_and_keys(tmp_path):
    path = tmp_path / "selection.json"
    with pytest.raises(JSONFileError, match=f"eps selection file not found: {path}"):
        read_json_object(path, "eps selection file")
    path.write_text(json.dumps({"by": "val"}))
    with pytest.raises(JSONFileError, match=r"lacks \['selected_eps'\]; expected a JSON object with keys"):
        read_json_object(path, "eps selection file", ["selected_eps"])
    assert read_json_object(path, "eps selection file") == {"by": "val"}


@pytest.mark.parametrize("text", ['{"split": "S1", strategy: 1}', "[1, 2]"])
def test_table_command_names_a_corrupt_summary(tmp_path, capsys, text):
    """It used to print the decoder's message without the file, or crash with a TypeError."""
    pred = tmp_path / "S1" / "ST" / "seed0" / "clean" / "predictions.parquet"
    pred.parent.mkdir(parents=True)
    (pred.parent / "summary.json").write_text(text)
    code = cli.main(["table-filling", "--params", '{"decimals": 1}', "--predictions", str(pred),
                     "--out", str(tmp_path / "t"), "--figure", str(tmp_path / "f.png"),
                     "--metrics", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and f"error: {pred.parent / 'summary.json'}: corrupt evaluation summary" in err, err
    assert "expected a JSON object" in err


def test_summary_lacking_a_key_is_named(tmp_path):
    pred = tmp_path / "predictions.parquet"
    (tmp_path / "summary.json").write_text(json.dumps({"split": "S1", "seed": 0}))
    with pytest.raises(ValueError, match=r"summary\.json: corrupt evaluation summary: lacks \['strategy'\]"):
        filling_per_container([str(pred)])


def test_sidecar_that_is_not_an_object_is_a_checkpoint_error(tmp_path):
    """A model.json holding a JSON string gave a raw TypeError in load_trained."""
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"")
    weights.with_suffix(".json").write_text('"resnet18"')
    with pytest.raises(CheckpointError, match=r"model\.json: corrupt checkpoint sidecar: a JSON string; "
                                              r"expected a JSON object"):
        read_sidecar(weights)
    from fillrobust.evaluate.clean import load_trained

    with pytest.raises(CheckpointError, match="a JSON string"):
        load_trained(str(weights), "cpu")


def test_alias_and_selection_name_their_files(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "predictions.parquet").write_bytes(b"")
    (src / "summary.json").write_text("[]")
    with pytest.raises(ValueError, match=r"src/summary\.json: corrupt evaluation summary: a JSON array"):
        relabel_clean(src, tmp_path / "out", "ST-FT")
    assert not (tmp_path / "out").exists()
    selection = tmp_path / "selection.json"
    selection.write_text("[0.5]")
    with pytest.raises(ValueError, match=r"selection\.json: corrupt eps selection file: a JSON array"):
        selected_eps(str(selection))
    selection.write_text('{"selected_eps": "big"}')
    with pytest.raises(ValueError, match=r"selection\.json: selected_eps must be a number, got 'big'"):
        selected_eps(str(selection))
