"""The results report: one self-contained HTML page of everything the run produced.

``results/report/index.html`` holds, in this order: a summary, the claims
table (holds / does not, each claim linked to the tables it reads), then per
paper (ICIP 2021, NeurIPS 2020, the thesis, M-TLAT, Top-GAP) every generated table (with
the paper's numbers beside ours and the difference where the table has them)
and figure, the deviations of this run from the paper profile, and the run's
provenance (git revision, params hash, libraries, hardware, wall time per
rule family, which models converged).

Every ``results/tables/*.csv`` and ``results/figures/**/*.png`` appears; a
file the current params do not build (left over from an earlier run) is shown
and marked stale. Figures are embedded as base64 PNG and the style is inline,
so the page opens offline (no scripts, CDN or web fonts); the csv/md/tex
links are relative to ``results/report/``. The data's contact sheets are
photographs: embedded as JPEG, and only the first sheet of each container
(the others are linked PNGs), which keeps the page at a few MB (embedding
every 1-MB sheet as PNG made it 56 MB).
"""

from __future__ import annotations

import base64
import fnmatch
import html
import io
import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from fillrobust.data.store import atomic_write_text
from fillrobust.report import runinfo
from fillrobust.report.claims import load_claims, matching_tables, table_refs
from fillrobust.report.metrics import require_columns
from fillrobust.report.style import STRATEGY_COLOURS, STRATEGY_ORDER, strategy_colour
from fillrobust.report.tables import drop_empty_columns

COLLAPSE_ROWS = 25  # longer tables are folded (<details>) so the page stays scannable
PHOTO_FIGURES = ("ccm_sheets/*",)  # photographic figures: JPEG in the page (~0.2 MB instead of ~1 MB)
SHEET_NUMBER = re.compile(r"_(\d{3})$")  # contact sheets are numbered <container>_000, _001, ...
JPEG_QUALITY = 85
STRATEGY_COLUMNS = ("strategy", "model")  # cells named after a strategy get its colour


@dataclass(frozen=True)
class Section:
    """A part of the report: the tables and figures whose names match ``patterns``."""

    key: str
    paper: str
    title: str
    patterns: tuple[str, ...]


# Per paper, in the papers' order; a name goes to the first section it
# matches (fnmatch on the table stem or the figure path without .png), and
# anything new lands in "Other" rather than being dropped.
SECTIONS = (
    Section("icip", "ICIP 2021", "Filling level: adversarial training and transfer (ICIP 2021)",
            ("sensitivity_frozen_layers", "sensitivity_eps_source", "sensitivity_*",  # Fig. 5
             "filling_per_container")),  # Fig. 6
    Section("neurips", "NeurIPS 2020", "Robust ImageNet transfer: fixed-feature vs full-network (NeurIPS 2020)",
            ("transfer_fixed_vs_full",)),  # Figs. 2-3
    Section("thesis-frequency", "Thesis", "Frequency datasets and margins (thesis ch. 4, App. A)",
            ("synthetic_margins",  # Table 4.1
             "margins", "margins_dct", "margins_random", "margins_median_*", "margins*",  # Figs. 4.3, 4.4, 4.7
             "forgetting_*",  # Fig. 4.8
             "synthetic_transition", "synthetic_*",  # Fig. 4.10
             "adversarial_energy_*",  # Fig. 4.12
             "cross_dataset")),  # App. A
    Section("thesis-prime", "Thesis", "PRIME on C-CCM (thesis ch. 5)",
            ("preprocessing_baselines",  # Table 5.1
             "prime_ablation",  # Table 5.5
             "prime_sheets/spectral*", "prime_sheets/spatial*", "prime_sheets/colo*",  # App. B.1-B.3
             "prime_sheets/*",  # Figs. 5.6-5.8
             "prime_depth", "prime_beta", "prime_per_container",  # Table 5.7, Figs. 5.9, 5.10
             "prime_*")),
    Section("thesis-benchmark", "Thesis", "Perturbation benchmark: R scores and corruptions (thesis App. B)",
            ("robustness_scores", "robustness_median_norms", "corruption_severity", "robust_per_container")),
    Section("mtlat", "M-TLAT", "M-TLAT (ECCVW 2020)", ("mtlat_robustness", "mtlat_labeling", "mtlat*")),  # Tables 1-2, 3
    Section("topgap", "Top-GAP", "Top-GAP", ("topgap_robustness", "topgap_sparsity_iou",  # Tables 3, 2 / 7
                                             "topgap_ablation", "topgap*", "top_gap*")),  # Table 8
    Section("data", "Data", "This run's data (contact sheets of the crops)", ("ccm_sheets/*", "data_*")),
    Section("other", "Other", "Other tables and figures", ("*",)),
)

CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#222}
main{max-width:1280px;margin:0 auto;padding:1em 2em 4em}
nav{position:sticky;top:0;background:#f6f6f6;border-bottom:1px solid #ddd;padding:.4em 2em;z-index:1}
nav a{margin-right:1.2em;color:#0645ad;text-decoration:none}
h1{margin:.4em 0}h2{border-bottom:2px solid #444;padding-bottom:.2em;margin-top:2em}
h3{margin-top:1.6em;color:#333}h4{margin:1.2em 0 .3em;font-family:monospace;font-size:1.05em}
table{border-collapse:collapse;margin:.3em 0 1em;font-size:12.5px}
th,td{border:1px solid #ccc;padding:2px 6px;vertical-align:top}
th{background:#eee}.scroll{overflow-x:auto}td.n{text-align:right;font-variant-numeric:tabular-nums}
td.paper,th.paper{background:#fff8e1}td.diff,th.diff{background:#eef5ff}
td.no,.holds-no{background:#fde2e2}td.yes,.holds-yes{background:#dcf5dc}td.na,.holds-na{background:#eee}
td.false{color:#b00020;font-weight:600}
.sw{display:inline-block;width:.8em;height:.8em;border-radius:2px;margin-right:.3em;vertical-align:-1px}
.caption{color:#444;margin:.2em 0 .4em}.links a{margin-right:.8em;font-size:12px}
.stale{background:#ffe0b2;padding:0 .4em;border-radius:3px;font-size:12px}
figure{margin:.6em 0 1.4em}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-family:monospace;font-size:12px;color:#555}
.summary td:first-child{font-weight:600}.legend span{margin-right:1em;white-space:nowrap}
details>summary{cursor:pointer;color:#0645ad}
"""


@dataclass
class RunFiles:
    """The run's tables (csv stems) and figures (paths under the figures folder, no .png)."""

    tables_dir: Path
    figures_dir: Path
    tables: list[str]
    figures: list[str]
    declared: set[str] | None  # names the current params build; None: all are current

    def stale(self, name: str) -> bool:
        return self.declared is not None and name not in self.declared


def collect(tables_dir: str | Path, figures_dir: str | Path, inputs: Iterable[str] | None = None) -> RunFiles:
    """Every csv table and png figure of the run; ``inputs`` (the report rule's
    inputs) tell which of them the current params build."""
    tables_dir, figures_dir = Path(tables_dir), Path(figures_dir)
    tables = sorted(p.stem for p in tables_dir.glob("*.csv"))
    figures = sorted(p.relative_to(figures_dir).with_suffix("").as_posix() for p in figures_dir.rglob("*.png"))
    declared = None if inputs is None else _declared(inputs, tables_dir, figures_dir)
    return RunFiles(tables_dir, figures_dir, tables, figures, declared)


def _declared(inputs: Iterable[str], tables_dir: Path, figures_dir: Path) -> set[str]:
    names: set[str] = set()
    for item in map(Path, inputs):
        if item.suffix == ".csv" and item.parent == tables_dir:
            names.add(item.stem)
        elif item.is_dir() and item.is_relative_to(figures_dir):  # a folder of figures (contact sheets)
            names.update(p.relative_to(figures_dir).with_suffix("").as_posix() for p in item.rglob("*.png"))
        elif item.suffix == ".png" and item.is_relative_to(figures_dir):
            names.add(item.relative_to(figures_dir).with_suffix("").as_posix())
    return names


def section_of(name: str) -> Section:
    """The first section whose patterns match ``name``."""
    return next(s for s in SECTIONS if any(fnmatch.fnmatchcase(name, p) for p in s.patterns))


def _rank(name: str, section: Section) -> tuple[int, str]:
    """A name's place in its section: the first pattern it matches, then the name."""
    hits = [i for i, p in enumerate(section.patterns) if fnmatch.fnmatchcase(name, p)]
    return (hits[0] if hits else len(section.patterns), name)


def _ordered(names: list[str], section: Section) -> list[str]:
    """``names`` in the order of the section's patterns, then by name."""
    return sorted(names, key=lambda name: _rank(name, section))


# --------------------------------------------------------------------------- cells and tables

def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def read_csv(path: str | Path) -> pd.DataFrame:
    """A table as written: blank cells are missing, "n/a" and "None" stay text;
    a file with no columns at all is an empty table (shown, not an error)."""
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except pd.errors.EmptyDataError:
        return pd.DataFrame()


def with_differences(frame: pd.DataFrame) -> pd.DataFrame:
    """Add "ours - paper" beside each paper column that has an own counterpart:
    ``paper`` vs ``accuracy``, ``paper_<x>`` vs ``<x>``."""
    out = frame.copy()
    pairs = [("paper", "accuracy")] + [(c, c[len("paper_"):]) for c in frame.columns if c.startswith("paper_")]
    for paper, ours in pairs:
        if paper in out and ours in out and pd.to_numeric(out[paper], errors="coerce").notna().any():
            diff = pd.to_numeric(out[ours], errors="coerce") - pd.to_numeric(out[paper], errors="coerce")
            out.insert(out.columns.get_loc(paper) + 1, f"Δ {ours} − {paper}", diff)
    return out


def _cell(value: Any, column: str, decimals: int) -> str:
    classes = []
    if column == "paper" or column.startswith("paper_") or column == "paper_value":
        classes.append("paper")
    elif column.startswith("Δ "):
        classes.append("diff")
    if isinstance(value, float) and pd.isna(value):
        text = ""
    elif isinstance(value, bool) or str(value) in ("True", "False"):
        text = str(value)
        classes.append("false" if text == "False" else "")
    elif isinstance(value, int | float):
        text = f"{value:.{decimals}f}" if isinstance(value, float) else str(value)
        classes.append("n")
    else:
        text = str(value)
    body = _e(text)
    if column in STRATEGY_COLUMNS and (colour := strategy_colour(text)):
        body = f'<i class="sw" style="background:{colour}"></i>{body}'
    cls = " ".join(c for c in classes if c)
    return f'<td class="{cls}">{body}</td>' if cls else f"<td>{body}</td>"


def _header(column: str) -> str:
    cls = ' class="paper"' if column.startswith("paper") else ' class="diff"' if column.startswith("Δ ") else ""
    colour = strategy_colour(column) if column in STRATEGY_COLOURS else None
    swatch = f'<i class="sw" style="background:{colour}"></i>' if colour else ""
    return f"<th{cls}>{swatch}{_e(column)}</th>"


def frame_html(frame: pd.DataFrame, decimals: int, css_class: str = "") -> str:
    """A DataFrame as an HTML table (numbers right-aligned to ``decimals``)."""
    head = "".join(_header(str(c)) for c in frame.columns)
    rows = []
    for values in frame.itertuples(index=False):
        rows.append("<tr>" + "".join(_cell(v, str(c), decimals) for v, c in zip(values, frame.columns,
                                                                                 strict=True)) + "</tr>")
    cls = f' class="{css_class}"' if css_class else ""
    return f'<div class="scroll"><table{cls}><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table></div>'


def _fold(inner: str, rows: int, what: str = "rows", always: bool = False) -> str:
    if rows <= COLLAPSE_ROWS and not always:
        return inner
    return f"<details><summary>{rows} {what} (click to show)</summary>{inner}</details>"


def _caption(md_path: Path) -> str:
    """The table's caption: the .md file's text before its first table row."""
    if not md_path.exists():
        return ""
    head = md_path.read_text().split("\n\n", 1)[0].strip()
    return "" if head.startswith("|") else head


def table_block(stem: str, files: RunFiles, decimals: int) -> str:
    """One table: name, caption, csv/md/tex links, stale mark, the table itself."""
    path = files.tables_dir / f"{stem}.csv"
    frame, _ = drop_empty_columns(with_differences(read_csv(path)))  # the caption (.md) names them
    links = " ".join(f'<a href="../tables/{_e(stem)}.{ext}">{ext}</a>' for ext in ("csv", "md", "tex")
                     if (files.tables_dir / f"{stem}.{ext}").exists())
    stale = ' <span class="stale">stale: not built under the current params</span>' if files.stale(stem) else ""
    caption = _caption(files.tables_dir / f"{stem}.md")
    return (f'<section class="table" id="table-{_e(stem)}" data-file="tables/{_e(stem)}.csv">'
            f"<h4>{_e(stem)}{stale}</h4>"
            + (f'<p class="caption">{_e(caption)}</p>' if caption else "")
            + f'<p class="links">{links}</p>' + _fold(frame_html(frame, decimals), len(frame)) + "</section>")


def figure_id(name: str) -> str:
    """The HTML anchor of figure ``name`` (its path under the figures folder, ``/`` as ``--``)."""
    return "figure-" + name.replace("/", "--")


def is_photo(name: str) -> bool:
    """A contact sheet of the data (photographic content): embedded as JPEG, not PNG."""
    return any(fnmatch.fnmatchcase(name, p) for p in PHOTO_FIGURES)


def is_extra_sheet(name: str) -> bool:
    """A contact sheet after the first of its container (``<container>_001`` ...): linked, not embedded."""
    match = SHEET_NUMBER.search(name)
    return is_photo(name) and match is not None and int(match.group(1)) > 0


def _embedded(path: Path, photo: bool) -> tuple[str, str]:
    """(mime type, base64 data) of a figure; a photo is re-encoded as JPEG (the PNG on disk stays)."""
    if not photo:
        return "image/png", base64.b64encode(path.read_bytes()).decode("ascii")
    from PIL import Image

    buffer = io.BytesIO()
    with Image.open(path) as image:
        image.convert("RGB").save(buffer, "JPEG", quality=JPEG_QUALITY, optimize=True)
    return "image/jpeg", base64.b64encode(buffer.getvalue()).decode("ascii")


def _stale_mark(name: str, files: RunFiles) -> str:
    """The "stale" tag after a figure's file name, when the current params do not build it."""
    return ' <span class="stale">stale</span>' if files.stale(name) else ""


def figure_block(name: str, files: RunFiles) -> str:
    """One figure, embedded (base64 PNG; JPEG for photos) so the page needs no other file."""
    mime, data = _embedded(files.figures_dir / f"{name}.png", is_photo(name))
    stale = _stale_mark(name, files)
    note = " (embedded as JPEG; the file is PNG)" if mime == "image/jpeg" else ""
    return (f'<figure id="{_e(figure_id(name))}" data-file="figures/{_e(name)}.png">'
            f'<img src="data:{mime};base64,{data}" alt="{_e(name)}">'
            f"<figcaption>figures/{_e(name)}.png{note}{stale}</figcaption></figure>")


def linked_sheets(names: list[str], files: RunFiles) -> str:
    """Contact sheets listed as links to their PNG files (relative to ``results/report/``), not embedded."""
    if not names:
        return ""
    links = " ".join(f'<a href="../figures/{_e(n)}.png" data-file="figures/{_e(n)}.png">{_e(n)}</a>'
                     + _stale_mark(n, files) for n in names)
    return f'<p class="links">More contact sheets (PNG files, not embedded): {links}</p>'


# --------------------------------------------------------------------------- page parts

def _seed_note(row: Any) -> str:
    """Below holds: on how many training seeds alone the claim holds (several-seed runs)."""
    seeds = getattr(row, "per_seed", "")
    return f"<br><small>{_e(seeds)}</small>" if isinstance(seeds, str) and seeds else ""


def claims_block(files: RunFiles, claims_file: str | Path | None, decimals: int) -> str:
    """The claims table first: holds / does not, the paper's value beside ours,
    and links to the tables each claim reads."""
    path = files.tables_dir / "claims.csv"
    if not path.exists():
        return "<p>No claims table (results/tables/claims.csv) in this run.</p>"
    table = read_csv(path)
    require_columns(table, str(path.with_suffix("")),
                    ["paper", "claim", "statement", "paper_value", "our_value", "holds", "note"])
    refs = {c["id"]: sorted(table_refs([c])) for c in load_claims(claims_file)} if claims_file else {}
    evidence = []
    for claim in table["claim"]:
        names = sorted({n for ref in refs.get(claim, []) for n in matching_tables(ref, files.tables)})
        evidence.append(" ".join(f'<a href="#table-{_e(n)}">{_e(n)}</a>' for n in names) or "")
    rows = []
    for row, links in zip(table.itertuples(index=False), evidence, strict=True):
        holds = str(row.holds)
        cls = {"yes": "yes", "no": "no"}.get(holds, "na")
        note = f'<br><small>{_e(row.note)}</small>' if isinstance(row.note, str) and row.note else ""
        rows.append(f'<tr id="claim-{_e(row.claim)}"><td>{_e(row.paper)}</td><td><code>{_e(row.claim)}</code></td>'
                    f"<td>{_e(row.statement)}{note}</td><td class=\"paper\">{_e(row.paper_value)}</td>"
                    f"<td>{_e('' if pd.isna(row.our_value) else row.our_value)}</td>"
                    f'<td class="{cls}">{_e(holds)}{_seed_note(row)}</td><td>{links}</td></tr>')
    counts = table["holds"].astype(str).value_counts()
    summary = (f"<p><b>{counts.get('yes', 0)} of {len(table)} claims hold</b>, {counts.get('no', 0)} do not, "
               f"{counts.get('n/a', 0)} n/a (the table a claim reads is not built under the current params). "
               f'Full table: <a href="#table-claims">claims</a> · <a href="../tables/claims.csv">csv</a>.</p>')
    head = "".join(f"<th>{h}</th>" for h in ("paper", "claim", "statement", "paper's value", "ours", "holds",
                                             "evidence"))
    return (summary + f'<table class="claims" id="claims-first"><thead><tr>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>" + _fold(table_block("claims", files, decimals), len(table),
                                                             "claims: the table as written (csv)", always=True))


def sections_html(files: RunFiles, decimals: int) -> tuple[str, list[tuple[str, str]]]:
    """Every table and figure, grouped per paper; also the (anchor, title) list for the navigation."""
    by_section: dict[str, dict[str, list[str]]] = {s.key: {"tables": [], "figures": []} for s in SECTIONS}
    for stem in files.tables:
        if stem == "claims":
            continue  # shown first, in the claims part
        by_section[section_of(stem).key]["tables"].append(stem)
    for name in files.figures:
        by_section[section_of(name).key]["figures"].append(name)
    parts, nav, paper = [], [], None
    for section in SECTIONS:
        items = by_section[section.key]
        if not items["tables"] and not items["figures"]:
            continue  # a paper's section appears once its tables exist
        if section.paper != paper:
            paper = section.paper
            anchor = "paper-" + section.key.split("-")[0]  # one per paper: paper-thesis, not its first section's
            parts.append(f'<h2 id="{_e(anchor)}">{_e(paper)}</h2>')
            nav.append((anchor, paper))
        parts.append(f'<h3 id="section-{_e(section.key)}">{_e(section.title)}</h3>')
        parts.append(_section_body(items["tables"], items["figures"], section, files, decimals))
    return "".join(parts), nav


def _section_body(tables: list[str], figures: list[str], section: Section, files: RunFiles, decimals: int) -> str:
    """Tables and figures together in pattern order (the papers' order), a table before its
    same-named figure, so a figure sits beside the table it belongs to; extra sheets linked last."""
    shown = [(*_rank(stem, section), 0, stem) for stem in tables]
    shown += [(*_rank(name, section), 1, name) for name in figures if not is_extra_sheet(name)]
    out = [table_block(name, files, decimals) if kind == 0 else figure_block(name, files)
           for _, _, kind, name in sorted(shown)]
    out.append(linked_sheets([name for name in _ordered(figures, section) if is_extra_sheet(name)], files))
    return "".join(out)


def legend_html() -> str:
    """The strategies' order and colours (the same in every bar chart)."""
    spans = "".join(f'<span><i class="sw" style="background:{STRATEGY_COLOURS[s]}"></i>{_e(s)}</span>'
                    for s in STRATEGY_ORDER)
    return f'<p class="legend">Strategies (papers\' order, one colour each in every figure): {spans}</p>'


def deviations_block(config: dict[str, Any], paper_profile: str | Path | None) -> str:
    """The parameters where this run differs from the paper profile."""
    if paper_profile is None or not Path(paper_profile).exists():
        return "<p>No paper profile given: deviations not computed.</p>"
    table = runinfo.deviations(config, paper_profile)
    if table.empty:
        return f"<p>None: this run used the paper profile ({_e(paper_profile)}).</p>"
    method = table[table["kind"] != "inputs / machine"]
    setup = table[table["kind"] == "inputs / machine"]
    kinds = method["kind"].value_counts()
    intro = (f"<p>{len(method)} parameters differ from the paper profile <code>{_e(paper_profile)}</code> "
             f"(its overrides merged over this run's params): "
             + ", ".join(f"{n} {_e(k)}" for k, n in kinds.items())
             + ". docs/deviations.md gives the reasons.</p>")
    return (intro + frame_html(method, 2, "deviations")
            + _fold(frame_html(setup, 2), len(setup), "input / machine settings", always=True))


def provenance_block(config: dict[str, Any], models_dir: str | Path | None, bench_dir: str | Path | None,
                     build: dict[str, str]) -> str:
    """Git revision, params hash, libraries, hardware, wall time per rule family, convergence."""
    info = {**runinfo.provenance(config), **runinfo.hardware(), **build}
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in info.items())
    out = [f'<table class="summary">{rows}</table>']
    if bench_dir and Path(bench_dir).exists():
        times = runinfo.wall_times(bench_dir)
        out.append("<h3 id=\"wall-time\">Wall time per rule family</h3><p>From Snakemake's <code>benchmark:</code> "
                   "files (logs/bench): job wall times summed per family (jobs ran in parallel, so the sum "
                   "exceeds the elapsed time), the longest job, CPU time, peak resident memory.</p>"
                   + frame_html(times, 1))
    if models_dir and Path(models_dir).exists():
        out.append(_convergence_html(runinfo.convergence(models_dir)))
    return "".join(out)


def _convergence_html(models: pd.DataFrame) -> str:
    if models.empty:
        return "<p>No trained models found.</p>"
    done = models["converged"].astype(str) == "True"
    revisions = ", ".join(sorted(set(models["git_revision"].astype(str)) - {""})) or "not recorded"
    failed = models.loc[~done, "model"].tolist()
    lines = (f'<h3 id="convergence">Which models converged</h3><p><b>{int(done.sum())} of {len(models)}</b> '
             "trained models reached their final-train-accuracy threshold (train.converged_min_acc). "
             f"Code revisions recorded by the models: {_e(revisions)}.</p>")
    if failed:
        lines += f"<p>Not converged: {_e(', '.join(failed))}</p>"
    return lines + _fold(frame_html(models.drop(columns="git_revision"), 2), len(models), "models")


def _scale_note(data_source: str | None, source_kind: str, crop: Any, seeds: int) -> str:
    """How far this run is from the papers' scale, in one line, before anyone reads a number."""
    if data_source == "ccm" and source_kind == "import":
        return f"the papers' data and ImageNet source models, {crop}-px crops, {seeds} seed(s)"
    data = "real CCM crops" if data_source == "ccm" else "synthetic crops (SynthCCM) instead of CCM"
    source = ("imported source models" if source_kind == "import"
              else "synthetic source models (SynthSource) instead of ImageNet")
    return (f"a CPU-scale stand-in: {data}, {source}, {crop}-px crops, {seeds} seed(s), shortened recipes "
            "(section Deviations); compare orderings and claims with the papers, not absolute numbers")


def summary_block(files: RunFiles, config: dict[str, Any]) -> str:
    """The run's summary table: data source and crop size, table / figure counts, stale files."""
    data = config.get("data", {})
    crop = (data.get("crop") or {}).get("size", "?")
    stale = [n for n in files.tables + files.figures if files.stale(n)]
    seeds = (config.get("train") or {}).get("seeds") or []
    # the NeurIPS 2020 models train on more seeds (sensitivity.fixed_vs_full.seeds: the paper's three trials)
    fixed_full = ((config.get("sensitivity") or {}).get("fixed_vs_full") or {}).get("seeds") or []
    extra = [s for s in fixed_full if s not in seeds]
    source = (config.get("source") or {}).get("kind", "?")
    items = {"scale of this run": _scale_note(data.get("source"), source, crop, len(seeds)),
             "data": f"{data.get('source', '?')} crops of {crop} px; source models: {source}",
             "seeds": (f"{len(seeds)} ({', '.join(map(str, seeds))})" if seeds else "?")
             + (f"; fixed-vs-full transfer models also {', '.join(map(str, extra))}" if extra else ""),
             "tables / figures": f"{len(files.tables)} / {len(files.figures)}",
             "stale files": ", ".join(stale) or "none"}
    return "<table class=\"summary\">" + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>"
                                                for k, v in items.items()) + "</table>"


def write_report(out: str | Path, tables_dir: str | Path, figures_dir: str | Path, config: dict[str, Any],
                 claims_file: str | Path | None = None, paper_profile: str | Path | None = None,
                 models_dir: str | Path | None = None, bench_dir: str | Path | None = None,
                 inputs: Iterable[str] | None = None, data_files: Iterable[str | Path] = ()) -> Path:
    """Write the report to ``out`` (atomically); returns its path.

    ``config``: the params the run used (all of them: the report shows their
    hash and their deviations from ``paper_profile``); ``inputs``: the files
    the current params build (others are marked stale), None for all current;
    ``data_files``: the DVC metrics and plot data, linked from the provenance.
    """
    start = time.perf_counter()
    files = collect(tables_dir, figures_dir, inputs)
    decimals = int((config.get("tables") or {}).get("decimals", 2))
    sections, nav = sections_html(files, decimals)
    body = [f'<h2 id="claims">Claims</h2>{claims_block(files, claims_file, decimals)}',
            sections,
            f'<h2 id="deviations">Deviations of this run from the papers</h2>{deviations_block(config, paper_profile)}']
    build = {"report built": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")}
    provenance = provenance_block(config, models_dir, bench_dir, build)
    build_s = f"{time.perf_counter() - start:.1f} s"
    nav = [("claims", "Claims"), *nav, ("deviations", "Deviations"), ("provenance", "Provenance")]
    page = _page(nav, summary_block(files, config) + legend_html() + "".join(body)
                 + f'<h2 id="provenance">Provenance</h2><p>Report built in {build_s}.</p>'
                 + data_links(out, data_files) + provenance)
    atomic_write_text(out, page)
    return Path(out)


def data_links(out: str | Path, files: Iterable[str | Path]) -> str:
    """Links, relative to the page at ``out``, to the DVC metrics and plot data files."""
    base = Path(out).resolve().parent
    links = " ".join(f'<a href="{_e(os.path.relpath(Path(f).resolve(), base))}">{_e(Path(f).parent.name)}/'
                     f'{_e(Path(f).name)}</a>' for f in sorted(map(str, files)))
    return f'<p class="links">DVC metrics and plot data (<code>dvc metrics show</code>, <code>dvc plots show</code>): {links}</p>' \
        if links else ""


def _page(nav: list[tuple[str, str]], body: str) -> str:
    links = "".join(f'<a href="#{_e(anchor)}">{_e(title)}</a>' for anchor, title in nav)
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            "<title>fillrobust results</title>"
            f"<style>{CSS}</style></head><body><nav>{links}</nav><main>"
            "<h1>fillrobust: results of this run</h1>" + body + "</main></body></html>\n")


def write_results_report(params: dict[str, Any], out: str | Path, tables: str | Path, figures: str | Path,
                         metrics: str | Path, plots: str | Path, claims: str | Path | None = None,
                         paper: str | Path | None = None, models: str | Path | None = None,
                         bench: str | Path | None = None, inputs: list[str] | None = None) -> list[Path]:
    """The ``report`` rule: DVC metrics and plot data into the ``metrics`` and
    ``plots`` folders (report/metrics.py), then the HTML page ``out``; returns
    every written path. ``tables``, ``figures``: the run's results folders;
    ``claims``: the claims file; ``paper``: the paper profile; ``models``,
    ``bench``: the checkpoints' and the benchmark files' folders."""
    from fillrobust.report.metrics import write_metrics

    written = write_metrics(tables, metrics, plots, splits=(params.get("study") or {}).get("splits"))
    written.append(write_report(out, tables, figures, config=params, claims_file=claims, paper_profile=paper,
                                models_dir=models, bench_dir=bench, inputs=inputs, data_files=list(written)))
    return written
