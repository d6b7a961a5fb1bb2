"""``python -m fillrobust <command>``: the only entry point the rules call.

Every command takes its parameter slice as a JSON string (``--params``), so a
rule passes exactly the keys it depends on. Heavy imports happen inside the
command functions: ``import torch`` costs seconds and data commands skip it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"--params must be JSON: {err}") from err


def cmd_synthesize(a: argparse.Namespace) -> None:
    from fillrobust.data.synthetic import synthesize_frames

    synthesize_frames(a.out, a.params, a.containers, workers=a.workers)


def cmd_crop(a: argparse.Namespace) -> None:
    from fillrobust.data.crop import build_cropped_dataset

    build_cropped_dataset(a.frames, a.out, a.params)


def cmd_ingest_ccm(a: argparse.Namespace) -> None:
    from fillrobust.data.ccm import build_ccm_dataset

    report = build_ccm_dataset(a.root, a.out, a.params, a.seed)
    print(json.dumps(report, indent=1, default=str))


def cmd_contact_sheets(a: argparse.Namespace) -> None:
    from fillrobust.data.verify import write_contact_sheets

    for path in write_contact_sheets(a.dataset, a.out):
        print(path)


def cmd_fetch(a: argparse.Namespace) -> None:
    from fillrobust.data.fetch import fetch

    print(fetch(a.url, a.dest, a.sha256))


def cmd_split(a: argparse.Namespace) -> None:
    from fillrobust.data.splits import write_split

    split = write_split(a.dataset, a.name, a.params, a.out)
    print(split.groupby("role").size().to_dict())


def cmd_train(a: argparse.Namespace) -> None:
    from fillrobust.train.run import run_training

    run_training(a.dataset, a.split, a.strategy, a.params, a.seed, a.out, a.device, a.threads,
                 a.split_name, a.selection, a.source_dir)


def cmd_synthesize_source(a: argparse.Namespace) -> None:
    from fillrobust.data.synthetic_source import synthesize_source

    synthesize_source(a.out, a.params)


def cmd_train_source(a: argparse.Namespace) -> None:
    from fillrobust.train.run import run_training

    run_training(a.dataset, None, "SOURCE", a.params, a.seed, a.out, a.device, a.threads,
                 split_name="source", extra={"eps": a.eps})


def cmd_import_source(a: argparse.Namespace) -> None:
    from fillrobust.models.pretrained import import_checkpoint

    info = import_checkpoint(a.file, a.sha256, a.format, a.eps, a.out)
    print(json.dumps({k: info[k] for k in ("eps", "source_file", "weights_sha256")}, indent=1))


def cmd_select_eps(a: argparse.Namespace) -> None:
    from fillrobust.report.selection import select_eps

    print(json.dumps(select_eps(a.dataset, a.split, a.weights, a.params, a.out, a.device, a.threads), indent=1))


def cmd_adopt(a: argparse.Namespace) -> None:
    from fillrobust.report.selection import adopt_selected

    adopt_selected(a.selection, a.candidates, a.strategy, a.out)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.clean import evaluate_clean

    summary = evaluate_clean(a.dataset, a.split, a.checkpoint, a.params, a.out, a.device, a.threads,
                             a.strategy)
    print(json.dumps(summary, indent=1))


def cmd_table_filling(a: argparse.Namespace) -> None:
    from fillrobust.data.store import write_json
    from fillrobust.report.figures import grouped_bars
    from fillrobust.report.tables import filling_per_container, write_table

    table = filling_per_container(a.predictions)
    write_table(table, a.out, a.params["decimals"],
                caption="Filling-level accuracy (%) per test container (paper: ICIP 2021 Fig. 6)")
    seeds = table[table["seed"] == "mean"] if (table["seed"] == "mean").any() else table
    grouped_bars(seeds, "split", "container", "strategy", "accuracy", a.figure, err="accuracy_std")
    overall = table[table["container"] == "all"]
    write_json(a.metrics, {f"{r.split}/{r.strategy}/seed{r.seed}": round(r.accuracy, 4)
                           for r in overall.itertuples()})
    print(table.to_string())


def cmd_table_sensitivity(a: argparse.Namespace) -> None:
    from fillrobust.report import sensitivity as sens
    from fillrobust.report.tables import write_table

    decimals = a.params["decimals"]
    frozen = sens.frozen_layers_table(a.frozen)
    write_table(frozen, f"{a.tables}/sensitivity_frozen_layers", decimals,
                caption="ST-FT test accuracy (%) vs frozen stages L (ICIP 2021 Fig. 5 left)")
    sens.line_plot(frozen, "L", f"{a.figures}/sensitivity_frozen_layers.png")
    eps = sens.eps_source_table(a.eps, a.selections)
    write_table(eps, f"{a.tables}/sensitivity_eps_source", decimals,
                caption="AT-FT test accuracy (%) vs source eps at L=1 (ICIP 2021 Fig. 5 right)")
    sens.line_plot(eps, "eps_s", f"{a.figures}/sensitivity_eps_source.png", logx=True, mark="selected")
    write_table(sens.fixed_vs_full(frozen), f"{a.tables}/transfer_fixed_vs_full", decimals,
                caption="Fixed-feature (L=4) vs full-network (L=0) transfer of the standard source model")
    print(frozen.to_string(), eps.to_string(), sep="\n")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fillrobust", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Callable[[argparse.Namespace], None], *args: tuple[str, dict]) -> None:
        p = sub.add_parser(name)
        for flag, kw in args:
            p.add_argument(flag, **kw)
        p.set_defaults(func=func)

    req = {"required": True}
    params = ("--params", {"type": _json, "required": True, "help": "parameter slice as JSON"})
    device = ("--device", {"default": "auto"})
    threads = ("--threads", {"type": int, "default": None})
    add("synthesize", cmd_synthesize, params, ("--containers", {"type": _json, **req}),
        ("--out", req), ("--workers", {"type": int, "default": 1}))
    add("crop", cmd_crop, params, ("--frames", req), ("--out", req))
    add("ingest-ccm", cmd_ingest_ccm, params, ("--root", req), ("--seed", {"type": int, "default": 0}),
        ("--out", req))
    add("contact-sheets", cmd_contact_sheets, ("--dataset", req), ("--out", req))
    add("fetch", cmd_fetch, ("--url", req), ("--sha256", req), ("--dest", req))
    add("split", cmd_split, params, ("--dataset", req), ("--name", req), ("--out", req))
    add("train", cmd_train, params, ("--dataset", req), ("--split", req), ("--split-name", {"default": ""}),
        ("--strategy", req), ("--seed", {"type": int, **req}), ("--out", req), device, threads,
        ("--selection", {"default": None}), ("--source-dir", {"default": None}))
    add("synthesize-source", cmd_synthesize_source, params, ("--out", req))
    add("train-source", cmd_train_source, params, ("--dataset", req), ("--eps", {"type": float, **req}),
        ("--seed", {"type": int, "default": 0}), ("--out", req), device, threads)
    add("import-source", cmd_import_source, ("--file", req), ("--sha256", req), ("--format", req),
        ("--eps", {"type": float, **req}), ("--out", req))
    add("select-eps", cmd_select_eps, params, ("--dataset", req), ("--split", req),
        ("--weights", {"nargs": "+", **req}), ("--out", req), device, threads)
    add("adopt", cmd_adopt, ("--selection", req), ("--candidates", {"nargs": "+", **req}),
        ("--strategy", req), ("--out", req))
    add("evaluate", cmd_evaluate, params, ("--dataset", req), ("--split", req), ("--checkpoint", req),
        ("--out", req), ("--strategy", {"default": None, "help": "label (defaults to the checkpoint's)"}),
        device, threads)
    add("table-filling", cmd_table_filling, params, ("--predictions", {"nargs": "+", **req}),
        ("--out", req), ("--figure", req), ("--metrics", req))
    add("table-sensitivity", cmd_table_sensitivity, params, ("--frozen", {"nargs": "+", **req}),
        ("--eps", {"nargs": "+", **req}), ("--selections", {"nargs": "+", **req}),
        ("--tables", req), ("--figures", req))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the command; errors print one clear line."""
    args = _parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"fillrobust {args.command}: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
