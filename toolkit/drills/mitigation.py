"""Mitigation in incident drills, as pure logic: the actions a drill offers, which one is right, and how the
mitigation and the recovery the learner shows are scored. No I/O (``toolkit.drills.mitigate`` applies and records).

A drill declares::

    mitigations:
      choices: [rollback release, retry-policy none, retry-policy immediate:8]
      right: rollback release
      recovery: {tolerance: 0.01}

An action is ``VERB ARG``:

- ``rollback FLAG``: the flag back to its default for everyone (the service's own flag store), so traffic
  leaves the variant the drill rolled out, and with it any fault whose selector names that variant;
- ``retry-policy POLICY[:MAX_ATTEMPTS]``: the clients' chunk retry policy switched by remote config (the
  drill's load generator reads it before each new publish attempt);
- ``shed-load CLASS[:PERCENT]``: the service's shedding control (``/admin/shed/{CLASS}``) rejects a
  low-priority class of requests (``status`` polls, ``feed`` reads), all of them or ``PERCENT`` of them, early
  with 503 + Retry-After, before they take capacity at the database primary that publishes need.

A right mitigation needs no special case: it changes the lab, and the fault stops hurting because nothing
goes through it any more. The learner then shows the recovery with the SLI that showed the incident, the
publish success rate, over a window after the mitigation (``obslab sli --since …``); the report recomputes it
with the same engine over the same window.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable

from contract.events import FLAGS
from contract.faults import SHED_CLASSES
from loadtests.retry import RETRY_POLICIES
from toolkit.analysis.stats import exceedance_test
from toolkit.drills.score import Grade, graded, part_scores

__all__ = ["VERBS", "Action", "Mitigations", "parse_action", "parse_mitigations", "MITIGATION_POINTS",
           "MIN_RECOVERY_ATTEMPTS", "RECOVERY_ALPHA", "grade_mitigation", "RECOVERY_FIGURE",
           "MAX_RETRY_ATTEMPTS"]

VERBS = ("rollback", "retry-policy", "shed-load")
MAX_RETRY_ATTEMPTS = 20
# The figure a learner reports to show recovery: the publish-success SLI, as `obslab sli` names it.
RECOVERY_FIGURE = "publish_success_rate"
# Points of the mitigation score, apart from the diagnosis score (docs/drills.md).
MITIGATION_POINTS = {"action": 50.0, "recovery_figure": 25.0, "recovered": 25.0}
# Fewer attempts than this after the mitigation show nothing either way.
MIN_RECOVERY_ATTEMPTS = 30
# A recovery window still below the objective is judged by an exact one-sided test at this level: a window of a
# hundred attempts on a service at its objective fails two or more in a quarter of draws, which is no evidence.
RECOVERY_ALPHA = 0.05


class ActionError(ValueError):
    """An action text that is not ``VERB ARG`` of the vocabulary; the message names the bad part."""


@dataclass(frozen=True)
class Action:
    verb: str
    arg: str

    @property
    def text(self) -> str:
        return f"{self.verb} {self.arg}"

    @property
    def retry_policy(self) -> tuple[str, int | None]:
        """(policy, max attempts or None for the policy's default) of a ``retry-policy`` action."""
        policy, _, attempts = self.arg.partition(":")
        return policy, int(attempts) if attempts else None

    @property
    def shed(self) -> tuple[str, int]:
        """(request class, percent shed) of a ``shed-load`` action."""
        request_class, _, percent = self.arg.partition(":")
        return request_class, int(percent) if percent else 100


def parse_action(text: str) -> Action:
    """``rollback release`` / ``retry-policy backoff:8`` → Action; ActionError names what is wrong."""
    parts = str(text).split()
    if len(parts) != 2:
        raise ActionError(f"expected VERB ARG (e.g. 'rollback release', 'retry-policy backoff:8', "
                          f"'shed-load status'), got {text!r}")
    verb, arg = parts
    if verb not in VERBS:
        raise ActionError(f"unknown action {verb!r} (one of {', '.join(VERBS)})")
    if verb == "rollback":
        if arg not in FLAGS:
            raise ActionError(f"rollback: unknown flag {arg!r} (one of {', '.join(FLAGS)})")
    elif verb == "shed-load":
        request_class, sep, percent = arg.partition(":")
        if request_class not in SHED_CLASSES:
            raise ActionError(f"shed-load: unknown request class {request_class!r} "
                              f"(one of {', '.join(SHED_CLASSES)})")
        if sep and (not percent.isdigit() or not 1 <= int(percent) <= 100):
            raise ActionError(f"shed-load: the share shed after ':' must be a percent, an integer in [1, 100], "
                              f"got {percent!r}")
    else:
        policy, sep, attempts = arg.partition(":")
        if policy not in RETRY_POLICIES:
            raise ActionError(f"retry-policy: unknown policy {policy!r} (one of {', '.join(RETRY_POLICIES)})")
        if sep:
            if not attempts.isdigit() or not 1 <= int(attempts) <= MAX_RETRY_ATTEMPTS:
                raise ActionError(f"retry-policy: the attempt cap after ':' must be an integer in "
                                  f"[1, {MAX_RETRY_ATTEMPTS}], got {attempts!r}")
            if policy == "none" and int(attempts) != 1:
                raise ActionError("retry-policy: none means one try; give no attempt cap")
    return Action(verb, arg)


@dataclass(frozen=True)
class Mitigations:
    choices: tuple[str, ...]  # as the catalogue lists them: never shown in this order
    right: str
    tolerance: float = 0.01  # absolute, on the recovery figure (a ratio)

    def shuffled(self, seed: int | str) -> tuple[str, ...]:
        """The choices in the order a run shows them (by the run's seed, as the cause choices)."""
        rng = random.Random(f"obslab-drill-mitigations:{seed}")
        choices = sorted(self.choices)
        rng.shuffle(choices)
        return tuple(choices)


def parse_mitigations(raw, fail: Callable[[str, str], Exception], flags_set: tuple[str, ...]) -> Mitigations:
    """Validate a drill's ``mitigations`` block; ``fail(where, what)`` builds the error naming the field.
    A rollback must name a flag the drill's setup sets (rolling back anything else changes nothing)."""
    if not isinstance(raw, dict):
        raise fail("mitigations", f"expected a mapping, got {type(raw).__name__}")
    extra = sorted(set(map(str, raw)) - {"choices", "right", "recovery"})
    if extra:
        raise fail(f"mitigations.{extra[0]}", "unknown field (allowed: choices, recovery, right)")
    for key in ("choices", "right"):
        if key not in raw:
            raise fail(f"mitigations.{key}", "required field is missing")
    choices = raw["choices"]
    if not isinstance(choices, list) or len(choices) < 2:
        raise fail("mitigations.choices", "expected a list of at least two actions")
    parsed: list[str] = []
    for i, text in enumerate(choices):
        where = f"mitigations.choices[{i}]"
        try:
            action = parse_action(text)
        except ActionError as e:
            raise fail(where, str(e)) from None
        if action.verb == "rollback" and action.arg not in flags_set:
            raise fail(where, f"rollback {action.arg}: the drill's setup sets no flag {action.arg} "
                              f"(it sets: {', '.join(flags_set) or 'none'})")
        if action.text in parsed:
            raise fail(where, f"{action.text!r} is listed twice")
        parsed.append(action.text)
    right = " ".join(str(raw["right"]).split())
    if right not in parsed:
        raise fail("mitigations.right", f"must be one of the choices ({', '.join(parsed)}), got {raw['right']!r}")
    recovery = raw.get("recovery") or {}
    if not isinstance(recovery, dict) or set(recovery) - {"tolerance"}:
        raise fail("mitigations.recovery", "expected a mapping with only tolerance")
    tolerance = recovery.get("tolerance", 0.01)
    if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) or not 0 < tolerance <= 0.5:
        raise fail("mitigations.recovery.tolerance", f"must be a number in (0, 0.5], got {tolerance!r}")
    return Mitigations(tuple(parsed), right, float(tolerance))


