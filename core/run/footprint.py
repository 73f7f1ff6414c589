"""The cumulative footprint of every stored run: energy, CO2 and cost, per group and per period.

What counts: runs that measured their own work (kinds ``session`` and ``profile``). A
comparison row holds no energy of its own, only its sessions' (which are stored as sessions), so
counting it would count every repeat twice; it only lends its label to its sessions, so a
comparison's repeats group under "compare: ..." instead of "baseline 2/5".

What a run contributes: the gross energy of its whole run (``total.gross_j``, every phase but
the idle baseline), with its label. A run without such a figure (interrupted before it stored a
result, a damaged row) is counted as *unknown*, never as 0 J, and every sum says how many it
left out. A sum carries the weakest label of its parts; CO2 and cost inherit it.

CO2 and cost use the carbon settings given now (region, intensity, PUE, price), the same for
every run: the footprint answers "what did my work cost at these settings", and says which.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from wattlab.core.measure.carbon import Equivalent, co2_g, cost, equivalents
from wattlab.core.measure.sensors.base import LABEL_RANK, weakest_label

# Kinds whose energy is their own (see the module docstring).
MEASURED_KINDS = ("session", "profile", "track")  # a bench or sweep only groups these
GROUPINGS = ("label", "workload", "tag")
PERIODS = ("day", "week")
UNTAGGED = "(no tag)"


class RunLike(Protocol):
    """What footprint needs of a stored run row (``RunStore.runs`` gives ``RunRow``)."""

    id: int
    kind: str
    label: str | None
    status: str
    created_at: float
    spec: dict


@dataclass(frozen=True)
class Amount:
    """A sum of runs' energy and what it is worth, with how much of it is known."""

    energy_j: float | None  # None: no run in it had an energy figure
    label: str | None  # the weakest label of the summed runs
    co2_g: float | None
    cost: float | None
    runs: int  # runs with an energy figure, in the sum
    unknown: int  # runs without one, left out of the sum (never counted as 0)


@dataclass(frozen=True)
class Group:
    name: str
    amount: Amount


@dataclass(frozen=True)
class Period:
    start: dt.date  # the day, or the Monday of the week
    amount: Amount
    cumulative_j: float | None  # everything known up to the end of this period


@dataclass(frozen=True)
class Footprint:
    total: Amount
    by_label: tuple[Group, ...]
    by_workload: tuple[Group, ...]
    by_tag: tuple[Group, ...]  # empty when no run has a tag
    by_day: tuple[Period, ...]
    by_week: tuple[Period, ...]
    carbon: dict[str, Any] | None  # the resolved settings CO2 and cost used; None: not known
    equivalents: tuple[Equivalent, ...]
    skipped: dict[str, int] = field(default_factory=dict)  # kind/status -> runs not counted

    def groups(self, by: str) -> tuple[Group, ...]:
        return {"label": self.by_label, "workload": self.by_workload, "tag": self.by_tag}[by]

    def periods(self, unit: str) -> tuple[Period, ...]:
        return {"day": self.by_day, "week": self.by_week}[unit]


class _Sum:
    """Accumulates runs into an Amount."""

    def __init__(self) -> None:
        self.joules: float | None = None
        self.labels: list[str] = []
        self.unknown = 0

    def add(self, energy: tuple[float, str] | None) -> None:
        if energy is None:
            self.unknown += 1
            return
        self.joules = (self.joules or 0.0) + energy[0]
        self.labels.append(energy[1])

    def amount(self, carbon: dict[str, Any] | None) -> Amount:
        j = self.joules
        return Amount(
            energy_j=j,
            label=weakest_label(self.labels),
            co2_g=co2_g(j, carbon) if carbon is not None else None,
            cost=cost(j, carbon) if carbon is not None else None,
            runs=len(self.labels),
            unknown=self.unknown,
        )


def run_energy(result: Mapping[str, Any] | None) -> tuple[float, str] | None:
    """A run's gross energy and its label, or None when the result has no usable figure (a
    total without a label counted no source: nothing was measured)."""
    tot = (result or {}).get("total")
    if not isinstance(tot, Mapping):
        return None
    j, label = tot.get("gross_j"), tot.get("label")
    if isinstance(j, bool) or not isinstance(j, (int, float)) or not math.isfinite(j) or j < 0:
        return None
    if label not in LABEL_RANK:
        return None
    return float(j), str(label)


def workload_name(spec: Mapping[str, Any]) -> str:
    """What ran, as the session's default label names it: mode and model folder."""
    model = str(spec.get("model") or "?")
    name = model if model == "demo" else Path(model).name
    return f"{spec.get('mode') or spec.get('kind') or 'run'} {name}".strip()


def comparison_members(
    rows: Sequence[tuple[RunLike, Mapping[str, Any] | None]],
    names: Mapping[int, str] | None = None,
) -> dict[int, str]:
    """Session id -> the name (the user's, else the label) of the comparison it repeated."""
    out: dict[int, str] = {}
    for row, res in rows:
        if row.kind != "comparison" or not isinstance(res, Mapping):
            continue
        for entry in res.get("per_run") or []:
            rid = entry.get("run_id") if isinstance(entry, Mapping) else None
            if isinstance(rid, int):
                out[rid] = (names or {}).get(row.id) or row.label or f"comparison {row.id}"
    return out


