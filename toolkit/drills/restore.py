"""Take a drill's changes off the service: its fault, background faults and flags.

The scheduler calls ``restore_service`` first in its cleanup; ``obslab drill stop`` calls it again when
the run's timeline has no ``service_restored`` (a scheduler killed before its cleanup, or a service too
busy to answer it), so a drill's flag never outlives the drill. ``remove_fault`` is the one step that
removes the drill's main fault and records when: the scheduler's at the fault's end, and the cleanup's.
"""

from __future__ import annotations

import sys
import time

from toolkit.drills.lab import ControlClient, LabError, LabUnreachable, background_fault_name, fault_name
from toolkit.drills.schema import Drill
from toolkit.drills.mitigation import parse_action
from toolkit.drills.state import RunDir

__all__ = ["restore_service", "remove_fault"]


def _remove(remove, name: str, deadline: float) -> bool:
    """Call ``remove(name)`` until it succeeds or ``deadline`` (monotonic) passes; False, said on stderr, if not."""
    while True:
        try:
            remove(name)
            return True
        except LabError as e:
            if isinstance(e, LabUnreachable) or time.monotonic() >= deadline:
                print(f"cleanup: {e}", file=sys.stderr)
                return False
            time.sleep(0.5)


def remove_fault(client: ControlClient, run: RunDir, truth: dict, patience_s: float = 0.0) -> bool:
    """Remove the drill's main fault from the service, retrying until ``patience_s``, and record its removal once
    (``fault_removed_at`` in ``truth``, written to truth.json, and ``fault_removed`` on the timeline) if it was
    applied. False, with nothing recorded, when the service did not remove it: the caller tries again later."""
    if not _remove(client.delete_fault, fault_name(run.path.name), time.monotonic() + patience_s):
        return False
    if truth.get("fault_applied_at") and not truth.get("fault_removed_at"):
        truth["fault_removed_at"] = time.time()
        run.write_truth(truth)
        run.log("fault_removed")
    return True


def restore_service(client: ControlClient, drill: Drill, run: RunDir, patience_s: float = 20.0) -> None:
    """Remove what the drill set on the service (its fault, background faults, flags and the shedding its
    mitigation may have set), retrying each
    removal until ``patience_s``: a busy service that times out one DELETE must not keep a drill's flag set.
    Logs ``service_restored`` once all is gone; raises LabError naming what is left otherwise. Idempotent:
    ``obslab drill stop`` calls it again when a killed scheduler did not log it."""
    run_id = run.path.name
    deadline = time.monotonic() + patience_s
    left = [] if remove_fault(client, run, run.read_truth(), patience_s) else [f"fault {fault_name(run_id)}"]
    removals = [(f"fault {background_fault_name(run_id, i)}", client.delete_fault, background_fault_name(run_id, i))
                for i, _ in enumerate(drill.setup.background_faults)]
    flags = {*drill.setup.flags, *((drill.rollout.flag,) if drill.rollout is not None else ())}
    removals += [(f"flag {name}", client.delete_flag, name) for name in sorted(flags)]
    # A class the learner shed as the mitigation is let through again: the lab goes back as the drill found it.
    shed = sorted({a.shed[0] for a in map(parse_action, drill.mitigations.choices) if a.verb == "shed-load"}
                  if drill.mitigations is not None else set())
    removals += [(f"shedding of {name}", client.delete_shed, name) for name in shed]
    left += [what for what, remove, name in removals if not _remove(remove, name, deadline)]
    if left:
        raise LabError(f"could not remove the drill's {', '.join(left)} from {client.lab.url}")
    run.log("service_restored")
