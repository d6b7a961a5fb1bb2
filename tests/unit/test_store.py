"""Dataset store: round trip, memory mapping, atomic writes, clear errors."""

import numpy as np
import pandas as pd
import pytest

from fillrobust.data.store import DatasetError, dataset_writer, read_dataset, write_dataset


def _data(n=5):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)
    manifest = pd.DataFrame({"index": np.arange(n), "label": rng.integers(0, 4, n),
                             "box": [[0.0, 1.0, 2.0, 3.0]] * n})
    return images, manifest


def test_round_trip(tmp_path):
    images, manifest = _data()
    masks = (images[..., 0] > 128).astype(np.uint8)
    write_dataset(tmp_path / "ds", images, manifest, {"name": "t", "classes": ["a", "b", "c", "d"]}, masks)
    ds = read_dataset(tmp_path / "ds", verify=True)
    assert isinstance(ds.images, np.memmap)
    assert np.array_equal(ds.images, images) and np.array_equal(ds.masks, masks)
    assert ds.manifest["box"].iloc[0].tolist() == [0.0, 1.0, 2.0, 3.0]
    assert ds.meta["count"] == 5 and ds.classes == ["a", "b", "c", "d"]


def test_failed_write_leaves_nothing(tmp_path):
    images, manifest = _data()
    with pytest.raises(RuntimeError), dataset_writer(tmp_path / "ds", 5, 8, 8) as (imgs, _, commit):
        imgs[:2] = images[:2]
        raise RuntimeError("killed")
    assert not (tmp_path / "ds").exists()
    assert list(tmp_path.iterdir()) == []


def test_writers_remove_what_killed_writers_of_the_same_path_left(tmp_path):
    """Temporary siblings of a path (a killed writer's) go once the path is written; others stay."""
    from fillrobust.data.atomic import atomic_dir, atomic_write_text

    (tmp_path / ".a.json.tmp-0badc0de").write_text("half")
    (tmp_path / ".ds.tmp-0badc0de").mkdir()
    (tmp_path / ".ds.tmp-0badc0de" / "images.npy").write_bytes(b"half")
    (tmp_path / ".b.json.tmp-0badc0de").write_text("another path's")
    (tmp_path / ".b.tmp-0badc0de").write_text("another path's, matched by [ab] if read as a pattern")
    atomic_write_text(tmp_path / "a.json", "{}")
    atomic_write_text(tmp_path / "[ab]", "{}")
    with atomic_dir(tmp_path / "ds") as tmp:
        (tmp / "x").write_text("x")
    assert sorted(p.name for p in tmp_path.iterdir()) == [".b.json.tmp-0badc0de", ".b.tmp-0badc0de", "[ab]",
                                                         "a.json", "ds"]


def test_writer_without_commit_is_an_error(tmp_path):
    with pytest.raises(DatasetError, match="without commit"), dataset_writer(tmp_path / "ds", 2, 8, 8):
        pass
    assert not (tmp_path / "ds").exists()


def test_tampered_and_missing(tmp_path):
    images, manifest = _data()
    write_dataset(tmp_path / "ds", images, manifest, {"name": "t", "classes": ["a"]})
    arr = np.load(tmp_path / "ds" / "images.npy")
    arr[0, 0, 0, 0] ^= 1
    np.save(tmp_path / "ds" / "images.npy", arr)
    with pytest.raises(DatasetError, match="content hash mismatch"):
        read_dataset(tmp_path / "ds", verify=True)
    (tmp_path / "ds" / "manifest.parquet").unlink()
    with pytest.raises(DatasetError, match="missing manifest.parquet"):
        read_dataset(tmp_path / "ds")
    with pytest.raises(DatasetError, match="not a dataset folder"):
        read_dataset(tmp_path / "nowhere")


@pytest.mark.parametrize("text, expected", [("{broken", "not valid JSON"), ("[1, 2]", "a JSON array")])
def test_corrupt_dataset_description_names_the_file(tmp_path, text, expected):
    images, manifest = _data()
    write_dataset(tmp_path / "ds", images, manifest, {"name": "t", "classes": ["a"]})
    (tmp_path / "ds" / "dataset.json").write_text(text)
    with pytest.raises(DatasetError, match=rf"ds/dataset.json: corrupt dataset description: {expected}"):
        read_dataset(tmp_path / "ds")


def test_shape_checks(tmp_path):
    images, manifest = _data()
    with pytest.raises(DatasetError, match="manifest has 4 rows"):
        write_dataset(tmp_path / "ds", images, manifest.iloc[:4], {"name": "t", "classes": ["a"]})
    with pytest.raises(DatasetError, match="uint8"):
        write_dataset(tmp_path / "ds", images.astype(np.float32), manifest, {"name": "t", "classes": ["a"]})
    assert not (tmp_path / "ds").exists()


@pytest.mark.parametrize("offset", [0, 8, 12, 20])  # magic string, header length, header keys, descr
def test_damaged_npy_header_names_the_file_and_gives_no_unpickling_advice(tmp_path, offset):
    """It named the folder and passed on numpy's advice to load the file unsafely (a pickle)."""
    images, manifest = _data()
    masks = (images[..., 0] > 128).astype(np.uint8)
    write_dataset(tmp_path / "ds", images, manifest, {"name": "t", "classes": ["a", "b", "c", "d"]}, masks)
    for name in ("images.npy", "masks.npy"):
        path = tmp_path / "ds" / name
        good = path.read_bytes()
        damaged = bytearray(good)
        damaged[offset] ^= 0x41
        path.write_bytes(bytes(damaged))
        with pytest.raises(DatasetError, match=f"^{path}: unreadable dataset file .*; expected a plain "
                                               "numeric .npy array$") as err:
            read_dataset(tmp_path / "ds")
        assert "allow_pickle" not in str(err.value) and "pickle.load" not in str(err.value)
        path.write_bytes(good)


def test_object_array_is_refused_without_unpickling(tmp_path):
    images, manifest = _data()
    write_dataset(tmp_path / "ds", images, manifest, {"name": "t", "classes": ["a", "b", "c", "d"]})
    np.save(tmp_path / "ds" / "images.npy", np.array([{"x": 1}] * 5, dtype=object), allow_pickle=True)
    with pytest.raises(DatasetError, match=r"images\.npy: unreadable dataset file \(.*\); expected a plain "
                                           r"numeric \.npy array") as err:
        read_dataset(tmp_path / "ds")
    assert "allow_pickle" not in str(err.value)
