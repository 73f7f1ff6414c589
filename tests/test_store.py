from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

from wattlab.core.measure.sampling import Sample
from wattlab.core.measure.store import SCHEMA_VERSION, RunStore


def test_roundtrip_and_schema_version(tmp_path):
    st = RunStore(tmp_path / "w.db")
    rid = st.create_run("profile", {"command": ["x"]}, "lbl")
    st.add_samples(rid, [Sample(1.0, {"a": 1.0}), Sample(1.1, {"a": None})])
    st.add_event(rid, 1.0, "phase", {"name": "run"})
    st.finish_run(rid, "completed", {"total": {"gross_j": 3.0}})
    assert st._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert st._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [s.values for s in st.samples(rid)] == [{"a": 1.0}, {"a": None}]
    assert st.run(rid).status == "completed" and st.result(rid)["total"]["gross_j"] == 3.0
    st.delete_run(rid)
    assert st.run(rid) is None and st.samples(rid) == []


def test_writer_killed_mid_run_is_marked_interrupted(tmp_path):
    db = tmp_path / "w.db"
    writer = textwrap.dedent(f"""
        import time
        from wattlab.core.measure.store import RunStore
        from wattlab.core.measure.sampling import Sample
        st = RunStore({str(db)!r})
        rid = st.create_run("profile", {{}}, "victim")
        k = 0
        while True:
            st.add_samples(rid, [Sample(k + i / 10, {{"x": float(i)}}) for i in range(10)])
            k += 1
            if k == 3:
                print("ready", flush=True)
            time.sleep(0.01)
    """)
    p = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready"
    time.sleep(0.1)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    st = RunStore(db)
    assert st.integrity_ok()
    (row,) = st.runs()
    assert row.status == "interrupted" and st.recovered == [row.id]
    assert len(st.samples(row.id)) >= 30  # committed batches survive


def test_live_owner_is_not_marked_interrupted(tmp_path):
    a = RunStore(tmp_path / "w.db")
    rid = a.create_run("profile", {})
    b = RunStore(tmp_path / "w.db")
    assert b.run(rid).status == "running" and b.recovered == []


def test_newer_schema_is_refused(tmp_path):
    import sqlite3

    import pytest

    from wattlab.core.measure.store import StoreError

    db = tmp_path / "w.db"
    c = sqlite3.connect(db)
    c.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    c.close()
    with pytest.raises(StoreError, match="newer WattLab"):
        RunStore(db)


# -- annotations (schema 2), comparison membership, the one-query listing ------------------------
def _comparison(st, members):
    """A comparison whose result lists ``members`` [(run id, side, index)], as compare() stores."""
    cid = st.create_run("comparison", {"baseline": {}, "optimized": {}, "repeats": 1}, "cmp")
    per_run = [{"run_id": r, "side": s, "index": i, "metrics": {}} for r, s, i in members]
    st.finish_run(cid, "completed", {"comparison_id": cid, "per_run": per_run, "verdicts": []})
    return cid


def test_annotations_persist_across_reopening(tmp_path):
    from wattlab.core.measure.store import Annotation

    st = RunStore(tmp_path / "w.db")
    rid = st.create_run("session", {"mode": "infer"}, "baseline 1/3")
    other = st.create_run("session", {}, None)
    stored = st.annotate(rid, "  bf16 try ", ["paper", " cpu", "paper", " "], "fan was loud\n")
    assert stored == Annotation("bf16 try", ("paper", "cpu"), "fan was loud")
    st.close()
    st = RunStore(tmp_path / "w.db")
    assert st.annotation(rid) == Annotation("bf16 try", ("paper", "cpu"), "fan was loud")
    assert st.run(rid).label == "baseline 1/3"  # the recorded label is untouched
    assert st.annotation(other) == Annotation()
    st.annotate(rid, "", [], "  ")  # all blank: cleared
    assert st.annotation(rid) == Annotation()
    assert st._db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0] == 0


def test_annotating_a_missing_run_is_refused_and_deleting_removes_the_annotation(tmp_path):
    import pytest

    from wattlab.core.measure.store import StoreError

    st = RunStore(tmp_path / "w.db")
    with pytest.raises(StoreError, match="no run with id 99"):
        st.annotate(99, "x")
    rid = st.create_run("session", {})
    st.annotate(rid, "x", ["t"])
    st.delete_run(rid)
    assert st._db.execute("SELECT COUNT(*) FROM annotations").fetchone()[0] == 0


def test_old_store_migrates_and_takes_annotations(tmp_path):
    import shutil
    import sqlite3
    from pathlib import Path

    db = tmp_path / "old.db"
    shutil.copy(Path(__file__).parent / "data" / "store-v0.1.db", db)
    assert sqlite3.connect(db).execute("PRAGMA user_version").fetchone()[0] == 1
    st = RunStore(db)
    assert st._db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 2
    st.annotate(3, "first baseline", ["v0.1"])
    assert [r.id for r in st.runs(100)] == list(range(8, 0, -1))  # nothing lost
    assert st.comparisons_of(3) == [2] and st.comparisons_of(1) == []
    st.close()
    assert RunStore(db).annotation(3).name == "first baseline"


def test_comparisons_of_a_run_come_from_the_stored_per_run(tmp_path):
    st = RunStore(tmp_path / "w.db")
    a, b, c = (st.create_run("session", {}) for _ in range(3))
    first = _comparison(st, [(a, "baseline", 0), (b, "optimized", 0)])
    second = _comparison(st, [(a, "baseline", 0), (c, "optimized", 0)])
    failed = st.create_run("comparison", {}, "failed before its end")
    st.finish_run(failed, "failed", None)
    assert st.comparisons_of(a) == [first, second]
    assert st.comparisons_of(b) == [first] and st.comparisons_of(c) == [second]
    assert st.comparison_members()[first] == [(a, "baseline", 0), (b, "optimized", 0)]
    st._has_json1 = False  # a SQLite without JSON functions gives the same answers
    assert st.comparisons_of(a) == [first, second]
    assert st.comparison_members()[second] == [(a, "baseline", 0), (c, "optimized", 0)]


def test_summaries_pick_result_values_and_survive_a_damaged_result(tmp_path):
    st = RunStore(tmp_path / "w.db")
    good = st.create_run("session", {"mode": "infer"}, "good")
    st.finish_run(good, "completed", {"total": {"gross_j": 3.0, "label": "measured"}, "x": [1]})
    bad = st.create_run("session", {}, "bad")
    st.finish_run(bad, "completed", {"total": {"gross_j": 1.0}})
    st._db.execute("UPDATE results SET result_json='{not json' WHERE run_id=?", (bad,))
    st._db.commit()
    st.annotate(good, "mine", ["a"])
    paths = ["$.total.gross_j", "$.total.label", "$.x", "$.missing"]
    for json1 in (True, False):
        st._has_json1 = json1
        got = {s.row.id: s for s in st.summaries(paths)}
        assert got[good].fields == {
            "$.total.gross_j": 3.0,
            "$.total.label": "measured",
            "$.x": [1],
            "$.missing": None,
        }
        assert got[good].annotation.name == "mine" and got[good].annotation.tags == ("a",)
        assert set(got[bad].fields.values()) == {None}


def test_delete_runs_removes_all_in_one_transaction(tmp_path):
    st = RunStore(tmp_path / "w.db")
    ids = [st.create_run("session", {}) for _ in range(3)]
    st.delete_runs(ids[:2])
    assert [r.id for r in st.runs()] == [ids[2]]
