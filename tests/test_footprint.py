"""The footprint across stored runs: totals carry their weakest label, runs without energy are
counted as unknown (never 0 J), a comparison's repeats count once, periods bucket by local day
and week, and CO2, cost and the plain equivalents follow from the carbon settings."""

from __future__ import annotations

import datetime as dt
import math
import shutil
import time
from pathlib import Path

import pytest

from wattlab.core.measure.carbon import (
    KETTLE_J,
    PHONE_CHARGE_J,
    CarbonSettings,
    equivalents,
)
from wattlab.core.measure.store import RunRow, RunStore
from wattlab.core.run import footprint as fpc
from wattlab.core.run.footprint import footprint, from_store, run_energy

# 480 g/kWh (the bundled world average), PUE 1, 0.30 EUR per kWh: easy numbers.
CARBON = {
    "region": "WORLD",
    "g_per_kwh": 480.0,
    "intensity_source": "World average, test",
    "pue": 1.0,
    "price_per_kwh": 0.30,
    "currency": "EUR",
}
KWH = 3.6e6


def at(y: int, m: int, d: int, h: int = 12) -> float:
    """A Unix time at local wall-clock time (the periods bucket by local day)."""
    return time.mktime(dt.datetime(y, m, d, h).timetuple())


def row(
    rid: int,
    kind: str = "session",
    label: str | None = None,
    status: str = "completed",
    created: float | None = None,
    model: str = "demo",
    mode: str = "infer",
) -> RunRow:
    return RunRow(
        rid,
        kind,
        label,
        status,
        created if created is not None else at(2024, 1, 3),
        None,
        {"mode": mode, "model": model},
        None,
    )


def result(gross_j: float | None, label: str | None = "measured") -> dict:
    if gross_j is None:
        return {"status": "completed"}
    return {"status": "completed", "total": {"gross_j": gross_j, "net_j": None, "label": label}}


def test_totals_sum_known_runs_carry_the_weakest_label_and_count_the_unknown():
    fp = footprint(
        [
            (row(1, label="a"), result(KWH, "measured")),
            (row(2, label="a"), result(KWH, "estimated")),
            (row(3, label="b"), None),  # interrupted: no result at all
            (row(4, label="b"), result(None)),  # a result without a total
        ],
        CARBON,
    )
    t = fp.total
    assert t.energy_j == pytest.approx(2 * KWH)
    assert t.label == "estimated"  # an estimate anywhere makes the sum estimated
    assert (t.runs, t.unknown) == (2, 2)
    assert t.co2_g == pytest.approx(960.0)
    assert t.cost == pytest.approx(0.60)
    text = fpc.total_text(fp)
    assert "[estimated]" in text and "2 runs without an energy figure not counted" in text


def test_weakest_label_ranks_attributed_below_integrated_below_measured():
    pairs = [(row(1), result(10.0, "measured")), (row(2), result(10.0, "integrated"))]
    assert footprint(pairs, CARBON).total.label == "integrated"
    pairs.append((row(3), result(10.0, "attributed")))
    assert footprint(pairs, CARBON).total.label == "attributed"


def test_only_unknown_runs_give_unknown_totals_not_zero():
    fp = footprint([(row(1), None), (row(2), result(None))], CARBON)
    assert fp.total.energy_j is None and fp.total.co2_g is None and fp.total.cost is None
    assert fp.total.unknown == 2 and fp.total.runs == 0
    assert fpc.energy_text(fp.total) == "-" and fpc.grams(fp.total.co2_g) == "-"
    assert fp.equivalents == ()  # nothing known: no "0 smartphone charges"


@pytest.mark.parametrize(
    "total",
    [
        {"gross_j": True, "label": "measured"},
        {"gross_j": float("nan"), "label": "measured"},
        {"gross_j": -5.0, "label": "measured"},
        {"gross_j": "12", "label": "measured"},
        {"gross_j": 12.0, "label": None},  # no source counted: nothing was measured
        {"gross_j": 12.0, "label": "guessed"},
        "not a dict",
    ],
)
def test_unusable_energy_figures_are_unknown(total):
    assert run_energy({"total": total}) is None


def test_comparison_repeats_count_once_under_the_comparison_label():
    comp = {"comparison_id": 10, "per_run": [{"run_id": 11}, {"run_id": 12}], "verdicts": []}
    fp = footprint(
        [
            (row(10, kind="comparison", label="compare: quantize"), comp),
            (row(11, label="baseline 1/1"), result(100.0)),
            (row(12, label="optimized 1/1"), result(50.0)),
            (row(13, label="my run"), result(25.0)),
        ],
        CARBON,
    )
    assert fp.total.energy_j == pytest.approx(175.0)  # the comparison row adds nothing
    assert fp.total.runs == 3 and fp.skipped == {"comparison": 1}
    groups = {g.name: g.amount.energy_j for g in fp.by_label}
    assert groups == {"compare: quantize": pytest.approx(150.0), "my run": pytest.approx(25.0)}
    assert "1 comparison row counted through their runs" in fpc.total_text(fp)


