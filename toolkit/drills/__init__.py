"""Scripted incident drills: a catalogue of drills as data, a runner that injects
the fault into a running lab, a grader, a report writer and an unattended solver.

Modules: ``schema`` (YAML → frozen dataclasses), ``causes`` (the cause taxonomy
learners choose from), ``lab`` (finding a running lab, its control API),
``state`` (a drill run's files), ``scheduler`` (the detached process that applies
and removes the fault), ``runner`` (start/status/hint/answer/stop), ``grader``
(pure scoring), ``measure`` (impact from events), ``report`` (markdown + PNGs),
``auto`` (answers a drill with the toolkit's own analysis).
"""
