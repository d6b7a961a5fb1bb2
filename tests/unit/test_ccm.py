"""CCM ingest on a generated CCM-layout fixture: parsing, sampling, decoding, boxes, crops, errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pandas as pd
import pytest
import torch

from fillrobust.data import ccm as ccm_mod
from fillrobust.data.ccm import (
    CCMError,
    VideoError,
    build_ccm_dataset,
    parse_annotations,
    read_frames,
    resolve_params,
    sample_frames,
    sample_window,
    video_frame_count,
)
from fillrobust.data.detect import (
    AnnotationBoxSource,
    DetectorError,
    MaskRCNNBoxSource,
    box_source,
    build_maskrcnn,
    load_state_dict,
    select_detections,
)
from fillrobust.data.store import file_sha256, read_dataset
from fillrobust.data.verify import (
    VerifyError,
    load_rejected,
    rejected_from_indices,
    write_contact_sheets,
    write_rejected,
)
from tests.unit.ccm_fixture import ANNOTATION_COLUMNS, make_ccm_fixture, write_video

SAMPLING = {"frames_per_video": 4, "before_handover": 8, "after_handover": 4}


def _params(**over: object) -> dict:
    base = {"views": [1, 2], "box_source": "annotation", "boxes_csv": "annotations/boxes.csv",
            "sampling": dict(SAMPLING), "crop": {"size": 32, "margin": 0.1}}
    base.update(over)
    return base


@pytest.fixture(scope="module")
def fixture_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_ccm_fixture(tmp_path_factory.mktemp("ccm") / "CCM", n_videos=4, frames=24).root


@pytest.fixture()
def ccm_copy(fixture_root: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(fixture_root, tmp_path / "CCM"))


def _sequential(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


# --- ingest round trip ---------------------------------------------------------------------------


def test_annotation_ingest_round_trip(fixture_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "ds"
    report = build_ccm_dataset(fixture_root, out, _params(), seed=0)
    ds = read_dataset(out, verify=True)
    man = ds.manifest
    assert report["count"] == len(ds) == 4 * 2 * 4  # videos x views x frames
    assert ds.images.shape == (32, 32, 32, 3) and ds.masks is None
    expected = {"index", "label", "class_name", "container", "filling_type", "filling_level", "occlusion",
                "hand", "transparency", "view", "background", "illumination", "scenario",
                "source_video", "frame", "box", "score"}
    assert expected <= set(man.columns)
    assert ds.classes == ["0%", "50%", "90%", "unknown"]
    ann = pd.read_csv(fixture_root / "annotations" / "ccm_train_annotation.csv").set_index("id")
    for row in man.itertuples():
        a = ann.loc[row.video_id]
        level = {0: 0, 1: 50, 2: 90}[a["filling level"]]
        assert row.filling_level == level and row.scenario == a["scenario"]
        want = "unknown" if row.container in ("red_cup", "small_white_cup") else f"{level}%"
        assert row.class_name == want and ds.classes[row.label] == want
        assert row.source_video == f"view{row.view}/rgb/{row.video_id:06d}.mp4"
    # windows: handover at 16, 8 before and 4 after -> frames 8, 12, 16, 20
    assert sorted(set(man["frame"])) == [8, 12, 16, 20]
    boxes = pd.read_csv(fixture_root / "annotations" / "boxes.csv")
    r0 = man.iloc[5]
    b = boxes[(boxes.source_video == r0.source_video) & (boxes.frame == r0.frame)].iloc[0]
    assert list(r0.box) == [b.x0, b.y0, b.x1, b.y1]
    assert man["occlusion"].isna().all() and man["hand"].isna().all()  # no scenario map by default
    # the red cup's crop centre is red (container id 1 body colour 200, 30, 40)
    red = ds.images[(man["container"] == "red_cup").to_numpy()][:, 12:20, 12:20].reshape(-1, 3).mean(0)
    assert red[0] > 120 and red[1] < 80
    meta = ds.meta["provenance"]
    assert meta["params"]["sampling"]["frames_per_video"] == 4 and meta["report"]["count"] == 32
    assert not list(tmp_path.glob(".*"))  # no spool or temporary folder left behind


def test_same_seed_same_bytes_and_scenario_hand(fixture_root: Path, tmp_path: Path) -> None:
    params = _params(scenario_hand={"1": False, "2": True, "3": True},
                     sampling={**SAMPLING, "jitter": True})
    build_ccm_dataset(fixture_root, tmp_path / "a", params, seed=3)
    build_ccm_dataset(fixture_root, tmp_path / "b", params, seed=3)
    build_ccm_dataset(fixture_root, tmp_path / "c", params, seed=4)
    a, b, c = (read_dataset(tmp_path / n) for n in "abc")
    assert a.meta["content_hash"] == b.meta["content_hash"]
    assert not a.manifest["frame"].equals(c.manifest["frame"])
    man = a.manifest
    assert (man["hand"] == (man["scenario"] != 1)).all()
    assert (man["occlusion"] == (man["scenario"] != 1).astype(float)).all()


# --- sampling and decoding -------------------------------------------------------------------------


def test_sample_window_and_frames() -> None:
    s = {"frames_per_video": 5, "before_handover": 10, "after_handover": 5, "fallback_window": [0.5, 0.9]}
    assert sample_window(100, 50, s) == (40, 55)
    assert sample_window(100, 3, s) == (0, 8)
    assert sample_window(100, None, s) == (49, 89)  # no handover annotation: fraction of the video
    assert sample_window(100, 300, s) == (49, 89)  # handover past the end
    rng = np.random.default_rng(0)
    assert sample_frames(100, 50, s, rng).tolist() == [40, 44, 48, 51, 55]
    jit = {**s, "jitter": True}
    draws = [sample_frames(100, 50, jit, np.random.default_rng(k)) for k in range(20)]
    assert all(len(d) == 5 and d.min() >= 40 and d.max() <= 55 for d in draws)
    assert len({tuple(d) for d in draws}) > 1
    assert np.array_equal(sample_frames(100, 50, jit, np.random.default_rng(7)),
                          sample_frames(100, 50, jit, np.random.default_rng(7)))


def test_read_frames_seek_matches_sequential(fixture_root: Path) -> None:
    path = fixture_root / "view2" / "rgb" / "000001.mp4"
    assert video_frame_count(path) == 24
    full = _sequential(path)
    idx = np.array([3, 9, 10, 17, 23])  # keyframes every 8: the seek lands before 9 and 17
    frames, found, err = read_frames(path, idx)
    assert err is None and found.tolist() == idx.tolist()
    assert np.array_equal(frames, full[idx])
    frames, found, err = read_frames(path, np.array([0, 23]))  # no seek
    assert err is None and np.array_equal(frames, full[[0, 23]])
    frames, found, err = read_frames(path, np.array([], dtype=np.int64))  # all rejected
    assert err is None and len(frames) == len(found) == 0
    _, found, err = read_frames(path, np.array([20, 30]))
    assert found.tolist() == [20] and err.frame == 30 and "000001.mp4 frame 30" in str(err)


def test_truncated_video_names_file_and_frame(tmp_path: Path) -> None:
    frames = np.random.default_rng(0).integers(0, 255, (24, 32, 48, 3), dtype=np.uint8)
    path = tmp_path / "cut.mp4"
    write_video(path, frames)
    # moov at the end: a cut file cannot even be opened
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(VideoError, match=r"cut\.mp4: cannot open video"):
        video_frame_count(path)
    # moov in front (faststart): opens, then ends early -> frames before the cut are kept
    fast = tmp_path / "fast.mp4"
    with av.open(str(fast), mode="w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream("libx264", rate=30)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": "4"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    data = fast.read_bytes()
    fast.write_bytes(data[: int(len(data) * 0.6)])
    assert video_frame_count(fast) == 24
    got, found, err = read_frames(fast, np.array([1, 5, 22, 23]))
    assert err is not None and "fast.mp4 frame" in str(err) and err.frame in (5, 22)
    assert found.tolist() == [1, 5, 22, 23][: len(found)] and len(got) == len(found) >= 1


# --- annotations and layout errors ----------------------------------------------------------------


def test_parse_annotations_errors_and_skips(tmp_path: Path) -> None:
    rows = [[i, cid, 1, 0, 0, 1, 1, 1, 1, 1, 1, 3, 2, 1, 1, 1, 16, 0]
            for i, cid in enumerate([1, 5, 7, 42])]
    table = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    path = tmp_path / "ann.csv"
    table.to_csv(path, index=False)
    records, report = parse_annotations(path, {})
    assert [r.container for r in records] == ["red_cup", "wine_glass"]
    assert [r.class_name for r in records] == ["unknown", "90%"]
    assert records[1].filling_type == "water" and records[1].handover == 16
    assert report["skipped_unknown_container"] == {"42": 1}
    assert report["skipped_unused_container"] == {"7": 1}
    table.drop(columns=["filling level", "scenario"]).to_csv(path, index=False)
    with pytest.raises(CCMError, match=r"ann\.csv: missing columns \['scenario', 'filling level'\]"):
        parse_annotations(path, {})
    bad = table.astype(object)
    bad.loc[1, "background"] = "blue"
    bad.to_csv(path, index=False)
    with pytest.raises(CCMError, match=r"row 3 column 'background' must be an integer, got 'blue'"):
        parse_annotations(path, {})
    with pytest.raises(CCMError, match=r"unknown ccm param 'nope'"):
        resolve_params({"nope": 1})
    with pytest.raises(CCMError, match=r"'transparency': values must be one of"):
        resolve_params({"transparency": {"red_cup": "glossy"}})
    assert resolve_params({"containers": {"10": "beer_cup"}})["containers"] == {10: "beer_cup"}


def test_missing_view_folder_is_an_error(ccm_copy: Path, tmp_path: Path) -> None:
    with pytest.raises(CCMError, match=r"missing view folders \['view3/rgb'\]"):
        build_ccm_dataset(ccm_copy, tmp_path / "ds", _params(views=[1, 2, 3]))
    assert not (tmp_path / "ds").exists()


def test_missing_and_broken_videos_are_reported(ccm_copy: Path, tmp_path: Path) -> None:
    (ccm_copy / "view1" / "rgb" / "000002.mp4").unlink()
    (ccm_copy / "view2" / "rgb" / "000003.mp4").write_bytes(b"\x00garbage" * 100)
    report = build_ccm_dataset(ccm_copy, tmp_path / "ds", _params())
    assert report["skips"]["missing_videos"] == ["view1/rgb/000002.mp4"]
    (bad,) = report["skips"]["unreadable"]
    assert bad["file"] == "view2/rgb/000003.mp4" and "cannot open" in bad["reason"]
    assert report["count"] == len(read_dataset(tmp_path / "ds")) == 6 * 4
    with pytest.raises((CCMError, VideoError), match=r"000002\.mp4"):
        build_ccm_dataset(ccm_copy, tmp_path / "strict", _params(strict=True))
    assert not (tmp_path / "strict").exists()


def test_no_half_written_dataset_on_error(fixture_root: Path, tmp_path: Path, monkeypatch) -> None:
    out = tmp_path / "ds"
    build_ccm_dataset(fixture_root, out, _params())
    before = (out / "dataset.json").read_text()
    calls = {"n": 0}
    real = ccm_mod.crop_batch

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= 3:
            raise RuntimeError("killed mid-ingest")
        return real(*args, **kwargs)

    monkeypatch.setattr(ccm_mod, "crop_batch", failing)
    with pytest.raises(RuntimeError, match="killed mid-ingest"):
        build_ccm_dataset(fixture_root, out, _params(crop={"size": 16, "margin": 0.0}))
    with pytest.raises(RuntimeError):
        build_ccm_dataset(fixture_root, tmp_path / "fresh", _params())
    assert (out / "dataset.json").read_text() == before  # old dataset untouched
    assert not (tmp_path / "fresh").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or spool folders


# --- rejected CSV and contact sheets ---------------------------------------------------------------


def test_contact_sheets_and_rejected_round_trip(fixture_root: Path, tmp_path: Path) -> None:
    ds_path = tmp_path / "ds"
    build_ccm_dataset(fixture_root, ds_path, _params())
    sheets = write_contact_sheets(ds_path, tmp_path / "sheets", columns=4, per_sheet=6, tile=48)
    names = sorted(p.name for p in sheets)
    assert names[:2] == ["green_glass_000.png", "green_glass_001.png"] and len(names) == 8
    from PIL import Image

    assert Image.open(sheets[0]).size == (4 * 48, 2 * 48)
    index = pd.read_csv(tmp_path / "sheets" / "index.csv")
    assert len(index) == 32 and {"source_video", "frame", "view"} <= set(index.columns)
    rows = rejected_from_indices(ds_path, [0, 5, 17])
    write_rejected(tmp_path / "rejected.csv", rows)
    assert len(load_rejected(tmp_path / "rejected.csv")) == 3
    report = build_ccm_dataset(fixture_root, tmp_path / "ds2", _params(rejected_csv=str(tmp_path / "rejected.csv")))
    ds2 = read_dataset(tmp_path / "ds2")
    assert report["frames_rejected"] == 3 and len(ds2) == 29
    keys = set(zip(ds2.manifest.source_video, ds2.manifest.frame, ds2.manifest.view, strict=True))
    assert not keys & set(zip(rows.source_video, rows.frame, rows.view, strict=True))


def test_load_rejected_errors(tmp_path: Path) -> None:
    path = tmp_path / "rej.csv"
    path.write_text("source_video,frame\nview1/rgb/000001.mp4,3\n")
    with pytest.raises(VerifyError, match=r"rej\.csv: missing columns \['view'\]"):
        load_rejected(path)
    path.write_text("source_video,frame,view,reason\nview1/rgb/000001.mp4,3.5,1,blurry\n")
    with pytest.raises(VerifyError, match=r"row 2 column 'frame' must be a non-negative integer"):
        load_rejected(path)
    with pytest.raises(VerifyError, match=r"does not exist"):
        load_rejected(tmp_path / "none.csv")


def test_load_rejected_checks_views_and_video_paths(tmp_path: Path) -> None:
    """A row that could never match a frame (a view outside the params, a path not laid out like
    the CCM videos, or in another view than its row) is an error naming the row and the value."""
    path = tmp_path / "rej.csv"
    header = "source_video,frame,view\nview1/rgb/000001.mp4,3,1\n"
    path.write_text(header + "view9/rgb/000001.mp4,3,9\n")
    with pytest.raises(VerifyError, match=r"rej\.csv: row 3 view 9 is not one of the configured views \[1, 2, 3, 4\]"):
        load_rejected(path, views=[1, 2, 3, 4])
    assert len(load_rejected(path)) == 2  # without views given, any view is accepted
    path.write_text(header + "view1/000001.mp4,3,1\n")
    with pytest.raises(VerifyError, match=r"row 3 source_video 'view1/000001\.mp4' is not a CCM video path; "
                                          r"expected view1/rgb/<6-digit id>\.mp4"):
        load_rejected(path, views=[1, 2])
    path.write_text(header + "view2/rgb/000001.mp4,3,1\n")
    with pytest.raises(VerifyError, match=r"row 3 source_video 'view2/rgb/000001\.mp4' is a view2 video but "
                                          r"the row's view is 1"):
        load_rejected(path, views=[1, 2])
    from fillrobust.data.verify import SOURCE_VIDEO  # the layout the check expects is ccm's

    assert SOURCE_VIDEO.fullmatch(ccm_mod.video_path(".", 3, 42).as_posix().removeprefix("./"))


def test_rejected_rows_that_match_no_frame_are_an_error(fixture_root: Path, tmp_path: Path) -> None:
    """A typo in a frame or video id used to reject nothing, silently keeping the frame."""
    rejected = tmp_path / "rejected.csv"
    rejected.write_text("source_video,frame,view\n"
                        "view1/rgb/000000.mp4,8,1\n"  # sampled: frames 8, 12, 16, 20
                        "view1/rgb/000000.mp4,13,1\n"  # a typo for 12
                        "view2/rgb/000042.mp4,8,2\n")  # no such recording
    with pytest.raises(CCMError) as err:
        build_ccm_dataset(fixture_root, tmp_path / "ds", _params(rejected_csv=str(rejected)))
    message = str(err.value)
    assert f"rejected CSV {rejected}: 2 row(s) match no frame the ingest samples" in message
    assert "row 3 (view1/rgb/000000.mp4): frame 13 is not sampled (sampled: [8, 12, 16, 20])" in message
    assert "row 4 (view2/rgb/000042.mp4): video id 42 is not an ingested recording" in message
    assert "row 2" not in message
    assert not (tmp_path / "ds").exists()
    rejected.write_text("source_video,frame,view\nview9/rgb/000000.mp4,8,9\n")
    with pytest.raises(VerifyError, match=r"row 2 view 9 is not one of the configured views \[1, 2\]"):
        build_ccm_dataset(fixture_root, tmp_path / "ds", _params(rejected_csv=str(rejected)))


@pytest.mark.parametrize(("content", "reason"), [
    (b"", "No columns to parse"),
    (b"id,container id\n1,2\n3,4,5,6\n", "Error tokenizing data"),
    (b"id,container id\n\xff\xfe,1\n", "can't decode byte"),
])
def test_unreadable_annotation_csv_names_the_file(tmp_path: Path, content: bytes, reason: str) -> None:
    """A bare pandas EmptyDataError / ParserError / UnicodeDecodeError named no file."""
    path = tmp_path / "ann.csv"
    path.write_bytes(content)
    with pytest.raises(CCMError, match=rf"ann\.csv: unreadable CCM annotation CSV \(.*{reason}.*\); expected a "
                                       r"CSV with columns \['id', 'container id'"):
        parse_annotations(path, {})


# --- box sources ----------------------------------------------------------------------------------


def test_select_detections_with_stubbed_outputs() -> None:
    masks = torch.zeros(3, 1, 8, 10)
    masks[1, 0, 2:5, 3:6] = 0.9
    masks[1, 0, 0, 0] = 0.4  # below 0.5: not in the mask
    out = [
        {"boxes": torch.tensor([[0, 0, 5, 5], [1, 1, 6, 7], [2, 2, 9, 7.0]]),
         "labels": torch.tensor([1, 47, 46]), "scores": torch.tensor([0.99, 0.8, 0.7]), "masks": masks},
        {"boxes": torch.tensor([[0, 0, 5, 5.0]]), "labels": torch.tensor([47]),
         "scores": torch.tensor([0.3]), "masks": torch.ones(1, 1, 8, 10)},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
         "scores": torch.zeros(0), "masks": torch.zeros(0, 1, 8, 10)},
    ]
    res = select_detections(out, [47, 46, 44], 0.5, (8, 10))
    assert res.keep.tolist() == [True, False, False]
    assert res.boxes[0].tolist() == [1, 1, 6, 7] and res.scores[0] == pytest.approx(0.8)
    assert res.masks[0].sum() == 9 and res.masks.dtype == np.uint8
    assert np.isnan(res.boxes[1:]).all()


def test_annotation_source_requires_boxes(tmp_path: Path) -> None:
    with pytest.raises(DetectorError, match="real CCM has no per-frame boxes"):
        box_source("annotation", {"boxes_csv": None})
    with pytest.raises(DetectorError, match="unknown box_source 'yolo'"):
        box_source("yolo", {})
    path = tmp_path / "b.csv"
    path.write_text("source_video,view,frame,x0,y0,x1,y1\nv.mp4,1,0,5,5,2,9\n")
    with pytest.raises(DetectorError, match=r"b\.csv: row 2 needs x1 > x0"):
        AnnotationBoxSource(path)


def test_weights_checksum_and_loading(tmp_path: Path, one_thread) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file({"a": torch.arange(4.0)}, str(path))
    good = file_sha256(path)
    assert torch.equal(load_state_dict(path, good)["a"], torch.arange(4.0))
    wrong = "f" * 64
    with pytest.raises(DetectorError) as err:
        load_state_dict(path, wrong)
    assert str(path) in str(err.value) and wrong in str(err.value) and good in str(err.value)
    pth = tmp_path / "w.pth"
    torch.save({"model": {"a": torch.ones(2)}}, pth)
    assert torch.equal(load_state_dict(pth, file_sha256(pth))["a"], torch.ones(2))
    params = {"weights": str(path), "sha256": good, "min_size": 32, "max_size": 48}
    with pytest.raises(DetectorError, match="not a maskrcnn_resnet50_fpn state dict"):
        build_maskrcnn(params)
    with pytest.raises(DetectorError, match="sha256 mismatch"):
        build_maskrcnn({**params, "sha256": wrong})
    with pytest.raises(DetectorError, match=f"no sha256 pinned.*pin {good}"):
        build_maskrcnn({**params, "sha256": None})
    with pytest.raises(DetectorError, match="detector.weights is not set"):
        build_maskrcnn({})


@pytest.fixture()
def one_thread():
    """Tiny convolutions run far faster on one thread than on contended OpenMP threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


