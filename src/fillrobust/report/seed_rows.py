"""Several training seeds in one table: each seed's rows under its seed-mean row.

A module of its own (not ``report.tables``) so that the tables using it do not
share a code hash with the frequency study's jobs, which hash ``report.tables``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def interleave_seed_rows(table: pd.DataFrame, parts: list[tuple[str, pd.DataFrame]], keys: list[str],
                         after: str, mean: pd.Series | None = None) -> pd.DataFrame:
    """``table`` (the seed means) with each seed's rows (``parts``: seed -> rows,
    in seed order) right under the mean row of the same ``keys``.

    A ``seed`` column follows ``after``: "mean" on the rows ``mean`` marks
    (default all), "" on the others (the paper's rows), the seed on the rest.
    """
    mean = pd.Series(True, index=table.index) if mean is None else mean
    rows = table[keys].itertuples(index=False, name=None)
    position = {key: i for i, (key, ours) in enumerate(zip(rows, mean, strict=True)) if ours}
    frames = [table.assign(seed=np.where(mean, "mean", ""), _order=range(len(table)), _sub=0)]
    for n, (seed, part) in enumerate(parts, start=1):
        order = [position[key] for key in part[keys].itertuples(index=False, name=None)]
        frames.append(part.assign(seed=str(seed), _order=order, _sub=n))
    both = pd.concat(frames, ignore_index=True).sort_values(["_order", "_sub"], kind="stable")
    columns = list(table.columns)
    columns.insert(columns.index(after) + 1, "seed")
    return both[columns].reset_index(drop=True)
