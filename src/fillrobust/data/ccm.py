"""CORSMAL Containers Manipulation (CCM) ingest: videos + annotations -> C-CCM crops.

Layout read (REFERENCE.md): ``root/view{1..4}/rgb/{id:06d}.mp4`` and
``root/annotations/ccm_train_annotation.csv`` (one row per recording).

Frame sampling. The ICIP 2021 paper (Sec. 3) samples "frames of containers for
which a pouring action was completed", with the container "completely visible
or occluded by the person's hand", under different backgrounds; it does not
give the rule. In CCM the pouring comes first and the person then hands the
container over; the ``handover starting frame`` is annotated. So the window
is ``[handover - before, handover + after]`` (params ``sampling.before_handover``
/ ``after_handover``, in frames): before the handover the pouring is over and
the container stands on the table or is held, after it the container is held
during the handover. Recordings without a valid handover frame (missing,
negative or past the end) use a fraction of the video (``fallback_window``)
and are counted in the report. ``frames_per_video`` frames are spread evenly
over the window in every view; with ``jitter`` each one is drawn uniformly
inside its bin from ``(seed, video id, view)``. All views, scenarios and
backgrounds present in the annotations are sampled; the report counts them.

Labels: ``unknown`` unless the container is transparent (params table
``transparency``), else the filling level class ("0%", "50%", "90%").
Hand occlusion is not annotated per frame in CCM; ``hand`` comes from the
params map ``scenario_hand`` (e.g. {1: false, 2: true, 3: true} if scenario 1
is "container on the table"); unmapped scenarios give null (``occlusion`` NaN).
The papers do not state the scenario semantics, so the default map is empty.
"""

from __future__ import annotations

import copy
import json
import shutil
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import numpy as np
import pandas as pd
from tqdm import tqdm

from fillrobust.data.crop import crop_batch
from fillrobust.data.detect import BoxSource, box_source, default_detector_params
from fillrobust.data.store import file_sha256, write_dataset
from fillrobust.data.verify import (
    REJECTED_COLUMNS,
    SOURCE_VIDEO,
    RejectedKey,
    load_rejected,
    rejected_keys,
)

CLASSES = ["0%", "50%", "90%", "unknown"]
TRANSPARENCY = ("transparent", "translucent", "opaque")
REQUIRED_COLUMNS = ["id", "container id", "scenario", "background", "illumination",
                    "filling type", "filling level", "handover starting frame"]


class CCMError(ValueError):
    """The CCM layout, annotations or ingest parameters are wrong."""


class VideoError(RuntimeError):
    """A video cannot be opened or decoded; names the file and frame."""

    def __init__(self, path: str | Path, frame: int | None, reason: str) -> None:
        where = f"{path}" + ("" if frame is None else f" frame {frame}")
        super().__init__(f"{where}: {reason}")
        self.path, self.frame, self.reason = str(path), frame, reason


def default_params() -> dict[str, Any]:
    """Defaults of the ``ccm`` params section (keys documented in the module docstring)."""
    return {
        "name": "c-ccm",
        "annotations": "annotations/ccm_train_annotation.csv",
        "views": [1, 2, 3, 4],
        # Ids 1-6 from REFERENCE.md; 7-9 are boxes (unused). Beer cup and cocktail
        # glass ids are unconfirmed: add them here once known. null = skip.
        "containers": {1: "red_cup", 2: "small_white_cup", 3: "small_transparent_cup",
                       4: "green_glass", 5: "wine_glass", 6: "champagne_flute",
                       7: None, 8: None, 9: None},
        "transparency": {"red_cup": "opaque", "small_white_cup": "translucent",
                         "small_transparent_cup": "transparent", "beer_cup": "transparent",
                         "green_glass": "transparent", "wine_glass": "transparent",
                         "champagne_flute": "transparent", "cocktail_glass": "transparent"},
        # CORSMAL challenge coding; not stated in the papers.
        "filling_types": {0: "none", 1: "pasta", 2: "rice", 3: "water"},
        "filling_levels": {0: 0, 1: 50, 2: 90},
        "classes": list(CLASSES),
        "scenario_hand": {},
        "sampling": {"frames_per_video": 10, "before_handover": 45, "after_handover": 15,
                     "fallback_window": [0.5, 0.9], "jitter": False},
        "crop": {"size": 224, "margin": 0.1},
        "box_source": "maskrcnn",
        "boxes_csv": None,
        "detector": default_detector_params(),
        "rejected_csv": None,
        "strict": False,
    }


