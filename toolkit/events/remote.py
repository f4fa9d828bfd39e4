"""Event files past this machine: HTTP(S) URLs read, object-store URLs explained.

DuckDB reads ``http(s)://`` and ``s3://`` paths itself through its ``httpfs`` extension, but
extensions are downloaded on first use from extensions.duckdb.org, and the ``duckdb`` wheel
does not bundle httpfs. So the readers do not depend on it: an ``http(s)://`` URL (a file
server, an object store's HTTPS endpoint, a presigned S3/GCS URL) is streamed with ``requests``
into a private temporary directory, read there like a local file, and named by its URL in
every count and problem. ``s3://``, ``gs://``, ``az://`` and other object-store schemes need
httpfs (and credentials); they get an error that says so and what works instead.
"""

from __future__ import annotations

import re
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator
from urllib.parse import unquote, urlsplit

from toolkit.events.model import EventsError, EventSet, Problem, ValidationReport

__all__ = ["is_url", "localized", "relabel_events", "relabel_report", "TIMEOUT_S"]

_SCHEME = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# Connect, then between bytes: a stalled server is an error, not a hang.
TIMEOUT_S = (10.0, 60.0)
_CHUNK = 1 << 20


# pathlib collapses "//": a URL passed through Path (as the CLI's arguments are) arrives as "https:/host/...".
_COLLAPSED = re.compile(r"^(https?|s3|gs|gcs|az|abfss|r2|hf):/(?=[^/])", re.I)


def _as_given(path: str | Path) -> str:
    text = str(path)
    if isinstance(path, Path) and _COLLAPSED.match(text) and not path.exists():
        return _COLLAPSED.sub(lambda m: m.group(1) + "://", text, count=1)
    return text


def is_url(path: str | Path) -> bool:
    return bool(_SCHEME.match(_as_given(path)))


def _download(url: str, into: Path) -> Path:
    import requests

    name = Path(unquote(urlsplit(url).path)).name or "events.jsonl"
    if not re.search(r"\.(jsonl|ndjson|json|parquet)(\.\d+)?(\.gz)?$", name):
        name += ".jsonl"  # format by name as for files; a URL without one is taken as JSONL
    into.mkdir(parents=True)
    local = into / name
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT_S) as r:
            if r.status_code != 200:
                raise EventsError(f"{url}: HTTP {r.status_code} {r.reason}")
            # The body as sent (a .gz URL stays gzip for the reader; no transparent decoding).
            r.raw.decode_content = False
            with open(local, "wb") as f:
                while chunk := r.raw.read(_CHUNK):
                    f.write(chunk)
    except requests.RequestException as e:
        raise EventsError(f"{url}: cannot fetch: {e}") from None
    return local


@contextmanager
def localized(paths: Iterable[str | Path]) -> Iterator[tuple[list[str], dict[str, str]]]:
    """``paths`` with every http(s) URL downloaded to a temporary file (deleted on exit), and the
    map local file → URL. An ``EventsError`` raised inside names the URLs, not the temporary files."""
    paths = [_as_given(p) for p in paths]
    if not any(is_url(p) for p in paths):
        yield paths, {}
        return
    for p in paths:
        scheme = _SCHEME.match(p).group(1).lower() if is_url(p) else None
        if scheme not in (None, "http", "https"):
            raise EventsError(
                f"{p}: {scheme}:// paths need DuckDB's httpfs extension, which is not installed (DuckDB downloads "
                "it from extensions.duckdb.org). Use an https:// URL (a presigned URL works), or copy the "
                "files here first (e.g. aws s3 sync, gsutil rsync).")
    with tempfile.TemporaryDirectory(prefix="obslab-remote-") as tmp:
        local_paths, names = [], {}
        for n, p in enumerate(paths):
            if is_url(p):
                local = str(_download(p, Path(tmp) / str(n)))
                names[local] = p
                local_paths.append(local)
            else:
                local_paths.append(p)
        try:
            yield local_paths, names
        except EventsError as e:
            text = str(e)
            for local, url in names.items():
                text = text.replace(local, url)
            e.args = (text,)
            raise


def _problem(p: Problem, names: dict[str, str]) -> Problem:
    return replace(p, path=names.get(p.path, p.path))


def relabel_events(es: EventSet, names: dict[str, str]) -> EventSet:
    """The EventSet with downloaded files named by their URL."""
    if not names:
        return es
    es.sources = tuple(replace(s, path=names.get(s.path, s.path)) for s in es.sources)
    es.problems = tuple(_problem(p, names) for p in es.problems)
    es.torn = tuple(_problem(p, names) for p in es.torn)
    es.skipped_by_reason = {k: (n, _problem(p, names) if p else p) for k, (n, p) in es.skipped_by_reason.items()}
    return es


def relabel_report(report: ValidationReport, names: dict[str, str]) -> ValidationReport:
    if not names:
        return report
    return replace(report, problems=tuple(_problem(p, names) for p in report.problems),
                   torn=tuple(_problem(p, names) for p in report.torn))
