"""Box sources for C-CCM: Mask R-CNN detections or per-frame annotation boxes.

A box source is a callable ``(frames, keys) -> BoxResult`` where ``frames``
is N x H x W x 3 uint8 and ``keys`` the N stable frame keys
``(source_video, frame, view)``. ``BoxResult.keep`` marks frames with a box;
the others are reported as skipped by the caller, never a crash.

- ``maskrcnn``: torchvision's Mask R-CNN (ResNet-50 FPN), built without any
  download and loaded from a local state dict pinned by sha256. Per frame it
  keeps the single highest-scoring detection whose COCO class is allowed
  (cup 47, wine glass 46, bottle 44 by default) and whose score reaches the
  threshold: each CCM frame shows one container, so the best-scoring
  container-like object is it; a frame without one is skipped.
- ``annotation``: boxes from a CSV ``source_video, view, frame, x0, y0, x1,
  y1``. The real CCM has no per-frame container boxes (only per-recording
  annotations), so this source is for fixtures and hand-made box lists; for
  the real dataset use ``maskrcnn``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fillrobust.io.integrity import check_pin

FrameKey = tuple[str, int, int]  # (source_video, frame, view)
DEFAULT_COCO_CLASSES = {"cup": 47, "wine glass": 46, "bottle": 44}
BOX_COLUMNS = ["source_video", "view", "frame", "x0", "y0", "x1", "y1"]


class DetectorError(ValueError):
    """Detector weights or box files are missing, corrupt or inconsistent."""


@dataclass
class BoxResult:
    """Per-frame boxes (N x 4, NaN where not kept), masks (N x H x W uint8 or None), scores, keep."""

    boxes: np.ndarray
    masks: np.ndarray | None
    scores: np.ndarray
    keep: np.ndarray


BoxSource = Callable[[np.ndarray, Sequence[FrameKey]], BoxResult]


def default_detector_params() -> dict[str, Any]:
    """Defaults of the ``detector`` params section (see module docstring)."""
    return {
        "weights": None, "sha256": None, "allow_random_weights": False,
        "classes": dict(DEFAULT_COCO_CLASSES), "score_threshold": 0.5, "batch_size": 4,
        "min_size": 800, "max_size": 1333, "device": "auto",
        # torchvision's test-time defaults; lower them for speed (tests, CPU).
        "rpn_pre_nms_top_n": 1000, "rpn_post_nms_top_n": 1000, "detections_per_img": 100,
    }


def resolve_device(name: str | None) -> torch.device:
    """``auto`` (or None) -> CUDA when present, else CPU."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def check_sha256(path: str | Path, expected: str | None) -> None:
    """Raise ``DetectorError`` naming the file, expected and actual hash on mismatch.

    A missing pin (None) is refused too, with the file's hash to pin.
    """
    try:
        check_pin(path, expected, "detector weights", "data.ccm.detector.sha256")
    except ValueError as err:
        raise DetectorError(str(err)) from err


def load_state_dict(path: str | Path, sha256: str | None) -> dict[str, torch.Tensor]:
    """Load a state dict from ``.safetensors`` or a ``.pth`` (``weights_only=True``) after the hash check."""
    path = Path(path)
    check_sha256(path, sha256)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):  # tolerate {'model': state_dict} wrappers
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise DetectorError(f"detector weights {path}: expected a state dict, got {type(state).__name__}")
    return state


