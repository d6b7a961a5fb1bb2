"""Visual verification of C-CCM crops: contact sheets and the rejected-frames list.

The paper verifies every Mask R-CNN crop by eye. Here a reviewer looks at the
per-container contact sheets (each tile labelled with its dataset index),
then lists the bad crops in a rejected CSV. That CSV names frames by stable
keys ``source_video, frame, view`` rather than by dataset index: indices
change whenever ingest parameters (frames per video, skips, ...) change, the
keys do not, so the list stays valid when C-CCM is rebuilt.
``rejected_from_indices`` turns indices read off the sheets into such rows.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from fillrobust.data.store import Dataset, atomic_dir, atomic_write_text, read_dataset

REJECTED_COLUMNS = ["source_video", "frame", "view"]
RejectedKey = tuple[str, int, int]
#: a CCM video relative to the CCM root, as ``ccm.video_path`` lays it out: view{v}/rgb/{id:06d}.mp4
SOURCE_VIDEO = re.compile(r"view(?P<view>\d+)/rgb/(?P<id>\d{6})\.mp4")


class VerifyError(ValueError):
    """A rejected CSV or a dataset given for verification is malformed."""


def _tile(crop: np.ndarray, index: int, tile: int) -> Image.Image:
    img = Image.fromarray(np.asarray(crop)).resize((tile, tile), Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(img)
    text = str(index)
    left, top, right, bottom = draw.textbbox((2, 2), text)
    draw.rectangle((left - 1, top - 1, right + 1, bottom + 1), fill=(0, 0, 0))
    draw.text((2, 2), text, fill=(255, 255, 0))
    return img


def contact_sheet(crops: np.ndarray, indices: np.ndarray, columns: int = 10, tile: int = 96) -> Image.Image:
    """One PNG-ready grid of ``crops`` (N x H x W x 3), each tile labelled with its index."""
    if len(crops) != len(indices) or len(crops) == 0:
        raise VerifyError(f"contact sheet needs as many indices as crops (>0), got {len(crops)}/{len(indices)}")
    rows = -(-len(crops) // columns)
    sheet = Image.new("RGB", (columns * tile, rows * tile), (40, 40, 40))
    for k, (crop, idx) in enumerate(zip(crops, indices, strict=True)):
        sheet.paste(_tile(crop, int(idx), tile), ((k % columns) * tile, (k // columns) * tile))
    return sheet


def write_contact_sheets(
    dataset: str | Path | Dataset,
    out_dir: str | Path,
    columns: int = 10,
    per_sheet: int = 100,
    tile: int = 96,
) -> list[Path]:
    """Write ``{container}_{page:03d}.png`` sheets and ``index.csv`` into ``out_dir`` atomically.

    ``index.csv`` maps every labelled index to its stable key (source_video,
    frame, view) plus container and label, for writing the rejected CSV.
    """
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    man = ds.manifest
    missing = [c for c in ("index", "container", *REJECTED_COLUMNS) if c not in man.columns]
    if missing:
        raise VerifyError(f"{ds.path}: manifest lacks {missing} needed for contact sheets")
    names: list[str] = []
    with atomic_dir(out_dir) as tmp:
        for container, group in man.groupby("container", sort=True):
            rows = group.index.to_numpy()
            for page, start in enumerate(range(0, len(rows), per_sheet)):
                sel = rows[start : start + per_sheet]
                sheet = contact_sheet(ds.images[sel], group["index"].to_numpy()[start : start + per_sheet],
                                      columns, tile)
                name = f"{container}_{page:03d}.png".replace(" ", "_")
                # zlib level 1: 4x faster than PIL's 6 (the job's 8 s were all PNG encoding), 17 % larger
                sheet.save(tmp / name, compress_level=1)
                names.append(name)
        cols = ["index", "container", *REJECTED_COLUMNS] + (["label"] if "label" in man.columns else [])
        atomic_write_text(tmp / "index.csv", man[cols].to_csv(index=False))
    return [Path(out_dir) / n for n in names]


def load_rejected(path: str | Path, views: Sequence[int] | None = None) -> pd.DataFrame:
    """Read and validate a rejected CSV (columns source_video, frame, view).

    Extra columns (e.g. a reason) are allowed and ignored. ``source_video``
    must be a CCM video path (``view{v}/rgb/{id:06d}.mp4``) in the row's own
    view, and with ``views`` (the ingest's configured views) the view must be
    one of them: a row that breaks either could never match a frame, and the
    frame meant to be rejected would silently stay. Raises ``VerifyError``
    naming the file, the row and the problem.
    """
    path = Path(path)
    if not path.is_file():
        raise VerifyError(f"rejected CSV {path} does not exist")
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise VerifyError(f"rejected CSV {path}: unreadable ({err})") from err
    frame.columns = [c.strip() for c in frame.columns]
    missing = [c for c in REJECTED_COLUMNS if c not in frame.columns]
    if missing:
        raise VerifyError(f"rejected CSV {path}: missing columns {missing}; expected {REJECTED_COLUMNS}, "
                          f"got {list(frame.columns)}")
    out = pd.DataFrame({"source_video": frame["source_video"].str.strip()})
    for column in ("frame", "view"):
        values = pd.to_numeric(frame[column].str.strip(), errors="coerce")
        bad = values.isna() | (values < 0) | (values != values.round())
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise VerifyError(f"rejected CSV {path}: row {row + 2} column '{column}' must be a non-negative "
                              f"integer, got {frame[column].iloc[row]!r}")
        out[column] = values.astype(np.int64)
    if (out["source_video"] == "").any():
        row = int(np.flatnonzero((out["source_video"] == "").to_numpy())[0])
        raise VerifyError(f"rejected CSV {path}: row {row + 2} has an empty source_video")
    _check_rejected_keys(out, path, views)
    return out


def _check_rejected_keys(rows: pd.DataFrame, path: Path, views: Sequence[int] | None) -> None:
    """Each row's view is a configured one and its source_video a CCM path in that view."""
    for i, (video, view) in enumerate(zip(rows["source_video"], rows["view"], strict=True)):
        line = f"rejected CSV {path}: row {i + 2}"
        if views is not None and view not in views:
            raise VerifyError(f"{line} view {view} is not one of the configured views {list(views)}")
        match = SOURCE_VIDEO.fullmatch(video)
        if match is None:
            raise VerifyError(f"{line} source_video {video!r} is not a CCM video path; expected "
                              f"view{view}/rgb/<6-digit id>.mp4")
        if int(match["view"]) != view:
            raise VerifyError(f"{line} source_video {video!r} is a view{match['view']} video but the row's "
                              f"view is {view}")


def rejected_keys(frame: pd.DataFrame) -> set[RejectedKey]:
    """The set of ``(source_video, frame, view)`` keys of a loaded rejected CSV."""
    return {(str(s), int(f), int(v)) for s, f, v in frame[REJECTED_COLUMNS].itertuples(index=False)}


def rejected_from_indices(dataset: str | Path | Dataset, indices: list[int]) -> pd.DataFrame:
    """Rows for the rejected CSV from dataset indices read off the contact sheets."""
    ds = dataset if isinstance(dataset, Dataset) else read_dataset(dataset)
    man = ds.manifest.set_index("index", drop=False)
    unknown = sorted(set(indices) - set(man.index))
    if unknown:
        raise VerifyError(f"{ds.path}: indices {unknown[:10]} are not in the dataset")
    return man.loc[list(indices), REJECTED_COLUMNS].reset_index(drop=True)


def write_rejected(path: str | Path, frame: pd.DataFrame) -> None:
    """Write (or rewrite) a rejected CSV atomically, deduplicated and sorted by key."""
    missing = [c for c in REJECTED_COLUMNS if c not in frame.columns]
    if missing:
        raise VerifyError(f"rejected rows lack columns {missing}")
    out = frame[REJECTED_COLUMNS].drop_duplicates().sort_values(REJECTED_COLUMNS)
    atomic_write_text(path, out.to_csv(index=False))
