"""dvc.yaml's code deps agree with the code Snakemake hashes (CODE in common.smk).

DVC decides from a stage's deps whether to rerun it; Snakemake decides from
each rule's ``code=CODE["key"]`` param (a hash of the modules in
``CODE_MODULES[key]``) which jobs inside it are stale. If a stage's deps miss a
module one of its rules hashes, ``dvc repro`` calls the stage up to date after
that module changed while Snakemake would rerun the jobs. So every module the
rules of a stage hash must lie under one of the stage's deps.

The rules a stage runs are found by a dry run of its ``cmd`` targets in a
throw-away workspace (tiny params; and once more on the real-data branches of
the data and source rules), less the jobs of the stages it depends on (those
have run by then).
"""

from __future__ import annotations

import ast
import hashlib
import re
from pathlib import Path

import pytest
import yaml

from tests.workflow.workspace import ROOT, make_workspace, planned

SRC = ROOT / "src" / "fillrobust"
RULE_FILES = sorted((ROOT / "workflow" / "rules").glob("*.smk"))


def code_modules() -> dict[str, tuple[str, ...]]:
    """``CODE_MODULES`` of common.smk (a literal dict: code key -> fillrobust modules)."""
    text = (ROOT / "workflow" / "rules" / "common.smk").read_text()
    match = re.search(r"^CODE_MODULES = (\{.*?^\})", text, re.MULTILINE | re.DOTALL)
    assert match, "common.smk: no literal `CODE_MODULES = {...}` block"
    return ast.literal_eval(match.group(1))


def rule_code_keys() -> dict[str, list[str]]:
    """Rule -> the CODE keys its params hash (``code=CODE["k"]``, ``code_x=CODE["k"]``);
    rules with a command but no key map to ``[]``, aggregate rules are left out."""
    rules = {}
    for path in RULE_FILES:
        parts = re.split(r"^[ \t]*rule (\w+):", path.read_text(), flags=re.MULTILINE)
        for name, body in zip(parts[1::2], parts[2::2], strict=True):
            if re.search(r"^\s+(shell|run|script):", body, re.MULTILINE):
                rules[name] = re.findall(r"\bcode\w*=CODE\[\"(\w+)\"\]", body)
    return rules


def module_files(module: str) -> list[Path]:
    """The source files of a ``code_hash`` name (a subpackage or a module), as code_hash reads them."""
    path = SRC / module
    return sorted(path.rglob("*.py")) if path.is_dir() else [path.with_suffix(".py")]


def stages() -> dict[str, dict]:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def stage_targets(name: str, stage: dict) -> list[str]:
    match = re.fullmatch(r"snakemake ((?:[\w/.-]+ )+)--cores all --rerun-incomplete", stage["cmd"])
    assert match, f"dvc.yaml stage {name}: cmd is not `snakemake <targets> --cores all --rerun-incomplete` ({stage['cmd']})"
    return match.group(1).split()


def upstream(name: str, all_stages: dict[str, dict]) -> set[str]:
    """The stages whose outputs ``name`` depends on, transitively."""
    owner = {next(iter(o)) if isinstance(o, dict) else o: s
             for s, stage in all_stages.items() for o in stage.get("outs", [])}
    found, todo = set(), [name]
    while todo:
        for dep in all_stages[todo.pop()].get("deps", []):
            if dep in owner and owner[dep] not in found:
                found.add(owner[dep])
                todo.append(owner[dep])
    return found


def covered(file: Path, deps: list[str]) -> bool:
    """Whether a dep path names ``file`` or a folder above it."""
    rel = file.relative_to(ROOT)
    return any(rel == Path(d) or Path(d) in rel.parents for d in deps)


def test_code_keys_and_modules_exist():
    """Every key a rule names is in CODE_MODULES, and every module there is a real file or
    package (a typo would hash nothing and never rerun anything)."""
    modules = code_modules()
    for rule, keys in rule_code_keys().items():
        for key in keys:
            assert key in modules, f"rule {rule}: CODE[{key!r}] is not a key of CODE_MODULES"
    for key, names in modules.items():
        assert isinstance(names, tuple) and names, f"CODE_MODULES[{key!r}]: expected a non-empty tuple"
        for name in names:
            assert all(f.is_file() for f in module_files(name)) and module_files(name), \
                f"CODE_MODULES[{key!r}]: {name} is not a module or package under src/fillrobust"


