"""``obslab slo export|import``: slo.yaml to and from Sloth, Pyrra and OpenSLO (toolkit.slo.portable)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from toolkit.cli.base import UserError, app, console, user_errors
from toolkit.slo.files import write_text
from toolkit.slo.portable import EXPORT_FORMATS, IMPORT_FORMATS, PortableError, export_spec, import_spec, \
    slo_yaml_text
from toolkit.slo.default_spec import resolve_spec_path
from toolkit.slo.spec import SloSpecError, load_spec, parse_spec

slo_app = typer.Typer(help="Portable SLOs: export slo.yaml to Sloth, Pyrra or OpenSLO; import from OpenSLO or Sloth.",
                      no_args_is_help=True)
app.add_typer(slo_app, name="slo")


def _format(value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise UserError(f"--format: expected one of {', '.join(allowed)}, got {value!r}")
    return value


def _write_or_print(text: str, out: Path | None, force: bool) -> None:
    if out is None:
        sys.stdout.write(text)
        return
    if out.exists() and not force:
        raise UserError(f"{out}: already exists (pass --force to overwrite)")
    write_text(out, text)
    console.print(f"wrote {out}", highlight=False)


@slo_app.command("export")
def export(
    fmt: str = typer.Option(..., "--format", help=f"Target format: {', '.join(EXPORT_FORMATS)}."),
    slo: Optional[Path] = typer.Option(None, "--slo", help="SLO spec file (default ./slo.yaml, else the packaged one)."),
    out: Path = typer.Option(None, "-o", "--out", help="File to write (default: standard output)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Export the ratio and latency SLOs; what the format cannot say is listed in its comments."""
    with user_errors(SloSpecError, PortableError, OSError):
        fmt = _format(fmt, EXPORT_FORMATS)
        text = export_spec(load_spec(resolve_spec_path(slo)[0]), fmt)
        _write_or_print(text, out, force)


@slo_app.command("import")
def import_(
    source: Path = typer.Argument(..., help="The OpenSLO or Sloth file to import."),
    fmt: str = typer.Option(..., "--format", help=f"Source format: {', '.join(IMPORT_FORMATS)}."),
    out: Path = typer.Option(None, "-o", "--out", help="slo.yaml to write (default: standard output)."),
    force: bool = typer.Option(False, "--force", help="Overwrite --out if it exists."),
) -> None:
    """Import SLOs into an slo.yaml, validated as `obslab rules` would load it."""
    with user_errors(SloSpecError, PortableError, OSError):
        fmt = _format(fmt, IMPORT_FORMATS)
        try:
            text = source.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{source}: not valid UTF-8 (byte {e.start})") from None
        except OSError as e:
            raise UserError(f"{source}: cannot read: {e.strerror or e}") from None
        document = import_spec(text, fmt, str(source))
        # Validate with the loader: an import that obslab cannot run is an error, named in the source's terms.
        parse_spec(document, source=f"{source} (imported)")
        _write_or_print(slo_yaml_text(document, str(source)), out, force)
