"""CCM ingest throughput: decoding the sampled frames alone vs decoding + annotation boxes + cropping.

Both are measured in the same run, on two generated CCM-layout fixtures
(2 views, 10 frames sampled per video and view, crops 224 x 224):

- the unit-test fixture: 320 x 240, keyframe every 8 frames, 8 recordings of
  60 frames, a 31-frame window; decoding such frames is nearly free, so the
  ratio mostly shows the cost of ``crop_batch`` (PIL resize, ~1 ms a crop);
- CCM-like: 1280 x 720 like the real videos, keyframe every 30 frames, 2
  recordings of 80 frames, the default window (45 before, 15 after the handover).

Goal: cropping overhead <= 1.5x.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fillrobust.data.ccm import (  # noqa: E402
    default_params,
    parse_annotations,
    read_frames,
    sample_frames,
    video_frame_count,
    video_path,
)
from fillrobust.data.crop import crop_batch  # noqa: E402
from fillrobust.data.detect import AnnotationBoxSource  # noqa: E402
from tests.unit.ccm_fixture import make_ccm_fixture  # noqa: E402

Job = tuple[Path, str, int, np.ndarray]
CONFIGS = [  # label, (W, H), gop, recordings, frames, sampling overrides
    ("unit-test fixture 320x240 gop 8", (320, 240), 8, 8, 60, {"before_handover": 20, "after_handover": 10}),
    ("CCM-like 1280x720 gop 30", (1280, 720), 30, 2, 80, {}),
]


def _jobs(root: Path, views: tuple[int, ...], sampling: dict) -> list[Job]:
    records, _ = parse_annotations(root / "annotations" / "ccm_train_annotation.csv", {})
    jobs = []
    for rec in records:
        for view in views:
            path = video_path(root, view, rec.video_id)
            idx = sample_frames(video_frame_count(path), rec.handover, sampling, np.random.default_rng(0))
            jobs.append((path, path.relative_to(root).as_posix(), view, idx))
    return jobs


def _run(jobs: list[Job], source: AnnotationBoxSource | None, size: int) -> tuple[int, float]:
    start, count = time.perf_counter(), 0
    for path, rel, view, idx in jobs:
        frames, found, err = read_frames(path, idx)
        assert err is None, err
        if source is not None:
            res = source(frames, [(rel, int(f), view) for f in found])
            crop_batch(frames, res.boxes, size, 0.1)
        count += len(found)
    return count, time.perf_counter() - start


def _measure(tmp: Path, size: tuple[int, int], gop: int, videos: int, frames: int,
             sampling: dict) -> tuple[int, float, float]:
    fx = make_ccm_fixture(tmp / f"CCM{size[0]}", n_videos=videos, frames=frames, size=size, seed=0,
                          gop=gop)
    jobs = _jobs(fx.root, fx.views, {**default_params()["sampling"], **sampling})
    source = AnnotationBoxSource(fx.boxes)
    _run(jobs[:2], source, 224)  # warm-up (codec and PIL initialisation)
    best_dec, best_crop = np.inf, np.inf
    for _ in range(3):  # interleaved repeats; keep the best of each
        n, t_dec = _run(jobs, None, 224)
        _, t_crop = _run(jobs, source, 224)
        best_dec, best_crop = min(best_dec, t_dec), min(best_crop, t_crop)
    return n, best_dec, best_crop


def main() -> None:
    """Print frames/s of decoding alone and with cropping, and their time ratio, per fixture."""
    with tempfile.TemporaryDirectory() as tmp:
        for label, size, gop, videos, frames, sampling in CONFIGS:
            n, t_dec, t_crop = _measure(Path(tmp), size, gop, videos, frames, sampling)
            print(f"ccm [{label}] decode only: {n / t_dec:7.1f} frames/s; decode + crop 224: "
                  f"{n / t_crop:7.1f} frames/s ({n} sampled frames); "
                  f"overhead ratio {t_crop / t_dec:.2f}x (goal <= 1.5x)")


if __name__ == "__main__":
    main()
