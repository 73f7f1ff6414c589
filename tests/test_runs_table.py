"""The runs table without Qt (core/run/runs_table.py) and "Copy as CLI command"
(core/report/command.py): rows, labels, grouping, filtering, the delete warning, one query per
listing, and commands that the real parser reads back into the stored spec."""

from __future__ import annotations

import shlex

import pytest

from wattlab.core.measure.sampling import Sample
from wattlab.core.measure.store import RunStore
from wattlab.core.report.command import CommandError, argv_for, command_for, technique_arg
from wattlab.core.run import runs_table as rt
from wattlab.core.spec import RunSpec, build_spec


# -- a store filled without workers ----------------------------------------------------------------
def spec_dict(**over) -> dict:
    base = build_spec(model="demo", dataset="demo", mode="infer", infer_batches=5).to_dict()
    return {**base, "min_measure_s": 2.0, "sensor_update_s": 0.01, **over}


def session_result(rid: int, spec: dict, per_item: float, label: str = "measured", acc=0.9):
    return {
        "run_id": rid,
        "status": "completed",
        "duration_s": 3.0,
        "measured_phase": {
            "phases": ["infer"],
            "duration_s": 1.0,
            "gross_j": per_item * 100,
            "net_j": None,
            "label": label,
        },
        "energy_per_item_j": per_item,
        "total": {"gross_j": per_item * 150, "label": label},
        "sampling": {"interval_s": 0.05, "idle_s": 1.5},
        "session": {"items": 100, "metrics": {"accuracy": acc}},
        "spec": spec,
    }


def verdict(metric, label, unit, base, opt, role, verdict_text, source=None):
    return {
        "metric": metric,
        "label": label,
        "unit": unit,
        "baseline_median": base,
        "optimized_median": opt,
        "baseline_spread": [base, base],
        "optimized_spread": [opt, opt],
        "delta": opt - base,
        "delta_pct": 100 * (opt / base - 1),
        "ratio_ci": [0.7, 0.8],
        "verdict": verdict_text,
        "source": source,
        "pairs": 2,
        "role": role,
    }


TECH = {"name": "quantization", "params": {"backend": "ort"}}


def fill_store(store: RunStore) -> dict[str, object]:
    """A training session, then a comparison of 2 pairs (its 4 repeats stored after it, as
    comparison.compare does), then a profile run. Returns their ids."""
    train = store.create_run("session", spec_dict(mode="train", label="warm-up"), "warm-up")
    store.finish_run(train, "completed", session_result(train, spec_dict(mode="train"), 2.0))
    base = spec_dict(min_measure_s=0.0, sensor_update_s=0.0)
    opt = {**base, "techniques": [TECH]}
    cid = store.create_run(
        "comparison", {"baseline": base, "optimized": opt, "repeats": 2}, "compare: int8"
    )
    repeats, per_run = [], []
    for i, (side, per_item) in enumerate(
        [("baseline", 10.0), ("optimized", 7.0), ("optimized", 8.0), ("baseline", 12.0)]
    ):
        spec = {**(opt if side == "optimized" else base), "min_measure_s": 2.0}
        rid = store.create_run("session", spec, f"{side} {i // 2 + 1}/2")
        store.add_samples(rid, [Sample(k * 0.1, {"est.cpu_floor_w": 5.0 + k}) for k in range(6)])
        store.add_event(rid, 0.1, "phase", {"name": "load"})
        store.add_event(rid, 0.2, "phase", {"name": "infer"})
        store.finish_run(rid, "completed", session_result(rid, spec, per_item))
        repeats.append(rid)
        per_run.append(
            {
                "run_id": rid,
                "side": side,
                "index": i // 2,
                "metrics": {"energy_per_item_j": per_item},
            }
        )
    comp = {
        "comparison_id": cid,
        "status": "completed",
        "repeats": 2,
        "pairs_completed": 2,
        "cooldown_s": 1.0,
        "headline": "quantization: energy per item -30%",
        "sampling": {"interval_s": 0.05, "idle_s": 1.5, "min_measure_s": 2.0},
        "statistics": {"margin": 0.05, "primary_metric": "energy_per_item_j"},
        "carbon": {"region": "FR", "intensity_g_per_kwh": None, "pue": 1.2, "currency": "EUR"},
        "verdicts": [
            verdict("energy_j", "Energy", "J", 1100.0, 750.0, "descriptive", "better", "measured"),
            verdict(
                "energy_per_item_j",
                "Energy per item",
                "J",
                11.0,
                7.5,
                "primary",
                "better",
                "measured",
            ),
            verdict("accuracy", "Accuracy", "", 0.9, 0.88, "descriptive", "no change"),
        ],
        "per_run": per_run,
    }
    store.finish_run(cid, "completed", comp)
    prof = store.create_run(
        "profile", {"command": ["sleep", "1"], "interval_s": 0.1, "idle_s": 0.0}, "sleep"
    )
    store.finish_run(prof, "completed", {"total": {"gross_j": 3.5, "label": "estimated"}})
    return {"train": train, "comparison": cid, "repeats": repeats, "profile": prof}


