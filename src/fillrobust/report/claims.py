"""The papers' claims, checked against the generated tables.

Claims are data (``workflow/claims.yaml``): each names its paper, an id, the
statement, the paper's value, the table(s) it reads, how to select values
from them and one rule from a small closed vocabulary (:data:`RULES`). This
module validates the file, evaluates every claim with generic code and writes
``results/tables/claims.{csv,md,tex}``.

Selection. A *selector* (``a``, ``b``, ``value``, ``target``) filters a
table's rows with ``where`` (column -> value or list of values, merged over
the claim's and the check's ``where``), then reads ``column``:

- with ``over`` it becomes a grid: one row per ``per`` group (one row when
  ``per`` is absent), one column per value of ``over`` (``agg`` combines
  duplicates, default mean), for ``best`` / ``increasing`` / ``decreasing``;
- otherwise one number per ``per`` group (or one number): ``agg`` combines
  the rows (mean, median, min, max, sum, first, last; first / last after
  sorting by ``sort``); without ``agg`` the selection must be one row.

Tables with a ``seed`` column are read at the seed mean (rows ``seed ==
"mean"``) when they have one, else as they are (one seed), unless the claim
selects seeds itself. When every table a claim reads has the rows of two or
more training seeds, the claim is also evaluated on each seed alone
(``per_seed``: "2 of 3 seeds (not 1)"), which tells a claim that fails by
one run's noise from one that fails on every seed. A claim whose table was not generated under the current
parameters, or whose selection is empty or blank, holds ``n/a`` with a note;
an unknown table, column, key or rule kind is an error naming the claim.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fillrobust.data import SOURCE_SPLIT

if TYPE_CHECKING:  # pandas is imported lazily: Snakemake reads this module at DAG time
    import pandas as pd

CLAIM_KEYS = {"id", "paper", "statement", "paper_value", "note", "table", "where", "rule", "checks"}
SELECTOR_KEYS = {"table", "where", "column", "per", "over", "agg", "sort", "scale", "label"}
AGGREGATES = ("mean", "median", "min", "max", "sum", "first", "last")

# Rule kind -> (required keys, optional keys with defaults).
RULES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "greater": (("a", "b"), {"margin": 0.0}),            # a > b + margin
    "at_least": (("a", "b"), {"margin": 0.0}),           # a >= b + margin (margin < 0: a tolerance)
    "approx": (("value", "target", "tol"), {}),          # |value - target| <= tol
    "near_chance": (("value", "classes", "tol"), {}),    # |value - 100 / classes| <= tol (in %)
    "ratio_at_least": (("a", "b", "k"), {}),             # a / b >= k
    "best": (("value", "item"), {"tol": 0.0}),           # value[item] >= max over the row - tol
    "increasing": (("value",), {"tol": 0.0, "min_change": 0.0}),
    "decreasing": (("value",), {"tol": 0.0, "min_change": 0.0}),
    "all_true": (("value",), {}),                        # every selected row is true
}
SELECTOR_ARGS = {"a", "b", "value", "target"}
SINGLE = "all"  # the group label of a selection without ``per``


class ClaimError(ValueError):
    """A claims file or claim that cannot be evaluated as written."""


class NotAvailable(Exception):  # noqa: N818 (a result, not an error)
    """The claim's inputs are absent from this run: it holds ``n/a``."""


@dataclass
class Result:
    """One claims-table row."""

    paper: str
    claim: str
    statement: str
    paper_value: str
    our_value: str
    rule: str
    holds: str  # yes | no | n/a
    per_seed: str  # "k of n seeds (not ...)" when the tables have several seeds, else ""
    note: str


# --------------------------------------------------------------------------- loading and validation


