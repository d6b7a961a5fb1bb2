"""A tiny CORSMAL Containers Manipulation (CCM) layout for tests and workflow checks.

``make_ccm_fixture`` writes ``view{v}/rgb/{id:06d}.mp4`` (H.264, PyAV), the
annotation CSV with the CCM columns, and optionally ``annotations/boxes.csv``
with one container box per (video, view, frame) so the "annotation" box source
can be exercised. Frames show a coloured trapezoid (the container, with a
lighter band for its content) on a plain or striped background, moving a
little; in scenarios 2 and 3 a skin-coloured ellipse (the hand) overlaps it.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import av
import numpy as np

ANNOTATION_COLUMNS = [
    "id", "container id", "scenario", "background", "illumination", "width at the top",
    "width at the bottom", "height", "depth", "container capacity", "container mass",
    "filling type", "filling level", "filling density", "filling mass", "object mass",
    "handover starting frame", "action",
]
BOX_COLUMNS = ["source_video", "view", "frame", "x0", "y0", "x1", "y1"]
FPS = 30

# Body colours per container id (1-6 are the cups/glasses of the default map, 7 a box).
_COLOURS = {1: (200, 30, 40), 2: (235, 235, 225), 3: (200, 215, 225), 4: (60, 170, 80),
            5: (215, 225, 230), 6: (225, 230, 235), 7: (150, 110, 60)}
_OPAQUE = {1, 2, 7}  # content hidden, as for the red and small white cups
_FILL = {0: None, 1: (235, 185, 80), 2: (245, 240, 220), 3: (140, 190, 240)}


@dataclass
class CCMFixture:
    """Where the fixture lives and what it holds."""

    root: Path
    annotations: Path
    boxes: Path | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    views: tuple[int, ...] = (1, 2)
    frames: int = 24


def video_path(root: str | Path, view: int, video_id: int) -> Path:
    """Path of the RGB video of ``video_id`` seen from ``view`` in a CCM layout."""
    return Path(root) / f"view{view}" / "rgb" / f"{video_id:06d}.mp4"


def _background(rng: np.random.Generator, kind: int, w: int, h: int) -> np.ndarray:
    base = rng.integers(60, 120, size=3)
    img = np.broadcast_to(base, (h, w, 3)).astype(np.int16).copy()
    if kind % 2:  # striped ("textured") background
        img[:, (np.arange(w) // 6) % 2 == 1] += 50
    return img


def _render(row: dict[str, Any], view: int, t: int, w: int, h: int, seed: int) -> tuple[np.ndarray, list[float]]:
    """One frame and the container box (x0, y0, x1, y1) in pixels."""
    rng = np.random.default_rng([seed, row["id"], view])
    img = _background(rng, row["background"], w, h)
    if row["illumination"]:
        img = img * 3 // 4
    cw, ch = int(w * 0.22), int(h * 0.5)
    cx = int(w * (0.35 + 0.12 * view) + 3 * np.sin(t / 4.0))
    bottom = int(h * 0.85)
    top = bottom - ch
    yy, xx = np.mgrid[0:h, 0:w]
    frac = (yy - top) / ch  # 0 at the rim, 1 at the base
    half = cw / 2 * (1.0 - 0.3 * frac)
    body = (yy >= top) & (yy < bottom) & (np.abs(xx - cx) <= half)
    img[body] = _COLOURS.get(row["container id"], (180, 180, 180))
    fill = _FILL.get(row["filling type"])
    level = {0: 0.0, 1: 0.5, 2: 0.9}[row["filling level"]]
    if fill is not None and level > 0 and row["container id"] not in _OPAQUE:
        img[body & (frac >= 1.0 - level)] = fill
    if row["scenario"] in (2, 3) and t % 3 != 0:  # a hand over the container
        hand = ((xx - cx - cw / 3) / (cw / 2.5)) ** 2 + ((yy - top - ch / 2) / (ch / 4)) ** 2 <= 1
        img[hand] = (225, 180, 150)
    ys, xs = np.nonzero(body)
    box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)]
    return np.clip(img, 0, 255).astype(np.uint8), box


def write_video(path: Path, frames: np.ndarray, fps: int = FPS, gop: int = 8) -> None:
    """Encode N x H x W x 3 uint8 frames as H.264 mp4; a short GOP makes seeks matter."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height = frames.shape[2], frames.shape[1]
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(gop), "crf": "12", "threads": "1"}
        for arr in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(arr, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def _rows(n_videos: int, frames: int, rng: np.random.Generator) -> list[dict[str, Any]]:
    rows = []
    for i in range(n_videos):
        container = 1 + i % 6
        ftype = int(rng.integers(0, 4))
        level = 0 if ftype == 0 else int(rng.integers(1, 3))
        rows.append({
            "id": i, "container id": container, "scenario": 1 + i % 3, "background": i % 2,
            "illumination": (i // 2) % 2, "width at the top": 80.0, "width at the bottom": 60.0,
            "height": 90.0, "depth": -1, "container capacity": 300.0, "container mass": 20.0,
            "filling type": ftype, "filling level": level, "filling density": 1.0,
            "filling mass": 0.0, "object mass": 20.0,
            "handover starting frame": int(frames * 2 // 3), "action": 0,
        })
    return rows


def make_ccm_fixture(
    root: str | Path,
    n_videos: int = 4,
    frames: int = 24,
    size: tuple[int, int] = (96, 64),
    seed: int = 0,
    views: tuple[int, ...] = (1, 2),
    boxes_csv: bool = True,
    gop: int = 8,
) -> CCMFixture:
    """Write a tiny CCM layout under ``root`` and describe it.

    Container ids cycle through 1..6, scenarios 1..3, backgrounds 0/1; the
    handover starts at two thirds of each video. ``size`` is (W, H); ``gop`` the
    keyframe interval of the H.264 streams.
    """
    root = Path(root)
    w, h = size
    rng = np.random.default_rng(seed)
    rows = _rows(n_videos, frames, rng)
    boxes: list[list[Any]] = []
    for row in rows:
        for view in views:
            rendered = [_render(row, view, t, w, h, seed) for t in range(frames)]
            write_video(video_path(root, view, row["id"]), np.stack([r[0] for r in rendered]),
                        gop=gop)
            rel = video_path(".", view, row["id"]).as_posix().removeprefix("./")
            boxes += [[rel, view, t, *r[1]] for t, r in enumerate(rendered)]
    ann_dir = root / "annotations"
    ann_dir.mkdir(parents=True, exist_ok=True)
    annotations = ann_dir / "ccm_train_annotation.csv"
    with open(annotations, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=ANNOTATION_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    box_path = None
    if boxes_csv:
        box_path = ann_dir / "boxes.csv"
        with open(box_path, "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(BOX_COLUMNS)
            writer.writerows(boxes)
    return CCMFixture(root, annotations, box_path, rows, tuple(views), frames)