def _int_keys(table: dict[Any, Any], what: str) -> dict[int, Any]:
    try:
        return {int(k): v for k, v in table.items()}
    except (TypeError, ValueError) as err:
        raise CCMError(f"params '{what}': keys must be integers, got {list(table)}") from err


def resolve_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """Defaults overlaid with ``params`` (sections sampling/crop/detector merged key by key)."""
    out = default_params()
    for key, value in (params or {}).items():
        if key not in out:
            raise CCMError(f"unknown ccm param '{key}'; expected one of {sorted(out)}")
        out[key] = {**out[key], **value} if key in ("sampling", "crop", "detector") else copy.deepcopy(value)
    for key in ("containers", "filling_types", "filling_levels", "scenario_hand"):
        out[key] = _int_keys(out[key] or {}, key)
    bad = {k: v for k, v in out["transparency"].items() if v not in TRANSPARENCY}
    if bad:
        raise CCMError(f"params 'transparency': values must be one of {TRANSPARENCY}, got {bad}")
    out["views"] = [int(v) for v in out["views"]]
    if out["box_source"] not in ("annotation", "maskrcnn"):
        raise CCMError(f"params 'box_source' must be 'annotation' or 'maskrcnn', got {out['box_source']!r}")
    return out


@dataclass(frozen=True)
class VideoRecord:
    """One annotated recording (all its views)."""

    video_id: int
    container_id: int
    container: str
    transparency: str
    scenario: int
    background: int
    illumination: int
    filling_type: str
    filling_level: int
    handover: int | None
    class_name: str


def _int_column(table: pd.DataFrame, column: str, path: Path, allow_missing: bool = False) -> pd.Series:
    values = pd.to_numeric(table[column], errors="coerce")
    bad = (values != values.round()) | (values.isna() & (not allow_missing))
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CCMError(f"{path}: row {row + 2} column '{column}' must be an integer, "
                       f"got {table[column].iloc[row]!r}")
    return values


def _record(row: dict[str, Any], name: str, p: dict[str, Any], path: Path, line: int) -> VideoRecord:
    if name not in p["transparency"]:
        raise CCMError(f"params 'transparency' has no entry for container '{name}'")
    ftype, level = int(row["filling type"]), int(row["filling level"])
    if ftype not in p["filling_types"] or level not in p["filling_levels"]:
        raise CCMError(f"{path}: row {line}: filling type {ftype} / level {level} not in params "
                       f"filling_types {sorted(p['filling_types'])} / filling_levels {sorted(p['filling_levels'])}")
    percent = int(p["filling_levels"][level])
    transparency = p["transparency"][name]
    class_name = f"{percent}%" if transparency == "transparent" else "unknown"
    if class_name not in p["classes"]:
        raise CCMError(f"{path}: row {line}: class '{class_name}' not in classes {p['classes']}")
    hs = row["handover starting frame"]
    return VideoRecord(
        int(row["id"]), int(row["container id"]), name, transparency=transparency,
        scenario=int(row["scenario"]),
        background=int(row["background"]), illumination=int(row["illumination"]),
        filling_type=p["filling_types"][ftype], filling_level=percent,
        handover=None if pd.isna(hs) or hs < 0 else int(hs), class_name=class_name)


def parse_annotations(path: str | Path, params: dict[str, Any]) -> tuple[list[VideoRecord], dict[str, Any]]:
    """Parse and validate the CCM annotation CSV.

    Missing columns or non-integer values raise ``CCMError`` naming the file,
    row and column. Rows whose container id is unknown (absent from
    ``containers``) or unused (mapped to null) are skipped and counted.
    """
    p = resolve_params(params)  # idempotent on resolved params
    path = Path(path)
    if not path.is_file():
        raise CCMError(f"CCM annotations {path} do not exist")
    try:
        table = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CCMError(f"{path}: unreadable CCM annotation CSV ({str(err).strip()}); expected a CSV with columns "
                       f"{REQUIRED_COLUMNS}") from err
    table.columns = [str(c).strip() for c in table.columns]
    missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
    if missing:
        raise CCMError(f"{path}: missing columns {missing}; found {list(table.columns)}")
    for column in REQUIRED_COLUMNS:
        table[column] = _int_column(table, column, path, column == "handover starting frame")
    if table["id"].duplicated().any():
        raise CCMError(f"{path}: duplicate id {int(table['id'][table['id'].duplicated()].iloc[0])}")
    records, unknown, unused = [], Counter(), Counter()
    for i, row in enumerate(table.to_dict("records")):
        cid = int(row["container id"])
        if cid not in p["containers"]:
            unknown[cid] += 1
        elif p["containers"][cid] is None:
            unused[cid] += 1
        else:
            records.append(_record(row, p["containers"][cid], p, path, i + 2))
    report = {"annotation_rows": len(table), "records": len(records),
              "skipped_unknown_container": {str(k): v for k, v in sorted(unknown.items())},
              "skipped_unused_container": {str(k): v for k, v in sorted(unused.items())}}
    return records, report