def load_claims(path: str | Path) -> list[dict[str, Any]]:
    """Read and validate a claims file; returns its claims."""
    import yaml

    from fillrobust.config import ConfigError, UniqueKeyLoader

    try:
        with open(path) as handle:  # a key given twice (a second `margin:`) is refused, not kept last
            doc = yaml.load(handle, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except ConfigError as err:
        raise ClaimError(str(err)) from err
    except (OSError, yaml.YAMLError) as err:
        raise ClaimError(f"{path}: not a readable YAML file ({err})") from err
    if not isinstance(doc, dict) or not isinstance(doc.get("claims"), list):
        raise ClaimError(f"{path}: expected a mapping with a 'claims' list")
    claims = doc["claims"]
    seen: set[str] = set()
    for i, claim in enumerate(claims):
        validate_claim(claim, f"{path}: claims[{i}]")
        if claim["id"] in seen:
            raise ClaimError(f"{path}: claim id {claim['id']!r} appears twice")
        seen.add(claim["id"])
    return claims


def validate_claim(claim: Any, where: str = "claim") -> None:
    """Check one claim's keys, rule kinds and selectors; raise :class:`ClaimError`."""
    if not isinstance(claim, dict) or not isinstance(claim.get("id"), str):
        raise ClaimError(f"{where}: expected a mapping with a string 'id'")
    name = f"claim {claim['id']!r}"
    kind = claim.get("rule")
    if "rule" in claim and kind not in RULES:
        raise ClaimError(f"{name}: rule {kind!r} unknown; expected one of {sorted(RULES)}")
    rule_keys = set(RULES[kind][0]) | set(RULES[kind][1]) if kind in RULES else set()
    _no_unknown(claim, CLAIM_KEYS | rule_keys, name)
    for key in ("paper", "statement", "paper_value"):
        if key not in claim:
            raise ClaimError(f"{name}: missing key '{key}'")
    if ("rule" in claim) == ("checks" in claim):
        raise ClaimError(f"{name}: give either 'rule' (one check) or 'checks' (a list of checks)")
    _validate_where(claim.get("where", {}), name)
    checks = _checks(claim)
    if not isinstance(checks, list) or not checks:
        raise ClaimError(f"{name}: 'checks' must be a non-empty list")
    for i, check in enumerate(checks):
        _validate_check(check, claim, f"{name}, check {i}" if "checks" in claim else name)


def _own_check(claim: dict[str, Any]) -> dict[str, Any]:
    """The single check of a claim written with ``rule`` at the top level."""
    return {k: v for k, v in claim.items() if k not in CLAIM_KEYS or k == "rule"}


def _checks(claim: dict[str, Any]) -> list[dict[str, Any]]:
    """The claim's checks: its ``checks:`` list, or the one check written inline."""
    return claim["checks"] if "checks" in claim else [_own_check(claim)]


def _no_unknown(obj: dict[str, Any], allowed: set[str], name: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise ClaimError(f"{name}: unknown key(s) {unknown}; expected some of {sorted(allowed)}")


def _validate_check(check: Any, claim: dict[str, Any], name: str) -> None:
    if not isinstance(check, dict):
        raise ClaimError(f"{name}: a check must be a mapping")
    kind = check.get("rule")
    if kind not in RULES:
        raise ClaimError(f"{name}: rule {kind!r} unknown; expected one of {sorted(RULES)}")
    required, optional = RULES[kind]
    allowed = {"rule", "table", "where", *required, *optional}
    _no_unknown({k: v for k, v in check.items()}, allowed, f"{name} (rule {kind})")
    for key in required:
        if key not in check:
            raise ClaimError(f"{name}: rule {kind} needs key '{key}'")
    _validate_where(check.get("where", {}), name)
    for key in set(required) & SELECTOR_ARGS:
        if kind == "approx" and key == "target" and isinstance(check[key], int | float):
            continue
        _validate_selector(check[key], f"{name}, key '{key}'", check.get("table") or claim.get("table"))
    if kind in ("best", "increasing", "decreasing") and "over" not in check["value"]:
        raise ClaimError(f"{name}: rule {kind} needs 'value.over' (the column whose values are compared)")
    numbers = [k for k in (*required, *optional) if k in ("k", "tol", "classes", "margin", "min_change")]
    for key in numbers:
        value = check.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ClaimError(f"{name}: key '{key}' must be a number, got {value!r}")
    if kind == "near_chance" and not (isinstance(check["classes"], int) and check["classes"] >= 2):
        raise ClaimError(f"{name}: key 'classes' must be an integer >= 2, got {check['classes']!r}")


def _validate_selector(sel: Any, name: str, table: Any) -> None:
    if not isinstance(sel, dict):
        raise ClaimError(f"{name}: expected a selector mapping (column, where, per, over, agg, ...)")
    _no_unknown(sel, SELECTOR_KEYS, name)
    if "column" not in sel:
        raise ClaimError(f"{name}: missing key 'column'")
    if not (sel.get("table") or table):
        raise ClaimError(f"{name}: no 'table' (give it on the claim, the check or the selector)")
    if sel.get("agg") is not None and sel["agg"] not in AGGREGATES:
        raise ClaimError(f"{name}: agg {sel['agg']!r} unknown; expected one of {list(AGGREGATES)}")
    if sel.get("agg") in ("first", "last") and "sort" not in sel:
        raise ClaimError(f"{name}: agg {sel['agg']} needs key 'sort' (the column that orders the rows)")
    _validate_where(sel.get("where", {}), name)


def _validate_where(where: Any, name: str) -> None:
    if not isinstance(where, dict):
        raise ClaimError(f"{name}: 'where' must map columns to a value, a list of values or {{min, max}}")
    for col, wanted in where.items():
        if isinstance(wanted, dict) and (not wanted or set(wanted) - {"min", "max"}
                                         or not all(isinstance(v, int | float) for v in wanted.values())):
            raise ClaimError(f"{name}: where.{col}: a range is {{min: number, max: number}}, got {wanted!r}")


def table_refs(claims: Iterable[dict[str, Any]]) -> set[str]:
    """Every table name (or ``{split}`` pattern) the claims read."""
    refs: set[str] = set()
    for claim in claims:
        checks = _checks(claim)
        for check in checks:
            default = check.get("table") or claim.get("table")
            for key in SELECTOR_ARGS & set(check):
                sel = check[key]
                if isinstance(sel, dict):
                    refs.update(_as_list(sel.get("table") or default))
    return refs


def _as_list(value: Any) -> list[str]:
    return list(value) if isinstance(value, list) else [value]


#: A split in a table name: a C-CCM split or SynthSource (``forgetting_SynthSource``).
SPLIT_NAME = rf"S[0-9]+|{SOURCE_SPLIT}"


def _ref_regex(ref: str) -> re.Pattern[str]:
    """``forgetting_{split}`` -> a regex capturing the split."""
    return re.compile(re.escape(ref).replace(re.escape("{split}"), f"(?P<split>{SPLIT_NAME})") + "$")


def matching_tables(ref: str, names: Iterable[str]) -> list[str]:
    """The table names (file stems) a reference matches, sorted."""
    regex = _ref_regex(ref)
    return sorted(n for n in names if regex.match(n))


def known_ref(ref: str, patterns: Iterable[str]) -> bool:
    """Whether some table the workflow can write matches ``ref``.

    ``patterns`` are the workflow's table stems, wildcards as ``{name}``; a
    ``_S<k>`` or ``_SynthSource`` suffix stands for any split (other params may name others).
    """
    def norm(name: str) -> str:
        return re.sub(rf"_({SPLIT_NAME})$", "_{split}", name)

    target = norm(ref)
    for pattern in patterns:
        regex = re.escape(norm(pattern))
        regex = re.sub(r"\\\{(?!split\\\})[A-Za-z_]+\\\}", "[^/]+", regex)
        if re.fullmatch(regex, target):
            return True
    return False


TABLES_DIR = "results/tables/"


def _csv_stems(files: Iterable[Any]) -> dict[str, str]:
    """``results/tables/<stem>.csv`` files among ``files``, by stem (claims itself left out)."""
    stems = {}
    for f in map(str, files):
        if f.startswith(TABLES_DIR) and f.endswith(".csv") and "/" not in f[len(TABLES_DIR):]:
            stems[f[len(TABLES_DIR):-len(".csv")]] = f
    stems.pop("claims", None)
    return stems


def claims_inputs(claims_file: str | Path, targets: Iterable[Any], known: list[str] | None = None) -> list[str]:
    """The tables the claims read among ``targets`` (the files the ``all`` rule
    builds under the current parameters): the claims rule's inputs. With ``known``
    (every table a rule can write), a claim naming another table is refused here,
    while Snakemake plans, not in the job after the old claims table is deleted."""
    refs = table_refs(load_claims(claims_file))
    unknown = sorted(r for r in refs if known is not None and not known_ref(r, known))
    if unknown:
        raise ClaimError(f"{claims_file}: table(s) {unknown} are not ones the workflow writes "
                         f"(a typo? it writes {known})")
    stems = _csv_stems(targets)
    return sorted(path for stem, path in stems.items() if any(_ref_regex(r).match(stem) for r in refs))


def table_patterns(outputs: Iterable[Any]) -> list[str]:
    """Stems of every csv table a rule can write (wildcards kept as ``{name}``,
    inline constraints such as ``{sweep,depth|beta}`` dropped)."""
    return sorted({re.sub(r"\{(\w+),[^{}]*\}", r"{\1}", stem) for stem in _csv_stems(outputs)})


# --------------------------------------------------------------------------- selection


def _matches(column: pd.Series, wanted: Any) -> pd.Series:
    """Rows whose value equals ``wanted`` (or one of a list, or lies in a
    ``{min, max}`` range, both inclusive): numbers compared as numbers,
    everything else as text (so seed 0 matches "0", L 1 matches 1.0)."""
    import pandas as pd

    numeric = pd.to_numeric(column, errors="coerce")
    if isinstance(wanted, dict):
        return numeric.ge(float(wanted.get("min", -math.inf))) & numeric.le(float(wanted.get("max", math.inf)))
    values = wanted if isinstance(wanted, list) else [wanted]
    mask = pd.Series(False, index=column.index)
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int | float):
            mask |= column.astype(str) == str(v)
        else:
            mask |= numeric.sub(float(v)).abs().le(1e-9)
    return mask


def _filter(frame: pd.DataFrame, where: Mapping[str, Any], name: str, table: str,
            seed: str | None = None) -> pd.DataFrame:
    for col, wanted in where.items():
        if col not in frame.columns:
            raise ClaimError(f"{name}: column {col!r} (in 'where') not in table {table} "
                             f"(columns: {list(frame.columns)})")
        frame = frame[_matches(frame[col], wanted)]
    if "seed" in frame.columns and "seed" not in where:
        seeds = frame["seed"].astype(str)
        if seed is not None:
            frame = frame[seeds == seed]
        elif (seeds == "mean").any():
            frame = frame[seeds == "mean"]
    return frame


@dataclass
class Context:
    """What a claim reads: the tables present, and the names the workflow can write."""

    tables: Mapping[str, pd.DataFrame]
    known: list[str] | None = None  # None: every name is taken as known (tests)
    seed: str | None = None  # read this training seed's rows instead of the seed mean


def select(sel: dict[str, Any], where: Mapping[str, Any], default_table: Any, ctx: Context,
           name: str) -> pd.Series | pd.DataFrame:
    """A selector's values: a Series by group, or (with ``over``) a group x ``over`` grid."""
    import pandas as pd

    refs = _as_list(sel.get("table") or default_table)
    frames = []
    for ref in refs:
        if ctx.known is not None and not known_ref(ref, ctx.known):
            raise ClaimError(f"{name}: table {ref!r} is not one the workflow writes")
        for table in matching_tables(ref, ctx.tables):
            frame = ctx.tables[table].copy()
            match = _ref_regex(ref).match(table)
            if match and "split" in match.groupdict() and "split" not in frame.columns:
                frame["split"] = match["split"]
            frames.append((table, frame))
    if not frames:
        raise NotAvailable(f"table {' / '.join(refs)} not generated under the current parameters")
    merged = {**where, **(sel.get("where") or {})}
    parts = []
    for table, frame in frames:
        for col in [sel["column"], *_as_list(sel.get("per")), sel.get("over"), sel.get("sort")]:
            if col is not None and col not in frame.columns:
                raise ClaimError(f"{name}: column {col!r} not in table {table} (columns: {list(frame.columns)})")
        parts.append(_filter(frame, merged, name, table, ctx.seed))
    rows = pd.concat(parts, ignore_index=True)
    if rows.empty:
        raise NotAvailable(f"no rows of {' / '.join(refs)} where {merged}")
    return _reduce(rows, sel, f"{name} (table {' / '.join(refs)})")


def _group_labels(rows: pd.DataFrame, per: Any) -> Any:
    """One label per row: the ``per`` column(s) joined by "/" (``S1/2``), or SINGLE."""
    if not per:
        return SINGLE
    return rows[_as_list(per)].astype(str).agg("/".join, axis=1)


def _reduce(rows: pd.DataFrame, sel: dict[str, Any], name: str) -> pd.Series | pd.DataFrame:
    col, per, over, agg = sel["column"], sel.get("per"), sel.get("over"), sel.get("agg")
    if sel.get("sort"):
        rows = rows.sort_values(sel["sort"], kind="stable")
    values = rows[col]
    if values.isna().any():  # never aggregate over a blank silently (pandas would skip it)
        raise NotAvailable(f"{int(values.isna().sum())} selected value(s) of {col!r} are blank")
    if values.dtype != bool:
        try:
            values = values.astype(float) * float(sel.get("scale", 1.0))
        except ValueError as err:  # a hand-edited table: name it, not just the bad text
            raise ClaimError(f"{name}: column {col!r} holds a value that is not a number ({err}); "
                             "expected numbers") from err
    rows = rows.assign(_v=values, _g=_group_labels(rows, per))
    if over:
        grid = rows.pivot_table(index="_g", columns=over, values="_v", aggfunc=agg or "mean", sort=True)
        grid.index.name, grid.columns.name = "/".join(_as_list(per)) if per else None, over
        return grid
    grouped = rows.groupby("_g", sort=True)["_v"]
    if agg is None:
        sizes = grouped.size()
        if (sizes > 1).any():
            raise ClaimError(f"{name}: selection of {col!r} has {int(sizes.max())} rows per group; "
                             f"narrow 'where' or give 'agg' (one of {list(AGGREGATES)})")
        return grouped.first()
    if agg in ("first", "last"):  # positional, after the sort
        return grouped.agg(lambda v: v.iloc[0 if agg == "first" else -1])
    return grouped.agg(agg)


# --------------------------------------------------------------------------- rules


def _fmt(x: Any, decimals: int) -> str:
    if isinstance(x, bool | str):
        return str(x)
    return "blank" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{decimals}f}"


