"""The results report of the shared tiny run: complete, fast, rendered by a real browser,
and its metrics and plots read by a real DVC repository."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.workflow.browser import Browser, install_chromium
from tests.workflow.workspace import BIN, make_workspace, run

pytestmark = pytest.mark.slow

REPORT = "results/report/index.html"


def run_files(ws: Path) -> set[str]:
    """Every csv table and png figure of the run, as the report's ``data-file`` names them."""
    tables = {f"tables/{p.name}" for p in (ws / "results/tables").glob("*.csv")}
    figures = {f"figures/{p.relative_to(ws / 'results/figures').as_posix()}"
               for p in (ws / "results/figures").rglob("*.png")}
    return tables | figures


@pytest.fixture(scope="session")
def chromium() -> str:
    """Chromium's binary; installed from Debian's package when absent, else the test skips."""
    binary, why = install_chromium()
    if binary is None:
        pytest.skip(f"headless Chromium unavailable: {why}")
    return binary


def test_every_table_and_figure_of_the_run_is_in_the_report(finished):
    page = (finished / REPORT).read_text()
    files = run_files(finished)
    assert len(files) > 40
    assert set(re.findall(r'data-file="([^"]+)"', page)) == files
    assert 'class="stale"' not in page  # the run is complete: everything is built under its params
    for anchor in ("claims", "paper-icip", "paper-thesis", "deviations", "provenance", "wall-time",
                   "convergence"):
        assert f'id="{anchor}"' in page, anchor
    assert page.index('id="claims-first"') < page.index('id="paper-icip"')


def test_report_builds_within_30_s(finished):
    bench = pd.read_csv(finished / "logs/bench/report/report.tsv", sep="\t")
    assert bench["s"].iloc[0] <= 30, bench


def test_report_renders_in_headless_chromium(finished, chromium, tmp_path):
    browser = Browser(chromium, tmp_path / "profile")
    try:
        browser.open((finished / REPORT).resolve().as_uri())
        tables = browser.evaluate("[...document.querySelectorAll('section.table')].map(s => s.dataset.file)")
        figures = browser.evaluate("[...document.querySelectorAll('figure')].map(f => f.dataset.file)")
        broken = browser.evaluate("[...document.images].filter(i => !(i.complete && i.naturalWidth > 0))"
                                  ".map(i => i.alt)")
        rows = browser.evaluate("[...document.querySelectorAll('section.table table')].map(t => t.rows.length)")
        shot = browser.screenshot(tmp_path / "report.png")
        errors = browser.errors()
    finally:
        browser.close()
    files = run_files(finished)
    assert set(tables) | set(figures) == files and len(tables) + len(figures) == len(files)
    assert broken == []
    assert min(rows) >= 2  # a header and at least one row in every table
    assert errors == []
    assert shot.read_bytes()[:4] == b"\x89PNG" and shot.stat().st_size > 50_000
    print(f"screenshot: {shot}")


def test_dvc_reads_the_metrics_and_shows_what_moved(finished, tmp_path):
    """`dvc metrics show` reads the report's metrics; after a table changes, `dvc metrics diff`
    names exactly the metrics that moved; `dvc plots show` renders the three declared plots."""
    ws = make_workspace(tmp_path / "ws", git=True)
    for name in ("results/tables", "results/metrics", "results/plots"):
        shutil.copytree(finished / name, ws / name)
    revisions = json.loads(run(ws, BIN / "dvc", "metrics", "show", "--json").stdout)
    assert len(revisions) == 1  # the workspace (DVC 3 names it "")
    shown = next(iter(revisions.values()))["data"]
    for name in ("headline", "robustness", "filling"):
        path = f"results/metrics/{name}.json"
        assert shown[path]["data"] == json.loads((ws / path).read_text()), name
    run(ws, "git", "add", "results/metrics", "results/plots")
    run(ws, "git", "commit", "-qm", "baseline metrics")

    table = pd.read_csv(ws / "results/tables/filling_per_container.csv", dtype={"seed": str})
    moved = (table["split"] == "S2") & (table["strategy"] == "AT-FT") & (table["container"] == "all")
    table.loc[moved, "accuracy"] = 99.0
    table.to_csv(ws / "results/tables/filling_per_container.csv", index=False)
    run(ws, sys.executable, "-c", "import yaml; from fillrobust.report.metrics import write_metrics;"
        "write_metrics('results/tables', 'results/metrics', 'results/plots',"
        " splits=yaml.safe_load(open('params.yaml'))['study']['splits'])")  # as the report rule does
    diff = json.loads(run(ws, BIN / "dvc", "metrics", "diff", "--json").stdout)
    assert set(diff) == {"results/metrics/headline.json"}
    assert set(diff["results/metrics/headline.json"]) == {"icip_accuracy.S2.AT-FT", "icip_accuracy.mean.AT-FT"}
    assert diff["results/metrics/headline.json"]["icip_accuracy.S2.AT-FT"]["new"] == 99.0

    plots = json.loads(run(ws, BIN / "dvc", "plots", "show", "--json").stdout)
    assert not plots.get("errors"), plots.get("errors")
    ids = set(plots["data"])
    assert {"results/plots/sensitivity_frozen_layers.csv", "results/plots/sensitivity_eps_source.csv"} <= ids
    assert any("per container" in i for i in ids), ids
    for entries in plots["data"].values():
        assert entries and entries[0]["content"]["data"]["values"], entries


def test_make_report_rebuilds_the_report_alone(finished):
    """`make report`'s Snakemake call plans the report job and nothing upstream."""
    proc = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--cores", "1", "report", "--allowed-rules",
                           "report", "--forcerun", "report"], cwd=finished, capture_output=True, text=True,
                          timeout=600, check=True)
    assert re.search(r"^report\s+1$", proc.stdout, re.MULTILINE) and re.search(r"^total\s+1$", proc.stdout,
                                                                              re.MULTILINE), proc.stdout
