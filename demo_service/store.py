"""State shared by all workers: SQLite in WAL mode (DATA_DIR/state.db).

Tables: uploads, chunks, videos, controls (faults and flags, with a version counter
that workers poll), transcode_jobs (the async queue). State transitions are
conditional UPDATEs (``... WHERE status = ?``): the one writer whose UPDATE changes a
row owns the transition, so two workers completing the same upload publish once.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask, current_app

__all__ = ["Store", "Upload", "init_app", "get_store", "TERMINAL_STATUSES"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    request_id TEXT NOT NULL,
    user_hash TEXT NOT NULL,
    app_version TEXT NOT NULL,
    region TEXT NOT NULL,
    network_type TEXT NOT NULL,
    media_size_bytes INTEGER NOT NULL,
    media_size_bucket TEXT NOT NULL,
    chunk_count INTEGER NOT NULL,
    synthetic INTEGER NOT NULL,
    flags TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    completed_at REAL,
    finished_at REAL,
    video_id TEXT,
    error_class TEXT,
    traceparent TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    upload_id TEXT NOT NULL,
    chunk_index INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    crc32 INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    received_at REAL NOT NULL,
    PRIMARY KEY (upload_id, chunk_index)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS videos (
    video_id TEXT PRIMARY KEY,
    upload_id TEXT NOT NULL UNIQUE,
    user_hash TEXT NOT NULL,
    region TEXT NOT NULL,
    media_size_bucket TEXT NOT NULL,
    bytes INTEGER NOT NULL,
    published_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS videos_published ON videos (published_at DESC);
CREATE TABLE IF NOT EXISTS controls (
    kind TEXT NOT NULL,          -- 'fault' | 'flag' | 'shed'
    name TEXT NOT NULL,
    spec TEXT NOT NULL,          -- JSON
    updated_at REAL NOT NULL,
    PRIMARY KEY (kind, name)
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('controls_version', 0);
CREATE TABLE IF NOT EXISTS transcode_jobs (
    upload_id TEXT PRIMARY KEY,
    state TEXT NOT NULL,         -- 'queued' | 'running' | 'done'
    enqueued_at REAL NOT NULL,
    claimed_at REAL,
    claimed_by TEXT,
    traceparent TEXT
);
CREATE INDEX IF NOT EXISTS jobs_state ON transcode_jobs (state, enqueued_at);
"""
# One X-Request-ID, one upload. A database from before this rule may hold duplicates: it keeps
# them (nothing recorded is dropped) and gets a plain index; the API's check still refuses new ones.
REQUEST_ID_INDEX = "CREATE UNIQUE INDEX IF NOT EXISTS uploads_request_id ON uploads (request_id)"
REQUEST_ID_INDEX_LEGACY = "CREATE INDEX IF NOT EXISTS uploads_request_id_legacy ON uploads (request_id)"

TERMINAL_STATUSES = ("published", "failed", "cancelled")


@dataclass(frozen=True)
class Upload:
    upload_id: str
    request_id: str
    user_hash: str
    app_version: str
    region: str
    network_type: str
    media_size_bytes: int
    media_size_bucket: str
    chunk_count: int
    synthetic: bool
    flags: dict
    status: str
    created_at: float
    completed_at: float | None
    finished_at: float | None
    video_id: str | None
    error_class: str | None
    traceparent: str | None

    @property
    def cohort(self) -> dict[str, str]:
        return {"region": self.region, "app_version": self.app_version, "network_type": self.network_type,
                "media_size_bucket": self.media_size_bucket, "release": self.flags.get("release", "stable")}


def _upload(row: sqlite3.Row) -> Upload:
    d = dict(row)
    d["synthetic"] = bool(d["synthetic"])
    d["flags"] = json.loads(d["flags"])
    return Upload(**d)