def _pairs(a: pd.Series, b: pd.Series, name: str) -> list[tuple[str, float, float]]:
    """Align two per-group selections; a single value is compared with every group."""
    if list(a.index) == [SINGLE] and list(b.index) != [SINGLE]:
        a = a.reindex(b.index, fill_value=a.iloc[0])
    if list(b.index) == [SINGLE] and list(a.index) != [SINGLE]:
        b = b.reindex(a.index, fill_value=b.iloc[0])
    common = [g for g in a.index if g in b.index]
    if not common:
        raise NotAvailable(f"no common groups between {list(a.index)} and {list(b.index)}")
    pairs = [(str(g), float(a[g]), float(b[g])) for g in common]
    if any(math.isnan(x) or math.isnan(y) for _, x, y in pairs):
        raise NotAvailable("a selected value is blank")
    return pairs


def _label(group: str) -> str:
    return "" if group == SINGLE else f"{group}: "


def _compare(pairs: list[tuple[str, float, float]], test: Callable[[float, float], bool], op: str,
             decimals: int) -> tuple[bool, str]:
    shown = "; ".join(f"{_label(g)}{_fmt(x, decimals)} {op} {_fmt(y, decimals)}" for g, x, y in pairs)
    return all(test(x, y) for _, x, y in pairs), shown


