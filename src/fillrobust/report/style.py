"""One order and one colour per training strategy, for every figure and the report.

The order is the papers' (ICIP 2021 Fig. 2 and 6: ST, AT, ST-FT, ST-AFT,
AT-FT, AT-AFT), then the thesis' PRIME and preprocessing models. The papers'
text does not name their plot colours, so the colours are a fixed palette
(matplotlib's tab10, colour-blind-safe order) assigned once here: a strategy
has the same colour in every bar chart and in the HTML report. Sweep members
(``ST-FT_L1``, ``AT-FT_eps0.5``, ``DA-PRIME_m1_b1-1``) take their base
strategy's place and colour.
"""

from __future__ import annotations

from collections.abc import Iterable

STRATEGY_ORDER: tuple[str, ...] = (
    "ST", "AT", "ST-FT", "ST-AFT", "AT-FT", "AT-AFT",
    "DA-PRIME", "AT-DA-PRIME", "LP", "AUGMIX-LP", "GRAY", "AUGMIX",
    # M-TLAT Tables 1-3: standard, Mixup, TLAT, IAT, M-TLAT, then Table 3's labelings
    "STANDARD", "MIXUP", "TLAT", "IAT", "M-TLAT", "FGSM-AT", "TFGSM-AT", "LS-AT",
)

STRATEGY_COLOURS: dict[str, str] = {
    "ST": "#1f77b4",
    "AT": "#ff7f0e",
    "ST-FT": "#2ca02c",
    "ST-AFT": "#d62728",
    "AT-FT": "#9467bd",
    "AT-AFT": "#8c564b",
    "DA-PRIME": "#e377c2",
    "AT-DA-PRIME": "#7f7f7f",
    "LP": "#bcbd22",
    "AUGMIX-LP": "#17becf",
    "GRAY": "#aec7e8",
    "AUGMIX": "#9edae5",
    # M-TLAT's models are not the ICIP strategies: matplotlib's Dark2, never one of the above
    "STANDARD": "#666666",
    "MIXUP": "#e6ab02",
    "TLAT": "#7570b3",
    "IAT": "#1b9e77",
    "M-TLAT": "#d95f02",
    "FGSM-AT": "#a6761d",
    "TFGSM-AT": "#66a61e",
    "LS-AT": "#e7298a",
}

OTHER_COLOUR = "#555555"  # names outside the map (new strategies until they get an entry)


def base_strategy(name: str) -> str:
    """The strategy a model id belongs to: the longest known name it starts with
    followed by nothing or a sweep suffix (``_``)."""
    hits = [s for s in STRATEGY_COLOURS if name == s or name.startswith(s + "_")]
    return max(hits, key=len) if hits else name


def strategy_colour(name: str) -> str | None:
    """The strategy's colour (hex), or None when ``name`` is not a strategy."""
    return STRATEGY_COLOURS.get(base_strategy(str(name)))


def order_strategies(names: Iterable[str]) -> list[str]:
    """``names`` (deduplicated) in the papers' order; unknown names keep their
    given order after the known ones."""
    unique = list(dict.fromkeys(names))
    rank = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    return sorted(unique, key=lambda n: (rank.get(base_strategy(str(n)), len(rank)), unique.index(n)))
