"""Meters: spend kept per combination of the dimensions an operator chose, for
`extproc usage --by ...` and the admin API's /admin/usage.

    metering:
      dimensions:                       # each a set of dimensions metered together
      - [key, user, team, model, backend]     # the default
      - [team, tag:agent, tag:task]
      max_values_per_dimension: 1000    # distinct values per dimension before "other"

`dimensions: []` meters nothing. A report groups by any dimensions of one set (summing
over the set's others). A meter is a budget with no limit: each set of dimensions is four limits (requests,
input tokens, output tokens, USD) whose counters are the budgets' counters, in the same
store (SQLite or Redis), reserved and settled through the same interface, so the
workers' allotments keep them in memory and hand them to the store every 0.5 s
(allotments.py). A counter is hourly: `meter:<set>.<measure>|<values>|<hour start>`; a
day or a month is the sum of its hours (closed windows stay readable for 40 days).

Dimensions: `key`, `user`, `team`, `model` (as resolved), `backend` (the one that
answered), `cache` (hit, miss, bypass; "" for a call the response cache does not take; a
set with it meters a fifth measure, `saved_usd`: what hits would have cost), `tag:<name>` (the `x-gateway-tag-<name>` request header; "" when absent).
A caller chooses a tag's value (and a model's, for a provider that lets callers name
its models), so each worker process keeps at most `max_values_per_dimension` distinct
values of a dimension; later ones are counted under "other".
"""

from __future__ import annotations

from dataclasses import dataclass

from ..yamltree import Node
from .limits import Charge, Limit, window_bounds

DIMENSIONS = ("key", "user", "team", "model", "backend", "cache")
# Metered by default when the response cache is on (and `metering` names no sets).
CACHE_SET = ("team", "model", "cache")
TAG_PREFIX = "tag:"
MEASURES = ("requests", "input_tokens", "output_tokens", "usd", "saved_usd")
_BASE_MEASURES = MEASURES[:4]      # a set without the `cache` dimension meters no savings
OTHER = "other"
METER_PREFIX = "meter:"
# "No limit": a finite number, which both stores (and Redis's Lua) read as any other.
NO_LIMIT = 1e300
_SEPARATOR = ";"
_FORBIDDEN = str.maketrans({"|": "_", ";": "_", "=": "_"})     # the counter's own separators


def valid_dimension(name: str) -> bool:
    return name in DIMENSIONS or (name.startswith(TAG_PREFIX) and len(name) > len(TAG_PREFIX))


@dataclass(frozen=True, slots=True)
class MeterSet:
    dimensions: tuple[str, ...]
    limits: tuple[Limit, ...]          # one per measure, in MEASURES' order

    @property
    def name(self) -> str:
        return METER_PREFIX + ",".join(self.dimensions)


@dataclass(frozen=True, slots=True)
class MeteringSettings:
    sets: tuple[MeterSet, ...] = ()
    max_values_per_dimension: int = 1000


def meter_set(dimensions: tuple[str, ...]) -> MeterSet:
    name = METER_PREFIX + ",".join(dimensions)
    limits = tuple(Limit(name=f"{name}.{measure}", scope="global", match=None,
                         kind=measure, limit=NO_LIMIT, window="hour")
                   for measure in (MEASURES if "cache" in dimensions else _BASE_MEASURES))
    return MeterSet(dimensions, limits)


# Without a `metering` section: spend by any of the config's own dimensions (their values
# are the config's keys, models and backends); tags are metered when named.
DEFAULT_SETS = (DIMENSIONS[:5],)


def parse_metering(node: Node) -> MeteringSettings:
    node.only_keys("dimensions", "max_values_per_dimension")
    sets, seen = [], set()
    if node.get("dimensions").missing:
        sets = [meter_set(dims) for dims in DEFAULT_SETS]
    for item in node.get("dimensions").elements():
        dims = tuple(d.str().strip().lower() for d in item.elements())
        if not dims:
            item.fail("must list at least one dimension")
            continue
        bad = [d for d in dims if not valid_dimension(d)]
        if bad:
            item.fail(f"unknown dimension {bad[0]!r} (one of {', '.join(DIMENSIONS)}, tag:<name>)")
            continue
        if len(set(dims)) != len(dims):
            item.fail("names a dimension twice")
            continue
        if dims in seen:
            item.fail("is listed twice")
            continue
        seen.add(dims)
        sets.append(meter_set(dims))
    return MeteringSettings(
        sets=tuple(sets),
        max_values_per_dimension=node.get("max_values_per_dimension").number(1000, integer=True, minimum=1))


def clean(value: str) -> str:
    """A dimension's value as a counter holds it (bounded; without the separators)."""
    return value[:128].translate(_FORBIDDEN)