def _side(selector: dict[str, Any], other: dict[str, Any]) -> str:
    """What a selector picks, for the reader: its ``label``, else its one ``where`` value and,
    where the two sides read different columns, its column."""
    if selector.get("label"):
        return str(selector["label"])
    where = selector.get("where") or {}
    wanted = next(iter(where.values())) if len(where) == 1 else None
    parts = [] if wanted is None else [", ".join(map(str, wanted)) if isinstance(wanted, list) else str(wanted)]
    if selector.get("column") != other.get("column"):
        parts.append(str(selector.get("column")))
    return " ".join(parts)


def _sides(check: dict[str, Any]) -> str:
    """" (<a> vs <b>)": which side is which in "x vs y", where both sides can be named."""
    a, b = _side(check["a"], check["b"]), _side(check["b"], check["a"])
    return f" ({a} vs {b})" if a and b and a != b else ""


def _scalar_series(value: Any) -> pd.Series:
    import pandas as pd

    return pd.Series({SINGLE: float(value)})


def evaluate_check(check: dict[str, Any], claim: dict[str, Any], ctx: Context,
                   decimals: int = 2) -> tuple[bool, str, str]:
    """(holds, our value, rule text) of one check; raises NotAvailable or ClaimError."""
    name = f"claim {claim['id']!r}"
    kind = check["rule"]
    where = {**(claim.get("where") or {}), **(check.get("where") or {})}
    table = check.get("table") or claim.get("table")

    def get(key: str) -> Any:
        return select(check[key], where, table, ctx, f"{name}, key '{key}'")

    if kind in ("greater", "at_least"):
        m = float(check.get("margin", 0.0))
        pairs = _pairs(get("a"), get("b"), name)
        if kind == "greater":
            ok, shown = _compare(pairs, lambda x, y: x > y + m, "vs", decimals)
            return ok, shown + _sides(check), f"a > b + {m:g}"
        ok, shown = _compare(pairs, lambda x, y: x >= y + m, "vs", decimals)
        return ok, shown + _sides(check), f"a >= b {'+' if m >= 0 else '-'} {abs(m):g}"
    if kind == "ratio_at_least":
        k = float(check["k"])
        pairs = _pairs(get("a"), get("b"), name)
        ratios = [(g, x / y if y else math.inf, k) for g, x, y in pairs]
        ok, shown = _compare(ratios, lambda r, kk: r >= kk, ">=", decimals)
        detail = "; ".join(f"{_label(g)}{_fmt(x, decimals)} / {_fmt(y, decimals)}" for g, x, y in pairs)
        return ok, f"ratio {shown} ({detail})", f"a / b >= {k:g}"
    if kind == "approx":
        tol = float(check["tol"])
        target = check["target"]
        tgt = _scalar_series(target) if isinstance(target, int | float) else get("target")
        pairs = _pairs(get("value"), tgt, name)
        ok, shown = _compare(pairs, lambda x, y: abs(x - y) <= tol, "vs target", decimals)
        return ok, shown, f"abs(ours - target) <= {tol:g}"
    if kind == "near_chance":
        chance, tol = 100.0 / float(check["classes"]), float(check["tol"])
        pairs = _pairs(get("value"), _scalar_series(chance), name)
        ok, shown = _compare(pairs, lambda x, y: abs(x - y) <= tol, "vs chance", decimals)
        return ok, shown, f"abs(ours - {chance:g}) <= {tol:g} (chance, {check['classes']} classes)"
    if kind == "best":
        return _best(get("value"), check, decimals)
    if kind in ("increasing", "decreasing"):
        return _trend(get("value"), kind, check, decimals)
    if kind == "all_true":
        return _all_true(check["value"], where, table, ctx, name)
    raise ClaimError(f"{name}: rule {kind!r} unknown; expected one of {sorted(RULES)}")


