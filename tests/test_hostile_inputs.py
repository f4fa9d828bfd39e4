"""Hostile inputs given to the CLI's readers (issue 17, items 4 and 5): YAML alias bombs, FIFOs,
undecodable bytes, a huge file without a newline, an output path that cannot be written, loose
modes of the admin token and the data directory.

Each runs the real ``obslab`` command in a subprocess with a timeout: before the fixes these hung
(the timeout fails the test and kills the command), printed a traceback, or read everything into memory.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from fuzz_support import ALIAS_BOMB, assert_one_line_cli_error

pytestmark = pytest.mark.chaos

OBSLAB = str(Path(sys.executable).parent / "obslab")
GOLDEN_EVENTS = Path(__file__).parent / "fixtures" / "golden.jsonl"
REPO = Path(__file__).resolve().parent.parent


def obslab(*args, timeout: float = 60, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run obslab; a command still running after ``timeout`` fails the test (it hung)."""
    try:
        return subprocess.run([OBSLAB, *map(str, args)], capture_output=True, text=True, timeout=timeout,
                              cwd=cwd, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        pytest.fail(f"obslab {' '.join(map(str, args))} still running after {timeout:g} s (killed)")


def bomb(field: str) -> str:
    """A YAML document whose ``field`` is the nine-level alias bomb of ALIAS_BOMB (9**9 strings)."""
    return ALIAS_BOMB.replace("version: ", f"{field}: ", 1)


# -- YAML alias bombs ---------------------------------------------------------------

# Each reader, given a bomb in a field whose value it puts into its error message.
BOMBED_OPTIONS = [
    pytest.param(("rules", "--slo", "{f}", "-o", "{tmp}/out"), "version", id="rules--slo"),
    pytest.param(("sli", GOLDEN_EVENTS, "--slo", "{f}"), "version", id="sli--slo"),
    pytest.param(("compare", GOLDEN_EVENTS, "--control", "release=stable", "--treatment", "release=canary",
                  "--config", "{f}"), "alpha", id="compare--config"),
    pytest.param(("rollout", "plan", "--plan", "{f}"), "stages: [{percent", id="rollout--plan"),
]


@pytest.mark.parametrize("argv, field", BOMBED_OPTIONS)
def test_a_yaml_alias_bomb_is_refused_at_once_with_file_and_line(tmp_path, argv, field):
    doc = bomb(field)
    if field.startswith("stages"):
        doc = doc.rstrip("\n") + "}]\n"
    f = tmp_path / "bomb.yaml"
    f.write_text(doc)
    assert len(doc) < 400
    r = obslab(*(str(a).format(f=f, tmp=tmp_path) for a in argv), timeout=60)
    assert_one_line_cli_error(r, f"{f}:1:", "anchors (&a) are not allowed")


def test_a_drill_file_with_an_alias_bomb_is_refused_at_once(tmp_path):
    f = tmp_path / "bomb.yaml"
    f.write_text(bomb("id"))
    code = ("import sys\nfrom toolkit.drills.schema import DrillSpecError, load_drill\n"
            "try:\n    load_drill(sys.argv[1])\nexcept DrillSpecError as e:\n    print(e)\n")
    try:
        r = subprocess.run([sys.executable, "-c", code, str(f)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("load_drill still running after 60 s on a 300-byte alias bomb")
    assert r.returncode == 0 and r.stdout.startswith(f"{f}:1: ") and "anchors (&a)" in r.stdout, (r.stdout, r.stderr)


def test_error_messages_show_a_huge_value_briefly(tmp_path):
    """Without aliases a value is at most the file's size, but a 200 kB value is still no error message."""
    f = tmp_path / "slo.yaml"
    f.write_text("version: [" + ", ".join(["lol"] * 50_000) + "]\n")
    r = obslab("rules", "--slo", f, "-o", tmp_path / "out")
    assert_one_line_cli_error(r, f"{f}: version: unsupported spec version [")
    assert len(r.stderr) < 400, len(r.stderr)


def test_a_spec_file_over_the_size_limit_is_refused_unparsed(tmp_path):
    from toolkit.slo.spec import SloSpecError, load_spec
    from toolkit.slo.yaml_file import MAX_YAML_BYTES

    f = tmp_path / "slo.yaml"
    f.write_text("version: 1\n" + "# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    with pytest.raises(SloSpecError, match=rf"^{f}: larger than {MAX_YAML_BYTES // 1024} KiB: not a spec file$"):
        load_spec(f)


# -- FIFOs and other non-regular files -------------------------------------------------------

def _client_record(tmp_path: Path) -> Path:
    from loadtests.record import ClientAttempt

    attempt = ClientAttempt(request_id="r1.0.0.1", run_id="r1", user="u0", trace_id="0" * 32,
                            started_at="2026-01-05T12:00:00+00:00", cohort={"region": "us-east"},
                            media_size_bytes=1000, chunk_count=1, outcome="published")
    p = tmp_path / "attempts.jsonl"
    p.write_text(attempt.to_line())
    return p


# Every option of the CLI that reads a file the user names (the FIFO is "{fifo}").
FILE_OPTIONS = [
    pytest.param(("rules", "--slo", "{fifo}", "-o", "{tmp}/out"), id="rules--slo"),
    pytest.param(("dashboards", "--slo", "{fifo}", "-o", "{tmp}/out"), id="dashboards--slo"),
    pytest.param(("sli", GOLDEN_EVENTS, "--slo", "{fifo}"), id="sli--slo"),
    pytest.param(("budget", GOLDEN_EVENTS, "--slo", "{fifo}"), id="budget--slo"),
    pytest.param(("compare", GOLDEN_EVENTS, "--control", "release=stable", "--treatment", "release=canary",
                  "--config", "{fifo}"), id="compare--config"),
    pytest.param(("rollout", "plan", "--plan", "{fifo}"), id="rollout-plan--plan"),
    pytest.param(("rollout", "evaluate", GOLDEN_EVENTS, "--log", "{fifo}"), id="rollout-evaluate--log"),
    pytest.param(("sli", "{fifo}"), id="sli-events"),
    pytest.param(("events", "validate", "{fifo}"), id="events-validate"),
    pytest.param(("events", "compact", "{fifo}", "-o", "{tmp}/out"), id="events-compact"),
    pytest.param(("breakdown", "{fifo}"), id="breakdown-events"),
    pytest.param(("reconcile", "--client", "{fifo}", "--events", GOLDEN_EVENTS), id="reconcile--client"),
    pytest.param(("reconcile", "--client", "{record}", "--events", "{fifo}"), id="reconcile--events"),
    pytest.param(("story", "{fifo}"), id="story"),
]


@pytest.mark.parametrize("argv", FILE_OPTIONS)
def test_a_fifo_is_refused_without_blocking(tmp_path, argv):
    fifo = tmp_path / "input.yaml"
    os.mkfifo(fifo)
    record = _client_record(tmp_path)
    r = obslab(*(str(a).format(fifo=fifo, tmp=tmp_path, record=record) for a in argv), timeout=60)
    assert_one_line_cli_error(r, f"{fifo}: not a regular file (a FIFO)")


def test_a_fifo_as_a_drill_file_is_refused(tmp_path):
    from toolkit.drills.schema import DrillSpecError, load_drill

    fifo = tmp_path / "drill.yaml"
    os.mkfifo(fifo)
    with pytest.raises(DrillSpecError, match=r"drill.yaml: not a regular file \(a FIFO\)"):
        load_drill(fifo)


# -- undecodable bytes ------------------------------------------------------------------------

def test_reconcile_client_with_undecodable_bytes_is_a_usage_error_not_a_mismatch(tmp_path):
    record = _client_record(tmp_path)
    record.write_bytes(record.read_bytes() + b"\xff\xfe not text\n")
    r = obslab("reconcile", "--client", record, "--events", GOLDEN_EVENTS)
    assert_one_line_cli_error(r, f"{record}:2: not valid UTF-8 (byte 0xff)")


def test_reconcile_events_with_undecodable_bytes_is_a_usage_error(tmp_path):
    record = _client_record(tmp_path)
    events = tmp_path / "events"
    events.mkdir()
    (events / "events.jsonl").write_bytes(GOLDEN_EVENTS.read_bytes()[:2000].rsplit(b"\n", 1)[0] + b"\n\xc3(\n")
    r = obslab("reconcile", "--client", record, "--events", events)
    assert_one_line_cli_error(r, f"{events / 'events.jsonl'}:", "not valid UTF-8 (byte 0xc3)")


# -- a huge file without a newline ----------------------------------------------------------

def _peak_rss_kib(*args: str) -> tuple[subprocess.CompletedProcess, int]:
    """Run obslab from a fresh wrapper process whose only child it is: the children's ru_maxrss is its peak."""
    code = ("import resource, subprocess, sys\n"
            "r = subprocess.run(sys.argv[1:], capture_output=True, text=True)\n"
            "sys.stdout.write(r.stdout)\nsys.stderr.write(r.stderr)\n"
            "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
            "sys.exit(r.returncode)\n")
    r = subprocess.run([sys.executable, "-c", code, OBSLAB, *args], capture_output=True, text=True, timeout=300)
    *stderr, peak = r.stderr.rstrip("\n").split("\n")
    r.stderr = "\n".join(stderr) + ("\n" if stderr else "")
    return r, int(peak)


def test_validate_reads_a_file_without_newline_in_bounded_memory_and_does_not_pass_it(tmp_path):
    from toolkit.events import MAX_LINE_BYTES

    size = 48 << 20
    huge = tmp_path / "huge.jsonl"
    with open(huge, "wb") as f:
        for _ in range(size >> 20):
            f.write(b"x" * (1 << 20))
    small = tmp_path / "small.jsonl"
    small.write_bytes(GOLDEN_EVENTS.read_bytes().split(b"\n", 1)[0] + b"\n")

    base, base_kib = _peak_rss_kib("events", "validate", str(small))
    r, peak_kib = _peak_rss_kib("events", "validate", str(huge))
    print(f"peak RSS of events validate: {base_kib / 1024:.0f} MiB on one line, "
          f"{peak_kib / 1024:.0f} MiB on {size >> 20} MiB without a newline")
    assert base.returncode == 0, base.stderr
    assert r.returncode == 1 and "Traceback" not in r.stderr, (r.returncode, r.stderr)
    assert f"{huge}:1: line longer than {MAX_LINE_BYTES >> 20} MiB ({size} bytes, no newline" in r.stdout, r.stdout
    assert "OK" not in r.stdout and "1 invalid" in r.stdout, r.stdout
    # The file is read in 1 MiB chunks: the whole run costs what a one-line file costs, give or take a
    # few chunks (before: the whole file, decoded, i.e. several times its size).
    assert peak_kib - base_kib < 16 * 1024, (base_kib, peak_kib)


def test_a_file_of_content_without_any_newline_is_not_a_valid_empty_log(tmp_path):
    junk = tmp_path / "events.jsonl"
    junk.write_text("this is not an event log")
    r = obslab("events", "validate", junk)
    assert r.returncode == 1, r.stdout
    assert f"{junk}:1: no newline in the whole file (24 bytes) and not JSON" in r.stdout, r.stdout
    assert "OK:" not in r.stdout


# -- benchmark output checked before the run --------------------------------------------------------

@pytest.mark.parametrize("argv, option", [
    pytest.param(("bench", "soak", "--minutes", "0.5", "--interval", "1", "--write", "{dir}"), "--write", id="soak"),
    pytest.param(("bench", "capacity", "--users", "1", "--step", "5s", "--output", "{dir}"), "--output",
                 id="capacity"),
    pytest.param(("bench", "sli", "--events", "1000", "--no-pandas-jsonl", "--write", "{dir}"), "--write", id="sli"),
])
def test_a_benchmark_refuses_an_unwritable_output_before_its_run(tmp_path, argv, option):
    r = obslab(*(a.format(dir=tmp_path) for a in argv), timeout=30, cwd=tmp_path)
    assert_one_line_cli_error(r, f"{option} {tmp_path}: a directory")


def test_bench_sli_write_empty_skips_writing(tmp_path):
    """``--write ''`` is documented as "skip": it used to arrive as '.', and the run ended in a traceback."""
    r = obslab("bench", "sli", "--events", "1000", "--no-pandas-jsonl", "--write", "", "--cache-dir",
               tmp_path / "cache", timeout=300, cwd=tmp_path)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    assert "wrote the" not in r.stdout and not (tmp_path / "docs").exists()


# -- admin token and data directory modes ------------------------------------------------------

def test_a_new_data_directory_is_owner_only_and_a_loose_token_file_is_tightened(tmp_path):
    from toolkit.lab.processes import ensure_admin_token

    data_dir = tmp_path / "data"
    token, path = ensure_admin_token(data_dir)
    assert stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    path.chmod(0o644)  # e.g. copied in, or written by an older obslab
    assert ensure_admin_token(data_dir)[0] == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600

    path.write_text("")  # empty: a new token is written, into the old file, which keeps its inode
    path.chmod(0o666)
    new, _ = ensure_admin_token(data_dir)
    assert new and new != token and stat.S_IMODE(path.stat().st_mode) == 0o600


def test_the_service_tightens_a_loose_token_file_it_reads(tmp_path):
    from demo_service.app import create_app

    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o755)
    (data_dir / "admin-token").write_text("s3cret\n")
    (data_dir / "admin-token").chmod(0o644)
    app = create_app({"DATA_DIR": str(data_dir), "ADMIN_TOKEN": None})
    assert app.config["ADMIN_TOKEN"] == "s3cret"
    assert stat.S_IMODE((data_dir / "admin-token").stat().st_mode) == 0o600

    fresh = tmp_path / "fresh"
    create_app({"DATA_DIR": str(fresh)})
    assert stat.S_IMODE(fresh.stat().st_mode) == 0o700


@pytest.mark.parametrize("name", ["OBSLAB_LOAD_RUN_ID", "OBSLAB_LOAD_MIX"])
def test_load_settings_errors_quote_a_huge_value_briefly(name):
    from loadtests.settings import SettingsError, from_env

    with pytest.raises((SettingsError, ValueError)) as e:
        from_env({name: "{" + "x" * 200_000})
    assert name in str(e.value) or "cohort" in str(e.value), str(e.value)
    assert len(str(e.value)) < 400, len(str(e.value))
