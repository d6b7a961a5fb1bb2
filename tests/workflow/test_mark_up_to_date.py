"""fillrobust.mark_up_to_date: outputs in arbitrary mtime order (as `dvc pull` leaves them) marked
up to date by a real Snakemake, with the params' provenance recorded, and no sleep per job."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from tests.workflow.workspace import planned, run

SNAKEFILE = """
configfile: "config.yaml"
N = config["n"]
rule all:
    input: expand("out/c{i}.txt", i=range(N))
rule a:
    output: "out/a{i}.txt"
    params: scale=config["scale"]
    shell: "echo {params.scale} > {output}"
rule b:
    input: "out/a{i}.txt"
    output: "out/b{i}.txt"
    shell: "cat {input} > {output}"
rule c:
    input: "out/b{i}.txt"
    output: "out/c{i}.txt"
    shell: "cat {input} > {output}"
"""


def rules_planned(cwd: Path, *args: str) -> set[str]:
    """The rules a dry run would run ('all' left out)."""
    return {rule for rule, _ in planned(cwd, *args)} - {"all"}


@pytest.mark.slow
def test_pulled_outputs_are_marked_up_to_date_with_provenance(tmp_path):
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / "config.yaml").write_text("n: 20\nscale: 1\n")
    (tmp_path / "other.yaml").write_text("scale: 2\n")
    # The pulled files: the right contents, with the newest mtimes on the first rule's outputs
    # and no Snakemake records (a fresh clone).
    out = tmp_path / "out"
    out.mkdir()
    for rank, stem in enumerate(("c", "b", "a")):
        for i in range(20):
            path = out / f"{stem}{i}.txt"
            path.write_text("1\n")
            os.utime(path, (1_000_000 + rank, 1_000_000 + rank))
    assert rules_planned(tmp_path) == {"b", "c"}  # b and c look older than their inputs

    run(tmp_path, sys.executable, "-m", "fillrobust.mark_up_to_date", "--cores", "1", "--quiet")
    assert rules_planned(tmp_path) == set()
    assert (out / "c0.txt").read_text() == "1\n"  # touched, not rerun
    # Provenance recorded: a changed parameter reruns its rule and what depends on it.
    assert rules_planned(tmp_path, "--configfile", "other.yaml") == {"a", "b", "c"}


def test_the_touch_executor_sleeps_no_more(monkeypatch):
    """The module sets the sleep Snakemake's touch executor takes before each job to 0 s."""
    from snakemake.executors import touch

    from fillrobust import mark_up_to_date

    monkeypatch.setattr(touch.Executor, "SLEEPING_TIME", touch.Executor.SLEEPING_TIME)
    assert touch.Executor.SLEEPING_TIME > 0  # Snakemake's own value (0.1 s in the pinned version)
    monkeypatch.setattr("snakemake.cli.main", lambda args: None)
    mark_up_to_date.main(["--cores", "1"])
    assert touch.Executor.SLEEPING_TIME == 0