def _item_key(grid: pd.DataFrame, item: Any) -> Any:
    for col in grid.columns:
        if str(col) == str(item) or (isinstance(item, int | float) and _num(col) == float(item)):
            return col
    raise NotAvailable(f"{grid.columns.name} {item!r} not among {list(grid.columns)}")


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _best(grid: pd.DataFrame, check: dict[str, Any], decimals: int) -> tuple[bool, str, str]:
    tol, item = float(check.get("tol", 0.0)), check["item"]
    col = _item_key(grid, item)
    over = grid.columns.name

    def name(v: Any) -> str:  # "L=1" for a numeric axis, "AT-FT" for a named one
        return f"{over}={v}" if isinstance(v, int | float) or not math.isnan(_num(v)) else str(v)

    ok, shown = True, []
    for group, row in grid.iterrows():
        row = row.dropna()
        if col not in row.index:
            raise NotAvailable(f"{item!r} has no value in group {group}")
        top = row.idxmax()
        ok &= bool(row[col] >= row.max() - tol)
        shown.append(f"{_label(str(group))}{name(item)} {_fmt(row[col], decimals)}, "
                     f"best {name(top)} {_fmt(row.max(), decimals)}")
    return ok, "; ".join(shown), f"{item} is the best {grid.columns.name} within {tol:g}"


