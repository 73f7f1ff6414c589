"""Lifecycle comparisons: the break-even maths on known numbers, and a real train-then-serve
comparison on a tiny model with its tables, reports and CLI errors."""

from __future__ import annotations

import csv

import pytest

from tests import tiny_models as tm
from wattlab.core.run.lifecycle import break_even, crossing, summarize

E2E = pytest.mark.e2e


def test_crossing_is_the_extra_one_off_cost_over_the_saving_per_query():
    assert crossing(1000.0, 0.01) == pytest.approx(100_000)
    assert crossing(-50.0, -0.5) == pytest.approx(100)
    assert crossing(1000.0, -0.01) is None  # costlier both ways: never crosses
    assert crossing(-10.0, 0.01) is None  # cheaper both ways
    assert crossing(5.0, 0.0) is None


def test_break_even_kinds():
    # QAT-like: 1 kJ more to train, 10 mJ less per query -> pays off after 100k queries.
    be = break_even((5000.0, 6000.0), (0.05, 0.04), serving_told_apart=True)
    assert be.kind == "pays-off-after" and be.queries == pytest.approx(100_000)
    assert "100,000 queries" in be.text
    assert break_even((5000.0, 4000.0), (0.05, 0.04), True).kind == "always-cheaper"
    until = break_even((5000.0, 4000.0), (0.04, 0.05), True)
    assert until.kind == "cheaper-until" and until.queries == pytest.approx(100_000)
    assert break_even((5000.0, 6000.0), (0.04, 0.05), True).kind == "never"
    # Equal serving: cheaper training is cheaper from the start, costlier never pays off.
    assert break_even((5000.0, 4000.0), (0.05, 0.05), True).kind == "always-cheaper"
    assert break_even((5000.0, 6000.0), (0.05, 0.05), True).kind == "never"
    assert break_even((5000.0, 5000.0), (0.05, 0.05), True).kind == "same"
    # Serving energies inside the noise: no kind and no number is claimed, whatever the medians.
    vague = break_even((5000.0, 6000.0), (0.05, 0.04), serving_told_apart=False)
    assert vague.kind == "undetermined" and "not told apart" in vague.text
    assert "100,000 queries" in vague.text  # the medians' figure, named as such
    assert break_even((5000.0, 4000.0), (0.05, 0.04), False).kind == "undetermined"
    assert break_even((None, 6000.0), (0.05, 0.04), True).kind == "undetermined"


def _fake_run(train_j: float, serve_j: float, queries: int, acc: float) -> dict:
    """A stored lifecycle result with one estimated source: phase energies and durations."""
    return {
        "status": "completed",
        "phases": {
            "prepare": 1.0,
            "train": 10.0,
            "eval": 2.0,
            "convert": 0.5,
            "warmup": 0.25,
            "infer": 4.0,
        },  # fmt: skip
        "energy": [
            {
                "label": "estimated",
                "idle_power_w": None,
                "by_phase_j": {
                    "prepare": 0.0,
                    "train": train_j * 0.8,
                    "eval": train_j * 0.2,
                    "convert": 0.0,
                    "infer": serve_j,
                },
            }
        ],
        "session": {
            "epochs": [{"epoch": 1, "accuracy": acc - 0.1}, {"epoch": 2, "accuracy": acc}],
            "peak_mem_bytes": 100 << 20,
            "serve": {
                "items": queries,
                "latency_ms": {"mean": 5.0},
                "metrics": {"accuracy": acc},
                "model": {"size_bytes": 4 << 20},
                "peak_mem_bytes": 50 << 20,
            },
        },
    }


def test_summary_from_stored_runs_gives_stage_totals_and_break_even():
    base = [_fake_run(1000.0, 40.0, 400, 0.9), _fake_run(1010.0, 41.0, 400, 0.9)] * 2
    opt = [_fake_run(1500.0, 20.0, 400, 0.89), _fake_run(1490.0, 20.5, 400, 0.89)] * 2
    carbon = {"pue": 1.0, "g_per_kwh": 400.0}
    life = summarize(base, opt, 1_000_000, carbon)
    rows = {r["key"]: r for r in life["rows"]}
    assert rows["train_energy_j"]["baseline"] == pytest.approx(1005.0)
    assert rows["serve_energy_per_query_j"]["optimized"] == pytest.approx(20.25 / 400)
    # 1e6 queries x ~0.1 J + ~1 kJ: the total row is in kWh, CO2 at 400 g/kWh.
    expect_kwh = (1005.0 + 1e6 * 40.5 / 400) / 3.6e6
    assert rows["total_energy_kwh"]["baseline"] == pytest.approx(expect_kwh)
    assert rows["total_co2_g"]["baseline"] == pytest.approx(expect_kwh * 400)
    be = life["break_even"]
    assert be["kind"] == "pays-off-after"
    assert be["queries"] == pytest.approx((1495.0 - 1005.0) / ((40.5 - 20.25) / 400))
    assert life["label"] == "estimated"
    assert life["epochs"]["optimized"][1]["accuracy"] == 0.89
    assert life["stages"]["baseline"]["train"]["duration_s"] == pytest.approx(12.0)
    assert "pays off after" in life["headline"]
    from wattlab.core.report.lifecycle_text import table_rows

    by_figure = {row[0]: row[-1] for row in table_rows(life)}  # the source column
    assert by_figure["Training energy (prepare + train + convert)"] == "estimated"
    assert by_figure["Total CO2 at the deployed queries"] == "estimated"
    assert by_figure["Served model size"] == "-"
    # The served model's warm-up is one-off: it is in the convert stage, not lost.
    assert life["stages"]["baseline"]["convert"]["duration_s"] == pytest.approx(0.5 + 0.25)


