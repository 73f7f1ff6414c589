"""The run store: one SQLite file holding runs, their samples, events and results.

WAL mode so a reader (``wattlab runs list``, the GUI's history) never blocks the sampler's
writer, and so a writer killed mid-run leaves every committed batch intact. A run is created
``running`` with its owner's PID and start time; the next open of the store finds runs whose
owner is gone and marks them ``interrupted`` instead of leaving them "running" forever.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil

from wattlab.core import paths
from wattlab.core.measure.sampling import Sample

SCHEMA_VERSION = 1
DB_NAME = "wattlab.db"

FINAL_STATUSES = ("completed", "failed", "cancelled", "interrupted")

_SCHEMA_V1 = """
CREATE TABLE runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    label TEXT,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    ended_at REAL,
    owner_pid INTEGER,
    owner_started REAL,
    spec_json TEXT,
    message TEXT
);
CREATE TABLE samples (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    t REAL NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX samples_run ON samples(run_id, t);
CREATE TABLE events (
    run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    data_json TEXT NOT NULL
);
CREATE INDEX events_run ON events(run_id, t);
CREATE TABLE results (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    result_json TEXT NOT NULL
);
"""

# Migration k upgrades a database from user_version k to k + 1.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1}


@dataclass(frozen=True)
class RunRow:
    id: int
    kind: str
    label: str | None
    status: str
    created_at: float
    ended_at: float | None
    spec: dict
    message: str | None


class StoreError(RuntimeError):
    pass


class RunStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._migrate()
        self.recovered = self._mark_interrupted()

    @classmethod
    def open_default(cls, data_dir: Path | None = None) -> RunStore:
        return cls((data_dir or paths.data_dir()) / DB_NAME)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except sqlite3.OperationalError as exc:
                raise StoreError(f"run store {self.path}: {exc}") from exc

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer WattLab (schema {version}); "
                f"this one reads up to {SCHEMA_VERSION}"
            )
        while version < SCHEMA_VERSION:
            with self._tx() as db:
                db.executescript(
                    f"BEGIN;{MIGRATIONS[version]}PRAGMA user_version={version + 1};COMMIT;"
                )
            version += 1

    def _mark_interrupted(self) -> list[int]:
        rows = self._db.execute(
            "SELECT id, owner_pid, owner_started FROM runs WHERE status='running'"
        ).fetchall()
        dead = [rid for rid, pid, started in rows if not _alive(pid, started)]
        if dead:
            with self._tx() as db:
                db.executemany(
                    "UPDATE runs SET status='interrupted', message=? WHERE id=?",
                    [
                        ("the process recording this run ended without finishing it", rid)
                        for rid in dead
                    ],
                )
        return dead

    # -- writes --------------------------------------------------------------------------------
    def create_run(self, kind: str, spec: dict, label: str | None = None) -> int:
        me = psutil.Process()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs(kind, label, status, created_at, owner_pid, owner_started, "
                "spec_json) VALUES (?, ?, 'running', ?, ?, ?, ?)",
                (kind, label, time.time(), me.pid, me.create_time(), json.dumps(spec)),
            )
            assert cur.lastrowid is not None  # an INSERT always sets it
            return int(cur.lastrowid)

    def add_samples(self, run_id: int, samples: Iterable[Sample]) -> None:
        rows = [(run_id, s.t, json.dumps(s.values)) for s in samples]
        with self._tx() as db:
            db.executemany("INSERT INTO samples(run_id, t, data_json) VALUES (?, ?, ?)", rows)

    def add_event(self, run_id: int, t: float, kind: str, data: dict) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO events(run_id, t, kind, data_json) VALUES (?, ?, ?, ?)",
                (run_id, t, kind, json.dumps(data)),
            )

    def finish_run(
        self, run_id: int, status: str, result: dict | None, message: str | None = None
    ) -> None:
        if status not in FINAL_STATUSES:
            raise ValueError(f"not a final status: {status}")
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status=?, ended_at=?, message=? WHERE id=?",
                (status, time.time(), message, run_id),
            )
            if result is not None:
                db.execute(
                    "INSERT OR REPLACE INTO results(run_id, result_json) VALUES (?, ?)",
                    (run_id, json.dumps(result)),
                )

    def delete_run(self, run_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM runs WHERE id=?", (run_id,))

    # -- reads ---------------------------------------------------------------------------------
    def runs(self, limit: int = 100) -> list[RunRow]:
        rows = self._db.execute(
            "SELECT id, kind, label, status, created_at, ended_at, spec_json, message FROM runs "
            "ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [_row(r) for r in rows]

    def run(self, run_id: int) -> RunRow | None:
        r = self._db.execute(
            "SELECT id, kind, label, status, created_at, ended_at, spec_json, message FROM runs "
            "WHERE id=?",
            (run_id,),
        ).fetchone()
        return _row(r) if r else None

    def result(self, run_id: int) -> dict | None:
        r = self._db.execute("SELECT result_json FROM results WHERE run_id=?", (run_id,)).fetchone()
        return json.loads(r[0]) if r else None

    def samples(self, run_id: int) -> list[Sample]:
        rows = self._db.execute(
            "SELECT t, data_json FROM samples WHERE run_id=? ORDER BY t", (run_id,)
        ).fetchall()
        return [Sample(t, json.loads(d)) for t, d in rows]

    def events(self, run_id: int) -> list[tuple[float, str, dict]]:
        rows = self._db.execute(
            "SELECT t, kind, data_json FROM events WHERE run_id=? ORDER BY t", (run_id,)
        ).fetchall()
        return [(t, k, json.loads(d)) for t, k, d in rows]

    def lowest_idle_power_w(self, limit: int = 200) -> dict[str, float]:
        """The lowest idle power each source showed in the last ``limit`` stored results: this
        machine's cold idle, against which a warm idle baseline is flagged."""
        rows = self._db.execute(
            "SELECT result_json FROM results ORDER BY run_id DESC LIMIT ?", (limit,)
        ).fetchall()
        low: dict[str, float] = {}
        for (raw,) in rows:
            try:
                energy = json.loads(raw).get("energy") or []
            except (ValueError, AttributeError):
                continue
            for e in energy:
                w = e.get("idle_power_w") if isinstance(e, dict) else None
                if isinstance(w, (int, float)) and w > 0:
                    src = str(e.get("source"))
                    low[src] = min(w, low.get(src, w))
        return low

    def integrity_ok(self) -> bool:
        return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _row(r: tuple) -> RunRow:
    return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], json.loads(r[6] or "{}"), r[7])


def _alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        return started is None or abs(p.create_time() - started) < 1.0
    except psutil.Error:
        return False
