"""Overall progress of a whole reproduction: ``[k/N jobs, elapsed, ETA]``.

``python -m fillrobust.progress dvc repro`` (what ``make reproduce`` runs)
first asks Snakemake, in one dry run over the whole DAG, how many jobs are to
run (N: jobs with a ``benchmark:`` file; the aggregate target rules have none),
then runs the command and, while it runs, counts the jobs that have finished
since it started: every job of the workflow leaves a ``benchmark:`` file
under ``logs/bench`` when it ends. DVC runs one Snakemake per stage, so the
count spans the stages, which no single Snakemake sees. The ETA assumes the
remaining jobs take the mean time of the finished ones (trainings dominate
early, evaluations late: it is a rough guide). Stdlib only: it imports in
milliseconds and never loads torch.
"""

from __future__ import annotations

import re
import subprocess
import sys
import threading
import time
from pathlib import Path

BENCH_DIR = Path("logs/bench")


def planned_file_jobs(dry_run: str) -> int:
    """Jobs of a ``snakemake -n`` listing that leave a benchmark file (every job
    that writes outputs; the aggregate target rules have none)."""
    blocks = re.split(r"^(?:local)?rule \S+:$", dry_run, flags=re.MULTILINE)[1:]
    return sum(1 for block in blocks if re.search(r"^\s+benchmark: ", block, flags=re.MULTILINE))


def count_planned(targets: list[str] | None = None, snakemake: list[str] | None = None) -> int:
    """N: the benchmarked jobs a dry run of ``targets`` (default: the default target) plans."""
    cmd = (snakemake or [sys.executable, "-m", "snakemake"]) + ["-n", "--cores", "1", "--rerun-incomplete", *(targets or [])]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        # Snakemake prints its reasons (locked directory, incomplete files) on stdout
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{(proc.stdout + proc.stderr)[-2000:]}")
    return planned_file_jobs(proc.stdout)


def finished_since(start: float, bench_dir: Path = BENCH_DIR) -> int:
    """Benchmark files written at or after ``start`` (epoch seconds): jobs finished since."""
    if not bench_dir.is_dir():
        return 0
    return sum(1 for p in bench_dir.rglob("*.tsv") if p.stat().st_mtime >= start)


def clock(seconds: float) -> str:
    """``h:mm:ss`` (or ``m:ss`` under an hour)."""
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def progress_line(done: int, total: int, elapsed: float) -> str:
    """``[k/N jobs, elapsed m:ss, ETA m:ss]``; the ETA from the mean time per finished job."""
    eta = clock(elapsed / done * max(total - done, 0)) if done else "?"
    return f"[{done}/{total} jobs, elapsed {clock(elapsed)}, ETA {eta}]"


def watch(command: list[str], total: int, poll: float = 5.0, bench_dir: Path = BENCH_DIR) -> int:
    """Run ``command``; print a progress line whenever more jobs have finished."""
    start = time.time()
    stop = threading.Event()

    def report() -> None:
        shown = -1
        while not stop.wait(poll):
            done = finished_since(start, bench_dir)
            if done != shown:
                shown = done
                print(progress_line(done, total, time.time() - start), file=sys.stderr, flush=True)

    thread = threading.Thread(target=report, daemon=True)
    thread.start()
    try:
        code = subprocess.call(command)
    finally:
        stop.set()
        thread.join()
    done = finished_since(start, bench_dir)
    print(f"{progress_line(done, total, time.time() - start)} finished (exit {code})", file=sys.stderr, flush=True)
    return code


def main(argv: list[str]) -> int:
    """``python -m fillrobust.progress COMMAND...``: plan once, run COMMAND, report progress."""
    if not argv:
        print("usage: python -m fillrobust.progress COMMAND [ARGS...]  (e.g. dvc repro)", file=sys.stderr)
        return 2
    try:
        total = count_planned()
    except RuntimeError as err:  # e.g. invalid params: the dry run says why, before anything runs
        print(f"fillrobust.progress: {err}", file=sys.stderr)
        return 2
    print(f"[0/{total} jobs to run]", file=sys.stderr, flush=True)
    return watch(argv, total)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
