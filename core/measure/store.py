"""The run store: one SQLite file holding runs, their samples, events and results.

WAL mode so a reader (``wattlab runs list``, the GUI's history) never blocks the sampler's
writer, and so a writer killed mid-run leaves every committed batch intact. A run is created
``running`` with its owner's PID and start time; the next open of the store finds runs whose
owner is gone and marks them ``interrupted`` instead of leaving them "running" forever.

A file that is damaged, is not a WattLab store, or has another schema is never written into and
never gives a traceback: every SQLite failure becomes one ``StoreError`` naming the file and what
to do, and what SQLite can still read of a damaged store stays readable (``damage`` says so).
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import psutil

from wattlab.core import paths
from wattlab.core.measure.sampling import Sample

T = TypeVar("T")

SCHEMA_VERSION = 2
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

# Schema 2: what the user writes about a run (a name, tags, notes) lives in its own table, so
# the recorded run itself is never rewritten by an edit, and a store without it (0.1) still opens.
_SCHEMA_V2 = """
CREATE TABLE annotations (
    run_id INTEGER PRIMARY KEY REFERENCES runs(id) ON DELETE CASCADE,
    name TEXT,
    tags_json TEXT NOT NULL DEFAULT '[]',
    notes TEXT,
    updated_at REAL NOT NULL
);
"""

# Migration k upgrades a database from user_version k to k + 1.
MIGRATIONS: dict[int, str] = {0: _SCHEMA_V1, 1: _SCHEMA_V2}

# What a query on a damaged file raises: SQLite's errors, and a UnicodeDecodeError when SQLite's
# own message quotes damaged bytes (a malformed schema entry) that Python cannot decode.
DB_ERRORS = (sqlite3.Error, UnicodeDecodeError)

# SQLite integers are signed 64-bit: a larger run id cannot be bound (OverflowError), and no run
# has it.
_MAX_ID = 2**63 - 1


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


@dataclass(frozen=True)
class Annotation:
    """What the user wrote about a run: kept apart from what was measured (``RunRow.label`` is
    the recorded label; ``name`` is the user's own and shown instead when set)."""

    name: str | None = None
    tags: tuple[str, ...] = ()
    notes: str | None = None

    @property
    def empty(self) -> bool:
        return self.name is None and not self.tags and self.notes is None


@dataclass(frozen=True)
class RunSummary:
    """One run as a listing needs it, read in the same query as every other run: the row, the
    few result values asked for (JSON path -> value, None when absent or unreadable) and the
    user's annotation."""

    row: RunRow
    fields: dict[str, object]
    annotation: Annotation


class StoreError(RuntimeError):
    pass


class RunStore:
    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        # Set when a read met a damaged part of the file: what to tell the user (the rows that
        # could be read were returned).
        self.damage: str | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=10)
            # A damaged record's bytes read as text with replacement characters (its JSON then
            # fails to parse and is skipped) instead of failing the whole query.
            self._db.text_factory = lambda b: b.decode("utf-8", "replace")
        except (OSError, *DB_ERRORS) as exc:
            raise StoreError(f"cannot open run store {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        try:
            self._prepare()
        except BaseException:
            self._db.close()
            raise
        self._has_json1 = _has_json1(self._db)
        self.recovered = self._mark_interrupted()

    def _prepare(self) -> None:
        """Check the file is ours (read only: a foreign file is left untouched), then set the
        journal and bring the schema up to date."""
        try:
            self._check_schema()
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
        except DB_ERRORS as exc:
            raise self._error(exc) from exc
        self._migrate()

    @classmethod
    def open_default(cls, data_dir: Path | None = None) -> RunStore:
        return cls((data_dir or paths.data_dir()) / DB_NAME)

    def _error(self, exc: Exception) -> StoreError:
        """One line for a SQLite failure: a damaged file says how to get going again."""
        what = " ".join(str(exc).split())[:200]  # SQLite may quote a damaged record's bytes
        if type(exc) is sqlite3.DatabaseError or isinstance(exc, UnicodeDecodeError):
            return StoreError(
                f"run store {self.path} is damaged ({what}); move it aside (e.g. rename it to "
                f"{self.path.name}.damaged) and WattLab starts a new one"
            )
        return StoreError(f"run store {self.path}: {what}")

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                with self._db:
                    yield self._db
            except DB_ERRORS as exc:
                raise self._error(exc) from exc

    def _read(self, sql: str, params: tuple = ()) -> list[tuple]:
        """All rows of a query, a SQLite failure as a StoreError."""
        try:
            return self._db.execute(sql, params).fetchall()
        except DB_ERRORS as exc:
            raise self._error(exc) from exc

    def _check_schema(self) -> None:
        """Refuse a file written by a newer WattLab, or one that is not a WattLab store: a
        SQLite file with other tables, or our tables with other columns."""
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path} was written by a newer WattLab (schema {version}); "
                f"this one reads up to {SCHEMA_VERSION}"
            )
        found = self._columns(self._db)
        expected = _expected_columns(version)
        ours = all(cols <= found.get(table, set()) for table, cols in expected.items())
        if ours and (version > 0 or not found):  # ours, or a new empty file
            return
        have = ", ".join(sorted(found)) or "no tables"
        raise StoreError(
            f"{self.path} is not a WattLab run store (schema {version}, tables: {have}); move "
            "it aside or choose another data folder"
        )

    @staticmethod
    def _columns(db: sqlite3.Connection) -> dict[str, set[str]]:
        """Each table of ``db`` (SQLite's own excepted) and its column names."""
        names = [
            n
            for (n,) in db.execute(
                "SELECT name FROM sqlite_master WHERE type='table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        quoted = {n: '"' + n.replace('"', '""') + '"' for n in names}  # a foreign file's names
        return {n: {c[1] for c in db.execute(f"PRAGMA table_info({quoted[n]})")} for n in names}

    def _migrate(self) -> None:
        version = self._read("PRAGMA user_version")[0][0]
        while version < SCHEMA_VERSION:
            with self._tx() as db:
                db.executescript(
                    f"BEGIN;{MIGRATIONS[version]}PRAGMA user_version={version + 1};COMMIT;"
                )
            version += 1

    def _mark_interrupted(self) -> list[int]:
        """Runs whose owner is gone become ``interrupted``. A damaged runs table is noted in
        ``damage`` (the readable runs stay listable) instead of refusing the whole store."""
        try:
            rows = self._read(
                "SELECT id, owner_pid, owner_started FROM runs WHERE status='running'"
            )
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
        except StoreError as exc:
            self.damage = str(exc)
            return []
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

    def reopen(self, run_id: int) -> None:
        """A stopped run this process continues (a resumed sweep): running again, owned by this
        process, so a crash marks it interrupted like any other run."""
        me = psutil.Process()
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status='running', ended_at=NULL, message=NULL, owner_pid=?, "
                "owner_started=? WHERE id=?",
                (me.pid, me.create_time(), run_id),
            )

    def delete_run(self, run_id: int) -> None:
        self.delete_runs([run_id])

    def delete_runs(self, run_ids: Iterable[int]) -> None:
        """Several runs (their samples, events, results and annotations cascade) in one
        transaction: a failure part-way deletes none of them."""
        ids = [(i,) for i in run_ids if _is_id(i)]
        with self._tx() as db:
            db.executemany("DELETE FROM runs WHERE id=?", ids)

    def annotate(
        self,
        run_id: int,
        name: str | None = None,
        tags: Iterable[str] = (),
        notes: str | None = None,
    ) -> Annotation:
        """Replace the user's name, tags and notes of a run (blank ones are cleared; tags are
        stripped and kept once each, in the order given). Returns what was stored."""
        note = Annotation(_blank_none(name), _clean_tags(tags), _blank_none(notes))
        if self.run(run_id) is None:
            raise StoreError(f"no run with id {run_id} in {self.path}")
        with self._tx() as db:
            if note.empty:
                db.execute("DELETE FROM annotations WHERE run_id=?", (run_id,))
            else:
                db.execute(
                    "INSERT OR REPLACE INTO annotations(run_id, name, tags_json, notes, "
                    "updated_at) VALUES (?, ?, ?, ?, ?)",
                    (run_id, note.name, json.dumps(list(note.tags)), note.notes, time.time()),
                )
        return note

    # -- reads ---------------------------------------------------------------------------------
    def runs(self, limit: int = 100, kind: str | None = None) -> list[RunRow]:
        """The newest ``limit`` runs (of one ``kind`` if given). When part of the file is
        damaged, the runs read before the damage are returned and ``damage`` says what
        happened; nothing readable raises."""
        where = "WHERE kind = ? " if kind is not None else ""
        args = (kind,) if kind is not None else ()
        return self._rows_until_damage(
            (
                "SELECT id, kind, label, status, created_at, ended_at, spec_json, message "
                f"FROM runs {where}ORDER BY id DESC LIMIT ?",
                (*args, max(0, min(int(limit), _MAX_ID))),
            ),
            _row,
        )

    def _rows_until_damage(self, query: tuple[str, tuple], convert: Callable[[Any], T]) -> list[T]:
        """Rows one at a time, so those before a damaged page are kept (and ``damage`` says
        what happened); a store with nothing readable raises its StoreError."""
        out: list[T] = []
        try:
            for r in self._db.execute(*query):
                out.append(convert(r))
        except DB_ERRORS as exc:
            err = self._error(exc)
            if not out:
                raise err from exc
            self.damage = str(err)
        return out

    def run(self, run_id: int) -> RunRow | None:
        if not _is_id(run_id):
            return None
        rows = self._read(
            "SELECT id, kind, label, status, created_at, ended_at, spec_json, message FROM runs "
            "WHERE id=?",
            (run_id,),
        )
        return _row(rows[0]) if rows else None

    def result(self, run_id: int) -> dict | None:
        if not _is_id(run_id):
            return None
        rows = self._read("SELECT result_json FROM results WHERE run_id=?", (run_id,))
        if not rows:
            return None
        value = _json(rows[0][0])
        if not isinstance(value, dict):
            raise StoreError(
                f"the stored result of run {run_id} in {self.path} is damaged; the run's row "
                "is still listed"
            )
        return value

    def samples(self, run_id: int) -> list[Sample]:
        if not _is_id(run_id):
            return []
        rows = self._read("SELECT t, data_json FROM samples WHERE run_id=? ORDER BY t", (run_id,))
        return [Sample(t, d) for t, raw in rows if isinstance(d := _json(raw), dict)]

    def events(self, run_id: int) -> list[tuple[float, str, dict]]:
        if not _is_id(run_id):
            return []
        rows = self._read(
            "SELECT t, kind, data_json FROM events WHERE run_id=? ORDER BY t", (run_id,)
        )
        return [(t, k, d) for t, k, raw in rows if isinstance(d := _json(raw), dict)]

    def annotation(self, run_id: int) -> Annotation:
        """The user's name, tags and notes of a run (empty when none was written)."""
        if not _is_id(run_id):
            return Annotation()
        rows = self._read(
            "SELECT name, tags_json, notes FROM annotations WHERE run_id=?", (run_id,)
        )
        return _annotation(*rows[0]) if rows else Annotation()

    def summaries(self, paths: Sequence[str], limit: int = 500) -> list[RunSummary]:
        """The newest ``limit`` runs with the result values at ``paths`` (JSON paths such as
        ``$.total.gross_j``) and their annotations, in one query: a listing of hundreds of runs
        must not read every full result (a session's predictions alone can be large). Damage is
        handled as in ``runs``: the rows read before it are returned, ``damage`` says why."""
        paths = list(paths)
        return self._rows_until_damage(
            self._summary_query(paths, limit),
            lambda r: RunSummary(_row(r[:8]), self._fields(paths, r[8]), _annotation(*r[9:12])),
        )

    def _summary_query(self, paths: list[str], limit: int) -> tuple[str, tuple]:
        """SQLite's JSON functions pick the values out when it has them (one JSON array per
        row); otherwise the whole result comes back and ``_fields`` picks them in Python."""
        if self._json1():
            # two paths at least, so json_extract always answers with an array
            padded = paths + ["$.__none__"] * max(0, 2 - len(paths))
            marks = ", ".join("?" * len(padded))
            picked = (
                f"CASE WHEN json_valid(res.result_json) "
                f"THEN json_extract(res.result_json, {marks}) END"
            )
            args: tuple = tuple(padded)
        else:
            picked, args = "res.result_json", ()
        sql = (
            "SELECT r.id, r.kind, r.label, r.status, r.created_at, r.ended_at, r.spec_json, "
            f"r.message, {picked}, a.name, a.tags_json, a.notes FROM runs r "
            "LEFT JOIN results res ON res.run_id = r.id "
            "LEFT JOIN annotations a ON a.run_id = r.id ORDER BY r.id DESC LIMIT ?"
        )
        return sql, (*args, max(0, min(int(limit), _MAX_ID)))

    def _fields(self, paths: list[str], raw: object) -> dict[str, object]:
        """The values at ``paths`` from what ``_summary_query`` selected (None for each one
        absent, and for all when the result is missing or damaged)."""
        value = _json(raw)
        if self._json1():
            values = value if isinstance(value, list) else []
            return {p: values[k] if k < len(values) else None for k, p in enumerate(paths)}
        return {p: _at_path(value, p) for p in paths}

    def _json1(self) -> bool:
        return self._has_json1

    def comparison_members(self) -> dict[int, list[tuple[int, str, int]]]:
        """Each stored comparison's runs as (run id, side, pair index), from its result's
        ``per_run``: which comparisons lose a run when it is deleted, and how the history
        groups repeats under their comparison. A comparison without a result (failed before
        its end) has none."""
        if self._json1():
            rows = self._read(
                "SELECT r.id, CASE WHEN e.type = 'object' THEN json_extract(e.value, "
                "'$.run_id', '$.side', '$.index') END FROM runs r "
                "JOIN results res ON res.run_id = r.id, json_each(CASE WHEN "
                "json_valid(res.result_json) THEN res.result_json ELSE '{}' END, '$.per_run') e "
                "WHERE r.kind = 'comparison' ORDER BY r.id, e.key"
            )
            entries = [(cid, _json(raw)) for cid, raw in rows]
        else:
            rows = self._read(
                "SELECT r.id, res.result_json FROM runs r JOIN results res "
                "ON res.run_id = r.id WHERE r.kind = 'comparison' ORDER BY r.id"
            )
            entries = [
                (cid, [_at_path(e, p) for p in ("$.run_id", "$.side", "$.index")])
                for cid, raw in rows
                for e in _per_run(_json(raw))
            ]
        out: dict[int, list[tuple[int, str, int]]] = {}
        for cid, entry in entries:
            member = _member(entry)
            if member is not None:
                out.setdefault(cid, []).append(member)
        return out

    def comparisons_of(self, run_id: int) -> list[int]:
        """The comparisons whose charts, tables and reports include ``run_id``, oldest first."""
        return [
            cid
            for cid, members in self.comparison_members().items()
            if any(rid == run_id for rid, _, _ in members)
        ]

    def lowest_idle_power_w(self, limit: int = 200) -> dict[str, float]:
        """The lowest idle power each source showed in the last ``limit`` stored results: this
        machine's cold idle, against which a warm idle baseline is flagged."""
        rows = self._read("SELECT result_json FROM results ORDER BY run_id DESC LIMIT ?", (limit,))
        low: dict[str, float] = {}
        for (raw,) in rows:
            res = _json(raw)
            energy = res.get("energy") if isinstance(res, dict) else None
            for e in energy if isinstance(energy, list) else []:
                w = e.get("idle_power_w") if isinstance(e, dict) else None
                if isinstance(w, (int, float)) and w > 0:
                    src = str(e.get("source"))
                    low[src] = min(w, low.get(src, w))
        return low

    def integrity_ok(self) -> bool:
        try:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        except DB_ERRORS:
            return False

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _is_id(run_id: object) -> bool:
    """Whether ``run_id`` can be a stored run's id at all (SQLite binds at most 64 bits)."""
    return isinstance(run_id, int) and not isinstance(run_id, bool) and 0 < run_id <= _MAX_ID


def _json(raw: object) -> object:
    """A stored JSON text, or None when it is not JSON (a damaged record SQLite did not
    notice)."""
    try:
        return json.loads(raw) if isinstance(raw, (str, bytes)) else None
    except (ValueError, RecursionError):
        return None


def _expected_columns(version: int) -> dict[str, set[str]]:
    """The tables and columns a store at schema ``version`` has: the migrations applied to an
    empty in-memory database, so the check follows the schema as it changes."""
    db = sqlite3.connect(":memory:")
    try:
        for v in range(version):
            db.executescript(MIGRATIONS[v])
        return RunStore._columns(db)
    finally:
        db.close()


def _row(r: tuple) -> RunRow:
    spec = _json(r[6] or "{}")
    return RunRow(r[0], r[1], r[2], r[3], r[4], r[5], spec if isinstance(spec, dict) else {}, r[7])


def _has_json1(db: sqlite3.Connection) -> bool:
    """Whether this SQLite has its JSON functions (built in since 3.38, and in most earlier
    builds); asked once, when the store opens."""
    try:
        db.execute("SELECT json_valid('{}')").fetchone()
        return True
    except sqlite3.Error:
        return False


def _annotation(name: object, tags_json: object, notes: object) -> Annotation:
    """A stored annotation row (all None from a LEFT JOIN without one) as an Annotation."""
    tags = _json(tags_json)
    return Annotation(
        name if isinstance(name, str) else None,
        tuple(t for t in tags if isinstance(t, str)) if isinstance(tags, list) else (),
        notes if isinstance(notes, str) else None,
    )


def _blank_none(text: str | None) -> str | None:
    """A name or note the user left blank is no name: stored as NULL, shown as the label."""
    return text.strip() if text is not None and text.strip() else None


def _clean_tags(tags: Iterable[str]) -> tuple[str, ...]:
    """Tags stripped, blanks dropped, each kept once in the order given."""
    return tuple(dict.fromkeys(t.strip() for t in tags if t and t.strip()))


def _at_path(value: object, path: str) -> object:
    """The value at a simple JSON path (``$.a.b``) of a parsed result; None when absent. The
    Python twin of SQLite's json_extract, for a SQLite built without it."""
    keys = path.removeprefix("$.").split(".") if path != "$" else []
    for key in keys:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _per_run(result: object) -> list[object]:
    per_run = result.get("per_run") if isinstance(result, dict) else None
    return per_run if isinstance(per_run, list) else []


def _member(entry: object) -> tuple[int, str, int] | None:
    """One ``per_run`` entry as (run id, side, pair index); None for one that names no run."""
    if not isinstance(entry, list) or len(entry) != 3:
        return None
    rid, side, index = entry
    if not _is_id(rid):
        return None
    return rid, str(side or ""), index if isinstance(index, int) else -1


def _alive(pid: int | None, started: float | None) -> bool:
    if pid is None:
        return False
    try:
        p = psutil.Process(pid)
        return started is None or abs(p.create_time() - started) < 1.0
    except psutil.Error:
        return False