class Store:
    """Thread-safe access to state.db: one connection per thread."""

    def __init__(self, path: str | Path):
        self.path = str(path)
        self._local = threading.local()
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.executescript(SCHEMA)
            try:
                conn.execute(REQUEST_ID_INDEX)
            except sqlite3.IntegrityError:
                conn.execute(REQUEST_ID_INDEX_LEGACY)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=10000")
        return conn

    @property
    def conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
        return conn

    def transaction(self) -> "_Tx":
        return _Tx(self.conn)

    # --- uploads -----------------------------------------------------------------------------
    def create_upload(self, **fields: Any) -> None:
        fields = dict(fields, flags=json.dumps(fields["flags"], sort_keys=True), synthetic=int(fields["synthetic"]))
        cols = ", ".join(fields)
        marks = ", ".join("?" for _ in fields)
        self.conn.execute(f"INSERT INTO uploads ({cols}) VALUES ({marks})", tuple(fields.values()))

    def get_upload(self, upload_id: str) -> Upload | None:
        row = self.conn.execute("SELECT * FROM uploads WHERE upload_id = ?", (upload_id,)).fetchone()
        return _upload(row) if row else None

    def upload_id_for_request(self, request_id: str) -> str | None:
        row = self.conn.execute("SELECT upload_id FROM uploads WHERE request_id = ? LIMIT 1", (request_id,)).fetchone()
        return row[0] if row else None

    def transition(self, upload_id: str, from_statuses: tuple[str, ...], to_status: str, **fields: Any) -> bool:
        """Conditional state change; True when this caller made it (the claim)."""
        sets = ", ".join([f"{k} = ?" for k in ("status", *fields)])
        marks = ", ".join("?" for _ in from_statuses)
        cur = self.conn.execute(
            f"UPDATE uploads SET {sets} WHERE upload_id = ? AND status IN ({marks})",
            (to_status, *fields.values(), upload_id, *from_statuses))
        return cur.rowcount == 1

    # --- chunks ------------------------------------------------------------------------------
    def put_chunk(self, upload_id: str, chunk_index: int, size: int, crc32: int, attempt: int, now: float) -> None:
        self.conn.execute(
            "INSERT INTO chunks (upload_id, chunk_index, bytes, crc32, attempt, received_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (upload_id, chunk_index) DO UPDATE SET bytes = excluded.bytes, crc32 = excluded.crc32, "
            "attempt = excluded.attempt, received_at = excluded.received_at",
            (upload_id, chunk_index, size, crc32, attempt, now))

    def chunk_summary(self, upload_id: str) -> tuple[int, int]:
        """(chunks received, bytes received)."""
        row = self.conn.execute("SELECT count(*), coalesce(sum(bytes), 0) FROM chunks WHERE upload_id = ?",
                                (upload_id,)).fetchone()
        return int(row[0]), int(row[1])

    # --- publish -----------------------------------------------------------------------------
    def publish(self, upload: Upload, video_id: str, size: int, now: float) -> bool:
        """Insert the video and mark the upload published, atomically; False if it left 'transcoding'."""
        with self.transaction() as conn:
            cur = conn.execute(
                "UPDATE uploads SET status = 'published', video_id = ?, finished_at = ? "
                "WHERE upload_id = ? AND status = 'transcoding'", (video_id, now, upload.upload_id))
            if cur.rowcount != 1:
                return False
            conn.execute(
                "INSERT INTO videos (video_id, upload_id, user_hash, region, media_size_bucket, bytes, published_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (video_id, upload.upload_id, upload.user_hash, upload.region, upload.media_size_bucket, size, now))
            return True

    def recent_videos(self, limit: int) -> list[dict]:
        rows = self.conn.execute(
            "SELECT video_id, region, media_size_bucket, bytes, published_at FROM videos "
            "ORDER BY published_at DESC LIMIT ?", (limit,)).fetchall()
        return [dict(r) for r in rows]

    # --- controls (faults, flags) --------------------------------------------------------------
    def controls_version(self) -> int:
        return int(self.conn.execute("SELECT value FROM meta WHERE key = 'controls_version'").fetchone()[0])

    def load_controls(self) -> tuple[int, dict[str, dict[str, dict]]]:
        with self.transaction() as conn:
            version = int(conn.execute("SELECT value FROM meta WHERE key = 'controls_version'").fetchone()[0])
            rows = conn.execute("SELECT kind, name, spec FROM controls").fetchall()
        out: dict[str, dict[str, dict]] = {"fault": {}, "flag": {}, "shed": {}}
        for r in rows:
            out[r["kind"]][r["name"]] = json.loads(r["spec"])
        return version, out

    def get_control(self, kind: str, name: str) -> dict | None:
        row = self.conn.execute("SELECT spec FROM controls WHERE kind = ? AND name = ?", (kind, name)).fetchone()
        return json.loads(row[0]) if row else None

    def put_control(self, kind: str, name: str, spec: dict, now: float) -> dict | None:
        """Store a spec; returns the previous one. Bumps the version every worker polls."""
        with self.transaction() as conn:
            row = conn.execute("SELECT spec FROM controls WHERE kind = ? AND name = ?", (kind, name)).fetchone()
            conn.execute("INSERT INTO controls (kind, name, spec, updated_at) VALUES (?, ?, ?, ?) "
                         "ON CONFLICT (kind, name) DO UPDATE SET spec = excluded.spec, updated_at = excluded.updated_at",
                         (kind, name, json.dumps(spec, sort_keys=True), now))
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'controls_version'")
        return json.loads(row[0]) if row else None

    def delete_control(self, kind: str, name: str) -> dict | None:
        with self.transaction() as conn:
            row = conn.execute("SELECT spec FROM controls WHERE kind = ? AND name = ?", (kind, name)).fetchone()
            if row is None:
                return None
            conn.execute("DELETE FROM controls WHERE kind = ? AND name = ?", (kind, name))
            conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'controls_version'")
        return json.loads(row[0])

    # --- async transcode queue ---------------------------------------------------------------
    def enqueue_transcode(self, upload_id: str, now: float, traceparent: str | None) -> None:
        self.conn.execute("INSERT OR IGNORE INTO transcode_jobs (upload_id, state, enqueued_at, traceparent) "
                          "VALUES (?, 'queued', ?, ?)", (upload_id, now, traceparent))

    def claim_transcode(self, worker: str, now: float, stale_after_s: float = 30.0) -> dict | None:
        """Take the oldest queued (or stale running) job; None when there is none or another worker won."""
        stale = now - stale_after_s
        row = self.conn.execute(
            "SELECT upload_id, state, claimed_at FROM transcode_jobs WHERE state = 'queued' "
            "OR (state = 'running' AND claimed_at < ?) ORDER BY enqueued_at LIMIT 1", (stale,)).fetchone()
        if row is None:
            return None
        cur = self.conn.execute(
            "UPDATE transcode_jobs SET state = 'running', claimed_at = ?, claimed_by = ? "
            "WHERE upload_id = ? AND state = ? AND claimed_at IS ?", (now, worker, row[0], row[1], row[2]))
        if cur.rowcount != 1:
            return None
        job = self.conn.execute("SELECT * FROM transcode_jobs WHERE upload_id = ?", (row[0],)).fetchone()
        return dict(job)

    def claim_sync(self, upload_id: str, owner: str, now: float) -> bool:
        """The sync path's claim: ``uploading`` → ``transcoding`` and, in the same transaction, who
        holds it (a ``sync`` row), so a claim whose worker dies can be found (demo_service/claims.py)."""
        with self.transaction() as conn:
            cur = conn.execute("UPDATE uploads SET status = 'transcoding', completed_at = ? "
                               "WHERE upload_id = ? AND status = 'uploading'", (now, upload_id))
            if cur.rowcount != 1:
                return False
            conn.execute("INSERT OR REPLACE INTO transcode_jobs (upload_id, state, enqueued_at, claimed_at, claimed_by) "
                         "VALUES (?, 'sync', ?, ?, ?)", (upload_id, now, now, owner))
            return True

    def sync_claims(self, upload_id: str | None = None) -> list[dict]:
        """Sync claims still held (their publish has not returned)."""
        sql = "SELECT upload_id, claimed_at, claimed_by FROM transcode_jobs WHERE state = 'sync'"
        rows = (self.conn.execute(sql + " AND upload_id = ?", (upload_id,)) if upload_id
                else self.conn.execute(sql)).fetchall()
        return [dict(r) for r in rows]

    def finish_transcode(self, upload_id: str) -> None:
        self.conn.execute("UPDATE transcode_jobs SET state = 'done' WHERE upload_id = ?", (upload_id,))

    def queue_depth(self) -> int:
        return int(self.conn.execute("SELECT count(*) FROM transcode_jobs WHERE state = 'queued'").fetchone()[0])


class _Tx:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rollback on error) on an autocommit connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.conn.execute("COMMIT")
        else:
            self.conn.execute("ROLLBACK")


def init_app(app: Flask) -> None:
    app.extensions["obslab.store"] = Store(Path(app.config["DATA_DIR"]) / "state.db")


def get_store() -> Store:
    return current_app.extensions["obslab.store"]