def video_path(root: str | Path, view: int, video_id: int) -> Path:
    """``root/view{view}/rgb/{video_id:06d}.mp4``."""
    return Path(root) / f"view{view}" / "rgb" / f"{video_id:06d}.mp4"


def check_layout(root: str | Path, params: dict[str, Any]) -> None:
    """Raise ``CCMError`` unless ``root``, the annotation CSV and every ``view{v}/rgb`` exist."""
    root = Path(root)
    if not root.is_dir():
        raise CCMError(f"CCM root {root} is not a folder")
    if not (root / params["annotations"]).is_file():
        raise CCMError(f"CCM annotations {root / params['annotations']} do not exist")
    missing = [f"view{v}/rgb" for v in params["views"] if not (root / f"view{v}" / "rgb").is_dir()]
    if missing:
        raise CCMError(f"CCM root {root}: missing view folders {missing} (params views {params['views']})")


def video_frame_count(path: str | Path) -> int:
    """Number of frames of the first video stream (container metadata, else duration x rate)."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            if stream.frames:
                return int(stream.frames)
            rate = stream.average_rate or stream.guessed_rate
            if stream.duration and rate:
                return int(round(float(stream.duration * stream.time_base * rate)))
            if container.duration and rate:
                return int(round(container.duration / 1e6 * float(rate)))
    except (av.error.FFmpegError, IndexError, OSError) as err:
        raise VideoError(path, None, f"cannot open video ({err})") from err
    raise VideoError(path, None, "video has no frame count or duration")


def sample_window(n_frames: int, handover: int | None, sampling: dict[str, Any]) -> tuple[int, int]:
    """Inclusive frame window after pouring (see module docstring)."""
    if handover is not None and handover < n_frames:
        start = handover - int(sampling["before_handover"])
        end = handover + int(sampling["after_handover"])
    else:
        lo, hi = sampling["fallback_window"]
        start, end = int(lo * (n_frames - 1)), int(hi * (n_frames - 1))
    return max(start, 0), min(end, n_frames - 1)


def frame_rng(seed: int, video_id: int, view: int) -> np.random.Generator:
    """The generator that jitters the frames of one (recording, view): same seed, same frames."""
    return np.random.default_rng([seed, video_id, view])


def sample_frames(n_frames: int, handover: int | None, sampling: dict[str, Any],
                  rng: np.random.Generator) -> np.ndarray:
    """Sorted unique frame indices spread evenly over the window (jittered in bins if asked)."""
    start, end = sample_window(n_frames, handover, sampling)
    k = int(sampling["frames_per_video"])
    if end < start or k <= 0:
        return np.zeros(0, dtype=np.int64)
    if sampling.get("jitter"):
        edges = np.linspace(start, end + 1, k + 1)
        lo, hi = np.floor(edges[:-1]).astype(np.int64), np.maximum(np.floor(edges[1:]), np.floor(edges[:-1]) + 1)
        picks = rng.integers(lo, hi.astype(np.int64))
    else:
        picks = np.round(np.linspace(start, end, k)).astype(np.int64)
    return np.unique(np.clip(picks, start, end))


def _decode(path: str | Path, wanted: list[int], got: dict[int, np.ndarray], seek: bool) -> int | None:
    """Decode into ``got`` the frames of ``wanted``; returns the first frame index decoded."""
    first = None
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        rate = stream.average_rate or stream.guessed_rate
        origin = stream.start_time or 0
        if seek and wanted[0] > 0:
            target = origin + int(wanted[0] / rate / stream.time_base)
            container.seek(target, stream=stream, backward=True, any_frame=False)
        want = set(wanted)
        for frame in container.decode(stream):
            if frame.pts is None:
                raise VideoError(path, None, "frames carry no timestamps")
            idx = int(round(float((frame.pts - origin) * stream.time_base * rate)))
            first = idx if first is None else first
            if idx in want:
                got[idx] = frame.to_ndarray(format="rgb24")
            if idx >= wanted[-1]:
                break
    return first


def read_frames(path: str | Path, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray, VideoError | None]:
    """Decode only ``indices`` (sorted): seek to the keyframe before the first, decode to the last.

    Returns (frames K x H x W x 3 uint8, the K indices found, error or None).
    Frames decoded before a failure are kept; the error names the first frame
    that could not be read. If a seek overshoots, the video is decoded from
    its start instead.
    """
    wanted = [int(i) for i in indices]
    got: dict[int, np.ndarray] = {}
    error: VideoError | None = None
    try:
        if wanted:
            first = _decode(path, wanted, got, seek=True)
            if first is not None and first > wanted[0]:
                _decode(path, wanted, got, seek=False)
    except VideoError as err:
        error = err
    except (av.error.FFmpegError, IndexError, OSError, ValueError) as err:
        missing = next((i for i in wanted if i not in got), None)
        error = VideoError(path, missing, f"decoding failed ({err})")
    missing = [i for i in wanted if i not in got]
    if missing and error is None:
        error = VideoError(path, missing[0], "video ends before this frame (truncated?)")
    found = np.array(sorted(got), dtype=np.int64)
    frames = np.stack([got[i] for i in found]) if len(found) else np.zeros((0, 0, 0, 3), np.uint8)
    return frames, found, error


class _Spool:
    """Crops (and masks) appended to raw files so memory stays bounded; memory-mapped at the end."""

    def __init__(self, folder: Path, size: int) -> None:
        self.folder, self.size, self.count = folder, size, 0
        folder.mkdir(parents=True)
        self.crops = open(folder / "crops.u8", "wb")  # noqa: SIM115 (closed in finish)
        self.masks = open(folder / "masks.u8", "wb")  # noqa: SIM115
        self.has_masks: bool | None = None

    def append(self, crops: np.ndarray, masks: np.ndarray | None) -> None:
        if self.has_masks is None:
            self.has_masks = masks is not None
        self.crops.write(np.ascontiguousarray(crops, np.uint8).tobytes())
        if self.has_masks and masks is not None:
            self.masks.write(np.ascontiguousarray(masks, np.uint8).tobytes())
        self.count += len(crops)

    def close(self) -> None:
        self.crops.close()
        self.masks.close()

    def finish(self) -> tuple[np.ndarray, np.ndarray | None]:
        self.close()
        s = self.size
        images = np.memmap(self.folder / "crops.u8", np.uint8, "r", shape=(self.count, s, s, 3))
        masks = (np.memmap(self.folder / "masks.u8", np.uint8, "r", shape=(self.count, s, s))
                 if self.has_masks else None)
        return images, masks


def _skip_or_raise(err: VideoError, strict: bool, skips: list[dict[str, Any]], root: Path) -> None:
    if strict:
        raise err
    try:
        rel = Path(err.path).relative_to(root).as_posix()
    except ValueError:
        rel = err.path
    skips.append({"file": rel, "frame": err.frame, "reason": err.reason})


def _rows(rec: VideoRecord, view: int, rel: str, frames: np.ndarray, boxes: np.ndarray,
          scores: np.ndarray, p: dict[str, Any]) -> list[dict[str, Any]]:
    hand = p["scenario_hand"].get(rec.scenario)
    return [{
        "label": p["classes"].index(rec.class_name), "class_name": rec.class_name,
        "container": rec.container, "container_id": rec.container_id,
        "filling_type": rec.filling_type, "filling_level": rec.filling_level,
        "hand": None if hand is None else bool(hand),
        "occlusion": np.nan if hand is None else float(bool(hand)),
        "transparency": rec.transparency, "view": view, "background": rec.background,
        "illumination": rec.illumination, "scenario": rec.scenario, "video_id": rec.video_id,
        "source_video": rel, "frame": int(f), "box": [float(v) for v in b], "score": float(s),
    } for f, b, s in zip(frames, boxes, scores, strict=True)]


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


def _open_box_source(p: dict[str, Any], root: Path, seed: int) -> BoxSource:
    if p["box_source"] == "annotation":
        csv = p["boxes_csv"]
        return box_source("annotation", {"boxes_csv": None if csv is None else root / csv}, seed)
    return box_source(p["box_source"], p["detector"], seed)


@dataclass
class _Ingest:
    """State of one ingest run: params, box source, spool, manifest rows and report."""

    root: Path
    p: dict[str, Any]
    seed: int
    source: BoxSource
    rejected: set[tuple[str, int, int]]
    spool: _Spool

    def __post_init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.skips: dict[str, list[Any]] = {"missing_videos": [], "unreadable": [], "no_box": []}
        self.counts = Counter()

    def job(self, rec: VideoRecord, view: int) -> None:
        """Sample, decode, box and crop one (recording, view); bounded by frames_per_video."""
        path = video_path(self.root, view, rec.video_id)
        rel = path.relative_to(self.root).as_posix()
        if not path.is_file():
            if self.p["strict"]:
                raise CCMError(f"{path}: video listed in the annotations (id {rec.video_id}) is missing")
            self.skips["missing_videos"].append(rel)
            return
        try:
            n_frames = video_frame_count(path)
        except VideoError as err:
            _skip_or_raise(err, self.p["strict"], self.skips["unreadable"], self.root)
            return
        if rec.handover is None or rec.handover >= n_frames:
            self.counts["fallback_window"] += 1
        idx = sample_frames(n_frames, rec.handover, self.p["sampling"], frame_rng(self.seed, rec.video_id, view))
        self.counts["frames_sampled"] += len(idx)
        keep = np.array([(rel, int(f), view) not in self.rejected for f in idx], dtype=bool)
        self.counts["frames_rejected"] += int((~keep).sum())
        frames, found, err = read_frames(path, idx[keep])
        if err is not None:
            _skip_or_raise(err, self.p["strict"], self.skips["unreadable"], self.root)
        if len(found) == 0:
            return
        keys = [(rel, int(f), view) for f in found]
        res = self.source(frames, keys)
        self.skips["no_box"] += [{"source_video": rel, "view": view, "frame": int(f)}
                                 for f in found[~res.keep]]
        if not res.keep.any():
            return
        kept = slice(None) if res.keep.all() else res.keep  # no frame copy in the usual case
        masks = None if res.masks is None else res.masks[kept]
        crops, cmasks = crop_batch(frames[kept], res.boxes[kept], int(self.p["crop"]["size"]),
                                   float(self.p["crop"]["margin"]), masks)
        self.spool.append(crops, cmasks)
        self.rows += _rows(rec, view, rel, frames=found[res.keep], boxes=res.boxes[res.keep],
                           scores=res.scores[res.keep], p=self.p)

    def report(self, parse_report: dict[str, Any]) -> dict[str, Any]:
        """Counts of sources, crops per container/label/view/scenario/background, and all skips."""
        man = pd.DataFrame(self.rows)
        cover = {c: {str(k): int(v) for k, v in man[c].value_counts().sort_index().items()}
                 for c in ("container", "class_name", "view", "scenario", "background")} if len(man) else {}
        uncovered = [v for v in self.p["views"] if str(v) not in cover.get("view", {})]
        return {**parse_report, **{k: int(v) for k, v in self.counts.items()}, "count": len(man),
                "coverage": cover, "views_without_crops": uncovered,
                "skipped": {k: len(v) for k, v in self.skips.items()}, "skips": self.skips}


def _sampled_frames(root: Path, p: dict[str, Any], seed: int, rec: VideoRecord, view: int) -> set[int] | None:
    """The frames the ingest samples from one (recording, view), as ``_Ingest.job`` draws them;
    None when the video is missing or unreadable (the ingest itself reports or raises that)."""
    path = video_path(root, view, rec.video_id)
    if not path.is_file():
        return None
    try:
        n_frames = video_frame_count(path)
    except VideoError:
        return None
    return set(sample_frames(n_frames, rec.handover, p["sampling"], frame_rng(seed, rec.video_id, view)).tolist())


def unmatched_rejected(rows: pd.DataFrame, records: list[VideoRecord], root: Path, p: dict[str, Any],
                       seed: int) -> list[str]:
    """The rows of a loaded rejected CSV that name no frame the ingest samples, described.

    Such a row (a typo in the frame or video id, or params that no longer sample
    the frame) rejects nothing, so the frame it was meant for would stay.
    Checked before any decoding: only the videos the rows name are opened.
    """
    by_id = {rec.video_id: rec for rec in records}
    sampled: dict[tuple[int, int], set[int] | None] = {}
    problems = []
    for i, (video, frame, view) in enumerate(rows[REJECTED_COLUMNS].itertuples(index=False)):
        video_id = int(SOURCE_VIDEO.fullmatch(video)["id"])  # load_rejected checked the form
        rec = by_id.get(video_id)
        if rec is None:
            problems.append(f"row {i + 2} ({video}): video id {video_id} is not an ingested recording")
            continue
        if (video_id, view) not in sampled:
            sampled[video_id, view] = _sampled_frames(root, p, seed, rec, int(view))
        frames = sampled[video_id, view]
        if frames is not None and int(frame) not in frames:
            problems.append(f"row {i + 2} ({video}): frame {frame} is not sampled (sampled: {sorted(frames)})")
    return problems


def _rejected(p: dict[str, Any], records: list[VideoRecord], root: Path, seed: int) -> set[RejectedKey]:
    """The frame keys of params ``rejected_csv``, each checked to name a frame the ingest samples."""
    if not p["rejected_csv"]:
        return set()
    rows = load_rejected(p["rejected_csv"], p["views"])
    problems = unmatched_rejected(rows, records, root, p, seed)
    if problems:
        shown = "; ".join(problems[:10]) + (f"; and {len(problems) - 10} more" if len(problems) > 10 else "")
        raise CCMError(f"rejected CSV {p['rejected_csv']}: {len(problems)} row(s) match no frame the ingest "
                       f"samples, so they would reject nothing (fix or remove them): {shown}")
    return rejected_keys(rows)


def build_ccm_dataset(root: str | Path, out_dir: str | Path, params: dict[str, Any] | None,
                      seed: int = 0) -> dict[str, Any]:
    """Build C-CCM from a CCM folder into the dataset folder ``out_dir``; returns the report.

    Everything that can be checked before decoding (layout, annotations,
    rejected CSV, box source and weights) is checked first. Videos are
    processed one (recording, view) at a time; crops are spooled to disk next
    to ``out_dir`` and the dataset is written atomically at the end, so an
    error leaves neither ``out_dir`` nor a half-written folder.
    """
    root, out_dir = Path(root), Path(out_dir)
    p = resolve_params(params)
    check_layout(root, p)
    ann_path = root / p["annotations"]
    records, parse_report = parse_annotations(ann_path, p)
    rejected = _rejected(p, records, root, seed)
    source = _open_box_source(p, root, seed)
    spool_dir = out_dir.parent / f".{out_dir.name}.spool-{uuid.uuid4().hex[:8]}"
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    spool = _Spool(spool_dir, int(p["crop"]["size"]))
    try:
        run = _Ingest(root, p, seed, source=source, rejected=rejected, spool=spool)
        jobs = [(rec, view) for rec in records for view in p["views"]]
        for rec, view in tqdm(jobs, desc="ccm ingest", unit="video", mininterval=5.0):
            run.job(rec, view)
        report = run.report(parse_report)
        if spool.count == 0:
            raise CCMError(f"no crops from {root}: skipped {report['skipped']}; first skips "
                           f"{ {k: v[:5] for k, v in run.skips.items()} }")
        images, masks = spool.finish()
        manifest = pd.DataFrame(run.rows)
        manifest.insert(0, "index", np.arange(len(manifest), dtype=np.int64))
        manifest["hand"] = manifest["hand"].astype("boolean")
        meta = _jsonable({
            "name": p["name"], "classes": p["classes"], "source": "CCM", "seed": seed,
            "provenance": {"root": str(root.resolve()), "annotations_sha256": file_sha256(ann_path),
                           "params": p, "report": report},
        })
        json.dumps(meta)  # fail here, not half-way through write_dataset
        write_dataset(out_dir, images, manifest, meta, masks)
    finally:
        spool.close()
        shutil.rmtree(spool_dir, ignore_errors=True)
    return _jsonable(report)
