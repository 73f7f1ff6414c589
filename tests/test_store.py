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