@pytest.fixture
def filled(tmp_path):
    store = RunStore(tmp_path / "w.db")
    ids = fill_store(store)
    yield store, ids
    store.close()


# -- rows ------------------------------------------------------------------------------------------
def test_rows_show_every_figure_with_its_label_and_unknowns_as_dash(filled):
    store, ids = filled
    rows = rt.load_rows(store)
    train = rt.find(rows, ids["train"])
    assert train.text("per_item") == "2 J [measured]" and train.cells["per_item"].sort == 2.0
    assert train.text("mode") == "train" and train.text("techniques") == "none"
    assert train.text("accuracy") == "0.900" and train.text("delta") == "-"
    assert train.text("name") == "-" and train.text("tags") == "-"
    comp = rt.find(rows, ids["comparison"])
    assert comp.text("per_item") == "7.5 J [measured]"  # the optimized median, labelled
    assert comp.text("delta") == "-31.8% better"  # the primary verdict
    assert comp.cells["delta"].sort == pytest.approx(-31.818, abs=1e-3)
    assert comp.text("techniques") == "quantization:backend=ort"
    assert comp.text("accuracy") == "0.880"
    prof = rt.find(rows, ids["profile"])
    assert prof.text("per_item") == "-" and prof.text("energy") == "3.50 J [estimated]"
    assert prof.text("techniques") == "sleep 1" and prof.text("accuracy") == "-"


def test_repeats_are_grouped_under_their_comparison(filled):
    store, ids = filled
    rows = rt.load_rows(store)
    assert [r.run_id for r in rows] == [ids["profile"], ids["comparison"], ids["train"]]
    comp = rows[1]
    assert [c.run_id for c in comp.children] == ids["repeats"]
    first = comp.children[0]
    assert first.side == "baseline" and first.text("kind") == "baseline 1"
    # a repeat's own value against the baseline median of the primary metric (11 J)
    assert first.text("delta") == "-9.1%" and comp.children[1].text("delta") == "-36.4%"
    flat = rt.flatten(rows)
    assert [r.run_id for r in flat] == sorted(
        [*ids["repeats"], ids["comparison"], ids["train"], ids["profile"]], reverse=True
    )


def test_filter_matches_any_column_and_per_column_terms(filled):
    store, ids = filled
    rows = rt.load_rows(store)

    def shown(text):
        return {r.run_id: [c.run_id for c in r.children] for r in rt.filter_rows(rows, text)}

    assert shown("") == {r.run_id: [c.run_id for c in r.children] for r in rows}
    assert shown("sleep") == {ids["profile"]: []}
    assert shown("mode:train") == {ids["train"]: []}
    assert shown("kind:profile") == {ids["profile"]: []}
    # a comparison that does not match is kept for its matching repeats, and says so
    kept = rt.filter_rows(rows, "optimized")
    assert [c.run_id for c in kept[0].children] == ids["repeats"][1:3]
    assert kept[0].matched_by_children
    assert shown("epi<7.2") == {ids["train"]: [], ids["comparison"]: ids["repeats"][1:2]}
    assert shown("epi<9") == {ids["train"]: [], ids["comparison"]: ids["repeats"]}  # 7.5 J
    assert shown("delta<-20") == {ids["comparison"]: ids["repeats"]}
    assert shown("id=1") == {ids["train"]: []}
    assert shown("http://x") == {}  # not a column: free text, which nothing holds