def _trend(grid: pd.DataFrame, kind: str, check: dict[str, Any], decimals: int) -> tuple[bool, str, str]:
    tol, min_change = float(check.get("tol", 0.0)), float(check.get("min_change", 0.0))
    sign = 1.0 if kind == "increasing" else -1.0
    ok, shown = True, []
    for group, row in grid.iterrows():
        row = row.dropna()
        if len(row) < 2:
            raise NotAvailable(f"fewer than 2 values of {grid.columns.name} in group {group}")
        seq = row.to_numpy(dtype=float) * sign
        steps_ok = all(b >= a - tol for a, b in zip(seq[:-1], seq[1:], strict=True))
        ok &= bool(steps_ok and seq[-1] - seq[0] > min_change)
        shown.append(_label(str(group)) + " -> ".join(_fmt(v, decimals) for v in row.to_numpy(dtype=float))
                     + f" ({grid.columns.name} {row.index[0]}..{row.index[-1]})")
    over = grid.columns.name
    return ok, "; ".join(shown), (f"{kind} in {over}: each step within {tol:g}, "
                                  f"overall change > {min_change:g}")


def _all_true(sel: dict[str, Any], where: Mapping[str, Any], table: Any, ctx: Context,
              name: str) -> tuple[bool, str, str]:
    import pandas as pd

    refs = _as_list(sel.get("table") or table)
    frames, missing = [], []
    for ref in refs:
        try:
            frames.append(_raw(sel, ref, where, ctx, name))
        except NotAvailable:
            missing.append(ref)
    if not frames:
        raise NotAvailable(f"table {' / '.join(refs)} not generated under the current parameters")
    values = pd.concat(frames)
    if values.empty:
        raise NotAvailable(f"no rows of {' / '.join(refs)} where {where}")
    if values.isna().any():
        raise NotAvailable(f"{values.isna().sum()} selected rows have a blank {sel['column']}")
    flags = values.astype(str).str.lower().isin(["true", "1", "1.0", "yes"])
    bad = list(values.index[~flags])
    shown = f"{int(flags.sum())}/{len(flags)} true" + (f"; false: {', '.join(bad[:8])}" if bad else "")
    if missing:
        shown += f" (absent: {', '.join(missing)})"
    return bool(flags.all()), shown, f"{sel['column']} is true on every selected row"


