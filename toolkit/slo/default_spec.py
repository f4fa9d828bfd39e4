"""Which SLO spec a command uses when none is given: ``./slo.yaml``, else the one the package ships.

The package carries ``default-slo.yaml`` (kept identical to the repository's ``slo.yaml`` by a test), so
an installed obslab runs its lab, rules and budgets from any directory.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_SPEC_FILE", "PACKAGED_SPEC", "resolve_spec_path"]

DEFAULT_SPEC_FILE = "slo.yaml"
PACKAGED_SPEC = Path(__file__).resolve().parent / "default-slo.yaml"


def resolve_spec_path(path: str | Path | None) -> tuple[Path, str]:
    """(the spec file to use, why it was chosen): ``path`` when given (it must then exist: the caller
    reports a missing one), else ``./slo.yaml`` when present, else the packaged default."""
    if path is not None and str(path) != "":
        return Path(path), "as given"
    local = Path(DEFAULT_SPEC_FILE)
    if local.is_file():
        return local, "./slo.yaml in the current directory"
    return PACKAGED_SPEC, "packaged default: no slo.yaml in the current directory"
