"""Sharing through a real DVC remote: A reproduces and pushes, B pulls and has nothing to do."""

from __future__ import annotations

import pytest

from tests.workflow.workspace import BIN, ROOT, make_workspace, planned_jobs, run

pytestmark = pytest.mark.slow


def test_push_pull_round_trip(tmp_path):
    remote = tmp_path / "remote"
    small = {"study": {"splits": ["S1"], "strategies": ["ST", "AT-FT"]}, "source": {"eps": [0, 0.5]},
             "sensitivity": {"frozen_layers": {"values": [1]}, "eps_source": {"values": [0.5]}}}
    a = make_workspace(tmp_path / "a", small, git=True)
    run(a, BIN / "dvc", "remote", "add", "-d", "shared", remote)
    run(a, BIN / "dvc", "repro")
    run(a, "git", "add", "-A")
    run(a, "git", "commit", "-qm", "reproduced")
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
                         "tables_frequency", "all"}, jobs