def test_filter_finds_names_tags_and_notes(filled):
    store, ids = filled
    store.annotate(ids["train"], "first try", ["paper", "cpu"], "slow fan\nrerun later")
    rows = rt.load_rows(store)
    assert rt.find(rows, ids["train"]).text("tags") == "paper, cpu"
    assert rt.find(rows, ids["train"]).text("notes") == "slow fan ..."
    for text in ("tag:paper", 'name:"first try"', "rerun", "notes:later", "PAPER"):
        assert [r.run_id for r in rt.filter_rows(rows, text)] == [ids["train"]], text
    assert rt.filter_rows(rows, "tag:gpu") == []


def test_parse_tags():
    assert rt.parse_tags(" paper, ,cpu,paper ") == ["paper", "cpu"]


def test_listing_is_one_store_query_for_hundreds_of_runs(tmp_path):
    store = RunStore(tmp_path / "w.db")
    for _ in range(100):
        fill_store(store)  # 700 runs
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    rows = rt.load_rows(store, 500)
    store._db.set_trace_callback(None)
    assert sum(1 + len(r.children) for r in rows) == 500
    assert len([s for s in statements if s.lstrip().upper().startswith("SELECT")]) == 1


def test_delete_warning_names_the_comparisons_that_lose_a_run(filled):
    store, ids = filled
    cid, rep = ids["comparison"], ids["repeats"]
    members = store.comparison_members()
    text = rt.delete_warning([rep[1], ids["train"]], members, {cid: "compare: int8"})
    assert f'comparison {cid} "compare: int8"' in text
    assert f"Run {rep[1]} belongs" in text and "lose it" in text
    assert rt.delete_warning([ids["train"]], members, {}).count("comparison") == 0
    text = rt.delete_warning([cid], members, {})
    assert "4 repeat run(s)" in text and "are kept" in text


def test_overlay_expands_a_comparison_to_its_repeats(filled):
    store, ids = filled
    rows = rt.load_rows(store)
    got = rt.session_ids([ids["comparison"], ids["repeats"][0], ids["train"]], rows)
    assert got == [*ids["repeats"], ids["train"]]
    trace = rt.power_trace(store, rt.find(rows, ids["repeats"][0]))
    assert trace.aligned_at == "measured phase" and trace.t[0] == pytest.approx(-0.1)
    assert len(trace.w) == 5 and trace.title.endswith("[measured]")


# -- "Copy as CLI command": parsed back by the real parser ---------------------------------------
def _parse(command: str):
    from wattlab.core.cli.main import build_parser

    argv = shlex.split(command)
    assert argv[0] == "wattlab"
    return build_parser().parse_args(argv[1:])


def _typed(techniques) -> list:
    """Techniques with their parameters typed as the worker reads them (the CLI keeps text,
    the app sends numbers)."""
    from wattlab.core.techniques.catalog import get

    return [(t["name"], get(t["name"]).parse_params(t.get("params") or {})) for t in techniques]


def _same_spec(parsed: RunSpec, stored: dict, ignore=("min_measure_s", "sensor_update_s")):
    got, want = parsed.to_dict(), RunSpec.from_dict(stored).to_dict()
    assert _typed(got.pop("techniques")) == _typed(want.pop("techniques"))
    for k in ignore:
        got.pop(k), want.pop(k)
    assert got == want


