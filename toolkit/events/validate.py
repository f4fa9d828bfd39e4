"""Every line (JSONL) or row (Parquet) against the full JSON Schema
(``contract/schemas/event-v1.schema.json``): ``obslab events validate``."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Iterable, Iterator

from contract.events import event_schema
from toolkit.events import remote
from toolkit.events.duck import ALL_COLUMNS, PARQUET_ORDER
from toolkit.events.lines import JSON_WHITESPACE, MAX_LINE_BYTES, LongLine, iter_lines
from toolkit.events.model import MAX_PROBLEMS, EventsError, Problem, ValidationReport
from toolkit.events.sources import resolve_paths

__all__ = ["validate_files"]

def schema_validator():
    import jsonschema_rs

    return jsonschema_rs.validator_for(event_schema())


def error_text(err) -> str:
    where = "/".join(str(p) for p in err.instance_path)
    return f"{where}: {err.message}" if where else err.message


def _check_lines(path: str, validator) -> Iterator[tuple[int, str | None, str | None, bool]]:
    """Yield (line number, event name or None, problem or None, is_torn) for every non-blank line."""
    try:
        for lineno, raw in enumerate(iter_lines(path), start=1):
            if isinstance(raw, LongLine):  # not JSON parsed: a reader's memory is bounded per line
                end = "" if raw.ended else ", no newline before the end of the file"
                yield (lineno, None, f"line longer than {MAX_LINE_BYTES // (1 << 20)} MiB "
                                     f"({raw.size} bytes{end}): not read", False)
                continue
            text = raw.rstrip("\n")
            if not text.strip(JSON_WHITESPACE):  # str.strip() would also eat \x1c, \x85...: not blank to JSON
                continue
            # A cut last line is a writer that died mid-write, unless it is all there is: a file with
            # content and not one newline is no event log.
            torn = not raw.endswith("\n") and lineno > 1
            try:
                obj = json.loads(text)
            except (ValueError, RecursionError) as e:  # RecursionError: nested deeper than the parser's stack
                if torn:
                    what = "torn final line (no newline, not JSON): ignored"
                elif not raw.endswith("\n"):
                    what = f"no newline in the whole file ({len(raw.encode())} bytes) and not JSON: not an event log"
                else:
                    what = f"not valid JSON: {e}"
                yield lineno, None, what, torn
                continue
            try:
                err = next(iter(validator.iter_errors(obj)), None)
                problem = None if err is None else error_text(err)
            except ValueError as e:  # the validator refuses values nested past its recursion limit
                problem = f"cannot validate: {e}"
            name = obj.get("event") if isinstance(obj, dict) else None
            yield lineno, name if isinstance(name, str) else None, problem, False
    except (OSError, zlib.error) as e:
        raise EventsError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def validate_files(paths: Iterable[str | Path], *, stop_at_first: bool = False) -> ValidationReport:
    """Check every line (JSONL) or row (Parquet) against the full event schema (paths may be http(s) URLs)."""
    with remote.localized(paths) as (local, names):
        return remote.relabel_report(_validate_local(local, stop_at_first=stop_at_first), names)


def _validate_local(paths: list[str], *, stop_at_first: bool) -> ValidationReport:
    sources = resolve_paths(paths)
    validator = schema_validator()
    lines = valid = invalid = 0
    torn: list[Problem] = []
    problems: list[Problem] = []
    counts: dict[str, int] = {}
    stopped = False
    for s in sources:
        if stopped:
            break
        if s.format == "parquet":
            checked = _validate_parquet(s.path, validator, problems, counts)
            lines += checked[0]
            valid += checked[1]
            invalid += checked[0] - checked[1]
            stopped = stop_at_first and invalid > 0
            continue
        for lineno, name, problem, is_torn in _check_lines(s.path, validator):
            if is_torn:
                torn.append(Problem(s.path, lineno, problem or "torn final line"))
                continue
            lines += 1
            if problem is None:
                valid += 1
                counts[name] = counts.get(name, 0) + 1
            else:
                invalid += 1
                if len(problems) < MAX_PROBLEMS:
                    problems.append(Problem(s.path, lineno, problem))
                if stop_at_first:
                    stopped = True
                    break
    return ValidationReport(len(sources), lines, valid, invalid, tuple(torn), tuple(problems), counts, stopped)


def _validate_parquet(path: str, validator, problems: list[Problem], counts: dict[str, int]) -> tuple[int, int]:
    """Rows of a compacted Parquet file, rebuilt as JSON objects and checked like lines."""
    import pyarrow.parquet as pq

    from toolkit.events.synth import (
        event_dicts,  # same row → JSON object mapping as the writer
    )

    total = ok = 0
    table = pq.read_table(path)
    for batch in table.to_batches(50_000):
        import pyarrow as pa
        sub = pa.Table.from_batches([batch])
        missing = [c for c in ALL_COLUMNS if c not in sub.column_names]
        for c in missing:
            sub = sub.append_column(c, pa.nulls(sub.num_rows))
        for i, obj in enumerate(event_dicts(sub.select(list(PARQUET_ORDER)))):
            total += 1
            err = next(iter(validator.iter_errors(obj)), None)
            if err is None:
                ok += 1
                counts[obj["event"]] = counts.get(obj["event"], 0) + 1
            elif len(problems) < MAX_PROBLEMS:
                problems.append(Problem(path, None, f"row {total}: {error_text(err)}"))
    return total, ok
