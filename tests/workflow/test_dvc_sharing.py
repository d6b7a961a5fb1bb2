"""Sharing through a real DVC remote: A reproduces and pushes, B pulls and has nothing to do."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.workflow.workspace import (
    BIN,
    ROOT,
    copy_workspace,
    make_workspace,
    planned,
    planned_jobs,
    run,
)

pytestmark = pytest.mark.slow


def test_dvc_stages_cover_the_whole_dag(tmp_path):
    """`dvc repro` builds what `snakemake` builds: the stages' targets plan every job of `all`."""
    ws = make_workspace(tmp_path / "ws")
    stages = yaml.safe_load((ws / "dvc.yaml").read_text())["stages"]
    targets = []
    for name, stage in stages.items():
        match = re.fullmatch(r"snakemake ((?:[\w/.-]+ )+)--cores all --rerun-incomplete", stage["cmd"])
        assert match, f"stage {name}: not a snakemake call ({stage['cmd']})"
        targets += match.group(1).split()
    everything = {(r, tuple(sorted(w.items()))) for r, w in planned(ws) if r != "all"}
    staged = {(r, tuple(sorted(w.items()))) for r, w in planned(ws, *targets) if r not in targets}
    assert staged == everything, sorted(everything ^ staged)


def test_push_pull_round_trip(recorded_run, tmp_path):
    """A holds the session's finished tiny run, recorded by `dvc repro` (its stages found nothing
    left to do; the ``recorded_run`` fixture), and pushes; a fresh clone B pulls and has nothing to do."""
    remote = tmp_path / "remote"
    a = copy_workspace(recorded_run, tmp_path / "a")
    run(a, BIN / "dvc", "remote", "add", "-d", "shared", remote)
    run(a, "git", "commit", "-qam", "the shared remote")
    run(a, BIN / "dvc", "push")
    assert any(remote.rglob("*")), "nothing reached the remote"

    run(tmp_path, "git", "clone", "-q", a, "b")
    b = tmp_path / "b"
    assert not (b / "models").exists()
    run(b, "bash", ROOT / "workflow/scripts/pull.sh")
    for name in ("models/S1/ST/seed0/model.safetensors", "results/tables/filling_per_container.csv",
                 "data/ccm/images.npy"):
        assert (b / name).read_bytes() == (a / name).read_bytes(), name
    status = run(b, BIN / "dvc", "status").stdout
    assert "up to date" in status, status
    assert planned_jobs(b) == {}
    assert run(b, "git", "status", "--porcelain").stdout.strip() == ""
    # Provenance was recorded: a parameter change in B still reruns exactly its users.
    override = tmp_path / "decimals.yaml"
    override.write_text("tables: {decimals: 4}\n")
    jobs = planned_jobs(b, "--configfile", override)
    assert set(jobs) == {"table_filling", "table_sensitivity", "table_robustness", "table_prime_per_container",
                         "table_prime_sweep", "table_preprocessing_baselines", "cross_dataset", "table_margins",
                         "tables_frequency", "table_mtlat", "tables_topgap", "claims", "report", "all"}, jobs
