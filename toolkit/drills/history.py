"""The faults of past drill runs, as ground truth for the lab's on-call figures (``toolkit.analysis.oncall``).

A drill's own fault is kept out of the service's audit events (``toolkit.drills.state``), so the event
log alone cannot say when it began; each run's ``truth.json`` can. Only runs that have ended (their
timeline has ``drill_finished`` or ``drill_stopped``) are read: the truth of a running drill is the
learner's question and never leaves the drill before its end.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.analysis.oncall import KnownFault
from toolkit.drills.state import RunDir

__all__ = ["drill_faults", "ENDED_KINDS"]

ENDED_KINDS = frozenset({"drill_finished", "drill_stopped"})


def drill_faults(drills_dir: Path | str) -> tuple[KnownFault, ...]:
    """The applied faults of every ended drill run under ``drills_dir`` (none when it does not exist)."""
    root = Path(drills_dir)
    if not root.is_dir():
        return ()
    out = []
    for path in sorted(p for p in root.iterdir() if p.is_dir()):
        run = RunDir(path)
        if not run.truth_file.is_file() or not run.run_file.is_file():
            continue
        try:
            if not ENDED_KINDS & {e.get("kind") for e in run.timeline()}:
                continue
            truth = run.read_truth()
            state = run.read_state()
        except (OSError, ValueError, TypeError):
            continue  # a run directory cut short by a crash: nothing known about its fault
        applied = truth.get("fault_applied_at")
        if not isinstance(applied, (int, float)):
            continue  # stopped before its fault began
        removed = truth.get("fault_removed_at")
        out.append(KnownFault(float(applied), float(removed) if isinstance(removed, (int, float)) else None,
                              f"drill {state.drill_id} (run {state.run_id}, speed ×{state.speed:g})", "drill",
                              truth.get("cause") if isinstance(truth.get("cause"), str) else None))
    return tuple(sorted(out, key=lambda f: f.start))