def test_a_run_that_did_not_serve_is_left_out():
    base = [_fake_run(1000.0, 40.0, 400, 0.9)]
    opt = [_fake_run(1500.0, 20.0, 400, 0.89)]
    del opt[0]["session"]["serve"]
    assert summarize(base, opt, 10, {"pue": 1.0, "g_per_kwh": 1.0}) is None


@pytest.fixture(scope="module")
def lifecycle_cli(tmp_path_factory):
    from wattlab.core.cli.main import main

    root = tmp_path_factory.mktemp("life")
    model = tm.bert_classifier(root / "bert")
    data = tm.write_csv(root / "d.csv", tm.sentences(80))
    out = root / "out"
    argv = [
        "--data-dir", str(root / "data"),
        "compare", "--model", str(model), "--dataset", str(data), "--lifecycle",
        "--deploy-queries", "500000", "--optimized", "pruning:method=structured,amount=0.5",
        "--epochs", "1", "--max-steps", "3", "--batch-size", "8", "--seq-len", "16",
        "--repeats", "2", "--cooldown", "0", "--idle", "0.2", "--interval", "0.05",
        "--min-measure", "0.3", "--out", str(out),
    ]  # fmt: skip
    return main(argv), out


@E2E
def test_lifecycle_compare_trains_then_serves_and_reports(lifecycle_cli, capsys):
    import json

    code, out = lifecycle_cli
    assert code == 0
    comp = json.loads((out / "comparison.json").read_text())
    life = comp["lifecycle"]
    assert life["deploy_queries"] == 500000 and life["pairs"] == 2
    for run in comp["runs"].values():
        s = run["session"]
        assert s["serve"]["items"] > 0  # it served after training
        assert run["phases"].get("convert", 0) > 0 and run["phases"].get("infer", 0) > 0
    rows = {r["key"]: r for r in life["rows"]}
    # Structured pruning really made the served model smaller, and that is deterministic.
    assert rows["model_size_bytes"]["optimized"] < rows["model_size_bytes"]["baseline"]
    assert rows["model_size_bytes"]["verdict"] == "better"
    assert rows["serve_energy_per_query_j"]["baseline"] > 0
    # A break-even kind is claimed only when the serving energies are told apart.
    told_apart = rows["serve_energy_per_query_j"]["verdict"] in ("better", "worse")
    assert (life["break_even"]["kind"] == "undetermined") == (not told_apart)
    assert any("loading the model" in n for n in life["notes"])
    assert "Lifecycle at 500,000 queries" in comp["headline"]
    with open(out / "lifecycle.csv") as f:
        table = list(csv.DictReader(f))
    assert {r["figure"] for r in table} >= {"train_energy_j", "total_co2_g"}
    assert all(r["deploy_queries"] == "500000" for r in table)
    from pypdf import PdfReader

    text = "".join(p.extract_text() for p in PdfReader(out / "report.pdf").pages)
    assert "Lifecycle: train, convert, serve" in text and "Cumulative energy" in text


def test_lifecycle_flags_are_checked(tmp_path, capsys):
    from wattlab.core.cli.main import main

    base = ["--data-dir", str(tmp_path), "compare", "--model", "demo", "--optimized", "none"]
    assert main([*base, "--deploy-queries", "10"]) == 2
    assert "--deploy-queries prices a lifecycle" in capsys.readouterr().err
    assert main([*base, "--lifecycle", "--deploy-queries", "0"]) == 2
    assert "--deploy-queries" in capsys.readouterr().err


def test_an_explicit_inference_mode_is_not_silently_trained(tmp_path, capsys):
    from wattlab.core.cli.main import main

    argv = ["--data-dir", str(tmp_path), "compare", "--optimized", "none", "--lifecycle"]
    assert main([*argv, "--mode", "infer"]) == 2
    assert "drop --mode infer" in capsys.readouterr().err
