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
                 a.split_name, a.selection, a.source_dir, eval_out=a.eval_out)


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

    chosen = adopt_selected(a.selection, a.candidates, a.strategy, a.out)
    if a.candidate_evals:  # the chosen member's clean evaluation, under the study strategy's name
        from fillrobust.evaluate.alias import relabel_clean

        if len(a.candidate_evals) != len(a.candidates) or not a.eval_out:
            raise ValueError("adopt: --candidate-evals needs one folder per --candidates entry and --eval-out")
        relabel_clean(a.candidate_evals[a.candidates.index(chosen)], a.eval_out, a.strategy, a.strategy)


def cmd_evaluate(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.clean import evaluate_clean

    summary = evaluate_clean(a.dataset, a.split, a.checkpoint, a.params, a.out, a.device, a.threads,
                             a.strategy)
    print(json.dumps(summary, indent=1))


def cmd_corrupt_set(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.corruptions import build_corrupted_set

    manifest = build_corrupted_set(a.dataset, a.split, a.params, a.out, a.workers)
    print(manifest.groupby("corruption").size().to_dict())


def cmd_transfer_set(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.robustness import build_transfer_set

    manifest = build_transfer_set(a.dataset, a.split, a.surrogate, a.params, a.out, a.device, a.threads)
    print(manifest.groupby("threat")["norm"].describe().to_string())


def cmd_evaluate_threats(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.robustness import evaluate_threats

    summary = evaluate_threats(a.dataset, a.split, a.checkpoint, a.params, a.out, a.transfer, a.device,
                               a.threads, a.strategy)
    print(json.dumps(summary, indent=1))


def cmd_evaluate_corruptions(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.robustness import evaluate_corruptions

    summary = evaluate_corruptions(a.corrupted, a.checkpoint, a.params, a.out, a.device, a.threads, a.strategy)
    print(json.dumps({k: summary[k] for k in ("strategy", "clean_accuracy", "accuracy")}, indent=1))


def cmd_table_robustness(a: argparse.Namespace) -> None:
    from fillrobust.report.robustness import write_robustness_tables

    for path in write_robustness_tables(a.threats, a.corruptions, a.params, a.tables, a.figures):
        print(path)


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


def _pairs(items: list[str], flag: str) -> dict[str, str]:
    """``name=path`` arguments as an ordered mapping."""
    out = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag}: expected name=path, got {item!r}")
        out[name] = path
    return out


def cmd_derive_variant(a: argparse.Namespace) -> None:
    from fillrobust.data.frequency import derive_dataset
    from fillrobust.data.store import read_dataset

    derive_dataset(a.dataset, a.out, a.variant, a.params)
    meta = read_dataset(a.out).meta
    print(json.dumps({k: meta.get(k) for k in ("name", "variant", "count", "block_size", "clipped_fraction")}))


def cmd_train_variant(a: argparse.Namespace) -> None:
    from fillrobust.data.derived import train_variant

    train_variant(a.dataset, a.split, a.strategy, a.params, a.seed, a.out, a.device, a.threads,
                  a.split_name, a.variant)


def cmd_cross_dataset(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.frequency_study import cross_dataset
    from fillrobust.report.tables import write_table

    models = []
    for item in a.models:
        split, variant, weights = item.split(":", 2)
        models.append((split, variant, weights))
    table = cross_dataset(models, _pairs(a.datasets, "--datasets"), _pairs(a.splits, "--splits"),
                          a.params, a.device, a.threads)
    write_table(table, a.out, a.params["decimals"],
                caption="Test accuracy (%): rows trained on a variant, columns tested on one "
                        "(thesis Tables A.3-A.5; paper_*: ResNet-18 on CIFAR-10, Table A.4)")
    print(table.to_string())


def cmd_margins(a: argparse.Namespace) -> None:
    from fillrobust.evaluate.frequency_study import model_margins

    table = model_margins(a.weights, a.label, _pairs(a.datasets, "--datasets"), a.split, a.split_name,
                          a.params, a.out, a.device, a.threads)
    print(table.groupby(["data", "basis", "subspace"])["margin"].median().to_string())


def cmd_table_margins(a: argparse.Namespace) -> None:
    import pandas as pd

    from fillrobust.evaluate.frequency_study import margin_summary_table
    from fillrobust.report import frequency as fig
    from fillrobust.report.tables import write_table

    summary = margin_summary_table([pd.read_parquet(p) for p in a.margins])
    write_table(summary, f"{a.tables}/margins", a.params["decimals"],
                caption="Margins (l2) of test images per subspace: 5th percentile, median, 95th "
                        "percentile (thesis Figs. 4.3, 4.4, 4.7)")
    fig.margin_panels(summary, "dct", f"{a.figures}/margins_dct.png")
    fig.margin_panels(summary, "random", f"{a.figures}/margins_random.png")
    fig.median_lines(summary, "dct", "original", f"{a.figures}/margins_median_original.png")
    print(summary.to_string())


def cmd_synthetic_margins(a: argparse.Namespace) -> None:
    from fillrobust.data.store import write_parquet
    from fillrobust.evaluate.frequency_study import synthetic_table

    table = synthetic_table(a.params)
    write_parquet(a.out, table)
    print(table.to_string())


def cmd_synthetic_transition(a: argparse.Namespace) -> None:
    from fillrobust.data.store import write_parquet
    from fillrobust.evaluate.frequency_study import synthetic_transition

    table = synthetic_transition(a.params)
    write_parquet(a.out, table)
    print(table.to_string())


def cmd_forgetting(a: argparse.Namespace) -> None:
    from fillrobust.data.store import write_parquet
    from fillrobust.evaluate.frequency_study import forgetting

    p = a.params
    table = forgetting(a.dataset, a.split, p["hyper"], p["forgetting"], p["seed"], a.device, a.threads)
    write_parquet(a.out, table)
    print(table.to_string())


def cmd_adversarial_energy(a: argparse.Namespace) -> None:
    from fillrobust.data.store import write_parquet
    from fillrobust.evaluate.frequency_study import adversarial_energy

    p = a.params
    table = adversarial_energy(a.dataset, a.split, p["hyper"], p["energy"], p["seed"], a.device, a.threads)
    write_parquet(a.out, table)
    print(table.to_string())


def cmd_tables_frequency(a: argparse.Namespace) -> None:
    from pathlib import Path

    import pandas as pd

    from fillrobust.report.frequency import write_frequency_table

    for path in a.results:
        name = Path(path).stem
        write_frequency_table(pd.read_parquet(path), name, a.tables, a.figures, a.params["decimals"])
        print(name)


def cmd_table_prime(a: argparse.Namespace) -> None:
    from fillrobust.report.figures import grouped_bars
    from fillrobust.report.tables import filling_per_container, write_table

    table = filling_per_container(a.predictions)
    write_table(table, a.out, a.params["decimals"],
                caption="Filling-level accuracy (%) per test container: DA-PRIME and AT-DA-PRIME beside "
                        "ST, ST-FT, AT-FT (thesis Fig. 5.10)")
    seeds = table[table["seed"] == "mean"] if (table["seed"] == "mean").any() else table
    grouped_bars(seeds, "split", "container", "strategy", "accuracy", a.figure, err="accuracy_std")
    print(table.to_string())


def cmd_table_prime_sweep(a: argparse.Namespace) -> None:
    from fillrobust.report import prime
    from fillrobust.report.tables import write_table

    p = a.params
    table = prime.sweep_table(p["rows"], a.sweep, p["splits"], p["seeds"], a.eval_root)
    captions = {"depth": "PRIME depth m at width 3 (thesis Tab. 5.7): test-container accuracy (%)",
                "beta": "PRIME mixing p ~ Beta(a, b) (thesis Fig. 5.9; the thesis states the best cell per split)",
                "ablation": "PRIME primitives ablation (thesis Tab. 5.5 on ImageNet-100: paper_in100_c is its "
                            "corruption accuracy, paper_in100 its clean accuracy; another dataset and metric, "
                            "so the figure shows our C-CCM accuracy only)"}
    write_table(table, a.out, p["decimals"], caption=captions[a.sweep])
    prime.sweep_figure(table, a.sweep, a.figure)
    print(table.to_string())


def cmd_table_prime_baselines(a: argparse.Namespace) -> None:
    from fillrobust.report import prime
    from fillrobust.report.tables import write_table

    p = a.params
    table = prime.baselines_table(p["strategies"], p["splits"], p["seeds"], a.eval_root, p["corruptions"],
                                  p.get("preprocess"))
    write_table(table, a.out, p["decimals"],
                caption="Preprocessing and augmentation baselines (thesis Tab. 5.1): clean and mean "
                        "common-corruption accuracy (%); paper_c10_*: thesis Tab. 5.1, ResNet-18 on CIFAR-10, "
                        "30 epochs, no JSD (no PRIME column there: DA-PRIME's are blank)")
    print(table.to_string())


def cmd_prime_sheets(a: argparse.Namespace) -> None:
    from fillrobust.report.prime_sheets import write_prime_sheets

    for path in write_prime_sheets(a.dataset, a.params["prime"], a.params["sheets"], a.out):
        print(path)


def cmd_claims(a: argparse.Namespace) -> None:
    from fillrobust.report.claims import write_claims

    table = write_claims(a.claims, a.tables or [], a.out, a.params.get("known"), a.params["decimals"])
    print(table[["claim", "holds", "our_value"]].to_string())


def cmd_claims_summary(a: argparse.Namespace) -> None:
    from fillrobust.report.claims import summary_lines

    print("\n".join(summary_lines(a.table)))


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
        ("--selection", {"default": None}), ("--source-dir", {"default": None}),
        ("--eval-out", {"default": None, "help": "also write the clean test evaluation here"}))
    add("synthesize-source", cmd_synthesize_source, params, ("--out", req))
    add("train-source", cmd_train_source, params, ("--dataset", req), ("--eps", {"type": float, **req}),
        ("--seed", {"type": int, "default": 0}), ("--out", req), device, threads)
    add("import-source", cmd_import_source, ("--file", req), ("--sha256", req), ("--format", req),
        ("--eps", {"type": float, **req}), ("--out", req))
    add("select-eps", cmd_select_eps, params, ("--dataset", req), ("--split", req),
        ("--weights", {"nargs": "+", **req}), ("--out", req), device, threads)
    add("adopt", cmd_adopt, ("--selection", req), ("--candidates", {"nargs": "+", **req}),
        ("--strategy", req), ("--out", req),
        ("--candidate-evals", {"nargs": "+", "default": None, "help": "clean evaluation folder per candidate"}),
        ("--eval-out", {"default": None, "help": "where the adopted model's clean evaluation goes"}))
    add("evaluate", cmd_evaluate, params, ("--dataset", req), ("--split", req), ("--checkpoint", req),
        ("--out", req), ("--strategy", {"default": None, "help": "label (defaults to the checkpoint's)"}),
        device, threads)
    strategy = ("--strategy", {"default": None, "help": "label (defaults to the checkpoint's)"})
    add("corrupt-set", cmd_corrupt_set, params, ("--dataset", req), ("--split", req), ("--out", req),
        ("--workers", {"type": int, "default": 1}))
    add("transfer-set", cmd_transfer_set, params, ("--dataset", req), ("--split", req), ("--surrogate", req),
        ("--out", req), device, threads)
    add("evaluate-threats", cmd_evaluate_threats, params, ("--dataset", req), ("--split", req),
        ("--checkpoint", req), ("--transfer", {"default": None}), ("--out", req), strategy, device, threads)
    add("evaluate-corruptions", cmd_evaluate_corruptions, params, ("--corrupted", req), ("--checkpoint", req),
        ("--out", req), strategy, device, threads)
    add("table-robustness", cmd_table_robustness, params, ("--threats", {"nargs": "+", **req}),
        ("--corruptions", {"nargs": "+", **req}), ("--tables", req), ("--figures", req))
    add("table-filling", cmd_table_filling, params, ("--predictions", {"nargs": "+", **req}),
        ("--out", req), ("--figure", req), ("--metrics", req))
    add("table-sensitivity", cmd_table_sensitivity, params, ("--frozen", {"nargs": "+", **req}),
        ("--eps", {"nargs": "+", **req}), ("--selections", {"nargs": "+", **req}),
        ("--tables", req), ("--figures", req))
    add("derive-variant", cmd_derive_variant, params, ("--dataset", req), ("--variant", req), ("--out", req))
    add("train-variant", cmd_train_variant, params, ("--dataset", req), ("--split", req),
        ("--split-name", req), ("--variant", req), ("--strategy", {"default": "ST"}),
        ("--seed", {"type": int, **req}), ("--out", req), device, threads)
    add("cross-dataset", cmd_cross_dataset, params, ("--models", {"nargs": "+", **req,
        "help": "split:variant:weights"}), ("--datasets", {"nargs": "+", **req, "help": "name=dir"}),
        ("--splits", {"nargs": "+", **req, "help": "split=file"}), ("--out", req), device, threads)
    add("margins", cmd_margins, params, ("--weights", req), ("--label", req),
        ("--datasets", {"nargs": "+", **req, "help": "name=dir"}), ("--split", req), ("--split-name", req),
        ("--out", req), device, threads)
    add("table-margins", cmd_table_margins, params, ("--margins", {"nargs": "+", **req}), ("--tables", req),
        ("--figures", req))
    add("synthetic-margins", cmd_synthetic_margins, params, ("--out", req))
    add("synthetic-transition", cmd_synthetic_transition, params, ("--out", req))
    add("forgetting", cmd_forgetting, params, ("--dataset", req), ("--split", req), ("--out", req),
        device, threads)
    add("adversarial-energy", cmd_adversarial_energy, params, ("--dataset", req), ("--split", req),
        ("--out", req), device, threads)
    add("tables-frequency", cmd_tables_frequency, params, ("--results", {"nargs": "+", **req}),
        ("--tables", req), ("--figures", req))
    add("table-prime", cmd_table_prime, params, ("--predictions", {"nargs": "+", **req}), ("--out", req),
        ("--figure", req))
    add("table-prime-sweep", cmd_table_prime_sweep, params, ("--sweep", req), ("--eval-root", req),
        ("--out", req), ("--figure", req))
    add("table-prime-baselines", cmd_table_prime_baselines, params, ("--eval-root", req), ("--out", req))
    add("prime-sheets", cmd_prime_sheets, params, ("--dataset", req), ("--out", req))
    add("claims", cmd_claims, params, ("--claims", req), ("--tables", {"nargs": "*", "default": []}),
        ("--out", req))
    add("claims-summary", cmd_claims_summary, ("table", {"help": "results/tables/claims.csv"}))
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
