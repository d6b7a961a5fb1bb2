"""Clean evaluations reported under another name, without a new evaluation.

A study strategy can be a model trained under another id (``ST-FT`` is the
sweep member ``ST-FT_L1``; ``AT-FT`` is adopted from the selected
``AT-FT_eps{e}``). Its clean evaluation is the member's, relabelled: the
predictions are copied byte for byte and the summary's labels rewritten.
Kept free of torch and pandas: Snakemake runs it in its own process.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from fillrobust.data.atomic import atomic_write, read_json_object, write_json

FILES = ("predictions.parquet", "summary.json")


def relabel_clean(src_dir: str | Path, out_dir: str | Path, strategy: str, model: str | None = None,
                  log: str | Path | None = None) -> dict:
    """Copy the clean evaluation in ``src_dir`` to ``out_dir`` labelled ``strategy``.

    ``model`` (default: unchanged) rewrites the summary's model id, e.g. for an
    adopted checkpoint whose sidecar now carries the study strategy's name;
    ``log``: a file that records what was copied.
    """
    src, out = Path(src_dir), Path(out_dir)
    missing = [name for name in FILES if not (src / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{src}: clean evaluation lacks {missing}")
    summary = read_json_object(src / "summary.json", "evaluation summary")
    summary["strategy"] = strategy
    if model is not None:
        summary["model"] = model
    atomic_write(out / "predictions.parquet", lambda tmp: shutil.copyfile(src / "predictions.parquet", tmp))
    write_json(out / "summary.json", summary)
    if log:
        Path(log).write_text(f"{src} -> {out}: strategy {strategy}, model {summary.get('model')}\n")
    return summary