def test_profile_runs_count_and_running_ones_wait():
    fp = footprint(
        [
            (row(1, kind="profile", label="make"), result(30.0)),
            (row(2, status="running"), None),
        ],
        CARBON,
    )
    assert fp.total.energy_j == pytest.approx(30.0) and fp.total.unknown == 0
    assert fp.skipped == {"running": 1}


def test_periods_bucket_by_local_day_and_monday_week_with_a_cumulative_sum():
    fp = footprint(
        [
            (row(1, created=at(2024, 1, 1, 9)), result(10.0)),  # Monday
            (row(2, created=at(2024, 1, 1, 23)), result(5.0)),  # same day
            (row(3, created=at(2024, 1, 3)), None),  # Wednesday, unknown
            (row(4, created=at(2024, 1, 7, 22)), result(1.0)),  # Sunday: still week 1
            (row(5, created=at(2024, 1, 8, 1)), result(100.0)),  # next Monday
        ],
        CARBON,
    )
    days = [(p.start, p.amount.energy_j, p.amount.unknown, p.cumulative_j) for p in fp.by_day]
    assert days == [
        (dt.date(2024, 1, 1), 15.0, 0, 15.0),
        (dt.date(2024, 1, 3), None, 1, 15.0),  # nothing known that day: the sum stands
        (dt.date(2024, 1, 7), 1.0, 0, 16.0),
        (dt.date(2024, 1, 8), 100.0, 0, 116.0),
    ]
    weeks = [(p.start, p.amount.energy_j, p.amount.unknown) for p in fp.by_week]
    assert weeks == [(dt.date(2024, 1, 1), 16.0, 1), (dt.date(2024, 1, 8), 100.0, 0)]
    xs, per, cum = fpc.period_series(fp.by_week)
    assert xs == [at(2024, 1, 1, 0), at(2024, 1, 8, 0)] and per == [16.0, 100.0]
    assert cum == [16.0, 116.0]


def test_groups_by_workload_and_by_tags_largest_first():
    pairs = [
        (row(1, model="/m/bert"), result(10.0)),
        (row(2, model="/m/bert"), result(20.0)),
        (row(3, model="/m/gpt", mode="train"), result(5.0)),
        (row(4, model="/m/gpt", mode="train"), None),
    ]
    fp = footprint(pairs, CARBON, tags={1: ["paper", "ablation"], 2: ["paper"]})
    assert [(g.name, g.amount.energy_j) for g in fp.by_workload] == [
        ("infer bert", 30.0),
        ("train gpt", 5.0),
    ]
    assert fp.by_workload[1].amount.unknown == 1
    tags = {g.name: (g.amount.energy_j, g.amount.runs) for g in fp.by_tag}
    assert tags == {"paper": (30.0, 2), "ablation": (10.0, 1), fpc.UNTAGGED: (5.0, 1)}
    assert fp.total.energy_j == pytest.approx(35.0)  # a run with two tags counts once in total
    assert footprint(pairs, CARBON).by_tag == ()  # no tags anywhere: no tag grouping


def test_a_users_name_groups_a_run_and_its_comparisons_repeats():
    comp = {"per_run": [{"run_id": 2}]}
    fp = footprint(
        [(row(1, kind="comparison", label="compare: x"), comp), (row(2), result(4.0))],
        CARBON,
        names={1: "int8 study"},
    )
    assert [g.name for g in fp.by_label] == ["int8 study"]


def test_carbon_settings_drive_co2_cost_and_the_line_that_names_them():
    c = CarbonSettings(region="FR", pue=1.5).resolved()
    fp = footprint([(row(1), result(KWH))], c)
    assert fp.total.co2_g == pytest.approx(55.0 * 1.5)
    assert fp.total.cost is None  # no price set: unknown, not free
    line = fpc.carbon_text(fp.carbon)
    assert "55 gCO2e/kWh" in line and "FR" in line and "PUE 1.5" in line
    assert "no electricity price set" in line
    none = footprint([(row(1), result(KWH))], None)
    assert none.total.co2_g is None and "unknown" in fpc.carbon_text(None)