def _week_start(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def _periods(sums: dict[dt.date, _Sum], carbon: dict[str, Any] | None) -> tuple[Period, ...]:
    out: list[Period] = []
    running: float | None = None
    for start in sorted(sums):
        amount = sums[start].amount(carbon)
        if amount.energy_j is not None:
            running = (running or 0.0) + amount.energy_j
        out.append(Period(start, amount, running))
    return tuple(out)


def _groups(sums: dict[str, _Sum], carbon: dict[str, Any] | None) -> tuple[Group, ...]:
    """Largest energy first; groups with nothing known last."""
    groups = [Group(name, s.amount(carbon)) for name, s in sums.items()]
    groups.sort(key=lambda g: (g.amount.energy_j is None, -(g.amount.energy_j or 0.0), g.name))
    return tuple(groups)


def footprint(
    rows_with_results: Iterable[tuple[RunLike, Mapping[str, Any] | None]],
    carbon: dict[str, Any] | None,
    tags: Mapping[int, Sequence[str]] | None = None,
    names: Mapping[int, str] | None = None,
) -> Footprint:
    """Sum stored runs into totals, groups and periods (see the module docstring).

    ``carbon``: ``CarbonSettings.resolved()``; None leaves CO2 and cost unknown. ``tags``: run
    id -> its tags, where the store has them (a row's own ``tags`` attribute is used too); a run
    with several tags counts once in each of their groups, and once in every total. ``names``:
    run id -> the user's name for it, which groups it instead of its recorded label.
    """
    rows = list(rows_with_results)
    names = names or {}
    members = comparison_members(rows, names)
    total = _Sum()
    by: dict[str, dict[str, _Sum]] = {g: {} for g in GROUPINGS}
    days: dict[dt.date, _Sum] = {}
    weeks: dict[dt.date, _Sum] = {}
    skipped: dict[str, int] = {}
    any_tag = False
    for row, res in rows:
        if row.kind not in MEASURED_KINDS or row.status == "running":
            why = row.kind if row.kind not in MEASURED_KINDS else "running"
            skipped[why] = skipped.get(why, 0) + 1
            continue
        energy = run_energy(res)
        run_tags = _tags_of(row, tags)
        any_tag = any_tag or bool(run_tags)
        for grouping, keys in _group_keys(row, names, members, run_tags).items():
            for key in keys:
                by[grouping].setdefault(key, _Sum()).add(energy)
        day = dt.datetime.fromtimestamp(row.created_at).date()
        total.add(energy)
        days.setdefault(day, _Sum()).add(energy)
        weeks.setdefault(_week_start(day), _Sum()).add(energy)
    t = total.amount(carbon)
    return Footprint(
        total=t,
        by_label=_groups(by["label"], carbon),
        by_workload=_groups(by["workload"], carbon),
        by_tag=_groups(by["tag"], carbon) if any_tag else (),
        by_day=_periods(days, carbon),
        by_week=_periods(weeks, carbon),
        carbon=carbon,
        equivalents=tuple(equivalents(t.energy_j, t.co2_g)),
        skipped=skipped,
    )


def _group_keys(
    row: RunLike, names: Mapping[int, str], members: Mapping[int, str], tags: list[str]
) -> dict[str, list[str]]:
    """The groups a run counts in. Label: the user's name for it, else the comparison it
    repeated, else its recorded label, else what ran."""
    label = names.get(row.id) or members.get(row.id) or row.label or workload_name(row.spec)
    return {"label": [label], "workload": [workload_name(row.spec)], "tag": tags or [UNTAGGED]}


def _tags_of(row: RunLike, tags: Mapping[int, Sequence[str]] | None) -> list[str]:
    """A run's tags from the mapping given, else from the row (once the store has them)."""
    found = tags.get(row.id) if tags is not None else getattr(row, "tags", None)
    if isinstance(found, str):
        found = [found]
    return list(dict.fromkeys(str(t) for t in found or () if str(t).strip()))


def from_store(store: Any, carbon: dict[str, Any] | None, limit: int = 5000) -> Footprint:
    """The footprint of the newest ``limit`` runs of a ``RunStore``; call it off the GUI thread.
    A result that cannot be read counts as unknown.

    Where the store can list runs with a few result values and the user's annotations in one
    query (``summaries``), only the totals are read; otherwise every full result is."""
    if hasattr(store, "summaries") and hasattr(store, "comparison_members"):
        try:
            pairs, tags, names = _from_summaries(store, limit)
        except (TypeError, AttributeError):
            pass  # a store whose listing API differs: read the results one by one
        else:
            return footprint(pairs, carbon, tags=tags, names=names)
    return footprint(_from_results(store, limit), carbon)


def _from_results(store: Any, limit: int) -> list[tuple[RunLike, Mapping[str, Any] | None]]:
    from wattlab.core.measure.store import StoreError

    pairs: list[tuple[RunLike, Mapping[str, Any] | None]] = []
    for row in store.runs(limit):
        try:
            res = store.result(row.id)
        except StoreError:
            res = None
        pairs.append((row, res))
    return pairs


SUMMARY_PATHS = ("$.total.gross_j", "$.total.label")


def _from_summaries(
    store: Any, limit: int
) -> tuple[
    list[tuple[RunLike, Mapping[str, Any] | None]],
    dict[int, list[str]],
    dict[int, str],
]:
    """(row, the part of its result footprint reads), tags and names, from one listing query
    and the comparisons' members."""
    members = store.comparison_members()
    pairs: list[tuple[RunLike, Mapping[str, Any] | None]] = []
    tags: dict[int, list[str]] = {}
    names: dict[int, str] = {}
    for s in store.summaries(SUMMARY_PATHS, limit):
        row, fields, note = s.row, s.fields, s.annotation
        res: dict[str, Any] = {
            "total": {
                "gross_j": fields.get(SUMMARY_PATHS[0]),
                "label": fields.get(SUMMARY_PATHS[1]),
            }
        }
        if row.kind == "comparison":
            res["per_run"] = [{"run_id": rid} for rid, *_ in members.get(row.id, [])]
        pairs.append((row, res))
        tags[row.id] = list(note.tags)
        if note.name:
            names[row.id] = note.name
    return pairs, tags, names


# -- text, the same wherever a footprint is shown ------------------------------------------------
def grams(g: float | None) -> str:
    if g is None:
        return "-"
    if abs(g) >= 1e6:
        return f"{g / 1e6:.3g} t"
    if abs(g) >= 1000:
        return f"{g / 1000:.3g} kg"
    return f"{g:.3g} g"


def money(value: float | None, carbon: Mapping[str, Any] | None) -> str:
    if value is None:
        return "-"
    return f"{value:.2f} {(carbon or {}).get('currency') or ''}".strip()


def energy_text(a: Amount) -> str:
    """Energy with its label, e.g. "1.2 kWh [estimated]"; "-" when nothing is known."""
    from wattlab.core.report.text import joules

    if a.energy_j is None:
        return "-"
    return f"{joules(a.energy_j)} [{a.label}]" if a.label else joules(a.energy_j)


def unknown_text(a: Amount) -> str:
    """How many runs a sum leaves out, said every time it leaves any out."""
    if not a.unknown:
        return ""
    return f"{a.unknown} run{'s' if a.unknown != 1 else ''} without an energy figure not counted"


def total_text(fp: Footprint) -> str:
    """The one-paragraph summary: energy, CO2, cost, how many runs and what was left out."""
    t = fp.total
    tag = f" [{t.label}]" if t.label and t.co2_g is not None else ""
    parts = [
        f"Energy {energy_text(t)}",
        f"CO2e {grams(t.co2_g)}{tag}",
        f"cost {money(t.cost, fp.carbon)}{f' [{t.label}]' if t.cost is not None else ''}",
        f"{t.runs} run{'s' if t.runs != 1 else ''} counted",
    ]
    notes = [unknown_text(t)] if t.unknown else []
    if fp.skipped.get("comparison"):
        n = fp.skipped["comparison"]
        notes.append(f"{n} comparison row{'s' if n != 1 else ''} counted through their runs")
    if fp.skipped.get("running"):
        notes.append(f"{fp.skipped['running']} run(s) still running not counted")
    return " · ".join(parts) + (f" ({'; '.join(notes)})" if notes else "")


def carbon_text(carbon: Mapping[str, Any] | None) -> str:
    """Which intensity, PUE and price the CO2 and cost use."""
    if carbon is None:
        return "CO2 and cost unknown: the carbon settings could not be resolved"
    price = carbon.get("price_per_kwh")
    price_text = (
        f"{price:g} {carbon.get('currency') or ''}/kWh".replace(" /", "/")
        if price is not None
        else "no electricity price set"
    )
    return (
        f"Carbon intensity {carbon['g_per_kwh']:g} gCO2e/kWh ({carbon.get('region')}: "
        f"{carbon.get('intensity_source')}), PUE {carbon.get('pue', 1.0):g}, {price_text}"
    )


def equivalent_text(e: Equivalent) -> str:
    amount = f"{e.amount:.3g}" if e.amount < 1000 else f"{e.amount:,.0f}"
    return f"{amount} {e.what}"


# -- chart series ----------------------------------------------------------------------------------
def energy_scale(max_j: float | None) -> tuple[str, float]:
    """The unit a chart of these joules reads best in, and joules per unit."""
    if not max_j or max_j < 3600:
        return "J", 1.0
    if max_j < 3.6e6:
        return "Wh", 3600.0
    return "kWh", 3.6e6


def period_series(
    periods: Sequence[Period],
) -> tuple[list[float], list[float | None], list[float | None]]:
    """(start of each period as a Unix time at local midnight, energy in it, cumulative
    energy), in joules; None where nothing in a period (or before it) was known."""
    xs = [time.mktime(p.start.timetuple()) for p in periods]
    return xs, [p.amount.energy_j for p in periods], [p.cumulative_j for p in periods]