def test_run_command_parses_back_into_the_stored_spec():
    from wattlab.core.cli.session import spec_from_args

    spec = spec_dict(
        model="/data/models/my bert",  # a space: quoted
        dataset="/data/it's.csv",  # a quote: quoted
        mode="train",
        task="classify",
        epochs=2,
        max_steps=40,
        learning_rate=3e-05,
        patience=2,
        threads=2,
        text_column="text",
        label="-dash first",  # would read as a flag without "--label=..."
        techniques=[
            {"name": "pruning", "params": {"amount": 0.25, "heads": False}},
            {"name": "mixed-precision", "params": {"dtype": "bf16", "mode": "cast"}},
        ],
    )
    result = {"sampling": {"interval_s": 0.05, "idle_s": 1.5}}
    args = _parse(command_for("session", spec, result))
    assert args.command == "run"
    _same_spec(spec_from_args(args), spec)
    assert (args.interval, args.idle, args.min_measure) == (0.05, 1.5, 2.0)


def test_list_and_bool_technique_params_read_back():
    from wattlab.core.cli.flags import parse_technique
    from wattlab.core.techniques.catalog import get

    t = {"name": "rag-cache", "params": {"layers": ["embed", "query"], "answers": False}}
    parsed = parse_technique(technique_arg(t))
    assert get("rag-cache").parse_params(parsed["params"]) == get("rag-cache").parse_params(
        t["params"]
    )


def test_compare_command_parses_back_into_both_sides(filled):
    import dataclasses

    from wattlab.core.cli.session import optimized_techniques, spec_from_args

    store, ids = filled
    row = store.run(ids["comparison"])
    args = _parse(command_for("comparison", row.spec, store.result(row.id)))
    assert args.command == "compare" and args.repeats == 2
    args.technique = optimized_techniques(args)
    opt = spec_from_args(args)
    _same_spec(opt, row.spec["optimized"])
    _same_spec(dataclasses.replace(opt, techniques=()), row.spec["baseline"])
    assert (args.interval, args.idle, args.min_measure, args.cooldown) == (0.05, 1.5, 2.0, 1.0)
    assert (args.margin, args.region, args.pue, args.currency) == (5.0, "FR", 1.2, "EUR")


def test_aa_comparison_command_says_optimized_none():
    from wattlab.core.cli.session import optimized_techniques

    base = spec_dict()
    args = _parse(command_for("comparison", {"baseline": base, "optimized": base, "repeats": 3}))
    assert args.optimized == ["none"] and optimized_techniques(args) == []


def test_rag_commands_parse_back():
    from wattlab.core.cli import rag

    spec = rag.spec_from_args(
        _parse("wattlab rag --queries 50 --top-k 4 --context-chunks 2 --seed 3 --label x")
    ).to_dict()
    args = _parse(command_for("session", spec))
    assert args.command == "rag"
    _same_spec(rag.spec_from_args(args), spec)
    opt = {**spec, "techniques": [{"name": "rag-cache", "params": {"layers": ["embed"]}}]}
    args = _parse(command_for("comparison", {"baseline": spec, "optimized": opt, "repeats": 4}))
    assert args.repeats == 4
    _same_spec(rag.spec_from_args(args), opt)


def test_profile_command_and_runs_without_one(filled):
    store, ids = filled
    row = store.run(ids["profile"])
    args = _parse(command_for("profile", row.spec))
    assert args.cmd == ["--", "sleep", "1"] and args.interval == 0.1
    with pytest.raises(CommandError):
        argv_for("comparison", {"baseline": spec_dict(), "optimized": spec_dict(seed=1)})
    with pytest.raises(CommandError):
        argv_for("mystery", {})


def test_a_lifecycle_comparison_command_keeps_the_lifecycle_and_its_queries():
    base = spec_dict(mode="train", lifecycle=True, epochs=2)
    opt = {**base, "techniques": [{"name": "qat", "params": {"backend": "ort"}}]}
    result = {"lifecycle": {"deploy_queries": 250000}}
    args = _parse(
        command_for("comparison", {"baseline": base, "optimized": opt, "repeats": 3}, result)
    )
    assert args.lifecycle and args.deploy_queries == 250000 and args.mode == "train"


def test_ranks_are_kept_and_one_process_needs_no_flag():
    assert "--nproc 2" in command_for("session", spec_dict(mode="train", nproc=2))
    assert "--nproc" not in command_for("session", spec_dict(mode="train"))
