"""Cropping: windows past the frame edge, square boxes, clear errors."""

import numpy as np
import pytest

from fillrobust.data.crop import _padded_window, crop_batch, square_box


def _reference_window(frame, window):
    """Pad the whole frame with edge values, then slice (the obvious, slow way)."""
    left, top, right, bottom = window
    h, w = frame.shape[:2]
    pad = max(0, -left, -top, right - w, bottom - h)
    frame = np.pad(frame, ((pad, pad), (pad, pad)) + ((0, 0),) * (frame.ndim - 2), mode="edge")
    return frame[top + pad : bottom + pad, left + pad : right + pad]


def test_window_equals_padded_frame_slice():
    rng = np.random.default_rng(0)
    for frame in (rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), rng.integers(0, 255, (40, 50), dtype=np.uint8)):
        for _ in range(500):
            left, top, side = int(rng.integers(-30, 60)), int(rng.integers(-30, 50)), int(rng.integers(1, 70))
            window = (left, top, left + side, top + side)
            assert np.array_equal(_padded_window(frame, window), _reference_window(frame, window))


def test_crop_batch_shapes_and_errors():
    rng = np.random.default_rng(1)
    frames = rng.integers(0, 255, (3, 60, 80, 3), dtype=np.uint8)
    masks = (frames[..., 0] > 128).astype(np.uint8)
    boxes = np.array([[10, 5, 30, 50], [0, 0, 80, 60], [70, 50, 79, 59]], dtype=float)
    crops, cmasks = crop_batch(frames, boxes, 16, 0.1, masks)
    assert crops.shape == (3, 16, 16, 3) and cmasks.shape == (3, 16, 16)
    left, top, right, bottom = square_box(boxes[0], 0.1)
    assert right - left == bottom - top == 54  # the longer side (45) enlarged by 2 x 10 %
    with pytest.raises(ValueError, match="x1 > x0"):
        crop_batch(frames[:1], np.array([[5, 5, 5, 9.0]]), 16, 0.1)
    with pytest.raises(ValueError, match="boxes must be N x 4"):
        crop_batch(frames, boxes[:2], 16, 0.1)
