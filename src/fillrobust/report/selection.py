"""Choosing eps_s from the AT-FT sweep (ICIP 2021, Sec. 3.3) and adopting that model."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from fillrobust.data.atomic import atomic_write, read_json_object
from fillrobust.data.store import write_json
from fillrobust.io.checkpoint import read_sidecar, write_sidecar
from fillrobust.job_params import eps_label
from fillrobust.strategy_ids import SWEEP_EPS


def sweep_eps(model_id: str) -> float:
    """``AT-FT_eps0.5`` -> 0.5."""
    if SWEEP_EPS not in model_id:
        raise ValueError(f"{model_id!r} is not an eps-sweep model id (expected '..._eps<value>')")
    return float(model_id.split(SWEEP_EPS, 1)[1])


def mean_scores(scores: dict[float, list[float]]) -> dict[float, float]:
    """Mean score per eps (over seeds), in ascending eps order."""
    return {eps: sum(v) / len(v) for eps, v in sorted(scores.items())}


def pick_best(scores: dict[float, list[float]]) -> float:
    """The eps with the highest mean score; ties go to the smaller eps."""
    if not scores:
        raise ValueError("select-eps: no sweep models given")
    means = mean_scores(scores)
    return max(means, key=lambda eps: means[eps])


def select_eps(dataset: str, split: str, weights: list[str], params: dict[str, Any], out: str,
               device: str = "auto", threads: int | None = None) -> dict[str, Any]:
    """Evaluate the eps-sweep models and pick the eps_s with the best mean accuracy over seeds.

    ``params['select_by']``: ``test`` (the paper: accuracy on the test
    containers) or ``val`` (the validation carve-out of the train containers).
    """
    import numpy as np

    from fillrobust.data.splits import indices, read_split
    from fillrobust.data.store import read_dataset
    from fillrobust.device import pick_device, seed_everything
    from fillrobust.evaluate.clean import load_trained, predict

    seed_everything(0, threads)
    dev = pick_device(device)
    ds = read_dataset(dataset)
    positions = indices(read_split(split), params["select_by"])
    labels = ds.manifest.set_index("index").loc[positions, "label"].to_numpy()
    scores: dict[float, list[float]] = {}
    for path in weights:
        model, info = load_trained(path, dev)
        accuracy = float(np.mean(predict(model, ds.images, positions, dev, 256) == labels))
        scores.setdefault(sweep_eps(info["strategy"]), []).append(accuracy)
    best, means = pick_best(scores), mean_scores(scores)
    result = {"selected_eps": best, "by": params["select_by"],
              "scores": {eps_label(e): round(m, 6) for e, m in means.items()}}
    write_json(out, result)
    return result


def adopt_selected(selection: str, candidates: list[str], strategy: str, out: str, *,
                   candidate_evals: list[str] | None = None, eval_out: str | None = None) -> str:
    """Copy the sweep checkpoint at the selected eps_s to ``out``, relabelled ``strategy``;
    returns the chosen candidate.

    ``candidate_evals`` (one clean-evaluation folder per candidate) and ``eval_out``:
    the chosen member's clean evaluation is also written there under ``strategy``'s name.
    """
    if candidate_evals and (len(candidate_evals) != len(candidates) or not eval_out):
        raise ValueError("adopt_selected: candidate_evals needs one folder per candidate and eval_out")
    eps = read_json_object(selection, "eps selection file", ["selected_eps"])["selected_eps"]
    wanted = f"{SWEEP_EPS}{eps_label(eps)}"
    chosen = [c for c in candidates if Path(c).parent.parent.name.endswith(wanted)]
    if len(chosen) != 1:
        raise ValueError(f"adopt: expected one candidate for {wanted}, found {chosen} among {candidates}")
    info = read_sidecar(chosen[0])
    info.update(strategy=strategy, selected_from=info["strategy"], selection=str(selection))
    out_path = Path(out)
    atomic_write(out_path, lambda tmp: shutil.copyfile(chosen[0], tmp))
    write_sidecar(out_path, info)
    if candidate_evals:
        from fillrobust.evaluate.alias import relabel_clean

        relabel_clean(candidate_evals[candidates.index(chosen[0])], eval_out, strategy, strategy)
    return chosen[0]