def _raw(sel: dict[str, Any], ref: str, where: Mapping[str, Any], ctx: Context, name: str) -> pd.Series:
    """The selected column of every matching row, labelled ``table: key columns``."""
    import pandas as pd

    if ctx.known is not None and not known_ref(ref, ctx.known):
        raise ClaimError(f"{name}: table {ref!r} is not one the workflow writes")
    tables = matching_tables(ref, ctx.tables)
    if not tables:
        raise NotAvailable(ref)
    out = []
    for table in tables:
        frame = ctx.tables[table]
        if sel["column"] not in frame.columns:
            raise ClaimError(f"{name}: column {sel['column']!r} not in table {table} "
                             f"(columns: {list(frame.columns)})")
        rows = _filter(frame, {**where, **(sel.get("where") or {})}, name, table, ctx.seed)
        keys = [c for c in ("split", "strategy", "model", "trained_on", "container", "L", "eps_s", "seed")
                if c in rows.columns]
        labels = [f"{table}[" + ",".join(str(r[k]) for k in keys) + "]" for _, r in rows.iterrows()]
        out.append(pd.Series(rows[sel["column"]].to_numpy(), index=labels, dtype=object))
    return pd.concat(out) if out else pd.Series(dtype=object)


# --------------------------------------------------------------------------- the table


def _wheres(claim: dict[str, Any]) -> list[Mapping[str, Any]]:
    """Every ``where`` of a claim: its own, its checks' and their selectors'."""
    checks = _checks(claim)
    found = [claim.get("where") or {}]
    for check in checks:
        found.append(check.get("where") or {})
        found += [check[k].get("where") or {} for k in SELECTOR_ARGS & set(check) if isinstance(check[k], dict)]
    return found


def claim_seeds(claim: dict[str, Any], ctx: Context) -> list[str]:
    """The training seeds every table of the claim has rows for, when two or more.

    Empty when a table has no ``seed`` column (trained once, or written at the
    seed mean only: its value would repeat in every seed) or the claim
    selects seeds itself.
    """
    if any("seed" in w for w in _wheres(claim)):
        return []
    names = {n for ref in table_refs([claim]) for n in matching_tables(ref, ctx.tables)}
    common: set[str] | None = None
    for name in names:
        frame = ctx.tables[name]
        if "seed" not in frame.columns:
            return []
        seeds = set(frame["seed"].dropna().astype(str)) - {"mean", ""}  # blank: the paper's rows
        common = seeds if common is None else common & seeds
    return sorted(common, key=lambda x: (len(x), x)) if common and len(common) >= 2 else []


def _outcomes(claim: dict[str, Any], ctx: Context, decimals: int) -> list[tuple[bool, str, str]]:
    return [evaluate_check(c, claim, ctx, decimals) for c in _checks(claim)]


def _per_seed(claim: dict[str, Any], ctx: Context, decimals: int) -> str:
    """"k of n seeds (not ...)": the claim evaluated on each training seed alone."""
    seeds = claim_seeds(claim, ctx)
    if not seeds:
        return ""
    failing = []
    for seed in seeds:
        try:
            ok = all(o for o, _, _ in _outcomes(claim, Context(ctx.tables, ctx.known, seed), decimals))
        except NotAvailable:
            ok = False
        if not ok:
            failing.append(seed)
    text = f"{len(seeds) - len(failing)} of {len(seeds)} seeds"
    return text + (f" (not {', '.join(failing)})" if failing else "")


