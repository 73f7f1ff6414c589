"""Fairness across groups (--sensitive-column): the figures on data whose disparity is known by
construction, the sensitive column from a file and from the demo, the errors a user can meet,
and the figures reaching comparisons and the CLI.

Everything except the last test runs in this process (the fast tier)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.test_cli_run import TINY_DEMO
from wattlab.core.errors import DataError, SpecError
from wattlab.core.models.datasets import MISSING_GROUP, load_classification, load_demo
from wattlab.core.models.fairness import MIN_GROUP_ITEMS, fairness_report
from wattlab.core.spec import RunSpec, build_spec


# -- the figures, on data whose disparity is known ------------------------------------------------
def _binary_case() -> tuple[list[int], list[int], list[str]]:
    """Ten items per group, six positives and four negatives in each.
    A: predicts 1 for all positives and two negatives -> selection 0.8, TPR 1, FPR 0.5, acc 0.8.
    B: predicts 1 for three positives and one negative -> selection 0.4, TPR 0.5, FPR 0.25,
    acc 0.6."""
    y_true = [1] * 6 + [0] * 4 + [1] * 6 + [0] * 4
    y_pred = [1] * 6 + [1, 1, 0, 0] + [1, 1, 1, 0, 0, 0] + [1, 0, 0, 0]
    return y_true, y_pred, ["A"] * 10 + ["B"] * 10


def test_a_known_binary_disparity_gives_its_figures_exactly():
    y_true, y_pred, groups = _binary_case()
    f = fairness_report(y_true, y_pred, groups, "group", 2, ["no", "yes"])
    assert f["column"] == "group" and f["items"] == 20
    assert f["groups"] == {"A": {"n": 10, "accuracy": 0.8}, "B": {"n": 10, "accuracy": 0.6}}
    assert f["worst_group"] == "B" and f["worst_group_accuracy"] == pytest.approx(0.6)
    assert f["accuracy_gap"] == pytest.approx(0.2)
    assert f["demographic_parity_difference"] == pytest.approx(0.4)  # 0.8 - 0.4
    assert f["disparate_impact"] == pytest.approx(0.5)  # 0.4 / 0.8
    assert f["equalized_odds_difference"] == pytest.approx(0.5)  # max(1 - 0.5, 0.5 - 0.25)
    assert f["positive_class"] == "yes" and "'yes', class 1" in f["method"]
    # the same figures as fairlearn's own functions, where every rate is defined
    from fairlearn.metrics import equalized_odds_difference

    assert f["equalized_odds_difference"] == pytest.approx(
        equalized_odds_difference(np.array(y_true), np.array(y_pred), sensitive_features=groups)
    )
    # ten items a group is below the trust threshold: both named, one warning sentence
    assert MIN_GROUP_ITEMS > 10 and f["small_groups"] == ["A", "B"]
    assert any("fewer than" in w and "A (n=10)" in w for w in f["warnings"])
    json.dumps(f)  # it goes into the stored result as it is


def test_multiclass_takes_each_class_one_vs_rest_and_reports_the_worst():
    # A predicts [0,0,1,2] (all right), B predicts [0,1,1,1] against [0,1,2,2].
    # selection rates A/B: class 0 0.5/0.25, class 1 0.25/0.75, class 2 0.25/0
    # equalized odds: class 0 0, class 1 FPR 0 vs 2/3, class 2 TPR 1 vs 0
    y_true = [0, 0, 1, 2] + [0, 1, 2, 2]
    y_pred = [0, 0, 1, 2] + [0, 1, 1, 1]
    f = fairness_report(y_true, y_pred, list("AAAABBBB"), "g", 3, ["x", "y", "z"])
    per = f["per_class"]
    assert per["x"]["demographic_parity_difference"] == pytest.approx(0.25)
    assert per["y"]["demographic_parity_difference"] == pytest.approx(0.5)
    assert per["y"]["disparate_impact"] == pytest.approx(1 / 3)
    assert per["z"]["disparate_impact"] == pytest.approx(0.0)
    assert per["y"]["equalized_odds_difference"] == pytest.approx(2 / 3)
    assert per["z"]["equalized_odds_difference"] == pytest.approx(1.0)
    # the worst class of each: largest difference, smallest ratio, and which class it was
    assert f["demographic_parity_difference"] == pytest.approx(0.5)
    assert f["demographic_parity_difference_class"] == "y"
    assert f["disparate_impact"] == pytest.approx(0.0) and f["disparate_impact_class"] == "z"
    assert f["equalized_odds_difference"] == pytest.approx(1.0)
    assert f["equalized_odds_difference_class"] == "z"
    assert "one-vs-rest" in f["method"] and "worst class" in f["method"]
    assert f["groups"]["A"]["accuracy"] == 1.0 and f["groups"]["B"]["accuracy"] == 0.5


def test_a_rate_undefined_in_a_group_is_left_out_not_scored_zero():
    # B has no positives: its true-positive rate is undefined. Scored 0 (fairlearn's default)
    # it would make a TPR range of 0.5 out of an empty cell; left out, the FPR range decides.
    y_true = [1, 1, 0, 0] + [0, 0, 0, 0]
    y_pred = [1, 0, 0, 0] + [0, 0, 1, 0]
    f = fairness_report(y_true, y_pred, list("AAAABBBB"), "g", 2)
    assert f["equalized_odds_difference"] == pytest.approx(0.25)  # FPR 0 vs 0.25
    assert any("undefined" in w for w in f["warnings"])


def test_one_group_only_says_no_disparity_can_be_measured():
    f = fairness_report([0, 1, 1], [0, 1, 0], ["A"] * 3, "g", 2)
    # Unknown, not a reassuring 0: a fairness budget must not pass on it.
    assert f["demographic_parity_difference"] is None and f["accuracy_gap"] is None
    assert f["disparate_impact"] is None and f["equalized_odds_difference"] is None
    assert f["worst_group_accuracy"] == pytest.approx(2 / 3)
    assert any("only one group" in w for w in f["warnings"])


# -- the sensitive column from a dataset ---------------------------------------------------------
def _csv(tmp_path, rows: list[str]):
    p = tmp_path / "data.csv"
    p.write_text("text,label,gender\n" + "\n".join(rows) + "\n")
    return p


def test_the_column_is_loaded_aligned_with_the_eval_labels_and_blanks_are_missing(tmp_path):
    rows = [f"text {i},{i % 2},{'' if i % 5 == 0 else 'FM'[i % 2]}" for i in range(40)]
    d = load_classification(_csv(tmp_path, rows), eval_fraction=0.5, sensitive_column="gender")
    assert d.eval_groups is not None and len(d.eval_groups) == len(d.eval_labels) == 20
    for text, label, group in zip(d.eval_texts, d.eval_labels, d.eval_groups, strict=True):
        i = int(text.split()[1])
        assert d.label_names[label] == str(i % 2)
        assert group == (MISSING_GROUP if i % 5 == 0 else "FM"[i % 2])
    # without the flag nothing is kept
    assert load_classification(_csv(tmp_path, rows)).eval_groups is None


def test_a_jsonl_null_or_absent_value_is_missing_too(tmp_path):
    p = tmp_path / "d.jsonl"
    recs = [{"text": f"t{i}", "label": i % 2, "g": "x"} for i in range(6)]
    recs[1]["g"] = None
    del recs[2]["g"]
    p.write_text("\n".join(json.dumps(r) for r in recs))
    d = load_classification(p, eval_fraction=0.99, sensitive_column="g")
    assert d.eval_groups is not None
    assert sorted(d.eval_groups) == sorted(["x"] * 4 + [MISSING_GROUP] * 2)  # all 6 in eval


def test_a_missing_column_is_one_line_naming_it_and_the_columns(tmp_path):
    path = _csv(tmp_path, ["a,0,F", "b,1,M", "c,0,F", "d,1,M"])
    with pytest.raises(DataError) as exc:
        load_classification(path, sensitive_column="age")
    msg = str(exc.value)
    assert "'age'" in msg and "text, label, gender" in msg and "\n" not in msg
    with pytest.raises(DataError, match="'age'.*text, label, group"):
        load_demo(400, 13, sensitive_column="age")


def test_preflight_refuses_a_missing_column_and_an_unlabelled_run_before_measuring(tmp_path):
    from wattlab.core.run import preflight

    path = _csv(tmp_path, ["a,0,F", "b,1,M", "c,0,F", "d,1,M"])
    with pytest.raises(DataError, match="no column 'age' for --sensitive-column"):
        preflight.check(build_spec(dataset=str(path), sensitive_column="age"))
    assert preflight.check(build_spec(dataset=str(path), sensitive_column="gender"))
    with pytest.raises(DataError, match="'age'.*group"):
        preflight.check(build_spec(sensitive_column="age"))
    preflight.check(build_spec(sensitive_column="group"))
    txt = tmp_path / "t.txt"
    txt.write_text("one\n\ntwo\n")
    with pytest.raises(DataError, match="plain text"):
        preflight.check(build_spec(dataset=str(txt), sensitive_column="g"))
    with pytest.raises(SpecError, match="classification run"):
        build_spec(task="causal-lm", sensitive_column="g").validate()
    with pytest.raises(SpecError, match="empty"):
        build_spec(sensitive_column=" ").validate()


def test_the_cli_says_a_missing_column_in_one_line_exit_2(capsys):
    from wattlab.core.cli.main import main

    code = main(["run", "--sensitive-column", "age", "--idle", "0"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("wattlab: ") and "'age'" in err[0] and "group" in err[0]


# -- the demo's synthetic attribute --------------------------------------------------------------
# Computed from the generator before the group column existed: the demo's texts, labels and
# order (and so its cached model and every benchmark) must not move because of the column.
DEMO_ROWS_SHA256 = "606414aa279adf07bcca5ebdffeb06c99897cb0e22b7a40b5fddc36c1e557549"
DEMO_SPLITS_SHA256 = "bb09b78a31ecaed48f12604059476181a2f47dc4ac1e33a59017baabd4f57cdb"
DEMO_CACHE_KEY = "58de0c6b7af56ae5"  # of resources/demo_model.json as shipped


def _sha(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj).encode()).hexdigest()


def test_the_demo_has_a_group_column_and_its_texts_and_labels_are_unchanged(monkeypatch):
    from wattlab.core.models.demo_cache import ENV_DEFINITION, cache_key
    from wattlab.core.models.demo_data import GROUPS, generate, generate_rows

    rows = generate_rows(5000, 13)
    assert _sha([[t, lab] for t, lab, _ in rows]) == DEMO_ROWS_SHA256
    assert _sha(generate(5000, 13)) == DEMO_ROWS_SHA256
    counts = {g: sum(1 for *_, x in rows if x == g) for g in GROUPS}
    assert set(counts) == {"A", "B"} and min(counts.values()) > 2000  # about half each
    d = load_demo(5000, 13, sensitive_column="group")
    assert _sha([d.train_texts, d.train_labels, d.eval_texts, d.eval_labels]) == DEMO_SPLITS_SHA256
    assert d.eval_groups is not None and set(d.eval_groups) == {"A", "B"}
    monkeypatch.delenv(ENV_DEFINITION, raising=False)
    assert cache_key() == DEMO_CACHE_KEY


def test_demo_group_b_is_the_text_the_noise_changed():
    from wattlab.core.models.demo_data import generate_rows

    rows = generate_rows(400, 13)
    # a filler word only ever comes from the noise pass: such a text is always in B
    fillers = [g for t, _, g in rows if any(w in t.split() for w in ("um", "basically"))]
    assert fillers and set(fillers) == {"B"}


# -- comparisons and the CLI ---------------------------------------------------------------------
def test_run_metrics_reads_the_fairness_figures_and_none_without_them():
    from wattlab.core.results import FAIRNESS_METRICS
    from wattlab.core.run.stats import METRICS, run_metrics

    y_true, y_pred, groups = _binary_case()
    fairness = fairness_report(y_true, y_pred, groups, "group", 2)
    carbon = {"g_per_kwh": 400, "pue": 1.0, "price_per_kwh": None}
    with_f = run_metrics({"run_id": 1, "session": {"fairness": fairness}}, carbon)
    assert with_f["demographic_parity_difference"] == pytest.approx(0.4)
    assert with_f["worst_group_accuracy"] == pytest.approx(0.6)
    assert with_f["disparate_impact"] == pytest.approx(0.5)
    without = run_metrics({"run_id": 1, "session": {"metrics": {"accuracy": 0.9}}}, carbon)
    assert all(without[k] is None for k in FAIRNESS_METRICS)  # unknown, never 0
    assert set(FAIRNESS_METRICS) <= set(METRICS)
    assert METRICS["disparate_impact"][2] is False and METRICS["accuracy_gap"][2] is True


def test_comparison_verdicts_show_fairness_deltas_in_points():
    from wattlab.core.report.text import fmt_delta
    from wattlab.core.run.stats import verdicts

    def run(dpd: float) -> dict:
        return {
            "run_id": 1,
            "measured_phase": {"label": "measured"},
            "session": {"fairness": {"demographic_parity_difference": dpd}},
        }

    carbon = {"g_per_kwh": 400, "pue": 1.0, "price_per_kwh": None}
    vs = verdicts([run(0.03)] * 3, [run(0.05)] * 3, carbon)
    v = next(v for v in vs if v.metric == "demographic_parity_difference")
    assert v.verdict == "worse" and fmt_delta(v) == "+2.0 pt"


def test_the_run_summary_and_the_comparison_print_the_groups():
    import io

    from wattlab.core.cli.printing import print_comparison, print_session_summary

    y_true, y_pred, groups = _binary_case()
    f = fairness_report(y_true, y_pred, groups, "group", 2)
    out = io.StringIO()
    print_session_summary({"session": {"mode": "infer", "fairness": f}}, out)
    line = next(x for x in out.getvalue().splitlines() if x.startswith("fairness"))
    assert "by group: A 0.800 (n=10), B 0.600 (n=10)" in line
    assert "demographic parity diff 0.400" in line and "disparate impact 0.500" in line
    assert "equalized-odds diff 0.500" in line
    out = io.StringIO()
    print_comparison({"comparison_id": 1, "fairness": {"baseline": f, "optimized": f}}, out)
    text = out.getvalue()
    assert "fairness baseline  by group: A 0.800" in text and "fairness optimized by group" in text
    assert text.count("warning: fewer than") == 1  # shared by both sides, said once
    # a stored result with a damaged fairness field prints, never raises
    print_session_summary({"session": {"fairness": {"groups": {"A": None}}}}, io.StringIO())


def test_the_flag_parses_into_the_spec_and_old_specs_load_without_it():
    from wattlab.core.cli.main import build_parser
    from wattlab.core.cli.session import spec_from_args
    from wattlab.core.report.command import session_argv

    for command in ("run", "compare"):
        args = build_parser().parse_args([command, "--sensitive-column", "group"])
        assert spec_from_args(args).sensitive_column == "group"
    assert spec_from_args(build_parser().parse_args(["run"])).sensitive_column is None
    stored = build_spec().to_dict()
    del stored["sensitive_column"]  # a spec stored before the field existed
    assert RunSpec.from_dict(stored).sensitive_column is None
    # "Copy as CLI command" repeats it
    argv = session_argv(build_spec(sensitive_column="group").to_dict())
    assert argv[argv.index("--sensitive-column") + 1] == "group"


# -- end to end: the demo through the CLI --------------------------------------------------------


@pytest.mark.e2e
def test_wattlab_run_reports_fairness_for_the_demo_groups(tmp_path):
    d = tmp_path / "demo.json"
    d.write_text(json.dumps(TINY_DEMO))
    out = tmp_path / "out"
    r = subprocess.run(
        [sys.executable, "-m", "wattlab.core.cli.main", "run", "--model", "demo"]
        + ["--mode", "infer", "--infer-batches", "20", "--sensitive-column", "group"]
        + ["--idle", "0", "--min-measure", "0", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "WATTLAB_DEMO_DEFINITION": str(d)},
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 0, r.stderr
    assert "fairness         by group: A " in r.stdout
    f = json.loads((out / "result.json").read_text())["session"]["fairness"]
    assert f["column"] == "group" and set(f["groups"]) == {"A", "B"}
    assert sum(g["n"] for g in f["groups"].values()) == f["items"] == 80  # 20% of 400, once
    assert f["demographic_parity_difference"] is not None and "one-vs-rest" in f["method"]
