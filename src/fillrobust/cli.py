"""``python -m fillrobust <command>``: the only entry point the rules call.

A thin adapter: a command is named after the rule that runs it (``rule
train_variant`` runs ``train-variant``) and calls one library function with
keywords, each flag's ``dest`` being a parameter of that function. A rule passes
its parameter slice as JSON (``--params``): exactly the keys it depends on.
Modules are imported when their command runs (``import torch`` costs seconds).
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from fillrobust.allocator import keep_freed_memory

Flag = tuple[str, dict[str, Any]]
# command -> (library function "module:function" or a local adapter, flags, how to print the result)
COMMANDS: dict[str, tuple[str | Callable[..., Any], tuple[Flag, ...], Callable[[Any], Any] | None]] = {}


def command(name: str, target: str | Callable[..., Any], flags: Sequence[Flag],
            show: Callable[[Any], Any] | None = None) -> None:
    """Register ``name``: ``target`` is called with the parsed ``flags`` as keywords."""
    COMMANDS[name] = (target, tuple(flags), show)


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--params must be JSON: {err}") from err


def _fields(sep: str, n: int, form: str) -> Callable[[str], tuple[str, ...]]:
    """A flag value of ``n`` non-empty fields joined by ``sep`` (``form`` names them)."""
    def parse(text: str) -> tuple[str, ...]:
        parts = tuple(text.split(sep, n - 1))
        if len(parts) != n or not all(parts):
            raise argparse.ArgumentTypeError(f"expected {form}, got {text!r}")
        return parts
    return parse


class _Pairs(argparse.Action):
    """``--flag a=x b=y`` -> ``{"a": "x", "b": "y"}`` (order kept)."""

    def __call__(self, parser: Any, namespace: argparse.Namespace, values: Any, option: Any = None) -> None:
        setattr(namespace, self.dest, dict(values))


def req(flag: str, **kw: Any) -> Flag:
    """A required flag; ``kw`` are its ``add_argument`` keywords."""
    return flag, {"required": True, **kw}


def opt(flag: str, default: Any = None, **kw: Any) -> Flag:
    """An optional flag with its ``default``; ``kw`` are its ``add_argument`` keywords."""
    return flag, {"default": default, **kw}


def many(flag: str, **kw: Any) -> Flag:
    """A required flag taking one or more values."""
    return flag, {"nargs": "+", "required": True, **kw}


def pairs(flag: str) -> Flag:
    """A required flag of one or more ``name=path`` values, parsed into a dict."""
    return many(flag, type=_fields("=", 2, "name=path"), action=_Pairs, help="name=path")


PARAMS = req("--params", type=_json, help="parameter slice as JSON")
DATASET, SPLIT, OUT = req("--dataset", dest="dataset_dir"), req("--split", dest="split_path"), req("--out")
OUT_DIR = req("--out", dest="out_dir")
RUN = (opt("--device", "auto"), opt("--threads", type=int))  # where and on how many threads
LABEL = opt("--strategy", help="label (defaults to the checkpoint's)")
WEIGHTS = req("--checkpoint", dest="weights")
TABLES, FIGURES = req("--tables"), req("--figures")


def _slices(name: str, **slices: str) -> Callable[..., Any]:
    """``name`` called with the flags and, from the --params slice, ``keyword=params[key]``
    (``key?``: optional, None when the slice lacks it)."""
    return lambda params, **kw: _target(name)(**{k: params.get(key[:-1]) if key.endswith("?") else params[key]
                                                 for k, key in slices.items()}, **kw)


_report = functools.partial(_slices, decimals="decimals")  # a report writer's decimals from --params


def _parquet(name: str, **slices: str) -> Callable[..., Any]:
    """A frequency-study result written to ``out``; ``slices``: keyword -> key of the params slice."""
    def run(out: str, params: dict[str, Any], **kw: Any) -> Any:
        from fillrobust.data.store import write_parquet
        table = _slices(name, **slices)(params, **kw) if slices else _target(name)(params=params, **kw)
        write_parquet(out, table)
        return table
    return run


def _silent(_: Any) -> None:
    """Training logs its own progress: its returned sidecar stays out of the log."""


def _train_source(eps: float, **kw: Any) -> Any:
    from fillrobust.train.run import run_training
    return run_training(split_path=None, strategy="SOURCE", split_name="source", extra={"eps": eps}, **kw)


def _derive_variant(**kw: Any) -> dict[str, Any]:
    from fillrobust.data.frequency import derive_dataset
    from fillrobust.data.store import read_dataset
    derive_dataset(**kw)
    meta = read_dataset(kw["out_dir"]).meta
    return {k: meta.get(k) for k in ("name", "variant", "count", "block_size", "clipped_fraction")}


# data (rules in data.smk, source.smk)
command("synthesize-ccm", "data.synthetic:synthesize_frames", [PARAMS, req("--containers", type=_json),
        OUT_DIR, opt("--workers", 1, type=int)])
command("crop-ccm", "data.crop:build_cropped_dataset", [PARAMS, req("--frames", dest="frames_dir"), OUT_DIR])
command("ingest-ccm", "data.ccm:build_ccm_dataset", [PARAMS, req("--root"), opt("--seed", 0, type=int), OUT_DIR])
command("contact-sheets", "data.verify:write_contact_sheets", [req("--dataset"), OUT_DIR])
command("fetch", "data.fetch:fetch", [req("--url"), req("--sha256"), req("--dest")])
command("split", "data.splits:write_split", [PARAMS, DATASET, req("--name"), OUT],
        show=lambda split: split.groupby("role").size().to_dict())
command("synthesize-source", "data.synthetic_source:synthesize_source", [PARAMS, OUT_DIR])
command("corrupt-set", "evaluate.corruptions:build_corrupted_set", [PARAMS, DATASET, SPLIT, OUT_DIR,
        opt("--workers", 1, type=int)], show=lambda m: m.groupby("corruption").size().to_dict())
command("derive-variant", _derive_variant, [PARAMS, req("--dataset", dest="src_dir"), req("--variant"), OUT_DIR])
# models (train.smk, source.smk)
command("train-source", _train_source, [PARAMS, DATASET, req("--eps", type=float),
        opt("--seed", 0, type=int), OUT, *RUN, opt("--source-dir")], show=_silent)
command("import-source", "models.pretrained:import_checkpoint", [req("--file", dest="path"), req("--sha256"),
        req("--format", dest="fmt"), req("--eps", type=float), OUT],
        show=lambda info: {k: info[k] for k in ("eps", "source_file", "weights_sha256")})
command("train", "train.run:run_training", [PARAMS, DATASET, SPLIT, opt("--split-name", ""), req("--strategy"),
        req("--seed", type=int), OUT, *RUN, opt("--selection"), opt("--source-dir"),
        opt("--eval-out", help="also write the clean test evaluation here")], show=_silent)
command("select-eps-source", "report.selection:select_eps", [PARAMS, req("--dataset"), req("--split"),
        many("--weights"), OUT, *RUN])
command("adopt-selected", "report.selection:adopt_selected", [req("--selection"), many("--candidates"),
        req("--strategy"), OUT,
        opt("--candidate-evals", nargs="+", help="clean evaluation folder per candidate"),
        opt("--eval-out", help="where the adopted model's clean evaluation goes")])
command("train-variant", "data.derived:train_variant", [PARAMS, DATASET, SPLIT, req("--split-name"),
        req("--variant"), opt("--strategy", "ST"), req("--seed", type=int), OUT, *RUN], show=_silent)
# evaluation (evaluate.smk; clean evaluation runs inside train, evaluate-clean is for any checkpoint)
command("evaluate-clean", "evaluate.clean:evaluate_clean", [PARAMS, DATASET, SPLIT, WEIGHTS, OUT_DIR, LABEL, *RUN])
command("transfer-set", "evaluate.robustness:build_transfer_set", [PARAMS, DATASET, SPLIT, req("--surrogate"),
        OUT_DIR, *RUN], show=lambda m: m.groupby("threat")["norm"].describe())
command("evaluate-threats", "evaluate.robustness:evaluate_threats", [PARAMS, DATASET, SPLIT, WEIGHTS,
        opt("--transfer", dest="transfer_dir"), OUT_DIR, LABEL, *RUN])
command("evaluate-corruptions", "evaluate.robustness:evaluate_corruptions", [PARAMS,
        req("--corrupted", dest="corrupted_dir"), WEIGHTS, OUT_DIR, LABEL, *RUN],
        show=lambda s: {k: s[k] for k in ("strategy", "clean_accuracy", "accuracy")})
# Top-GAP (topgap.smk); train-topgap is `train` for a Top-GAP member (its params name the strategy's recipe)
command("train-topgap", "train.run:run_training", [PARAMS, DATASET, SPLIT, opt("--split-name", ""),
        req("--strategy"), req("--seed", type=int), OUT, *RUN, opt("--source-dir"), opt("--eval-out")],
        show=_silent)
command("evaluate-topgap", "evaluate.localisation:evaluate_topgap", [PARAMS, DATASET, SPLIT, WEIGHTS, OUT_DIR,
        LABEL, *RUN], show=lambda s: {k: v for k, v in s.items() if k != "params"})
command("tables-topgap", _slices("report.topgap:write_topgap_tables", ablation_k="ablation_k",
                                 decimals="decimals", seed="seed"),
        [PARAMS, many("--summaries"), many("--datasets"), TABLES, FIGURES], show=lambda t: list(t.values()))
# frequency study (frequency.smk)
command("cross-dataset", "report.frequency:write_cross_dataset", [
    PARAMS, many("--models", type=_fields(":", 3, "split:variant:weights"), help="split:variant:weights"),
    pairs("--datasets"), pairs("--splits"), OUT, *RUN])
command("margins", "evaluate.frequency_study:model_margins", [PARAMS, req("--weights"), req("--label"),
        pairs("--datasets"), SPLIT, req("--split-name"), OUT, *RUN],
        show=lambda t: t.groupby(["data", "basis", "subspace"])["margin"].median())
command("synthetic-margins", _parquet("evaluate.frequency_study:synthetic_table"), [PARAMS, OUT])
command("synthetic-transition-eps", _parquet("evaluate.frequency_study:synthetic_transition"), [PARAMS, OUT])
command("synthetic-transition", "evaluate.frequency_study:join_transition", [many("--parts"), OUT])
command("forgetting", _parquet("evaluate.frequency_study:forgetting", hyper="hyper", params="forgetting",
                               seed="seed"), [PARAMS, DATASET, SPLIT, OUT, *RUN])
command("adversarial-energy", _parquet("evaluate.frequency_study:adversarial_energy", hyper="hyper",
                                       params="energy", seed="seed"), [PARAMS, DATASET, SPLIT, OUT, *RUN])
# tables and figures (tables.smk, prime.smk, frequency.smk)
_per_container = functools.partial(_slices, decimals="decimals", container_order="test_containers?")  # papers' order
command("table-filling", _per_container("report.tables:write_filling_table"), [PARAMS, many("--predictions"), OUT,
        req("--figure"), req("--metrics")])
command("table-sensitivity", _report("report.sensitivity:write_sensitivity_tables", source_eps="source_eps?"),
        [PARAMS, many("--frozen"), many("--fixed-full", dest="fixed_full"), many("--eps"), many("--selections"),
         TABLES, FIGURES])
command("table-robustness", "report.robustness:write_robustness_tables", [PARAMS,
        many("--threats", dest="threat_paths"), many("--corruptions", dest="corruption_paths"), TABLES, FIGURES])
command("table-mtlat", "report.mtlat:write_mtlat_tables", [PARAMS, many("--threats", dest="threat_paths"),
        many("--corruptions", dest="corruption_paths"), many("--clean", dest="clean_paths"), TABLES, FIGURES])
command("table-margins", _report("report.frequency:write_margin_tables"), [PARAMS, many("--margins"),
        TABLES, FIGURES])
command("tables-frequency", _report("report.frequency:write_frequency_tables"), [PARAMS, many("--results"),
        TABLES, FIGURES])
command("table-prime-per-container", _per_container("report.prime:write_prime_table"), [PARAMS, many("--predictions"),
        OUT, req("--figure")])
command("table-prime-sweep", "report.prime:write_sweep_table", [PARAMS, req("--sweep"), req("--eval-root"), OUT,
        req("--figure")])
command("table-preprocessing-baselines", "report.prime:write_baselines_table", [PARAMS, req("--eval-root"), OUT])
command("prime-sheets", _slices("report.prime_sheets:write_prime_sheets", prime_params="prime", sheet="sheets"),
        [PARAMS, req("--dataset", dest="dataset_dir"), OUT_DIR])
command("claims", _slices("report.claims:write_claims", known="known", decimals="decimals"),
        [PARAMS, req("--claims", dest="claims_file"), opt("--tables", [], nargs="*", dest="table_paths"), OUT],
        show=lambda table: table[["claim", "holds", "our_value"]])
command("claims-summary", "report.claims:summary_lines", [("csv_path", {"metavar": "table",
                                                                       "help": "results/tables/claims.csv"})])
command("report", "report.html:write_results_report", [PARAMS, OUT, opt("--inputs", nargs="*"),
        *(req(f"--{k}") for k in ("claims", "paper", "tables", "figures", "metrics", "plots", "models", "bench"))])


def _target(target: str | Callable[..., Any]) -> Callable[..., Any]:
    """The function a command calls: ``"module:function"`` under fillrobust, or a local adapter."""
    if callable(target):
        return target
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(f"fillrobust.{module}"), name)


def _print(result: Any) -> None:
    """A command's result in its log: tables as text, mappings as JSON, lists one item a line."""
    for item in result if isinstance(result, list | tuple) else [result]:
        if hasattr(item, "to_string"):
            print(item.to_string())
        elif item is not None:
            print(json.dumps(item, indent=1, default=str) if isinstance(item, dict) else item)


def parser() -> argparse.ArgumentParser:
    """The argument parser of every registered command."""
    root = argparse.ArgumentParser(prog="fillrobust", description=__doc__)
    sub = root.add_subparsers(dest="command", required=True)
    for name, (_, flags, _) in COMMANDS.items():
        cmd = sub.add_parser(name)
        for flag, kw in flags:
            cmd.add_argument(flag, **kw)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors print one clear line."""
    args = vars(parser().parse_args(argv))
    name = args.pop("command")
    keep_freed_memory()  # per job, served or not: fewer page faults per training step, same bytes
    target, _, show = COMMANDS[name]
    try:
        result = _target(target)(**args)
        _print(show(result) if show else result)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"fillrobust {name}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
