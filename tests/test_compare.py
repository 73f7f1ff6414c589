"""Verdicts on synthetic paired data, carbon maths, and a real comparison's reports."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from tests import tiny_models as tm
from wattlab.core.errors import SpecError
from wattlab.core.measure.carbon import CarbonSettings, co2_g, cost
from wattlab.core.report.csv_report import EMISSIONS_COLUMNS
from wattlab.core.run.stats import paired_verdict, run_interleaved


def test_clearly_better_worse_and_noise():
    base = [100.0, 101.0, 99.0, 100.5, 99.5]
    assert paired_verdict(base, [60.0, 61.0, 59.0, 60.5, 59.5], True)[0] == "better"
    assert paired_verdict(base, [140.0, 142.0, 139.0, 141.0, 138.0], True)[0] == "worse"
    noisy = [80.0, 120.0, 95.0, 110.0, 90.0]
    assert paired_verdict(base, noisy, True)[0] == "within noise"
    assert paired_verdict(base, [150.0, 151.0, 149.0, 152.0, 150.0], False)[0] == "better"


def test_interval_and_edge_cases():
    v, ci = paired_verdict([10.0, 10.0, 10.0, 10.0], [8.0, 9.0, 8.5, 8.4], True)
    assert v == "better" and ci[0] < 0.85 < ci[1] < 1.0
    assert paired_verdict([5.0, 5.0], [5.0, 5.0], True)[0] == "no change"
    assert paired_verdict([None, None], [1.0, 2.0], True)[0] == "unknown"


def test_too_few_repeats_gives_no_verdict_but_deterministic_metrics_do():
    assert paired_verdict([10.0], [8.0], True)[0] == "too few repeats"
    assert paired_verdict([10.0, 10.2], [8.0, 8.1], True)[0] == "too few repeats"
    # Model size halves in every pair: deterministic, a verdict from two pairs on.
    assert paired_verdict([4e6, 4e6], [2e6, 2e6], True) == ("better", (0.5, 0.5))


def test_a_small_real_change_is_no_meaningful_change():
    base = [100.0, 100.1, 99.9, 100.0, 100.05]
    opt = [99.0, 99.1, 98.9, 99.0, 99.05]  # -1%, tiny noise: significant, but inside 3%
    assert paired_verdict(base, opt, True)[0] == "no meaningful change"
    assert paired_verdict(base, opt, True, margin=0.005)[0] == "better"
    # Real (-5%) but the interval reaches into the 3% margin: no verdict on its size.
    b = [100.0, 100.0, 100.0, 100.0, 100.0]
    assert paired_verdict(b, [93.0, 97.5, 94.0, 96.5, 94.0], True)[0] == "inconclusive"


def test_false_verdict_rate_on_a_thousand_null_comparisons_is_at_most_5_percent():
    """A/A: both sides draw from the same distribution (log-normal, 10% noise, plus a slow
    drift that counterbalancing must not turn into a verdict). At the defaults (5 pairs, 3%
    margin) "better"/"worse" must come out at most 5% of the time."""
    from wattlab.core.run.stats import DEFAULT_REPEATS, pair_order

    rng = np.random.default_rng(1234)
    wrong = 0
    for _ in range(1000):
        values: dict[str, list[float]] = {"baseline": [], "optimized": []}
        t = 0
        for k in range(DEFAULT_REPEATS):
            for side in pair_order(k):
                drift = 1.0 + 0.01 * t  # the machine warms by 1% per run
                values[side].append(100.0 * drift * float(np.exp(rng.normal(0, 0.10))))
                t += 1
        v, _ = paired_verdict(values["baseline"], values["optimized"], True)
        wrong += v in ("better", "worse")
    assert wrong / 1000 <= 0.05, wrong
    # The bootstrap of 3 pairs this replaced called a verdict 24% of the time on such data.


def test_a_real_saving_is_still_found_at_the_defaults():
    rng = np.random.default_rng(7)
    found = 0
    for _ in range(200):
        b = [100.0 * float(np.exp(rng.normal(0, 0.05))) for _ in range(5)]
        o = [80.0 * float(np.exp(rng.normal(0, 0.05))) for _ in range(5)]
        found += paired_verdict(b, o, True)[0] == "better"
    assert found / 200 >= 0.9


def test_carbon_and_cost():
    c = CarbonSettings("FR", pue=1.5, price_per_kwh=0.2).resolved()
    assert c["g_per_kwh"] == 55 and "Ember" in c["intensity_source"]
    assert co2_g(3.6e6, c) == pytest.approx(55 * 1.5)
    assert cost(3.6e6, c) == pytest.approx(0.3)
    assert CarbonSettings(intensity_g_per_kwh=100).resolved()["intensity_source"] == "user override"
    with pytest.raises(SpecError, match="unknown carbon region"):
        CarbonSettings("ATLANTIS").resolved()
    with pytest.raises(SpecError, match="PUE must be at least 1.0"):
        CarbonSettings(pue=0.5).resolved()


def test_runs_are_counterbalanced():
    from wattlab.core.spec import RunSpec

    order = []
    pairs = run_interleaved(
        RunSpec(),
        RunSpec(techniques=({"name": "onnx-runtime"},)),
        4,
        lambda spec, side, i: order.append((side, i)) or {"run_id": len(order)},
        cooldown_s=0,
    )
    assert order == [
        ("baseline", 0),
        ("optimized", 0),
        ("optimized", 1),
        ("baseline", 1),
        ("baseline", 2),
        ("optimized", 2),
        ("optimized", 3),
        ("baseline", 3),
    ]
    assert [p.order[0] for p in pairs] == ["baseline", "optimized", "baseline", "optimized"]


def test_disturbed_pairs_are_rerun_and_replaced():
    from wattlab.core.run.comparison import sides_of, verdict_pairs
    from wattlab.core.spec import RunSpec

    runs: dict[int, dict] = {}

    def run(spec, side, i):
        rid = len(runs) + 1
        disturbed = i == 1 and side == "optimized"  # a neighbour woke up during pair 2
        runs[rid] = {"run_id": rid, "side": side, "contention": {"disturbed": disturbed}}
        return runs[rid]

    pairs = run_interleaved(RunSpec(), RunSpec(), 3, run, cooldown_s=0, rerun_disturbed=True)
    assert len(pairs) == 4 and pairs[1].replaced_by == 3 and pairs[3].rerun_of == 1
    sides, info = sides_of(pairs)
    base, opt = verdict_pairs(runs, sides, info)
    assert len(base) == len(opt) == 3  # pairs 0, 2 and the re-run; the disturbed one is out
    assert all(not r["contention"]["disturbed"] for r in base + opt)
    assert [info[r]["position"] for r, _, _ in sides] == list(range(8))


# A real comparison: four worker processes. Only the tests below that use it are e2e.
E2E = pytest.mark.e2e


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.measure.store import RunStore
    from wattlab.core.report.outputs import write_reports
    from wattlab.core.run.comparison import compare
    from wattlab.core.spec import RunSpec
    from wattlab.core.techniques.catalog import parse_cli

    root = tmp_path_factory.mktemp("cmp")
    model = tm.bert_classifier(root / "bert")
    data = tm.write_csv(root / "d.csv", tm.sentences(80))
    base = RunSpec(model=str(model), dataset=str(data), batch_size=8, seq_len=16, infer_batches=20)
    opt = RunSpec(**{**base.to_dict(), "techniques": (parse_cli("onnx-runtime"),)})
    store = RunStore(root / "wattlab.db")
    comp = compare(
        base,
        opt,
        store,
        MeasureSettings(0.05, 0.2, min_measure_s=0.5),  # 2 s by default: 6 s saved over 4 runs
        CarbonSettings("DE", price_per_kwh=0.3),
        repeats=2,
        cooldown_s=0,
    )
    files = write_reports(comp, store, root / "out")
    return comp, files, root / "out", store


@E2E
def test_comparison_is_stored_and_complete(comparison):
    comp, _, _, store = comparison
    row = store.run(comp["comparison_id"])
    assert row.kind == "comparison" and row.status == "completed"
    # Counterbalanced, and the order is in comparison.json for anyone to check.
    assert [(p["side"], p["index"], p["position"]) for p in comp["per_run"]] == [
        ("baseline", 0, 0),
        ("optimized", 0, 1),
        ("optimized", 1, 2),
        ("baseline", 1, 3),
    ]
    assert comp["statistics"]["primary_metric"] == "energy_per_item_j"
    assert "Student-t" in comp["statistics"]["method"]
    by = {v["metric"]: v for v in comp["verdicts"]}
    assert by["energy_per_item_j"]["source"] == "estimated"
    assert by["accuracy"]["verdict"] == "no change"  # same fp32 model on another runtime
    assert by["co2_g"]["baseline_median"] == pytest.approx(
        by["energy_j"]["baseline_median"] / 3.6e6 * 380
    )
    assert "energy per item" in comp["headline"]
    # Two pairs: no verdict on energy, said plainly.
    assert by["energy_per_item_j"]["verdict"] == "too few repeats"
    assert "too few repeats" in comp["headline"]


@E2E
def test_csv_reports(comparison):
    comp, files, out, store = comparison
    with open(out / "emissions.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0].keys()) == EMISSIONS_COLUMNS  # CodeCarbon's header, in its order
    assert len(rows) == 4 and all(float(r["energy_consumed"]) > 0 for r in rows)
    assert float(rows[0]["emissions"]) == pytest.approx(
        float(rows[0]["energy_consumed"]) * 380 / 1000, rel=1e-6
    )
    with open(out / "summary.csv") as f:
        summary = list(csv.DictReader(f))
    kinds = {r["row_type"] for r in summary}
    assert kinds == {"run", "comparison"}
    e = next(
        r for r in summary if r["row_type"] == "comparison" and r["metric"] == "energy_per_item_j"
    )
    assert e["verdict"] == "too few repeats" and e["source"] == "estimated"
    assert len([p for p in files if p.name.startswith("samples_run")]) == 4


@E2E
def test_json_manifest(comparison):
    _, _, out, _ = comparison
    j = json.loads((out / "comparison.json").read_text())
    m = j["manifest"]
    assert {"cpu_model", "cpu_flags", "logical_cpus", "memory_bytes", "gpus"} <= set(m["hardware"])
    assert {"python", "torch", "transformers", "onnxruntime"} <= set(m["software"])
    assert m["software"]["torch"] and m["labels"] == ["estimated"]
    assert m["specs"]["optimized"]["techniques"][0]["name"] == "onnx-runtime"
    assert j["sampling"]["interval_s"] == 0.05 and len(j["runs"]) == 4


@E2E
def test_pdf_has_pages_and_the_tables_figures(comparison):
    from pypdf import PdfReader

    from wattlab.core.report.text import fmt_value

    comp, _, out, _ = comparison
    reader = PdfReader(str(out / "report.pdf"))
    assert 3 <= len(reader.pages) <= 5
    text = " ".join(p.extract_text() for p in reader.pages)
    assert "WattLab comparison report" in text and "Methods" in text
    # The summary page's footnote names the statistics actually used, not an older method.
    first = reader.pages[0].extract_text()
    assert "Student-t" in first and "bootstrap" not in first
    by = {v["metric"]: v for v in comp["verdicts"]}
    for key in ("energy_per_item_j", "throughput_items_s", "model_size_bytes"):
        v = by[key]
        assert fmt_value(v["baseline_median"], v["unit"]) in text


@E2E
def test_report_command_regenerates_from_the_store(comparison, tmp_path, monkeypatch):
    comp, _, _, store = comparison
    from wattlab.core.cli.main import main

    monkeypatch.setenv("WATTLAB_DATA_DIR", str(store.path.parent))
    out = tmp_path / "again"
    assert main(["report", str(comp["comparison_id"]), "--csv", "--out", str(out)]) == 0
    assert (out / "emissions.csv").exists() and not (out / "report.pdf").exists()
    assert main(["report", "99999", "--out", str(out)]) == 2


def test_accuracy_deltas_are_in_points_others_relative():
    from wattlab.core.report.text import fmt_delta
    from wattlab.core.results import Verdict

    V = Verdict.from_dict

    assert fmt_delta(V({"metric": "accuracy", "delta": -0.013, "delta_pct": -1.36})) == "-1.3 pt"
    assert fmt_delta(V({"metric": "energy_j", "delta": -3.0, "delta_pct": -45.04})) == "-45.0%"
    assert fmt_delta(V({"metric": "energy_j", "delta": None, "delta_pct": None})) == "-"


def test_technique_text_lists_only_parameters_that_differ_from_defaults():
    from wattlab.core.run.stats import describe_techniques
    from wattlab.core.spec import RunSpec

    gui_like = {"layers": "embed+query+prefix", "threshold": 0.9, "guard": True, "answers": True}
    spec = RunSpec(mode="rag", techniques=({"name": "rag-cache", "params": gui_like},))
    assert describe_techniques(spec) == "rag-cache:threshold=0.9"
    plain = RunSpec(techniques=({"name": "quantization", "params": {"backend": "ort"}},))
    assert describe_techniques(plain) == "quantization"


def _five_pairs(disturbed: set[int]) -> tuple[dict[int, dict], list[tuple[int, str, int]]]:
    """Ten finished runs as the worker reports them (only what a verdict reads), five pairs."""
    results, sides = {}, []
    for k in range(10):
        rid = k + 1
        results[rid] = {
            "run_id": rid,
            "status": "completed",
            "energy_j": 10.0,
            "energy_per_item_j": 1.0,
            "measured_phase": {"label": "estimated", "gross_j": 10.0},
            "contention": {"disturbed": rid in disturbed},
        }
        sides.append((rid, ("baseline", "optimized")[k % 2], k // 2))
    return results, sides


def test_headline_says_when_runs_in_the_verdict_were_disturbed():
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.run.comparison import assemble
    from wattlab.core.spec import RunSpec

    def headline(disturbed: set[int]) -> str:
        results, sides = _five_pairs(disturbed)
        opt = RunSpec(techniques=({"name": "onnx-runtime"},))
        carbon = CarbonSettings().resolved()
        comp = assemble(
            1, RunSpec(), opt, 5, 0, MeasureSettings(0.05, 0.1), carbon, None, results, sides
        )
        return comp["headline"]

    assert "1 of the 10 runs in the verdict were disturbed" in headline({3})
    assert "3 of the 10 runs in the verdict were disturbed" in headline({1, 4, 10})
    assert "disturbed" not in headline(set())


def test_a_run_without_a_measured_phase_has_unknown_energy_not_zero():
    from wattlab.core.run.stats import run_metrics

    carbon = {"pue": 1.0, "g_per_kwh": 400.0, "price_per_kwh": 0.3}
    m = run_metrics({"run_id": 1, "status": "failed", "session": {}}, carbon)
    assert m["energy_j"] is None and m["energy_kwh"] is None and m["duration_s"] is None
    assert m["co2_g"] is None and m["cost"] is None


def test_the_verdict_footnote_names_the_method_the_comparison_used():
    from wattlab.core.report.text import verdict_footnote
    from wattlab.core.run.stats import METHOD_TEXT

    now = METHOD_TEXT.format(min=3, margin=3.0)
    assert verdict_footnote({"statistics": {"method": now}}).startswith(f"Verdict: {now}")
    assert "Stored before version 0.2" in verdict_footnote({})  # 0.1 rows: their bootstrap


def test_a_cancelled_run_never_enters_a_verdict_pair():
    """Stop during an optimized run: that run measured a fragment of the work (a few joules),
    and pairing it with a whole baseline run showed -98% energy. It must count for nothing."""
    from wattlab.core.measure.meter import MeasureSettings
    from wattlab.core.run.comparison import assemble, mark_cancelled
    from wattlab.core.spec import RunSpec

    results, sides = _five_pairs(set())
    results[10].update(status="cancelled", energy_j=0.2, energy_per_item_j=0.02)
    opt = RunSpec(techniques=({"name": "onnx-runtime"},))
    comp = assemble(
        1,
        RunSpec(),
        opt,
        5,
        0,
        MeasureSettings(0.05, 0.1),
        CarbonSettings().resolved(),
        None,
        results,
        sides,
    )
    mark_cancelled(comp)
    assert comp["pairs_completed"] == 4
    energy = next(v for v in comp["verdicts"] if v["metric"] == "energy_per_item_j")
    assert energy["pairs"] == 4  # the fragment is in no pair and not in the median
    assert energy["optimized_median"] == pytest.approx(energy["baseline_median"])
    assert comp["status"] == "cancelled"
    assert comp["headline"].startswith("Cancelled after 4 of 5 pairs: ")


def test_the_interleaving_stops_at_a_cancelled_run():
    from wattlab.core.spec import RunSpec

    def run(spec, side, i):
        status = "cancelled" if (i, side) == (1, "optimized") else "completed"
        return {"run_id": i * 2 + (side == "optimized"), "status": status}

    pairs = run_interleaved(RunSpec(), RunSpec(), 5, run, cooldown_s=0)
    assert len(pairs) == 2 and pairs[0].complete and not pairs[1].complete
