"""Start-up cost per rule family: the wall time a job spends before useful work.

A job is ``python -m fillrobust <command>``: interpreter start, imports of the
command's modules, then (for model jobs) building the model and loading its
checkpoint. Each family's start-up is timed here as a fresh process that
imports what the command imports (best of a few runs); the references are
measured in the same run: a bare interpreter, and the same imports plus
torchvision, which every model job imported before models/resnet.py stopped
using it. The share of a job's wall time needs real job times: those come from
the ``benchmark:`` files of the last pipeline run (``logs/bench``, or the
folder given as the first argument), when present.

The clean evaluation used to be its own job (~10 s each on the 2-core
machine); it now runs inside the training job. The last lines compare the
in-process evaluation of a model with what a separate job adds before it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
REPS = 3

# family -> modules its command imports (cli.py's cmd_* functions); the
# benchmark-file folder under logs/bench and a name filter select its jobs.
# Model jobs also build a model and load a checkpoint; training jobs create an
# optimizer, which imports torch._dynamo whatever the model code imports.
FAMILIES = {
    "train": (["fillrobust.train.run"], "train", ""),
    "threats": (["fillrobust.evaluate.robustness"], "evaluate", "threats"),
    "corruptions": (["fillrobust.evaluate.robustness"], "evaluate", "corruptions"),
    "source": (["fillrobust.train.run"], "source", ""),
    "frequency": (["fillrobust.evaluate.frequency_study"], "frequency", ""),
    "data": (["fillrobust.data.synthetic", "fillrobust.data.crop"], "data", ""),
    "tables": (["fillrobust.report.tables", "fillrobust.report.figures"], "tables", ""),
}
TORCH_FAMILIES = {"train", "threats", "corruptions", "source", "frequency"}
TRAINING_FAMILIES = {"train", "source", "frequency"}
LOAD = ("from fillrobust.models.resnet import build_model; import torch, io; "
        "m = build_model('resnet18', 4); b = io.BytesIO(); torch.save(m.state_dict(), b); b.seek(0); "
        "m.load_state_dict(torch.load(b))")
OPTIMIZER = "; torch.optim.SGD(m.parameters(), lr=0.1)"


def spawn_seconds(code: str) -> float:
    """Best-of-``REPS`` wall time of a fresh interpreter running ``code``."""
    best = float("inf")
    for _ in range(REPS):
        tic = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
        best = min(best, time.perf_counter() - tic)
    return best


def job_seconds(bench_dir: Path, folder: str, name: str) -> tuple[float, int]:
    """Mean wall time (s) and count of the finished jobs of a family."""
    files = [p for p in (bench_dir / folder).rglob("*.tsv") if name in p.stem] if bench_dir.is_dir() else []
    if not files:
        return float("nan"), 0
    seconds = [pd.read_csv(p, sep="\t")["s"].iloc[-1] for p in files]
    return float(sum(seconds) / len(seconds)), len(seconds)


def clean_eval_in_process(n: int = 1500, side: int = 32) -> float:
    """Seconds of the clean evaluation's compute (model in memory, ``n`` images)."""
    import numpy as np
    import torch

    from fillrobust.evaluate.clean import FUSED_BATCH_SIZE, predict
    from fillrobust.models.resnet import build_model

    torch.set_num_threads(2)
    images = np.random.default_rng(0).integers(0, 256, (n, side, side, 3), dtype=np.uint8)
    model = build_model("resnet18", 4).eval()
    predict(model, images, np.arange(64), torch.device("cpu"), FUSED_BATCH_SIZE)  # warm-up
    tic = time.perf_counter()
    predict(model, images, np.arange(n), torch.device("cpu"), FUSED_BATCH_SIZE)
    return time.perf_counter() - tic


def job_start_seconds(env: dict[str, str]) -> float:
    """Best-of-``REPS`` wall time of ``python -m fillrobust evaluate-corruptions`` on a missing
    folder: the command's imports, then an error at its first file access (exit code 2)."""
    cmd = [sys.executable, "-m", "fillrobust", "evaluate-corruptions", "--corrupted", "/nonexistent",
           "--checkpoint", "x", "--strategy", "ST", "--params", "{}", "--device", "cpu", "--threads", "1",
           "--out", "/nonexistent/out"]
    best = float("inf")
    for _ in range(REPS):
        tic = time.perf_counter()
        subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True)
        best = min(best, time.perf_counter() - tic)
    return best


def forkserver_start() -> tuple[float, float]:
    """A job's start as its own process and through a (private) fork server."""
    import os
    import socket
    import uuid

    name = f"fillrobust-bench-{uuid.uuid4().hex}"
    env = dict(os.environ, FILLROBUST_FORKSERVER_ADDRESS=name)
    server = subprocess.Popen([sys.executable, "-m", "fillrobust.forkserver", name], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        while True:  # the server imports for a few seconds before it listens
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                if probe.connect_ex("\0" + name) == 0:
                    break
            time.sleep(0.1)
        return job_start_seconds(dict(os.environ, FILLROBUST_FORKSERVER="0")), job_start_seconds(env)
    finally:
        server.kill()
        server.wait()


def main(bench_dir: str | None = None) -> None:
    bench = Path(bench_dir) if bench_dir else ROOT / "logs" / "bench"
    bare = spawn_seconds("pass")
    print(f"bare interpreter: {bare:.2f} s; job times from {bench}"
          f"{'' if bench.is_dir() else ' (absent: shares not computed)'}")
    print(f"{'family':<12} {'start-up s':>10} {'+torchvision s':>14} {'jobs':>5} {'mean job s':>10} "
          f"{'share now':>9} {'share before':>12}")
    for family, (modules, folder, name) in FAMILIES.items():
        code = "; ".join(f"import {m}" for m in modules)
        if family in TORCH_FAMILIES:
            code += "; " + LOAD + (OPTIMIZER if family in TRAINING_FAMILIES else "")
        now = spawn_seconds(code)
        before = spawn_seconds("import torchvision; " + code) if family in TORCH_FAMILIES else now
        mean, count = job_seconds(bench, folder, name)
        share = f"{100 * now / mean:8.1f}%" if count else f"{'-':>9}"
        old = f"{100 * before / (mean + before - now):11.1f}%" if count else f"{'-':>12}"
        print(f"{family:<12} {now:10.2f} {before:14.2f} {count:5d} {mean:10.1f} {share} {old}")
    plain, served = forkserver_start()
    jobs = sum(1 for _ in bench.rglob("*.tsv")) if bench.is_dir() else 0
    print(f"a job's start (interpreter, imports, command): {plain:.2f} s as its own process, {served:.2f} s "
          f"through the fork server ({plain / served:.0f}x less); over the {jobs} jobs of the last run "
          f"that is {jobs * (plain - served) / 60:.1f} job-minutes saved")
    startup = spawn_seconds("import torchvision; import fillrobust.evaluate.clean; " + LOAD)  # as before
    compute = clean_eval_in_process()
    print(f"clean evaluation of 1,500 32-px images: {compute:.2f} s in the training job vs "
          f"{startup + compute:.2f} s as its own job before (start-up {startup:.2f} s): "
          f"{(startup + compute) / compute:.0f}x less wall time per model")


if __name__ == "__main__":
    main(*sys.argv[1:2])
