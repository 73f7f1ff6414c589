"""``wattlab bench``: parameter lists, the round order, the statistics over failing runs, bad
input as one line, and one real bench of two commands of known different cost."""

from __future__ import annotations

import csv
import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from wattlab.core.cli.main import main
from wattlab.core.measure.carbon import CarbonSettings
from wattlab.core.measure.meter import MeasureSettings
from wattlab.core.measure.store import RunStore
from wattlab.core.run import bench
from wattlab.core.run.bench_plan import (
    BenchInputError,
    build_plan,
    expand_commands,
    parameter_lists,
    round_indices,
)
from wattlab.core.run.bench_stats import command_energy

PY = shlex.quote(sys.executable)
BURN = f"{PY} -m wattlab.resources.workloads.cpu_burn"


def expand(templates: list[str], *lists: tuple[str, str]) -> list[tuple[str, ...]]:
    return [c.argv for c in expand_commands(templates, parameter_lists(list(lists)))]


# -- parameter lists (no process) ------------------------------------------------------------
def test_a_parameter_list_gives_one_command_per_value():
    cmds = expand_commands(
        ["python infer.py --{precision}"], parameter_lists([("precision", "fp32,bf16")])
    )
    assert [c.text for c in cmds] == ["python infer.py --fp32", "python infer.py --bf16"]
    assert cmds[0].argv == ("python", "infer.py", "--fp32")
    assert cmds[1].params == {"precision": "bf16"}


def test_several_lists_multiply_out_the_first_slowest_and_only_where_used():
    got = expand(["run {a} {b}", "base"], ("a", "1,2"), ("b", "x,y"))
    assert got == [
        ("run", "1", "x"),
        ("run", "1", "y"),
        ("run", "2", "x"),
        ("run", "2", "y"),
        ("base",),
    ]


def test_double_braces_are_literal_and_other_braces_are_left_alone():
    assert expand(["python -c 'print({{1}})'"]) == [("python", "-c", "print({1})")]
    assert expand(["echo {1,2} {} {p}"], ("p", "v")) == [("echo", "{1,2}", "{}", "v")]


@pytest.mark.parametrize(
    "templates,lists,needle",
    [
        ([], [], "no command to benchmark"),
        (["python {x}.py"], [], "uses {x} but no -L x"),
        (["python a.py"], [("p", "a,b")], "-L p is used by no command"),
        (["python {p}"], [("p", "a,,b")], "an empty value"),
        (["python {p}"], [("p", "a"), ("p", "b")], "-L p is given twice"),
        (["python {1p}"], [("1p", "a")], "a parameter name is"),
        (["python 'unclosed"], [], "no closing quotation"),
        (["  "], [], "is empty"),
    ],
)
def test_bad_parameter_lists_and_commands_are_refused(templates, lists, needle):
    with pytest.raises(BenchInputError, match=None) as err:
        build_plan(templates, lists)
    assert needle in str(err.value)


def test_round_order_alternates_for_two_and_rotates_for_more():
    assert [round_indices(2, k) for k in range(4)] == [[0, 1], [1, 0], [0, 1], [1, 0]]
    rounds = [round_indices(4, k) for k in range(6)]
    assert all(sorted(r) == [0, 1, 2, 3] for r in rounds)
    assert [r[0] for r in rounds[::2]] == [0, 0, 0] and [r[-1] for r in rounds[1::2]] == [0] * 3
    assert len({tuple(r) for r in rounds}) > 2  # the others rotate


# -- bad input through the CLI: one line, exit 2 (127/126 for commands), nothing stored --------
def db_path() -> Path:
    from wattlab.core import paths
    from wattlab.core.measure.store import DB_NAME

    return paths.data_dir() / DB_NAME


@pytest.mark.parametrize(
    "argv,needle,code",
    [
        (["bench"], "no command to benchmark", 2),
        (["bench", "python {model}.py"], "uses {model} but no -L model", 2),
        (["bench", "-L", "p", "a,b", "true"], "-L p is used by no command", 2),
        (["bench", "true", "--runs", "0"], "--runs", 2),
        (["bench", "true", "--warmup", "x"], "--warmup", 2),
        (["bench", "true", "--interval", "0.001"], "--interval", 2),
        (["bench", "true", "--margin", "80"], "--margin", 2),
        (["bench", "true", "--region", "XX"], "unknown carbon region", 2),
        (["bench", "true", "definitely-not-a-command-xyz"], "command not found", 127),
        (["bench", "true", "--prepare", "nope-xyz --flag"], "command not found: nope-xyz", 127),
    ],
)
def test_bad_bench_input_is_one_line_and_nothing_is_stored(capsys, argv, needle, code):
    capsys.readouterr()
    got = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert got == code, err
    assert len(err) == 1 and err[0].startswith("wattlab: ") and needle in err[0], err
    assert not db_path().exists()