def meter_combinations(sets: tuple[MeterSet, ...], values: dict[str, str]) -> tuple[str, ...]:
    """Each meter's counter name part for `values` (already capped), in the order of `sets`."""
    return tuple(_SEPARATOR.join(f"{d}={values.get(d, '')}" for d in meter.dimensions) for meter in sets)


@dataclass(frozen=True, slots=True)
class MeterCounter:
    """One measure of one meter for one combination of values in one hour: named once
    and reused by every call that names it (building and hashing a counter's name, ~150
    characters, for each measure of each meter was most of a call's metering)."""
    limit: Limit
    counter: str
    measure: int               # the place of its amount in a call's amounts (MEASURES' order)
    window_end: float


def meter_counters(sets: tuple[MeterSet, ...], combinations: tuple[str, ...], now: float) -> tuple[MeterCounter, ...]:
    """Every meter's counters for `combinations` (as meter_combinations made them) in the
    hour holding `now`."""
    start, end = window_bounds("hour", now)
    hour = int(start)
    return tuple(MeterCounter(limit, f"{limit.name}|{combination}|{hour}", measure, end)
                 for meter, combination in zip(sets, combinations)
                 for measure, limit in enumerate(meter.limits))


def meter_charges(sets: tuple[MeterSet, ...], combinations: tuple[str, ...], amounts: tuple[float, ...],
                  now: float) -> list[Charge]:
    """The charges of one call on every meter: its `combinations` as meter_combinations
    made them; `amounts` per measure (none for a measure of 0)."""
    return charges_of(meter_counters(sets, combinations, now), amounts)


def charges_of(counters: tuple[MeterCounter, ...], amounts: tuple[float, ...]) -> list[Charge]:
    """A call's amounts on `counters` as a store's charges, for a store without the
    allotments' add_metered. Requests count at once; the others are reserved then settled
    with the same amount (a reservation is what lets an allotment hold them in memory)."""
    charges = []
    for meter in counters:
        amount = amounts[meter.measure]
        if not amount:
            # Nothing to add; and an allotment sized on nothing is never granted, so a
            # zero charge would send every such call to the store (a hit's tokens).
            continue
        if meter.limit.kind == "requests":
            charges.append(Charge(meter.limit, meter.counter, 0, amount, meter.window_end))
        else:
            charges.append(Charge(meter.limit, meter.counter, amount, 0, meter.window_end))
    return charges


def settled_amounts(charges: list[Charge]) -> list[float]:
    return [charge.reserve for charge in charges]


# --- reading them back ----------------------------------------------------------------

class NoMeter(ValueError):
    """No configured set of dimensions covers the ones asked for."""


def find_set(sets: tuple[MeterSet, ...], wanted: tuple[str, ...]) -> MeterSet:
    """The smallest configured set holding every dimension asked for."""
    covering = [s for s in sets if set(wanted) <= set(s.dimensions)]
    if not covering:
        configured = "; ".join(",".join(s.dimensions) for s in sets) or "none"
        raise NoMeter(f"No metered set of dimensions covers {','.join(wanted)} "
                      f"(configured under metering.dimensions: {configured}).")
    return min(covering, key=lambda s: len(s.dimensions))


def report(sets: tuple[MeterSet, ...], wanted: tuple[str, ...], rows, window: str,
           now: float) -> list[dict]:
    """Spend grouped by `wanted` in the `window` (hour, day, month) holding `now`, from the
    store's counter rows: one dict per combination, dearest first."""
    meter = find_set(sets, wanted)
    start, end = window_bounds(window, now)
    prefix = meter.name + "."
    grouped: dict[tuple[str, ...], dict[str, float]] = {}
    for row in rows:
        if not row.counter.startswith(prefix):
            continue
        name, combination, hour = row.counter.split("|")
        if not start <= float(hour) < end:
            continue
        measure = name[len(prefix):]
        values = dict(part.split("=", 1) for part in combination.split(_SEPARATOR))
        group = tuple(values.get(d, "") for d in wanted)
        totals = grouped.setdefault(group, dict.fromkeys(MEASURES, 0.0))
        totals[measure] = totals.get(measure, 0.0) + row.spent
    result = []
    for group, totals in grouped.items():
        entry: dict = dict(zip(wanted, group))
        entry.update(requests=int(round(totals["requests"])), input_tokens=int(round(totals["input_tokens"])),
                     output_tokens=int(round(totals["output_tokens"])), usd=round(totals["usd"], 8))
        if "cache" in meter.dimensions:
            entry["saved_usd"] = round(totals["saved_usd"], 8)
        result.append(entry)
    result.sort(key=lambda e: (-e["usd"], -e["requests"], tuple(str(e[d]) for d in wanted)))
    return result
