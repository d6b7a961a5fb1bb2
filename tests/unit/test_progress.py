"""Overall progress of a reproduction: planned jobs from a dry run, finished jobs from benchmark files."""

from __future__ import annotations

import os
import sys
import time

from fillrobust.progress import finished_since, planned_file_jobs, progress_line, watch

DRY_RUN = """Job stats:
job      count
-----  -------
train        2
all          1
total        3

[Thu Dec  3 07:33:56 2026]
rule train:
    input: data/ccm
    output: models/S1/ST/seed0/model.safetensors
    log: logs/train/S1/ST/seed0.log
    jobid: 3
    benchmark: logs/bench/train/S1/ST/seed0.tsv
    wildcards: split=S1, strategy=ST, seed=0

[Thu Dec  3 07:33:56 2026]
localrule alias_clean:
    output: results/eval/S1/ST-FT/seed0/clean/summary.json
    benchmark: logs/bench/evaluate/S1/ST-FT/seed0/clean.tsv

[Thu Dec  3 07:33:56 2026]
localrule all:
    input: models/S1/ST/seed0/model.safetensors
    jobid: 0
"""


def test_planned_jobs_are_the_benchmarked_ones():
    assert planned_file_jobs(DRY_RUN) == 2  # the aggregate rule `all` leaves no benchmark file
    assert planned_file_jobs("Building DAG of jobs...\nNothing to be done.") == 0


def test_progress_line_and_eta():
    assert progress_line(0, 10, 5) == "[0/10 jobs, elapsed 0:05, ETA ?]"
    assert progress_line(4, 10, 120) == "[4/10 jobs, elapsed 2:00, ETA 3:00]"
    assert progress_line(1, 2, 3600) == "[1/2 jobs, elapsed 1:00:00, ETA 1:00:00]"


def test_only_files_written_since_the_start_count(tmp_path):
    old = tmp_path / "a" / "old.tsv"
    old.parent.mkdir()
    old.write_text("s\n1\n")
    os.utime(old, (time.time() - 100, time.time() - 100))
    start = time.time() - 1
    (tmp_path / "a" / "new.tsv").write_text("s\n1\n")
    assert finished_since(start, tmp_path) == 1
    assert finished_since(start, tmp_path / "missing") == 0


def test_watch_reports_jobs_as_they_finish(tmp_path, capsys):
    script = ("import pathlib, time\n"
              "for i in range(2):\n"
              "    time.sleep(0.6)\n"
              f"    pathlib.Path({str(tmp_path)!r}, f'j{{i}}.tsv').write_text('s')\n")
    assert watch([sys.executable, "-c", script], 2, poll=0.2, bench_dir=tmp_path) == 0
    lines = capsys.readouterr().err.splitlines()
    assert any(line.startswith("[1/2 jobs") for line in lines)
    assert lines[-1].startswith("[2/2 jobs") and "ETA 0:00" in lines[-1] and lines[-1].endswith("finished (exit 0)")
