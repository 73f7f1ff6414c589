"""Input the user controls never ends in a traceback: the CLI's flags, the settings file, the
run store and the report files. Each bad input is one stderr line ``wattlab: ...`` with exit
code 2 (126/127 for commands, as shells do), checked before anything runs or is stored.

Everything here runs in-process (``main([...])``): validation happens before any worker or
profiled command would start, so the Popen guard in conftest.py proves that it does.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sqlite3
import stat
from pathlib import Path

import pytest

from wattlab.core.cli.main import main

DB_NAME = "wattlab.db"


# -- helpers -------------------------------------------------------------------------------------
def data_dir() -> Path:
    return Path(os.environ["WATTLAB_DATA_DIR"])


def db_path() -> Path:
    return data_dir() / DB_NAME


def wl(capsys, *args: str) -> tuple[int, str, list[str]]:
    """Run the CLI in this process: (exit code, stdout, stderr lines)."""
    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err.strip().splitlines()


def assert_one_line(code: int, err: list[str], *needles: str, exit_code: int = 2) -> str:
    """Exit code, exactly one stderr line starting ``wattlab:``, containing every needle."""
    assert code == exit_code, err
    assert len(err) == 1, err
    (line,) = err
    assert line.startswith("wattlab: "), line
    for n in needles:
        assert n in line, line
    return line


def make_store(n: int, pad: int = 0, samples: int = 0, full_result: bool = True) -> Path:
    """A store of ``n`` finished profile runs labelled run-01.. (``pad`` bytes of spec each,
    so the runs table spans several pages), closed so the WAL is folded into the file."""
    from wattlab.core.measure.sampling import Sample
    from wattlab.core.measure.store import RunStore

    st = RunStore(db_path())
    for i in range(1, n + 1):
        rid = st.create_run("profile", {"command": ["x"], "pad": "p" * pad}, f"run-{i:02d}")
        st.add_samples(
            rid, [Sample(k / 10, {"a": float(k), "pad": "x" * 40}) for k in range(samples)]
        )
        res = {"run_id": rid, "total": {"gross_j": 3.0, "label": "measured"}}
        if full_result:
            res.update(status="completed", duration_s=1.0, energy=[], sampling={})
        st.finish_run(rid, "completed", res)
    st.close()
    return db_path()


def page_holding(path: Path, marker: bytes, page_size: int = 4096) -> int:
    data = path.read_bytes()
    at = data.index(marker)
    assert marker not in data[at + 1 :], "the marker must be on one page only"
    return at // page_size


# -- 6. a damaged or foreign store ---------------------------------------------------------------
def test_damaged_runs_page_lists_what_is_readable_then_one_line(capsys):
    db = make_store(12, pad=1500)  # two runs per 4 KiB page
    page = page_holding(db, b"run-05")
    with open(db, "r+b") as f:
        f.seek(page * 4096)
        f.write(b"\xff" * 4096)

    code, out, err = wl(capsys, "runs", "list")
    assert_one_line(code, err, str(db), "damaged", "move it aside")
    assert "run-12" in out and "run-11" in out  # the runs before the damaged page are listed

    code, out, err = wl(capsys, "runs", "show", "12")
    assert code == 0 and "run-12" in out, err
    code, out, err = wl(capsys, "runs", "show", "2")  # found through an undamaged page
    assert code == 0 and "run-02" in out, err

    code, _, err = wl(capsys, "runs", "show", "5")
    assert_one_line(code, err, "damaged")
    code, _, err = wl(capsys, "report", "5", "--out", str(db.parent / "rep"))
    assert_one_line(code, err, "damaged")
    assert not (db.parent / "rep").exists()

    # a command that records refuses the damaged store before anything runs
    code, _, err = wl(capsys, "run", "--idle", "0")
    assert_one_line(code, err, "damaged", "move it aside")
    code, _, err = wl(capsys, "runs", "show", "13")
    assert code == 2  # nothing was added


@pytest.mark.parametrize("where", [0.5, 0.3, 0.7])
def test_bytes_overwritten_mid_file_never_give_a_traceback(capsys, where):
    db = make_store(6, samples=300, full_result=False)
    at = int(db.stat().st_size * where)
    with open(db, "r+b") as f:
        f.seek(at)
        f.write(b"\xff" * 600)
    for args in (
        ["runs", "list"],
        *(["runs", "show", str(i)] for i in range(1, 7)),
        *(["report", str(i), "--out", str(db.parent / f"rep{i}")] for i in range(1, 7)),
    ):
        code, _, err = wl(capsys, *args)
        if code != 0:
            assert_one_line(code, err)


def test_a_file_that_is_not_sqlite_is_one_line_and_left_alone(capsys):
    data_dir().mkdir(parents=True)
    junk = b"these are not the runs you are looking for\n" * 200
    db_path().write_bytes(junk)
    for args in (["runs", "list"], ["runs", "show", "1"], ["run", "--idle", "0"]):
        code, _, err = wl(capsys, *args)
        assert_one_line(code, err, str(db_path()), "move it aside")
    assert db_path().read_bytes() == junk


FOREIGN = {
    "other tables": ("CREATE TABLE invoices (id INTEGER, amount REAL)", 0),
    "runs of another kind": ("CREATE TABLE runs (id INTEGER, distance_km REAL)", 0),
    "our version, other columns": ("CREATE TABLE runs (id INTEGER, distance_km REAL)", 1),
}


@pytest.mark.parametrize("case", list(FOREIGN))
def test_foreign_schema_is_refused_and_never_written(capsys, case):
    ddl, version = FOREIGN[case]
    data_dir().mkdir(parents=True)
    c = sqlite3.connect(db_path())
    c.execute(ddl)
    c.execute(f"PRAGMA user_version={version}")
    c.commit()
    c.close()
    before = db_path().read_bytes()
    for args in (["runs", "list"], ["runs", "show", "1"], ["run", "--idle", "0"]):
        code, _, err = wl(capsys, *args)
        assert_one_line(code, err, str(db_path()), "not a WattLab run store")
    assert db_path().read_bytes() == before  # no tables added, journal mode unchanged


@pytest.mark.parametrize("run_id", [str(10**23), str(2**63), str(-(2**63) - 1)])
def test_run_ids_out_of_sqlite_range_are_not_found(capsys, run_id):
    make_store(1)
    code, _, err = wl(capsys, "runs", "show", run_id)
    assert_one_line(code, err, f"no run with id {run_id}")
    code, _, err = wl(capsys, "report", run_id, "--out", str(data_dir() / "rep"))
    assert_one_line(code, err, f"id {run_id}")


def test_reading_commands_create_nothing_when_there_is_no_store(capsys, tmp_path):
    code, out, err = wl(capsys, "runs", "list")
    assert code == 0 and out.startswith("no runs yet") and not err
    code, _, err = wl(capsys, "runs", "show", "1")
    assert_one_line(code, err, "no run with id 1")
    code, _, err = wl(capsys, "report", "1", "--out", str(tmp_path / "rep"))
    assert_one_line(code, err, "no run or comparison with id 1")
    assert not data_dir().exists() and not (tmp_path / "rep").exists()


def test_a_partial_stored_result_is_shown_not_a_traceback(capsys):
    make_store(1, full_result=False)  # {"run_id", "total"} only, as an interrupted write
    code, out, err = wl(capsys, "runs", "show", "1")
    assert code == 0, err
    assert "run 1" in out


# -- 7. every numeric flag, one table, before anything runs -------------------------------------
SESSION = ["--idle", "0"]
COMPARE = ["compare", "--optimized", "none", "--idle", "0"]
BAD_FLAGS = [
    # (command line, the flag the message must name)
    (["run", "--interval", "0.001"], "--interval"),
    (["run", "--interval", "0"], "--interval"),
    (["run", "--interval", "-1"], "--interval"),
    (["run", "--interval", "nan"], "--interval"),
    (["run", "--interval", "inf"], "--interval"),
    (["rag", "--interval", "inf", *SESSION], "--interval"),
    (["compare", "--optimized", "none", "--interval", "nan"], "--interval"),
    (["run", "--idle", "inf"], "--idle"),
    (["run", "--idle", "-1"], "--idle"),
    (["rag", "--idle", "nan"], "--idle"),
    (["profile", "--idle", "inf", "--", "true"], "--idle"),
    (["profile", "--idle", "nan", "--", "true"], "--idle"),
    (["profile", "--interval", "inf", "--", "true"], "--interval"),
    ([*COMPARE, "--cooldown", "inf"], "--cooldown"),
    ([*COMPARE, "--cooldown", "-5"], "--cooldown"),
    (["rag", "--technique", "rag-cache", "--cooldown", "-5", *SESSION], "--cooldown"),
    (["run", "--min-measure", "nan", *SESSION], "--min-measure"),
    ([*COMPARE, "--margin", "nan"], "--margin"),
    ([*COMPARE, "--margin", "-1"], "--margin"),
    ([*COMPARE, "--repeats", "0"], "--repeats"),
    ([*COMPARE, "--quality-target", "nan"], "--quality-target"),
    (["run", "--epochs", "0", *SESSION], "--epochs"),
    (["run", "--max-steps", "0", *SESSION], "--max-steps"),
    (["run", "--batch-size", "0", *SESSION], "--batch-size"),
    (["run", "--lr", "inf", *SESSION], "--lr"),
    (["run", "--lr", "nan", *SESSION], "--lr"),
    (["run", "--lr", "0", *SESSION], "--lr"),
    (["run", "--lr", "-0.1", *SESSION], "--lr"),
    (["run", "--grad-accum", "0", *SESSION], "--grad-accum"),
    (["run", "--patience", "0", *SESSION], "--patience"),
    (["run", "--seq-len", "0", *SESSION], "--seq-len"),
    (["run", "--eval-fraction", "0", *SESSION], "--eval-fraction"),
    (["run", "--eval-fraction", "1", *SESSION], "--eval-fraction"),
    (["run", "--eval-fraction", "nan", *SESSION], "--eval-fraction"),
    (["run", "--warmup-batches", "-1", *SESSION], "--warmup-batches"),
    (["run", "--infer-batches", "0", *SESSION], "--infer-batches"),
    (["run", "--threads", "0", *SESSION], "--threads"),
    (["run", "--seed", "-1", *SESSION], "--seed"),
    (["run", "--seed", str(2**32), *SESSION], "--seed"),
    (["rag", "--seed", "-1", *SESSION], "--seed"),
    ([*COMPARE, "--carbon-intensity", "nan"], "--carbon-intensity"),
    ([*COMPARE, "--carbon-intensity", "-1"], "--carbon-intensity"),
    ([*COMPARE, "--pue", "nan"], "--pue"),
    ([*COMPARE, "--pue", "0.5"], "--pue"),
    ([*COMPARE, "--pue", "inf"], "--pue"),
    ([*COMPARE, "--price", "nan"], "--price"),
    ([*COMPARE, "--price", "-1"], "--price"),
    (["rag", "--queries", "0", *SESSION], "--queries"),
    (["rag", "--repeat-rate", "nan", *SESSION], "--repeat-rate"),
    (["rag", "--top-k", "0", *SESSION], "--top-k"),
    (["runs", "list", "--limit", "0"], "--limit"),
    (["runs", "list", "--limit", str(10**23)], "--limit"),
]


@pytest.mark.parametrize("argv,flag", BAD_FLAGS, ids=[" ".join(a) for a, _ in BAD_FLAGS])
def test_every_numeric_flag_is_checked_before_anything_runs(capsys, argv, flag):
    code, _, err = wl(capsys, *argv)
    assert_one_line(code, err, flag)
    assert not db_path().exists()  # nothing stored, not even an empty store


@pytest.mark.parametrize(
    "argv,needle",
    [
        (["run", "--lr", "abc"], "argument --lr: invalid float value: 'abc'"),
        (["run", "--seed", "2**32"], "argument --seed: invalid int value"),
        (["run", "--pue", "2"], "unrecognized arguments: --pue"),
        (["runs", "show", "x"], "argument id: invalid int value: 'x'"),
        (["nonsense"], "invalid choice: 'nonsense'"),
    ],
)
def test_usage_mistakes_are_one_line_not_the_usage_block(capsys, argv, needle):
    code, _, err = wl(capsys, *argv)
    assert_one_line(code, err, needle)


def test_every_numeric_flag_has_a_range():
    """A numeric flag added without a FLAG_RANGES entry would go unchecked."""
    from wattlab.core.cli.flags import FLAG_RANGES
    from wattlab.core.cli.main import build_parser

    def parsers(p: argparse.ArgumentParser):
        yield p
        for a in p._actions:
            if isinstance(a, argparse._SubParsersAction):
                for sub in a.choices.values():
                    yield from parsers(sub)

    missing = {
        f"{p.prog}: {a.dest}"
        for p in parsers(build_parser())
        for a in p._actions
        if a.type in (int, float) and a.option_strings and a.dest not in FLAG_RANGES
    }
    assert not missing


def test_the_range_table_agrees_with_the_sampler():
    from wattlab.core.measure.sampling import MIN_INTERVAL_S
    from wattlab.core.spec import MIN_SAMPLING_INTERVAL_S

    assert MIN_SAMPLING_INTERVAL_S == MIN_INTERVAL_S


# -- 8. the settings file -------------------------------------------------------------------------
def settings_file() -> Path:
    from wattlab.core.settings import config_path

    p = config_path()
    p.parent.mkdir(parents=True, exist_ok=True)
    return p


BAD_FILES = {
    "a non-UTF-8 byte": b'{"interval_s": 0.2, "region": "FR\xff"}',
    "deep nesting": b'{"interval_s": ' + b"[" * 200_000 + b"]" * 200_000 + b"}",
    "a huge integer": b'{"interval_s": ' + b"9" * 5000 + b"}",
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_unreadable_settings_file_is_one_warning_and_defaults(capsys, case):
    from wattlab.core.settings import Settings

    settings_file().write_bytes(BAD_FILES[case])
    assert Settings.load() == Settings()
    code, out, err = wl(capsys, "runs", "list")
    assert code == 0 and out.startswith("no runs yet")
    assert len(err) == 1 and err[0].startswith("wattlab: warning: ") and "settings.json" in err[0]


def test_settings_numbers_go_through_the_flag_ranges(capsys):
    from wattlab.core.settings import Settings

    settings_file().write_text(
        '{"interval_s": -1, "idle_s": NaN, "cooldown_s": 1e308, "min_measure_s": Infinity, '
        '"pue": 0.2, "price_per_kwh": -3, "intensity_g_per_kwh": 1e400, "region": "FR"}'
    )
    s, problems = Settings.load_checked()
    assert s == Settings(region="FR")  # each bad field falls back to its default
    named = " ".join(problems)
    for field in ("interval_s", "idle_s", "cooldown_s", "min_measure_s", "pue", "price_per_kwh"):
        assert field in named
    # the CLI says so once, then runs with the defaults (here: refused for its own flag only)
    code, _, err = wl(capsys, "run", "--lr", "nan")
    assert code == 2 and len(err) == 2
    assert err[0].startswith("wattlab: warning: ") and "interval_s" in err[0]
    assert err[1].startswith("wattlab: ") and "--lr" in err[1]


def test_an_unknown_region_in_settings_is_named_and_falls_back():
    from wattlab.core.settings import Settings

    settings_file().write_text('{"region": "../../etc", "pue": 1.2}')
    s, problems = Settings.load_checked()
    assert s == Settings(pue=1.2)  # WORLD, the default, and the good field kept
    assert problems == [
        "region: unknown carbon region '../../etc' (see `wattlab compare --help` for --region)"
    ]


# -- 14. report files follow the umask -----------------------------------------------------------
@pytest.mark.parametrize("umask,mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_report_files_get_the_mode_open_would_give(tmp_path, umask, mode):
    from wattlab.core.fileio import write_csv_atomic, write_json_atomic

    old = os.umask(umask)
    try:
        write_json_atomic(tmp_path / "r" / "summary.json", {"a": 1})
        write_csv_atomic(tmp_path / "r" / "samples.csv", ["t"], [[1]])
    finally:
        os.umask(old)
    for name in ("summary.json", "samples.csv"):
        assert stat.S_IMODE((tmp_path / "r" / name).stat().st_mode) == mode


def test_rewriting_a_file_keeps_its_mode(tmp_path):
    from wattlab.core.fileio import write_json_atomic

    p = tmp_path / "summary.json"
    write_json_atomic(p, {"a": 1})
    p.chmod(0o640)
    write_json_atomic(p, {"a": 2})
    assert stat.S_IMODE(p.stat().st_mode) == 0o640 and json.loads(p.read_text()) == {"a": 2}


# -- 15. technique parameters, --out, profile exit codes ----------------------------------------
@pytest.mark.parametrize(
    "text,needle",
    [
        ("pruning:amount=0.3,amount=0.5", "amount is given twice"),
        ("pruning:amount=nan", "finite"),
        ("pruning:amount=inf", "finite"),
        ("pruning:amount=-inf", "finite"),
        ("early-exit:threshold=nan", "finite"),
    ],
)
def test_technique_parameters_repeated_or_not_finite_are_refused(capsys, text, needle):
    from wattlab.core.errors import SpecError
    from wattlab.core.techniques.base import Target
    from wattlab.core.techniques.catalog import parse_cli
    from wattlab.core.techniques.compose import resolve

    with pytest.raises(SpecError, match=needle):
        resolve([parse_cli(text)], Target("infer", "cpu", "hf"))
    code, _, err = wl(capsys, "run", "--technique", text, "--idle", "0")
    assert_one_line(code, err, needle)
    assert not db_path().exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--idle", "0"],
        ["compare", "--optimized", "none", "--idle", "0"],
        ["rag", "--idle", "0"],
        ["profile", "--idle", "0"],
    ],
)
def test_out_that_is_a_file_is_refused_before_anything_runs(capsys, tmp_path, argv):
    f = tmp_path / "results.txt"
    f.write_text("mine")
    tail = ["--", "true"] if argv[0] == "profile" else []
    code, _, err = wl(capsys, *argv, "--out", str(f), *tail)
    assert_one_line(code, err, f"--out must be a folder: {f} is a file")
    code, _, err = wl(capsys, *argv, "--out", str(f / "sub"), *tail)
    assert_one_line(code, err, f"--out must be a folder: {f} is a file")
    assert f.read_text() == "mine" and not db_path().exists()


def test_out_that_cannot_hold_files_is_refused_before_anything_runs(capsys):
    code, _, err = wl(capsys, "run", "--idle", "0", "--out", "/proc/wattlab-reports")
    assert_one_line(code, err, "--out /proc/wattlab-reports cannot hold the reports")
    assert not db_path().exists()


def test_writing_under_a_file_names_the_file(tmp_path):
    from wattlab.core.fileio import OutputError, write_json_atomic

    f = tmp_path / "results.txt"
    f.write_text("mine")
    with pytest.raises(OutputError, match=f"{f} is a file, not a folder"):
        write_json_atomic(f / "summary.json", {})


def test_profile_exit_codes_follow_the_shell(capsys, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    script.chmod(0o644)
    code, _, err = wl(capsys, "profile", "--idle", "0", "--", str(script))
    assert_one_line(code, err, "cannot execute", str(script), exit_code=126)
    code, _, err = wl(capsys, "profile", "--idle", "0", "--", str(tmp_path))
    assert_one_line(code, err, "cannot execute", exit_code=126)
    code, _, err = wl(capsys, "profile", "--idle", "0", "--", str(tmp_path / "nope"))
    assert_one_line(code, err, "command not found", exit_code=127)
    code, _, err = wl(capsys, "profile", "--idle", "0", "--", "definitely-not-a-command-xyz")
    assert err == ["wattlab: command not found: definitely-not-a-command-xyz"] and code == 127
    assert not db_path().exists()  # refused before any idle baseline or stored run


# -- 1. printers take null and missing fields -----------------------------------------------------
class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("tty", [False, True])
def test_progress_prints_null_fields_of_a_diverged_run(tty):
    from wattlab.core.cli.printing import Progress

    stream = Tty() if tty else io.StringIO()
    progress = Progress(stream)
    for ev in (
        {"event": "phase"},
        {"event": "phase", "name": None},
        {"event": "step", "epoch": None, "loss": None, "items": None},
        {"event": "step", "loss": "nan"},
        {"event": "epoch", "epoch": 2, "eval_loss": None, "accuracy": None},
        {"event": "epoch", "eval_loss": None, "perplexity": None},
        {"event": "epoch"},
        {"event": "log"},
        {"event": "log", "message": None},
        {},
    ):
        progress(ev)
    text = stream.getvalue()
    assert "eval loss -" in text and "perplexity -" in text


NULL_SESSION = {
    "run_id": None,
    "status": None,
    "duration_s": None,
    "energy": [
        {"source": None, "label": None, "gross_j": None, "net_j": None, "idle_power_w": None},
        None,
    ],
    "total": {"label": None, "gross_j": None, "net_j": None},
    "sampling": {"interval_s": None, "ticks": None, "missed_slots": None, "idle_s": None},
    "cpu_time_s": None,
    "measured_phase": {"phases": None, "duration_s": math.nan, "gross_j": None, "label": None},
    "energy_per_item_j": None,
    "session": {
        "items": None,
        "throughput": {"items_per_s": None, "tokens_per_s": None},
        "latency_ms": {"p50": 1.0, "p95": None},
        "model": {"num_params": None, "size_bytes": None},
        "device": None,
        "epochs": [
            {"epoch": None, "train_loss": None, "eval_loss": None, "accuracy": None},
            {"epoch": 2, "eval_loss": None, "perplexity": None, "auc_roc": None},
            None,
        ],
        "mode": "infer",
        "metrics": {"perplexity": None},
        "techniques": [{"name": None}, None],
        "agreement": {"prediction_agreement": None, "items": None, "max_abs_logit_diff": None},
        "early_exit": {"mean_layers": None, "layers": None, "theoretical_speedup": None},
        "lottery_rounds": [{"round": 1, "sparsity": None, "accuracy": None}, None],
    },
    "warnings": None,
}


def test_summaries_print_null_and_missing_fields():
    from wattlab.core.cli.printing import (
        print_comparison,
        print_energy_summary,
        print_session_summary,
    )

    out = io.StringIO()
    print_session_summary(NULL_SESSION, out)
    print_session_summary({}, out)
    print_energy_summary({}, out)
    print_comparison({"comparison_id": 3, "verdicts": None, "headline": None}, out)
    print_comparison({}, out)
    text = out.getvalue()
    assert "eval loss -" in text and "energy per item  - J" in text
