"""Verdicts on synthetic paired data, carbon maths, and a real comparison's reports."""

from __future__ import annotations

import csv
import json

import pytest

from tests import tiny_models as tm
from wattlab.core.carbon import CarbonSettings, co2_g, cost
from wattlab.core.compare import paired_verdict, run_interleaved
from wattlab.core.errors import SpecError
from wattlab.core.report.csv_report import EMISSIONS_COLUMNS


def test_clearly_better_worse_and_noise():
    base = [100.0, 102.0, 98.0, 101.0, 99.0]
    assert paired_verdict(base, [60.0, 61.0, 59.0, 60.5, 59.5], True)[0] == "better"
    assert paired_verdict(base, [140.0, 142.0, 139.0, 141.0, 138.0], True)[0] == "worse"
    noisy = [97.0, 105.0, 99.5, 96.0, 104.0]  # ratios straddle 1
    assert paired_verdict(base, noisy, True)[0] == "within noise"
    # direction: higher throughput is better
    assert paired_verdict(base, [150.0, 151.0, 149.0, 152.0, 150.0], False)[0] == "better"


def test_interval_and_edge_cases():
    v, ci = paired_verdict([10.0, 10.0, 10.0], [8.0, 9.0, 8.5], True)
    assert v == "better" and ci[0] == pytest.approx(0.8) and ci[1] == pytest.approx(0.9)
    assert paired_verdict([5.0, 5.0], [5.0, 5.0], True)[0] == "no change"
    assert paired_verdict([10.0], [8.0], True)[0] == "single run"
    assert paired_verdict([None, None], [1.0, 2.0], True)[0] == "unknown"


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


def test_runs_are_interleaved():
    from wattlab.core.spec import RunSpec

    order = []
    run_interleaved(
        RunSpec(),
        RunSpec(techniques=({"name": "onnx-runtime"},)),
        3,
        lambda spec, side, i: order.append((side, i)) or {},
        cooldown_s=0,
    )
    assert order == [
        ("baseline", 0),
        ("optimized", 0),
        ("baseline", 1),
        ("optimized", 1),
        ("baseline", 2),
        ("optimized", 2),
    ]


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from wattlab.core.comparison import compare, write_reports
    from wattlab.core.measure import MeasureSettings
    from wattlab.core.spec import RunSpec
    from wattlab.core.store import RunStore
    from wattlab.core.techniques.base import parse_cli

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
        MeasureSettings(0.05, 0.2),
        CarbonSettings("DE", price_per_kwh=0.3),
        repeats=2,
        cooldown_s=0,
    )
    files = write_reports(comp, store, root / "out")
    return comp, files, root / "out", store


def test_comparison_is_stored_and_complete(comparison):
    comp, _, _, store = comparison
    row = store.run(comp["comparison_id"])
    assert row.kind == "comparison" and row.status == "completed"
    assert [(p["side"], p["index"]) for p in comp["per_run"]] == [
        ("baseline", 0),
        ("optimized", 0),
        ("baseline", 1),
        ("optimized", 1),
    ]
    by = {v["metric"]: v for v in comp["verdicts"]}
    assert by["energy_per_item_j"]["source"] == "estimated"
    assert by["accuracy"]["verdict"] == "no change"  # same fp32 model on another runtime
    assert by["co2_g"]["baseline_median"] == pytest.approx(
        by["energy_j"]["baseline_median"] / 3.6e6 * 380
    )
    assert "energy per item" in comp["headline"]


def test_csv_reports(comparison):
    comp, files, out, _ = comparison
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
    assert e["verdict"] in ("better", "worse", "within noise") and e["source"] == "estimated"
    assert len([p for p in files if p.name.startswith("samples_run")]) == 4


def test_json_manifest(comparison):
    _, _, out, _ = comparison
    j = json.loads((out / "comparison.json").read_text())
    m = j["manifest"]
    assert {"cpu_model", "cpu_flags", "logical_cpus", "memory_bytes", "gpus"} <= set(m["hardware"])
    assert {"python", "torch", "transformers", "onnxruntime"} <= set(m["software"])
    assert m["software"]["torch"] and m["labels"] == ["estimated"]
    assert m["specs"]["optimized"]["techniques"][0]["name"] == "onnx-runtime"
    assert j["sampling"]["interval_s"] == 0.05 and len(j["runs"]) == 4


def test_pdf_has_pages_and_the_tables_figures(comparison):
    from pypdf import PdfReader

    from wattlab.core.report.pdf_report import fmt_value

    comp, _, out, _ = comparison
    reader = PdfReader(str(out / "report.pdf"))
    assert 3 <= len(reader.pages) <= 5
    text = " ".join(p.extract_text() for p in reader.pages)
    assert "WattLab comparison report" in text and "Methods" in text
    by = {v["metric"]: v for v in comp["verdicts"]}
    for key in ("energy_per_item_j", "throughput_items_s", "model_size_bytes"):
        v = by[key]
        assert fmt_value(v["baseline_median"], v["unit"]) in text


def test_report_command_regenerates_from_the_store(comparison, tmp_path, monkeypatch):
    comp, _, _, store = comparison
    from wattlab.core.cli import main

    monkeypatch.setenv("WATTLAB_DATA_DIR", str(store.path.parent))
    out = tmp_path / "again"
    assert main(["report", str(comp["comparison_id"]), "--csv", "--out", str(out)]) == 0
    assert (out / "emissions.csv").exists() and not (out / "report.pdf").exists()
    assert main(["report", "99999", "--out", str(out)]) == 2


def test_accuracy_deltas_are_in_points_others_relative():
    from wattlab.core.report.pdf_report import fmt_delta

    assert fmt_delta({"metric": "accuracy", "delta": -0.013, "delta_pct": -1.36}) == "-1.3 pt"
    assert fmt_delta({"metric": "energy_j", "delta": -3.0, "delta_pct": -45.04}) == "-45.0%"
    assert fmt_delta({"metric": "energy_j", "delta": None, "delta_pct": None}) == "-"


def test_technique_text_lists_only_parameters_that_differ_from_defaults():
    from wattlab.core.compare import describe_techniques
    from wattlab.core.spec import RunSpec

    gui_like = {"layers": "embed+query+prefix", "threshold": 0.9, "guard": True, "answers": True}
    spec = RunSpec(mode="rag", techniques=({"name": "rag-cache", "params": gui_like},))
    assert describe_techniques(spec) == "rag-cache:threshold=0.9"
    plain = RunSpec(techniques=({"name": "quantization", "params": {"backend": "ort"}},))
    assert describe_techniques(plain) == "quantization"
