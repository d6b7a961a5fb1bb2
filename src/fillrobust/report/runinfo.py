"""What the report says about the run itself: deviations, wall time, convergence, provenance.

Each function reads one kind of record the pipeline leaves (the params used,
the paper profile, Snakemake's ``benchmark:`` files, the checkpoints' JSON
sidecars) and returns a DataFrame or a dict for the report to render.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fillrobust.config import deep_merge
from fillrobust.data.atomic import read_json_object
from fillrobust.io.provenance import cpu_model, git_revision, library_versions

# Keys that say where inputs live or how the machine is used, not how the
# method differs from the paper: listed apart from the method's deviations.
SETUP_PREFIXES = ("data.ccm", "source.imports", "threads", "device", "evaluate.corruptions.workers")

# The kind of each deviation, by the first regex its dotted key matches:
# what a reader checks first (image size, data, epochs, grids, subsets).
KINDS = (
    ("image size", r"^data\.crop\.size$"),
    ("data", r"^(data\.source|source\.kind|data\.synth|source\.synth|splits)\b"),
    ("epochs", r"epochs$"),
    ("grid", r"(\.values|\.splits|^source\.eps|^train\.seeds|^margins\.bases)$"),
    ("subset size", r"(^|\.)(n_)?images$"),
    ("optimiser", r"\.(lr|batch_size|momentum|weight_decay)$"),
    ("attack", r"(adversarial|eps_scale|threats)"),
)


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as ``{dotted.key: leaf}`` (an empty dict is a leaf)."""
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _kind(key: str) -> str:
    if key.startswith(SETUP_PREFIXES):
        return "inputs / machine"
    for kind, pattern in KINDS:
        if re.search(pattern, key):
            return kind
    return "other"


def deviations(config: dict[str, Any], paper_profile: str | Path) -> pd.DataFrame:
    """Every parameter where this run differs from the paper profile.

    The paper settings are this run's params with ``paper_profile`` (e.g.
    params/paper.yaml, the full-scale overrides) merged over them, exactly as
    ``--configfile params/paper.yaml`` would; a run of the paper profile has
    no rows. Columns: kind, key, this run, paper ("" where the key is absent).
    """
    profile = yaml.safe_load(Path(paper_profile).read_text()) or {}
    if not isinstance(profile, dict):
        raise ValueError(f"{paper_profile}: expected a mapping of parameter overrides")
    ours, paper = flatten(config), flatten(deep_merge(config, profile))
    rows = [{"kind": _kind(k), "key": k, "this run": _show(ours.get(k)), "paper": _show(paper.get(k))}
            for k in sorted(set(ours) | set(paper)) if ours.get(k) != paper.get(k)]
    order = [k for k, _ in KINDS] + ["other", "inputs / machine"]
    frame = pd.DataFrame(rows, columns=["kind", "key", "this run", "paper"])
    return frame.sort_values("kind", key=lambda c: c.map(order.index), kind="stable").reset_index(drop=True)


def _show(value: Any) -> str:
    return "" if value is None else json.dumps(value) if isinstance(value, (list, dict, bool)) else str(value)


def params_hash(config: dict[str, Any]) -> str:
    """sha256 (16 hex) of the params as canonical JSON: two runs with the same
    hash ran with the same parameters."""
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def wall_times(bench_dir: str | Path) -> pd.DataFrame:
    """Per rule family (``logs/bench/<family>/...``): jobs, summed and longest
    wall time (s), summed CPU time (s), peak RSS (MB); a total row last."""
    rows = []
    for path in sorted(Path(bench_dir).rglob("*.tsv")):
        bench = pd.read_csv(path, sep="\t")
        family = path.relative_to(bench_dir).parts[0] if len(path.relative_to(bench_dir).parts) > 1 else "other"
        rows.append({"family": family, "s": float(bench["s"].max()),
                     "cpu_time": float(pd.to_numeric(bench.get("cpu_time"), errors="coerce").max()),
                     "max_rss": float(pd.to_numeric(bench.get("max_rss"), errors="coerce").max())})
    jobs = pd.DataFrame(rows, columns=["family", "s", "cpu_time", "max_rss"])
    table = jobs.groupby("family", sort=True).agg(jobs=("s", "size"), wall_s=("s", "sum"),
                                                   longest_s=("s", "max"), cpu_s=("cpu_time", "sum"),
                                                   peak_rss_mb=("max_rss", "max")).reset_index()
    total = {"family": "total", "jobs": len(jobs), "wall_s": jobs["s"].sum(), "longest_s": jobs["s"].max(),
             "cpu_s": jobs["cpu_time"].sum(), "peak_rss_mb": jobs["max_rss"].max()}
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True).round(1)


def convergence(models_dir: str | Path) -> pd.DataFrame:
    """One row per trained model (``models/**/model.json``): split, model,
    seed, final train accuracy and its threshold (``converged_min_acc``), both in %, and
    whether it converged."""
    rows = []
    for path in sorted(Path(models_dir).rglob("model.json")):
        meta = read_json_object(path, "checkpoint sidecar")
        if "final_train_accuracy" not in meta and "converged" not in meta:
            continue  # imported or selection records: nothing was trained here
        rel = path.parent.relative_to(models_dir).parts
        acc, floor = meta.get("final_train_accuracy"), meta.get("converged_min_acc")
        rows.append({"model": "/".join(rel), "strategy": meta.get("strategy", ""),  # both in %, side by side
                     "train_accuracy": None if acc is None else round(100 * float(acc), 2),
                     "threshold": None if floor is None else round(100 * float(floor), 2),
                     "converged": meta.get("converged"),
                     "git_revision": meta.get("git_revision", ""),
                     "cpu": meta.get("machine", {}).get("cpu", "")})
    return pd.DataFrame(rows, columns=["model", "strategy", "train_accuracy", "threshold", "converged",
                                       "git_revision", "cpu"])


def _memory_gb() -> str:
    try:
        kb = int(Path("/proc/meminfo").read_text().split("MemTotal:", 1)[1].split()[0])
        return f"{kb / 1024 ** 2:.1f} GiB"
    except (OSError, IndexError, ValueError):
        return "unknown"


def _gpus() -> str:
    """GPU names from nvidia-smi (no torch import: the report stays fast)."""
    if not shutil.which("nvidia-smi"):
        return "none found (no nvidia-smi)"
    proc = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20, check=False)
    return proc.stdout.strip().replace("\n", "; ") or "none"


def hardware() -> dict[str, str]:
    """The machine that built the report (the pipeline's jobs ran on it unless
    they ran on a cluster: see the models' sidecars)."""
    return {"platform": platform.platform(), "cpu": cpu_model(), "cores": str(os.cpu_count()),
            "memory": _memory_gb(), "gpu": _gpus()}


def provenance(config: dict[str, Any]) -> dict[str, str]:
    """Git revision, params hash and library versions."""
    return {"git revision": git_revision(), "params hash": params_hash(config),
            **{f"{name}": version for name, version in library_versions().items()}}
