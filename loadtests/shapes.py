"""Load shapes as Locust ``LoadTestShape`` classes, one per profile in ``loadtests.profiles``.

A shape scales with Locust's common options: ``--users`` is the peak, ``--spawn-rate`` the ramp
speed, ``--run-time`` the length of the whole shape (phased: ``OBSLAB_LOAD_PHASES``). The locustfile
exposes the one ``OBSLAB_LOAD_SHAPE`` names.
"""

from __future__ import annotations

from locust import LoadTestShape

from loadtests.profiles import SHAPES, Profile, ShapeError, build_profile
from contract.brief import brief

__all__ = ["shape_class", "SteadyShape", "RampShape", "SpikeShape", "DiurnalShape", "PhasedShape"]


class _ProfileShape(LoadTestShape):
    """Adapts a Profile to Locust. The profile is built on the first tick, once options are parsed."""

    abstract = True
    use_common_options = True
    shape_name = "steady"

    def __init__(self) -> None:
        super().__init__()
        self._profile: Profile | None = None

    @property
    def profile(self) -> Profile:
        if self._profile is None:
            from loadtests import settings  # late: settings read the environment of this process

            options = self.runner.environment.parsed_options if self.runner else None
            self._profile = build_profile(
                self.shape_name,
                getattr(options, "num_users", None),
                getattr(options, "spawn_rate", None),
                getattr(options, "run_time", None),
                settings.from_env().phases,
            )
        return self._profile

    def tick(self) -> tuple[int, float] | None:
        return self.profile.tick(self.get_run_time())


class SteadyShape(_ProfileShape):
    """``--users`` users for the whole run."""

    shape_name = "steady"


class RampShape(_ProfileShape):
    """A linear ramp to ``--users`` over the first 75 % of the run."""

    shape_name = "ramp"


class SpikeShape(_ProfileShape):
    """A base load with one burst to ``--users``."""

    shape_name = "spike"


class DiurnalShape(_ProfileShape):
    """One compressed day: night trough, midday peak, night trough."""

    shape_name = "diurnal"


class PhasedShape(_ProfileShape):
    """Explicit phases from ``OBSLAB_LOAD_PHASES``."""

    shape_name = "phased"


_CLASSES = {cls.shape_name: cls for cls in (SteadyShape, RampShape, SpikeShape, DiurnalShape, PhasedShape)}


def shape_class(name: str) -> type[LoadTestShape]:
    """The LoadTestShape class of a shape name."""
    try:
        return _CLASSES[name]
    except KeyError:
        raise ShapeError(f"unknown load shape {brief(name)}; expected one of {', '.join(SHAPES)}") from None