def fillrobust_imports(file: Path) -> set[Path]:
    """The ``fillrobust`` source files a file imports, at the top or inside functions
    (``from fillrobust.data import store`` -> data/store.py; a package -> its __init__.py)."""
    def resolve(dotted: str) -> Path | None:
        path = SRC.joinpath(*dotted.split(".")[1:])
        return path / "__init__.py" if path.is_dir() else path.with_suffix(".py") if path.with_suffix(".py").is_file() else None

    found = set()
    for node in ast.walk(ast.parse(file.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("fillrobust"):
            found |= {resolve(f"{node.module}.{a.name}") or resolve(node.module) for a in node.names}
        elif isinstance(node, ast.Import):
            found |= {resolve(a.name) for a in node.names if a.name.startswith("fillrobust.")}
    return found - {None}


@pytest.mark.parametrize("key", ["train", "topgap_train"])
def test_training_hash_covers_what_training_imports_and_not_the_validation(key):
    """Every fillrobust module the training code imports, transitively, is in its hash, so a
    code change reruns the trainings; and ``config`` (the Snakefile's validation) is not:
    editing a check or an error message must not retrain every model. (Package __init__
    files are left out: code_hash hashes a package's files only when it names the package.)"""
    hashed = {f for m in code_modules()[key] for f in module_files(m)}
    seen, todo = set(), list(hashed)
    while todo:
        for file in fillrobust_imports(todo.pop()) - seen:
            seen.add(file)
            todo.append(file)
    assert SRC / "config.py" not in seen | hashed
    missing = sorted(str(f.relative_to(SRC)) for f in seen - hashed if f.name != "__init__.py")
    assert not missing, f"CODE_MODULES[{key!r}] misses modules the training imports: {missing}"


def test_dvc_deps_exist():
    """Every code dep of dvc.yaml names a path in the repository (or another stage's output)."""
    outs = {next(iter(o)) if isinstance(o, dict) else o for s in stages().values() for o in s.get("outs", [])}
    for name, stage in stages().items():
        for dep in stage.get("deps", []):
            assert dep in outs or (ROOT / dep).exists(), f"dvc.yaml stage {name}: dep {dep} does not exist"


def test_every_output_persists():
    """Snakemake decides what reruns inside a stage, so DVC must not delete a stage's outputs
    before running it: a deleted metrics file (results/metrics/filling.json had no persist)
    made Snakemake rerun its table job on every run of the stage."""
    for name, stage in stages().items():
        for kind in ("outs", "metrics", "plots"):
            for out in stage.get(kind, []):
                path, opts = next(iter(out.items())) if isinstance(out, dict) else (out, {})
                assert opts.get("persist") is True, f"dvc.yaml stage {name}: {kind} {path} lacks persist: true"


def test_covered_by_a_dep():
    """The helper the stage check relies on: a folder covers the modules below it."""
    file = SRC / "evaluate" / "clean.py"
    assert covered(file, ["src/fillrobust/evaluate"])
    assert covered(file, ["src/fillrobust/evaluate/clean.py"])
    assert not covered(file, ["src/fillrobust/evaluate/alias.py", "src/fillrobust/eval"])


def real_data_workspace(path: Path) -> Path:
    """A workspace on the real-data branches (data.source: ccm, source.kind: import, as
    params/paper.yaml), its external input files present but empty: enough for a dry run."""
    paper = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())
    # the empty placeholders pinned as what they are: the workspace check refuses unpinned ones
    empty = hashlib.sha256(b"").hexdigest()
    ccm = {**paper["data"]["ccm"], "detector": {**paper["data"]["ccm"]["detector"], "sha256": empty}}
    imports = {eps: {**spec, "sha256": empty} for eps, spec in paper["source"]["imports"].items()}
    ws = make_workspace(path, {"data": {"source": "ccm", "ccm": ccm},
                               "source": {"kind": paper["source"]["kind"], "eps": paper["source"]["eps"],
                                          "imports": imports},
                               # imports are ResNet-18s; TOPGAP's backbone starts from them too
                               "train": {"defaults": {"arch": "resnet18"},
                                         "strategies": {"TOPGAP": {"topgap": {"backbone": "resnet18"}}}},
                               # no SynthSource to make a split of (tiny.yaml adds it to both; the
                               # forgetting experiment runs on it by default), as params/paper.yaml
                               "mtlat": {"splits": ["S1"]}, "topgap": {"splits": ["S1"]},
                               "frequency": {"forgetting": paper["frequency"]["forgetting"]}})
    ccm = paper["data"]["ccm"]
    inputs = [f"{ccm['root']}/{ccm.get('annotations', 'annotations/ccm_train_annotation.csv')}",
              ccm["detector"]["weights"], *(i["path"] for i in paper["source"]["imports"].values())]
    for name in inputs:
        (ws / name).parent.mkdir(parents=True, exist_ok=True)
        (ws / name).touch()
    return ws


# Synthetic data and source (embedded default, all stages); real CCM and imported
# checkpoints (only the data and train stages have rules on those branches).
WORKSPACES = {"synth": (make_workspace, None), "real": (real_data_workspace, ("data", "train"))}


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(WORKSPACES))
def test_stage_deps_cover_the_code_their_rules_hash(tmp_path, kind):
    """For each DVC stage: every module hashed by a rule it runs is under one of its deps."""
    build, checked = WORKSPACES[kind]
    ws = build(tmp_path / "ws")
    all_stages, modules, keys = stages(), code_modules(), rule_code_keys()
    checked = checked or tuple(all_stages)
    needed = set(checked).union(*(upstream(name, all_stages) for name in checked))
    jobs = {name: {(r, tuple(sorted(w.items())))
                   for r, w in planned(ws, "--forceall", *stage_targets(name, all_stages[name]))}
            for name in needed}
    problems, missing = [], {}  # missing: (stage, dep to add) -> rules
    for name in checked:
        deps = all_stages[name].get("deps", [])
        done_before = set().union(*(jobs[s] for s in upstream(name, all_stages)))
        for rule in sorted({r for r, _ in jobs[name] - done_before}):
            if rule not in keys:
                continue  # an aggregate target (input only): runs no code
            if not keys[rule]:
                problems.append(f"rule {rule} runs a command but hashes no code (no code=CODE[...])")
            for module in {m for key in keys[rule] for m in modules[key]}:
                if not all(covered(f, deps) for f in module_files(module)):
                    dep = f"src/fillrobust/{module}{'' if (SRC / module).is_dir() else '.py'}"
                    missing.setdefault((name, dep), set()).add(rule)
    problems += [f"stage {name}: deps lack {dep} (hashed by rules {sorted(rules)})"
                 for (name, dep), rules in sorted(missing.items())]
    assert not problems, "\n".join(problems)
