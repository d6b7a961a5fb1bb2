"""The grammar of strategy ids: the one place that says what an id looks like.

An id is a strategy name (a key of ``train.strategies``) optionally followed
by one sweep suffix:

- ``_L{L}``: the frozen-layers sweep (ICIP 2021 Fig. 5), ``ST-FT_L2``;
- ``_eps{e}``: the source-eps sweep, ``AT-FT_eps0.5``; followed by ``_L{L}`` it also
  sets the frozen stages (NeurIPS 2020's fixed-feature / full-network transfer per
  source eps, ``AT-FT_eps0.5_L4``);
- PRIME sweep tokens, in this order: ``_e{epochs}``, ``_m{depth}``,
  ``_b{a}-{b}`` (Beta mixing law), ``_no-{primitive}``, e.g.
  ``DA-PRIME_e5_m1_b1-1_no-color``.

Users: the parameter schema takes :data:`NAME_PATTERN` for strategy names
(``config.load_schema``), the rules take :data:`WILDCARD` as the ``strategy``
wildcard constraint (``workflow/rules/common.smk``), and ``config`` parses
suffixes with :data:`SWEEP_FROZEN`, :data:`SWEEP_EPS` and :data:`TOKEN`. A
new strategy is a new key in params only. Dependency-free (imported by the
Snakefile before any job runs).
"""

from __future__ import annotations

import re

#: A strategy name: capitals, digits and dashes, no ``_`` (it starts a suffix).
NAME = r"[A-Z][A-Z0-9-]*"
#: The same, anchored, as the JSON schema's ``pattern`` for strategy names.
NAME_PATTERN = f"^{NAME}$"

SWEEP_FROZEN = "_L"
SWEEP_EPS = "_eps"

#: One PRIME sweep token (without its leading ``_``), with named groups.
TOKEN = re.compile(r"^(?:e(?P<epochs>[1-9][0-9]*)|m(?P<depth>[1-9][0-9]*)"
                   r"|b(?P<a>[0-9][0-9.]*)-(?P<b>[0-9][0-9.]*)|no-(?P<drop>[a-z]+))$")

#: The ``strategy`` wildcard of the rules: a name and at most one kind of suffix, or
#: ``_eps{e}_L{L}`` (L in 0-4: the ResNet stages; PRIME tokens are checked in full by config).
WILDCARD = (NAME + rf"({SWEEP_FROZEN}[0-4]|{SWEEP_EPS}[0-9.]+({SWEEP_FROZEN}[0-4])?"
            r"|(_(e[0-9]+|m[0-9]+|b[0-9.]+-[0-9.]+|no-[a-z]+))*)")


def strategy_base(strategy: str) -> str:
    """``ST-FT_L2`` -> ``ST-FT``; ``AT-FT_eps0.5`` -> ``AT-FT``; ``ST`` -> ``ST``."""
    return strategy.split("_", 1)[0]


def sweep_parts(strategy: str) -> tuple[str, str | None, str | None]:
    """A sweep id's base and the texts of its source eps and frozen-stage count, unchecked:
    ``AT-FT_eps1_L4`` -> (``AT-FT``, ``"1"``, ``"4"``); ``ST-FT_L2`` -> (``ST-FT``, None, ``"2"``);
    ``AT-FT_eps0.5`` -> (``AT-FT``, ``"0.5"``, None); a plain or PRIME id -> (base, None, None)."""
    base = strategy_base(strategy)
    suffix = strategy[len(base):]
    if suffix.startswith(SWEEP_FROZEN):
        return base, None, suffix[len(SWEEP_FROZEN):]
    if suffix.startswith(SWEEP_EPS):
        eps, with_frozen, frozen = suffix[len(SWEEP_EPS):].partition(SWEEP_FROZEN)
        return base, eps, frozen if with_frozen else None
    return base, None, None