def test_equivalents_follow_energy_and_co2_with_their_sources():
    eqs = {e.what: e for e in equivalents(KWH, 480.0)}
    car = eqs["km driven by an average car"]
    assert car.amount == pytest.approx(480.0 / (400.0 / 1.609344))
    assert car.based_on == "CO2" and "EPA" in car.source
    assert eqs["smartphone charges"].amount == pytest.approx(KWH / PHONE_CHARGE_J)
    assert eqs["kettles of 1 litre boiled"].amount == pytest.approx(KWH / KETTLE_J)
    assert all(e.source for e in eqs.values())
    assert [e.what for e in equivalents(KWH, None)] == [
        "smartphone charges",
        "kettles of 1 litre boiled",
    ]
    assert fpc.equivalent_text(eqs["smartphone charges"]) == "52.6 smartphone charges"


def test_text_helpers():
    assert fpc.grams(12.345) == "12.3 g" and fpc.grams(2500.0) == "2.5 kg"
    assert fpc.grams(3.2e6) == "3.2 t"
    assert fpc.money(1.234, CARBON) == "1.23 EUR" and fpc.money(None, CARBON) == "-"
    assert fpc.energy_scale(100.0) == ("J", 1.0)
    assert fpc.energy_scale(7200.0) == ("Wh", 3600.0)
    assert fpc.energy_scale(2 * KWH) == ("kWh", KWH)
    assert fpc.energy_scale(None) == ("J", 1.0)


# -- from a real store -----------------------------------------------------------------------------
def _filled_store(path: Path) -> RunStore:
    store = RunStore(path)
    a = store.create_run("session", {"mode": "infer", "model": "demo"}, "a")
    store.finish_run(a, "completed", result(200.0, "measured"))
    b = store.create_run("session", {"mode": "infer", "model": "demo"}, "a")
    store.finish_run(b, "cancelled", result(100.0, "estimated"))
    c = store.create_run("session", {"mode": "train", "model": "demo"}, "b")
    store.finish_run(c, "failed", None, "the worker crashed")
    cid = store.create_run("comparison", {}, "compare: y")
    d = store.create_run("session", {"mode": "infer", "model": "demo"}, "baseline 1/1")
    store.finish_run(d, "completed", result(50.0, "measured"))
    store.finish_run(cid, "completed", {"comparison_id": cid, "per_run": [{"run_id": d}]})
    return store


class _PlainStore:
    """Only the store's oldest reading API (runs, result): the fallback path."""

    def __init__(self, store: RunStore) -> None:
        self.runs, self.result = store.runs, store.result


@pytest.mark.parametrize("plain", [False, True], ids=["listing", "result-by-result"])
def test_from_store_sums_stored_runs(tmp_path, plain):
    store = _filled_store(tmp_path / "w.db")
    if not plain and hasattr(store, "summaries"):  # one listing query, no full result read
        store.result = lambda _rid: pytest.fail("read a full result")  # type: ignore[method-assign]
    try:
        fp = from_store(_PlainStore(store) if plain else store, CARBON)
    finally:
        store.close()
    assert fp.total.energy_j == pytest.approx(350.0)
    assert (fp.total.runs, fp.total.unknown, fp.total.label) == (3, 1, "estimated")
    assert fp.skipped == {"comparison": 1}
    groups = {g.name: (g.amount.energy_j, g.amount.unknown) for g in fp.by_label}
    assert groups == {"a": (300.0, 0), "compare: y": (50.0, 0), "b": (None, 1)}


def test_from_store_uses_the_users_tags_when_the_store_keeps_them(tmp_path):
    store = _filled_store(tmp_path / "w.db")
    if not hasattr(store, "annotate"):
        store.close()
        pytest.skip("this store keeps no annotations")
    try:
        store.annotate(1, name="first", tags=["paper"])
        fp = from_store(store, CARBON)
    finally:
        store.close()
    assert {g.name: g.amount.energy_j for g in fp.by_tag}["paper"] == pytest.approx(200.0)
    assert "first" in {g.name for g in fp.by_label}


def test_the_v01_store_counts_each_session_once(tmp_path):
    src = Path(__file__).parent / "data" / "store-v0.1.db"
    shutil.copy(src, tmp_path / "old.db")
    store = RunStore(tmp_path / "old.db")
    try:
        fp = from_store(store, CARBON)
        sessions = [store.result(i)["total"]["gross_j"] for i in range(1, 9) if i != 2]
    finally:
        store.close()
    assert fp.total.runs == 7 and fp.total.unknown == 0
    assert fp.total.energy_j == pytest.approx(math.fsum(sessions))
    assert fp.total.label == "estimated" and fp.skipped == {"comparison": 1}
    names = [g.name for g in fp.by_label]
    assert set(names) == {"compare: mixed-precision:mode=cast", "demo: training the cached weights"}