def evaluate_claim(claim: dict[str, Any], ctx: Context, decimals: int = 2) -> Result:
    """One row of the claims table; a claim lacking inputs holds ``n/a``."""
    note = str(claim.get("note", "")).strip()
    try:
        outcomes = _outcomes(claim, ctx, decimals)
    except NotAvailable as why:
        rules = " AND ".join(_rule_text(c) for c in _checks(claim))
        return Result(claim["paper"], claim["id"], claim["statement"],
                      paper_value=str(claim["paper_value"]), our_value="",
                      rule=rules, holds="n/a", per_seed="",
                      note="; ".join(x for x in (f"not available: {why}", note) if x))
    holds = all(ok for ok, _, _ in outcomes)
    ours = " // ".join(v for _, v, _ in outcomes)
    rule = " AND ".join(r for _, _, r in outcomes)
    return Result(claim["paper"], claim["id"], claim["statement"], paper_value=str(claim["paper_value"]),
                  our_value=ours, rule=rule, holds="yes" if holds else "no",
                  per_seed=_per_seed(claim, ctx, decimals), note=note)


def _rule_text(check: dict[str, Any]) -> str:
    extra = {k: v for k, v in check.items() if k not in SELECTOR_ARGS | {"rule", "table", "where"}}
    return check["rule"] + (f" {extra}" if extra else "")


def read_tables(paths: Iterable[str | Path]) -> dict[str, pd.DataFrame]:
    """The csv tables by stem (``results/tables/cross_dataset.csv`` -> ``cross_dataset``)."""
    import pandas as pd

    tables = {}
    for path in paths:
        p = Path(path)
        if p.suffix != ".csv":
            raise ClaimError(f"{p}: expected a .csv table")
        try:
            tables[p.stem] = pd.read_csv(p)
        except (OSError, ValueError) as err:
            raise ClaimError(f"{p}: not a readable csv table ({err})") from err
    return tables


def claims_table(claims: list[dict[str, Any]], tables: Mapping[str, pd.DataFrame],
                 known: list[str] | None = None, decimals: int = 2) -> pd.DataFrame:
    """Evaluate every claim: one row each, in the file's order."""
    import pandas as pd

    ctx = Context(tables, known)
    rows = [evaluate_claim(c, ctx, decimals).__dict__ for c in claims]
    table = pd.DataFrame(rows, columns=list(Result.__dataclass_fields__))
    return table.apply(lambda col: col.str.replace("|", "/", regex=False))  # a "|" would split a markdown cell


def write_claims(claims_file: str | Path, table_paths: list[str], out: str | Path,
                 known: list[str] | None = None, decimals: int = 2) -> pd.DataFrame:
    """Build and write ``out``.{csv,md,tex} from the claims file and the tables."""
    from fillrobust.report.tables import write_table

    table = claims_table(load_claims(claims_file), read_tables(table_paths), known, decimals)
    held = int((table["holds"] == "yes").sum())
    write_table(table, out, decimals, caption=f"Claims of the papers checked on this run: {held} of "
                f"{len(table)} hold ({int((table['holds'] == 'n/a').sum())} n/a)")
    return table


def summary_lines(csv_path: str | Path) -> list[str]:
    """A short report of a claims table: the count that hold, then those that do not."""
    import pandas as pd

    try:
        table = pd.read_csv(csv_path, keep_default_na=False)
    except (OSError, ValueError) as err:
        raise ClaimError(f"{csv_path}: not a readable claims table ({err})") from err
    missing = {"claim", "holds", "our_value", "note"} - set(table.columns)
    if missing:
        raise ClaimError(f"{csv_path}: not a claims table (missing columns {sorted(missing)})")
    counts = table["holds"].value_counts()
    lines = [f"Claims: {counts.get('yes', 0)} of {len(table)} hold, {counts.get('no', 0)} do not, "
             f"{counts.get('n/a', 0)} n/a ({csv_path})"]
    for row in table[table["holds"] != "yes"].itertuples():
        detail = row.our_value if row.holds == "no" else row.note
        seeds = getattr(row, "per_seed", "")
        lines.append(f"  [{row.holds}] {row.claim}: {detail}" + (f" (holds on {seeds})" if seeds else ""))
    return lines