def build_maskrcnn(params: dict[str, Any], seed: int = 0) -> torch.nn.Module:
    """Mask R-CNN ResNet-50 FPN (91 COCO classes), weights from ``params['weights']``, in eval mode.

    ``params`` is the detector section; missing keys take ``default_detector_params``.

    Without weights the model keeps its seeded random init, which is only
    allowed with ``allow_random_weights`` (tests exercise the code path so).
    """
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    params = {**default_detector_params(), **params}
    state = None  # weights are checked before the (slow) model construction
    if params.get("weights"):
        state = load_state_dict(params["weights"], params["sha256"])
    elif not params.get("allow_random_weights"):
        raise DetectorError("detector.weights is not set: give a local Mask R-CNN state dict and its "
                            "sha256 (random weights only with detector.allow_random_weights)")
    with torch.random.fork_rng(devices=[]):  # seeded init without touching the global RNG
        torch.manual_seed(seed)
        model = maskrcnn_resnet50_fpn(
            weights=None, weights_backbone=None, num_classes=91,
            box_score_thresh=float(params["score_threshold"]),
            min_size=int(params["min_size"]), max_size=int(params["max_size"]),
            rpn_pre_nms_top_n_test=int(params["rpn_pre_nms_top_n"]),
            rpn_post_nms_top_n_test=int(params["rpn_post_nms_top_n"]),
            box_detections_per_img=int(params["detections_per_img"]),
        )
    if state is not None:
        result = model.load_state_dict(state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise DetectorError(
                f"detector weights {params['weights']}: not a maskrcnn_resnet50_fpn state dict "
                f"(missing {result.missing_keys[:5]}, unexpected {result.unexpected_keys[:5]})")
    return model.eval().to(resolve_device(params.get("device")))


def select_detections(
    outputs: Sequence[dict[str, torch.Tensor]],
    allowed: Sequence[int],
    threshold: float,
    frame_shape: tuple[int, int],
) -> BoxResult:
    """Pick per frame the highest-scoring detection of an allowed class with score >= threshold."""
    n, (h, w) = len(outputs), frame_shape
    boxes = np.full((n, 4), np.nan, dtype=np.float32)
    scores = np.full(n, np.nan, dtype=np.float32)
    keep = np.zeros(n, dtype=bool)
    masks = np.zeros((n, h, w), dtype=np.uint8)
    allowed_t = torch.as_tensor(list(allowed), dtype=torch.int64)
    for i, out in enumerate(outputs):  # at most 100 detections per frame: cheap
        labels, sc = out["labels"].cpu(), out["scores"].cpu()
        ok = torch.isin(labels, allowed_t) & (sc >= threshold)
        if not bool(ok.any()):
            continue
        best = int(torch.where(ok, sc, torch.full_like(sc, -1.0)).argmax())
        box = out["boxes"][best].cpu().numpy()
        if not (box[2] > box[0] and box[3] > box[1]):
            continue  # degenerate box: nothing to crop
        boxes[i], scores[i], keep[i] = box, float(sc[best]), True
        if "masks" in out:
            masks[i] = (out["masks"][best, 0] > 0.5).cpu().numpy().astype(np.uint8)
    return BoxResult(boxes, masks, scores, keep)


class MaskRCNNBoxSource:
    """Batched Mask R-CNN inference on the device, then ``select_detections``."""

    def __init__(self, params: dict[str, Any], seed: int = 0) -> None:
        self.params = {**default_detector_params(), **params}
        self.model = build_maskrcnn(self.params, seed)
        self.device = next(self.model.parameters()).device
        self.allowed = [int(v) for v in self.params["classes"].values()]

    @torch.inference_mode()
    def __call__(self, frames: np.ndarray, keys: Sequence[FrameKey]) -> BoxResult:
        """Detect the container in each of ``frames`` (N x H x W x 3 uint8)."""
        outputs: list[dict[str, torch.Tensor]] = []
        step = max(int(self.params["batch_size"]), 1)
        for start in range(0, len(frames), step):
            batch = torch.from_numpy(np.ascontiguousarray(frames[start : start + step])).to(self.device)
            images = list(batch.permute(0, 3, 1, 2).float().div_(255.0))
            outputs += [{k: v.cpu() for k, v in o.items()} for o in self.model(images)]
        return select_detections(outputs, self.allowed, float(self.params["score_threshold"]),
                                 frames.shape[1:3])


class AnnotationBoxSource:
    """Boxes looked up by frame key in a CSV ``source_video, view, frame, x0, y0, x1, y1``."""

    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        if not path.is_file():
            raise DetectorError(f"boxes CSV {path} does not exist (the real CCM has no per-frame "
                                "boxes: use box_source 'maskrcnn')")
        table = pd.read_csv(path)
        missing = [c for c in BOX_COLUMNS if c not in table.columns]
        if missing:
            raise DetectorError(f"boxes CSV {path}: missing columns {missing}; expected {BOX_COLUMNS}")
        coords = table[["x0", "y0", "x1", "y1"]].to_numpy(dtype=np.float32)
        bad = ~((coords[:, 2] > coords[:, 0]) & (coords[:, 3] > coords[:, 1]))
        if bad.any():
            raise DetectorError(f"boxes CSV {path}: row {int(np.flatnonzero(bad)[0]) + 2} needs x1 > x0 "
                                "and y1 > y0")
        self.lookup = {(str(s), int(f), int(v)): c for s, v, f, c in
                       zip(table["source_video"], table["view"], table["frame"], coords, strict=True)}

    def __call__(self, frames: np.ndarray, keys: Sequence[FrameKey]) -> BoxResult:
        """Boxes of ``keys``; frames without a row are not kept."""
        n = len(keys)
        boxes = np.full((n, 4), np.nan, dtype=np.float32)
        for i, key in enumerate(keys):
            if key in self.lookup:
                boxes[i] = self.lookup[key]
        keep = ~np.isnan(boxes[:, 0])
        return BoxResult(boxes, None, np.where(keep, 1.0, np.nan).astype(np.float32), keep)


def box_source(name: str, params: dict[str, Any], seed: int = 0) -> BoxSource:
    """Build the box source ``name``: ``"maskrcnn"`` (params = detector section) or
    ``"annotation"`` (params must hold ``boxes_csv``)."""
    if name == "maskrcnn":
        return MaskRCNNBoxSource(params, seed)
    if name == "annotation":
        if not params.get("boxes_csv"):
            raise DetectorError("box_source 'annotation' needs boxes_csv; the real CCM has no per-frame "
                                "boxes, use 'maskrcnn'")
        return AnnotationBoxSource(params["boxes_csv"])
    raise DetectorError(f"unknown box_source {name!r}; expected 'annotation' or 'maskrcnn'")
