"""Stored folds: the per-attempt fold of a compacted archive, kept beside it so reports skip the raw scan.

``obslab events compact`` writes events as Parquet (``OUT/day=YYYY-MM-DD/events-<run>-N.parquet``)
and, for each run, the fold of exactly those files: one partial row per (kind, request_id), in
``OUT/_fold/fold-<run>.parquet``, committed by ``OUT/_fold/fold-<run>.json`` (written last)::

    {"format": "obslab-fold", "version": 1, "fold_key": "<hash of the fold's SQL>",
     "files": {"day=2026-01-05/events-<run>-0.parquet": [size, mtime_ns], ...},
     "events": 5000000, "max_ts": "2026-01-05T18:59:59.999000"}

A reader uses a stored fold instead of scanning its files only when every file it covers is
among the inputs, unchanged (same size and modification time), the fold was made by the same
fold definition (``fold_key``), and no ``until`` cut-off falls before its newest event.
Anything else — a file added, rewritten or left out, a damaged manifest — falls back to the
raw scan, so a stored fold changes how fast a report comes, never what it says.

Folds of disjoint event sets merge (see ``toolkit.events.fold.MERGE_SQL``), so several runs
into one directory, or an archive plus a live JSONL file, still read in one pass.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["FOLD_DIR", "StoredFold", "is_fold_path", "fingerprint", "write_manifest", "usable_folds"]

FOLD_DIR = "_fold"
FORMAT = "obslab-fold"
VERSION = 1


@dataclass(frozen=True)
class StoredFold:
    manifest: str
    parquet: str
    files: tuple[str, ...]  # the event files it covers (paths as the reader resolved them)
    events: int
    max_ts: datetime | None


def is_fold_path(path: str | Path) -> bool:
    """True for files inside a stored-fold directory (they hold folds, not events)."""
    return Path(path).parent.name == FOLD_DIR


def fingerprint(path: str | Path) -> list[int]:
    """What must not change for a stored fold to stay valid: size and modification time (ns)."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def write_manifest(out_dir: str | Path, run_id: str, files: Iterable[str | Path], fold_key: str, events: int,
                   max_ts: datetime | None) -> Path:
    """Commit a run's fold: the manifest is written last, atomically, after the fold's Parquet file."""
    root = Path(out_dir)
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "fold_key": fold_key,
        "files": {Path(f).relative_to(root).as_posix(): fingerprint(f) for f in sorted(map(str, files))},
        "events": events,
        "max_ts": max_ts.isoformat() if max_ts else None,
    }
    path = root / FOLD_DIR / f"fold-{run_id}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def _archive_roots(parquet_paths: Iterable[str]) -> set[Path]:
    """Directories that may hold a ``_fold/``: the parent of each ``day=`` partition, and each file's own."""
    roots = set()
    for p in parquet_paths:
        parent = Path(p).parent
        roots.add(parent)
        if parent.name.startswith("day="):
            roots.add(parent.parent)
    return roots


def _read_manifest(path: Path) -> Mapping | None:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or doc.get("version") != VERSION:
        return None
    if not isinstance(doc.get("files"), dict) or not doc["files"] or not isinstance(doc.get("events"), int):
        return None
    return doc


def usable_folds(parquet_paths: Iterable[str], fold_key: str, until: datetime | None
                 ) -> tuple[list[StoredFold], set[str]]:
    """Stored folds that can stand in for some of ``parquet_paths``, and the paths they cover."""
    paths = list(parquet_paths)
    by_real = {os.path.realpath(p): p for p in paths}
    folds: list[StoredFold] = []
    covered: set[str] = set()
    for root in sorted(_archive_roots(paths)):
        fold_dir = root / FOLD_DIR
        if not fold_dir.is_dir():
            continue
        for manifest_path in sorted(fold_dir.glob("fold-*.json")):
            doc = _read_manifest(manifest_path)
            parquet = manifest_path.with_suffix(".parquet")
            if doc is None or doc.get("fold_key") != fold_key or not parquet.is_file():
                continue
            try:
                max_ts = datetime.fromisoformat(doc["max_ts"]) if doc.get("max_ts") else None
            except (TypeError, ValueError):
                continue
            if until is not None and max_ts is not None and max_ts > until:
                continue  # the cut-off falls inside this fold: only the raw events can be cut
            files = []
            for rel, want in doc["files"].items():
                real = os.path.realpath(root / rel)
                given = by_real.get(real)
                try:
                    ok = given is not None and given not in covered and fingerprint(real) == want
                except OSError:
                    ok = False
                if not ok:
                    break
                files.append(given)
            else:
                folds.append(StoredFold(str(manifest_path), str(parquet), tuple(files), doc["events"], max_ts))
                covered.update(files)
    return folds, covered