def grade_mitigation(spec: Mitigations, action: str | None, when: str, claimed: float | None,
                     measured: float | None, recovery_good: int | None, recovery_total: int,
                     objective: float) -> Grade:
    """Score a mitigation, apart from the diagnosis (a ``Grade`` of ``MITIGATION_POINTS``' parts; no hint costs
    anything here, and ``answers`` is 1 once a mitigation was taken):

    - action: the right one, taken while the fault was in force (``when`` is ``during``; ``before`` or
      ``after`` the fault earns nothing: there was nothing to mitigate);
    - recovery_figure: the success rate the learner reported (``claimed``) against the engine's over the
      learner's own window (``measured``), within the drill's tolerance;
    - recovered: the engine's success rate over the learner's window cut at the fault's end
      (``recovery_good`` of ``recovery_total`` attempts with an outcome succeeded; None when the window begins
      after the fault's end) not significantly below the SLO's objective: no more failures than the objective's
      error budget explains (``exceedance_test``, one-sided exact binomial at ``RECOVERY_ALPHA``). Recovery the
      mitigation made, not the fault's own end.
      The learner may start the window a little after the mitigation, once the attempts already on the
      faulty path have ended, as one waits for a rollback to complete.
    """
    p = MITIGATION_POINTS
    if action is None:
        return graded(part_scores(p, {k: (0.0, "no mitigation taken") for k in p}), sum(p.values()), 0)
    if when != "during":
        act = 0.0, f"{action} was taken {when} the fault: nothing to mitigate then (the right mitigation: {spec.right})"
    elif action == spec.right:
        act = 1.0, f"{action}: the right mitigation"
    else:
        act = 0.0, f"{action}: does not remove the cause (the right mitigation: {spec.right})"
    if claimed is None:
        figure = 0.0, "no recovery figure reported"
    elif measured is None:
        figure = 0.0, f"reported {claimed:.4f}; your window holds no attempt with an outcome"
    else:
        ok = abs(claimed - measured) <= spec.tolerance
        figure = (1.0 if ok else 0.0, f"reported {claimed:.4f}, measured {measured:.4f} over your window "
                                      f"({'within' if ok else 'outside'} ±{spec.tolerance:g})")
    where = "in your window while the fault was still on"
    if when != "during":
        recovered = 0.0, f"the mitigation came {when} the fault"
    elif claimed is None:
        recovered = 0.0, "no recovery window reported"
    elif recovery_total < MIN_RECOVERY_ATTEMPTS or recovery_good is None:
        recovered = 0.0, (f"{recovery_total} attempts {where}: fewer than {MIN_RECOVERY_ATTEMPTS} show nothing "
                          "either way (a window after the fault's end shows its end, not yours)")
    else:
        failed = recovery_total - recovery_good
        test = exceedance_test(failed, recovery_total, 1.0 - objective, RECOVERY_ALPHA)
        shown = (f"{recovery_good / recovery_total:.4f} over {recovery_total} attempts {where} ({failed} failed; "
                 f"{test.method}, p = {test.p_value:.3g})")
        if test.breached:
            recovered = 0.0, f"{shown}: still below the objective {objective:g}, more failures than it allows"
        else:
            recovered = 1.0, (f"{shown}: at the objective {objective:g}, no more failures than its error budget "
                              "explains")
    scored = {"action": act, "recovery_figure": figure, "recovered": recovered}
    return graded(part_scores(p, scored), sum(p.values()), 1)