FAST_DETECTOR = {"allow_random_weights": True, "min_size": 64, "max_size": 96, "batch_size": 4,
                 "rpn_pre_nms_top_n": 50, "rpn_post_nms_top_n": 20, "detections_per_img": 10}


def test_maskrcnn_ingest_end_to_end_random_weights(fixture_root: Path, tmp_path: Path, one_thread) -> None:
    # Random init (no weights exist here): threshold 0 and every COCO class allowed, so the
    # code path runs through detection, masks, crops and the dataset writer.
    detector = {**FAST_DETECTOR, "score_threshold": 0.0, "classes": {str(i): i for i in range(1, 91)}}
    params = _params(box_source="maskrcnn", detector=detector, views=[1],
                     sampling={**SAMPLING, "frames_per_video": 1})
    report = build_ccm_dataset(fixture_root, tmp_path / "ds", params, seed=0)
    ds = read_dataset(tmp_path / "ds")
    assert report["count"] + report["skipped"]["no_box"] == 4
    assert len(ds) == report["count"] > 0
    assert ds.masks is not None and ds.masks.shape == (len(ds), 32, 32)
    assert set(np.unique(ds.masks)) <= {0, 1}
    assert ((ds.manifest["score"] >= 0) & (ds.manifest["score"] <= 1)).all()
    assert json.loads((tmp_path / "ds" / "dataset.json").read_text())["provenance"]["params"][
        "box_source"] == "maskrcnn"


def test_maskrcnn_frames_without_detection_are_listed(fixture_root: Path, one_thread) -> None:
    source = MaskRCNNBoxSource({**FAST_DETECTOR, "score_threshold": 1.01}, seed=0)
    frames = _sequential(fixture_root / "view1" / "rgb" / "000000.mp4")[:2]
    keys = [("view1/rgb/000000.mp4", i, 1) for i in range(2)]
    res = source(frames, keys)
    assert not res.keep.any() and np.isnan(res.boxes).all()


def test_ingest_with_no_detections_names_skipped_frames(fixture_root: Path, tmp_path: Path,
                                                        one_thread) -> None:
    params = _params(box_source="maskrcnn", detector={**FAST_DETECTOR, "score_threshold": 1.01},
                     views=[1], sampling={**SAMPLING, "frames_per_video": 1})
    with pytest.raises(CCMError, match=r"no crops .*'no_box': 4.*view1/rgb/000000\.mp4', 'view': 1, 'frame': 8"):
        build_ccm_dataset(fixture_root, tmp_path / "ds", params)
    assert not (tmp_path / "ds").exists()
