"""The papers' own numbers, shown beside ours in the tables.

Only numbers stated in the text are here (REFERENCE.md); figure-only values
are absent rather than guessed. Approximate statements ("~46 %") are kept as
the stated value with ``approx=True``.
"""

from __future__ import annotations

# ICIP 2021 Fig. 5 (left), stated in the text: ST->FT test accuracy at L=1.
FROZEN_L1 = {"S1": 78.34, "S2": 65.63, "S3": 82.32}

# ICIP 2021 Fig. 5 (right), stated in the text: best AT->FT accuracy and its eps_s.
EPS_BEST = {"S1": (0.05, 80.97), "S2": (1.0, 73.27), "S3": (0.5, 88.23)}

# ICIP 2021, Sec. 3.4: per-container test accuracy (%), (split, container, strategy);
# container "all" (the whole test set) has the two numbers the text states per split:
# ST->FT at L = 1 and AT->FT at the selected eps_s (Fig. 5), the study's ST-FT and AT-FT.
FILLING_PER_CONTAINER: dict[tuple[str, str, str], tuple[float, bool]] = {
    **{(split, "all", "ST-FT"): (value, False) for split, value in FROZEN_L1.items()},
    **{(split, "all", "AT-FT"): (value, False) for split, (_, value) in EPS_BEST.items()},
    ("S1", "champagne_flute", "ST"): (46.0, True),
    ("S1", "champagne_flute", "AT"): (46.0, True),
    ("S3", "red_cup", "ST"): (0.005, False),
    ("S3", "red_cup", "AT-FT"): (99.5, False),
    ("S3", "green_glass", "ST"): (66.0, False),
}


def filling_reference(split: str, container: str, strategy: str) -> float | None:
    """The paper's per-container accuracy (%) or None when it gives none."""
    hit = FILLING_PER_CONTAINER.get((split, container, strategy))
    return None if hit is None else hit[0]