def test_a_command_that_cannot_be_executed_is_126_before_anything_runs(capsys, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("echo hi\n")
    script.chmod(0o644)
    for target, needle in ((script, "permission denied"), (tmp_path, "it is a folder")):
        capsys.readouterr()
        got = main(["bench", "true", str(target)])
        err = capsys.readouterr().err.strip().splitlines()
        assert got == 126 and len(err) == 1 and "cannot execute" in err[0] and needle in err[0]
    assert not db_path().exists()


# -- the statistics, over fake runs (no process) ---------------------------------------------
def fake_result(store: RunStore, argv: list[str], label: str, k: dict) -> dict:
    """A stored profile-like result: energy from the command's --j, a failing exit on the
    rounds listed in --fail-on, a settling wait that must not count."""
    args = dict(zip(argv[1::2], argv[2::2], strict=False))
    k["n"] = k.get("n", 0) + 1
    run_no = k.setdefault(argv[0], 0)
    k[argv[0]] += 1
    fail = str(run_no) in args.get("--fail-on", "").split(",")
    joules = float(args["--j"]) * (1 + 0.01 * (k["n"] % 3))
    rid = store.create_run("profile", {"command": argv}, label)
    res = {
        "run_id": rid,
        "status": "failed" if fail else "completed",
        "exit_code": 3 if fail else 0,
        "duration_s": joules / 10,
        "cpu_time_s": joules / 12,
        "peak_rss_bytes": 1e6,
        "energy": [
            {
                "source": "cpu",
                "label": "estimated",
                "in_total": True,
                "gross_j": joules + 50.0,
                "by_phase_j": {"settle": 50.0, "run": joules},
                "covered_by_phase_s": {"settle": 5.0, "run": joules / 10},
                "idle_power_w": 2.0,
            }
        ],
    }
    store.finish_run(rid, res["status"], res)
    return res


def run_fake_bench(tmp_path, templates: list[str], runs: int = 4, **kw):
    store = RunStore(tmp_path / "w.db")
    calls: list[tuple[str, ...]] = []
    counter: dict = {}
    plan = build_plan(templates, runs=runs, cooldown_s=0.0, **kw)
    bid = bench.start(plan, store)

    def unmeasured(argv: tuple[str, ...]) -> int:
        calls.append(argv)
        return 0

    out = bench.run(
        plan, bid, store, MeasureSettings(idle_s=0.0), CarbonSettings(),
        measure=lambda argv, label: fake_result(store, argv, label, counter),
        unmeasured=unmeasured,
    )  # fmt: skip
    return out, store, calls


def test_failed_runs_are_listed_and_excluded_and_the_cheaper_command_is_better(tmp_path):
    out, store, calls = run_fake_bench(
        tmp_path,
        ["a --j 10", "b --j 5 --fail-on 1", "c --j 10 --fail-on 0,1,2,3"],
        warmup=1,
        prepare="prep",
    )
    assert out["status"] == "completed" and len(out["run_ids"]) == 12
    a, b, c = out["rows"]
    # energy is the command's window: the 50 J settling wait is not in it
    assert 10 <= a["median"]["energy_j"] <= 10.3 and a["energy_label"] == "estimated"
    assert b["runs_ok"] == 3 and b["runs_failed"] == 1 and b["failures"][0]["exit_code"] == 3
    assert b["vs_first"]["pairs"] == 3 and b["vs_first"]["verdict"] == "better"
    assert b["vs_first"]["primary_metric"] == "energy_j"
    assert c["runs_ok"] == 0 and c["vs_first"] is None and "failed every run" in c["note"]
    assert any("#3" in w and "failed 4 of 4" in w for w in out["warnings"])
    assert any("#2" in w and "failed 1 of 4" in w for w in out["warnings"])
    assert "less energy" in out["headline"] and "better" in out["headline"]
    # --prepare before each of 3 warm-ups and 12 measured runs; the warm-ups unmeasured
    assert calls.count(("prep",)) == 15 and len(out["warmups"]) == 3
    row = store.run(out["bench_id"])
    assert row.kind == "bench" and row.status == "completed"
    assert store.result(out["bench_id"])["run_ids"] == out["run_ids"]
    assert out["total"]["label"] == "estimated" and out["total"]["gross_j"] > 0


def test_per_item_figures_from_markers_are_the_primary_metric(tmp_path):
    def with_items(store, argv, label, k):
        res = fake_result(store, argv, label, k)
        res["markers"] = {"items": 100 if argv[0] == "a" else 400}
        return res

    store = RunStore(tmp_path / "w.db")
    plan = build_plan(["a --j 10", "b --j 20"], runs=3, cooldown_s=0.0)
    counter: dict = {}
    out = bench.run(
        plan, bench.start(plan, store), store, MeasureSettings(idle_s=0.0), CarbonSettings(),
        measure=lambda argv, label: with_items(store, argv, label, counter),
        unmeasured=lambda argv: 0,
    )  # fmt: skip
    vs = out["rows"][1]["vs_first"]
    assert vs["primary_metric"] == "energy_per_item_j" and vs["verdict"] == "better"
    assert out["rows"][1]["median"]["items"] == 400
    assert "energy per item" in out["headline"]


def test_a_cancelled_run_ends_the_bench_as_cancelled_with_what_completed(tmp_path):
    store = RunStore(tmp_path / "w.db")
    plan = build_plan(["a --j 10", "b --j 5"], runs=3, cooldown_s=0.0)
    bid = bench.start(plan, store)
    counter: dict = {}

    def measure(argv, label):
        res = fake_result(store, argv, label, counter)
        if counter["n"] == 3:
            res["status"] = "cancelled"
        return res

    with pytest.raises(KeyboardInterrupt):
        bench.run(plan, bid, store, MeasureSettings(idle_s=0.0), CarbonSettings(), measure,
                  lambda argv: 0)  # fmt: skip
    assert store.run(bid).status == "cancelled"
    stored = store.result(bid)
    assert len(stored["run_ids"]) == 3 and stored["headline"].startswith("Cancelled after 3 of 6")
    assert stored["rows"][0]["runs_ok"] == 1
    b = stored["rows"][1]  # round 2 runs b first: its run was the cancelled one
    assert b["runs_ok"] == 1 and b["runs_cancelled"] == 1 and b["runs_failed"] == 0


def test_a_failing_prepare_skips_that_run_and_says_so(tmp_path):
    store = RunStore(tmp_path / "w.db")
    plan = build_plan(["a --j 10", "b --j 5"], runs=3, cooldown_s=0.0, prepare="prep")
    prepares: list[int] = []

    def unmeasured(argv):
        prepares.append(1)
        return 4 if len(prepares) == 2 else 0

    counter: dict = {}
    out = bench.run(
        plan, bench.start(plan, store), store, MeasureSettings(idle_s=0.0), CarbonSettings(),
        measure=lambda argv, label: fake_result(store, argv, label, counter),
        unmeasured=unmeasured,
    )  # fmt: skip
    b = out["rows"][1]
    assert b["runs_ok"] == 2 and b["runs_failed"] == 1 and b["runs_measured"] == 2
    assert b["failures"][0]["run_id"] is None and "--prepare exited with code 4" in (
        b["failures"][0]["reason"]
    )
    assert len(out["run_ids"]) == 5
    assert any("--prepare failed 1x" in w for w in out["warnings"])


def test_command_energy_excludes_settling_and_unknown_idle_stays_unknown():
    res = {
        "energy": [
            {"source": "cpu", "label": "measured", "by_phase_j": {"settle": 9.0, "run": 4.0},
             "covered_by_phase_s": {"settle": 3.0, "run": 1.0}, "idle_power_w": 1.5},
            {"source": "ram", "label": "estimated", "by_phase_j": {"run": 1.0},
             "covered_by_phase_s": {"run": 1.0}, "idle_power_w": None},
            {"source": "gpu1", "label": "measured", "in_total": False, "by_phase_j": {"run": 99.0}},
        ]
    }  # fmt: skip
    gross, net, label = command_energy(res)
    assert gross == pytest.approx(5.0) and net is None and label == "estimated"
    res["energy"][1]["idle_power_w"] = 0.5
    assert command_energy(res)[1] == pytest.approx(4.0 - 1.5 + 0.5)


# -- one real bench (e2e) --------------------------------------------------------------------
@pytest.mark.e2e
def test_bench_calls_the_costlier_command_worse_and_excludes_a_failing_one(tmp_path):
    out = tmp_path / "reports"
    fail = f"{PY} -c 'import sys; sys.exit(3)'"
    argv = [
        sys.executable, "-m", "wattlab.core.cli.main", "bench",
        f"{BURN} --seconds 0.5", f"{BURN} --seconds 1.5", fail,
        "--runs", "3", "--idle", "0", "--interval", "0.05", "--cooldown", "0",
        "--out", str(out),
    ]  # fmt: skip
    r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "cpu_burn: " not in r.stdout  # the commands' own output is discarded
    warnings = [line for line in r.stderr.splitlines() if line.startswith("wattlab: warning")]
    assert len(warnings) == 1 and "#3" in warnings[0] and "failed 3 of 3" in warnings[0]
    assert "round 3/3, run 9/9" in r.stderr  # progress
    res = json.loads((out / "bench.json").read_text())
    a, b, c = res["rows"]
    assert a["runs_ok"] == b["runs_ok"] == 3 and c["runs_ok"] == 0 and c["runs_failed"] == 3
    vs = b["vs_first"]
    assert vs["primary_metric"] == "energy_j" and vs["verdict"] == "worse", vs
    assert vs["label"] in ("measured", "integrated", "estimated")
    assert b["median"]["duration_s"] > a["median"]["duration_s"] + 0.7
    assert c["vs_first"] is None and "failed every run (exit code 3)" in c["note"]
    assert len(res["run_ids"]) == 9 and len(res["run_results"]) == 9
    assert "worse" in r.stdout and res["headline"] in r.stdout
    with open(out / "bench.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [x["verdict"] for x in rows] == ["", "worse", ""] and rows[2]["runs_failed"] == "3"
    with open(out / "emissions.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 9
    assert (out / "bench.pdf").read_bytes().startswith(b"%PDF")
    listed = subprocess.run(
        [sys.executable, "-m", "wattlab.core.cli.main", "runs", "list"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert f"{res['bench_id']:>5}  bench    completed" in listed.stdout
