"""Crop containers out of full frames given their boxes (C-CCM construction).

The box source is pluggable: SynthCCM and the CCM annotations give boxes
directly; a detector (Mask R-CNN) can give them too. Cropping only needs the
frames and an N x 4 array of boxes ``(x0, y0, x1, y1)`` in pixels.
"""

from __future__ import annotations

import numpy as np
from PIL import Image


def square_box(box: np.ndarray, margin: float) -> tuple[int, int, int, int]:
    """Square box around ``box`` enlarged by ``margin`` (fraction of its side).

    The square may extend past the frame; the crop pads those parts with
    edge pixels so the container keeps its aspect ratio.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"box must have x1 > x0 and y1 > y0, got {box.tolist()}")
    side = max(x1 - x0, y1 - y0) * (1.0 + 2.0 * margin)
    cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
    left, top = int(round(cx - side / 2.0)), int(round(cy - side / 2.0))
    side_px = max(int(round(side)), 1)
    return left, top, left + side_px, top + side_px


def _padded_window(frame: np.ndarray, window: tuple[int, int, int, int]) -> np.ndarray:
    """The window of ``frame``, edge-padded where it leaves the frame.

    Edge padding is index clamping, so only the window is gathered, never a
    padded copy of the whole frame.
    """
    left, top, right, bottom = window
    rows = np.clip(np.arange(top, bottom), 0, frame.shape[0] - 1)
    cols = np.clip(np.arange(left, right), 0, frame.shape[1] - 1)
    if rows[0] == top and rows[-1] == bottom - 1 and cols[0] == left and cols[-1] == right - 1:
        return frame[top:bottom, left:right]  # inside the frame: a view, no copy
    return frame[np.ix_(rows, cols)]


def crop_one(
    frame: np.ndarray, box: np.ndarray, size: int, margin: float, mask: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop one frame around ``box`` and resize it to ``size`` x ``size``."""
    window = square_box(box, margin)
    patch = Image.fromarray(_padded_window(frame, window))
    # reducing_gap: shrink by an integer factor first when the window is >= 3x the
    # target (real 720p frames), nearly identical to a full resample and much faster.
    crop = np.asarray(patch.resize((size, size), Image.Resampling.BILINEAR, reducing_gap=3.0))
    crop_mask = None
    if mask is not None:
        mpatch = Image.fromarray(_padded_window(mask, window))
        crop_mask = np.asarray(mpatch.resize((size, size), Image.Resampling.NEAREST))
    return crop, crop_mask


def crop_batch(
    frames: np.ndarray,
    boxes: np.ndarray,
    size: int,
    margin: float,
    masks: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crop every frame around its box; returns uint8 crops (and masks).

    ``frames`` is N x H x W x 3 uint8, ``boxes`` N x 4 ``(x0, y0, x1, y1)``,
    ``masks`` optional N x H x W. Resampling is PIL bilinear with antialiasing,
    which is deterministic.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"frames must be N x H x W x 3, got {frames.shape}")
    if boxes.shape != (frames.shape[0], 4):
        raise ValueError(f"boxes must be N x 4 = ({frames.shape[0]}, 4), got {boxes.shape}")
    crops = np.empty((len(frames), size, size, 3), dtype=np.uint8)
    crop_masks = None if masks is None else np.empty((len(frames), size, size), dtype=np.uint8)
    for i in range(len(frames)):
        crops[i], m = crop_one(frames[i], boxes[i], size, margin, None if masks is None else masks[i])
        if crop_masks is not None:
            crop_masks[i] = m
    return crops, crop_masks


def build_cropped_dataset(frames_dir: str, out_dir: str, params: dict, chunk: int = 256) -> None:
    """Frames dataset (with ``box`` per row) -> C-CCM dataset of square crops.

    Reads the frames memory-mapped, crops chunk by chunk into a memory-mapped
    output, and keeps masks when the frames have them. Box source:
    ``annotation`` (the manifest's ``box`` column).
    """
    from fillrobust.data.store import dataset_writer, read_dataset

    if params["box_source"] != "annotation":
        raise ValueError(f"data.crop.box_source: {params['box_source']!r} is not available; "
                         "expected 'annotation'")
    frames = read_dataset(frames_dir)
    if "box" not in frames.manifest.columns:
        raise ValueError(f"{frames_dir}: manifest has no 'box' column to crop by")
    boxes = np.stack(frames.manifest["box"].to_numpy()).astype(np.float64)
    size, n = params["size"], len(frames)
    with dataset_writer(out_dir, n, size, size, with_masks=frames.masks is not None) as (
        images, masks, commit,
    ):
        for start in range(0, n, chunk):
            sl = slice(start, min(start + chunk, n))
            crops, cmasks = crop_batch(np.asarray(frames.images[sl]), boxes[sl], size, params["margin"],
                                       None if frames.masks is None else np.asarray(frames.masks[sl]))
            images[sl] = crops
            if masks is not None:
                masks[sl] = cmasks
        manifest = frames.manifest.copy()
        # Stable keys of each crop (as for real CCM: video, frame, view), so a
        # rejected-crops CSV stays valid when the dataset is rebuilt.
        for column, value in (("source_video", frames.meta["name"]), ("frame", manifest["index"]), ("view", 1)):
            if column not in manifest.columns:
                manifest[column] = value
        meta = {"name": "c-ccm", "classes": frames.meta["classes"], "kind": "crops",
                "provenance": {"frames": frames.meta.get("content_hash"), "crop": params}}
        commit(manifest, meta)
