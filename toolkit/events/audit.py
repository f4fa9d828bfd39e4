"""The control plane's audit events (``fault_changed``, ``flag_changed``) of an event set, one row each.

The per-request fold (``toolkit.events.fold``) only counts audit events; the on-call figures
(``toolkit.analysis.oncall``) need each one: when a flag or a fault changed, who changed it, and
from what to what (``change = {"action", "name", "old", "new"}``, docs/events.md). They are read
from the same sources as the fold, through the same structural check and the same ``until`` cut,
so a line the SLIs skip is skipped here too. Lines repeating an audit event (same ts, event,
actor and change) count once, as duplicates do everywhere else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from contract.events import AUDIT_EVENTS
from toolkit.events.check import reason_expr, scan_sql
from toolkit.events.duck import ALL_COLUMNS, SLI_COLUMNS, sql_list
from toolkit.events.model import EventSet

__all__ = ["AuditEvent", "read_audit_events"]

_COLUMNS = {**SLI_COLUMNS, "actor": ALL_COLUMNS["actor"], "change": ALL_COLUMNS["change"]}


@dataclass(frozen=True)
class AuditEvent:
    t: float  # Unix seconds
    event: str  # fault_changed | flag_changed
    actor: str | None
    action: str | None  # put | delete (as the service writes it); None when the change is not an object
    name: str | None  # the fault's or flag's name
    old: Any  # the stored spec before (None: none / the default)
    new: Any  # the stored spec after (None: deleted)


def read_audit_events(events: EventSet) -> tuple[AuditEvent, ...]:
    """Every usable audit event of ``events`` (ts <= its ``until``), in time order."""
    if not events.sources:
        return ()
    scan = scan_sql(events.con, events.sources, _COLUMNS)
    cut = "" if events.until is None else f"AND ts <= TIMESTAMP '{events.until.isoformat(sep=' ')}'"
    rows = events.con.execute(
        f"SELECT DISTINCT epoch_us(ts), event::VARCHAR, actor, change::VARCHAR FROM ({scan}) "
        f"WHERE {reason_expr()} = 0 AND event::VARCHAR IN ({sql_list(AUDIT_EVENTS)}) {cut} "
        "ORDER BY 1, 2, 4").fetchall()
    out = []
    for t_us, event, actor, change_text in rows:
        change = _json(change_text)
        fields = change if isinstance(change, dict) else {}
        out.append(AuditEvent(t_us / 1e6, event, actor, _str(fields.get("action")), _str(fields.get("name")),
                              fields.get("old"), fields.get("new")))
    return tuple(out)


def _json(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:
        return None


def _str(v: Any) -> str | None:
    return v if isinstance(v, str) else None

