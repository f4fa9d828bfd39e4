"""Every README step works verbatim, in order, on the lab it starts.

Starts a real ``obslab lab`` (free ports, default data directory ``.obslab`` in a temp working directory
that holds a copy of ``slo.yaml``, as a checkout does), then runs the README's ``sh`` blocks line by line
through bash, in the order the README gives them. A line fails the test on a non-zero exit, a traceback
or empty output. The only rewrites: the default ports become the lab's free ports, and the drill answer's
placeholders (CAUSE, DIM=VALUE, NUMBER) become a real choice. Lines that build or start the lab
(``git clone``, ``make …``, ``cd``) are what this fixture does itself and are skipped.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from conftest import stop_lab
from toolkit.bench.lab import free_ports

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()
DEFAULT_PORTS = {"api": 8000, "transcoder": 8001, "web": 8050, "prometheus": 9090, "locust": 8089}
RUNS = ("obslab ", "curl ", "sleep ")
SKIPPED = ("git clone", "make ", "cd ")


def readme_steps() -> list[str]:
    """The runnable lines of the README's sh blocks, in order (comments stripped)."""
    steps = []
    for block in re.findall(r"```sh\n(.*?)```", README, flags=re.S):
        for line in block.splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith(SKIPPED):
                continue
            assert line.startswith(RUNS), f"README step {line!r}: the test does not know how to run it"
            steps.append(line)
    return steps


def _env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # the venv's `obslab` console script
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "PYTHONPATH": str(REPO),
            "COLUMNS": "120"}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("readme")
    shutil.copy(REPO / "slo.yaml", cwd / "slo.yaml")
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    argv = ["obslab", "lab", "--port", str(ports["api"]), "--port-transcoder", str(ports["transcoder"]),
            "--port-web", str(ports["web"]), "--port-prometheus", str(ports["prometheus"]),
            "--port-locust", str(ports["locust"])]
    log_path = cwd / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=cwd, env=_env(), stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"the lab exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no outcome within 120 s:\n{log_path.read_text()[-3000:]}"
            try:
                snap = requests.get(f"http://127.0.0.1:{ports['web']}/api/snapshot", timeout=5).json()
                if snap["success"]["total"] >= 10:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(1)
        yield cwd, ports, proc, log_path
    finally:
        stop_lab(proc)


def _on_lab(line: str, ports: dict[str, int]) -> str:
    for name, default in DEFAULT_PORTS.items():
        line = line.replace(f"127.0.0.1:{default}", f"127.0.0.1:{ports[name]}")
    return line


def _answer(line: str, drill_choices: str) -> str:
    """The README's answer placeholders, filled with the first cause choice `drill show` listed."""
    cause = re.search(r"cause, one of:\n\s+(\S+)", drill_choices).group(1)
    return line.replace("CAUSE", cause).replace("DIM=VALUE", "region=eu-west").replace("NUMBER", "10")


def test_readme_lists_the_steps_in_order():
    steps = readme_steps()
    first = lambda prefix: next(i for i, s in enumerate(steps) if s.startswith(prefix))  # noqa: E731
    assert first("obslab drill start") < first("obslab drill answer") < first("obslab drill stop") \
        < first("obslab drill report")
    # The canary is rolled out before it is compared.
    assert first("curl -sS -X PUT") < first("obslab compare") < first("obslab story compare.json")


def test_every_readme_step_works_on_the_lab_it_starts(lab):
    cwd, ports, proc, log_path = lab
    # The API's root, listed in the README's table, answers a page linking what it names.
    root = requests.get(f"http://127.0.0.1:{ports['api']}/", timeout=5)
    assert root.status_code == 200 and all(h in root.text for h in ("/openapi.json", "/metrics", "8050"))
    shown = ""
    for step in readme_steps():
        command = _on_lab(step, ports)
        if "drill answer" in command:
            command = _answer(command, shown)
        out = subprocess.run(["bash", "-c", command], cwd=cwd, env=_env(), capture_output=True, text=True,
                             timeout=300)
        said = (out.stdout + out.stderr).strip()
        context = f"README step {step!r} (ran {command!r}), exit {out.returncode}:\n{said[-3000:]}"
        assert proc.poll() is None, f"the lab exited during {context}\n{log_path.read_text()[-2000:]}"
        assert out.returncode == 0, context
        assert said or step.startswith("sleep "), f"README step {step!r} printed nothing"
        assert "Traceback" not in said, context
        if step.startswith("obslab drill show"):
            shown = out.stdout


def test_an_installed_obslab_runs_its_whole_lab_from_an_empty_directory(tmp_path):
    """`pip install` of the project (its files, not this checkout: --target, dependencies from this venv), then
    `obslab lab` in an empty directory: the packaged spec, locustfile, drills and static files are found."""
    target, empty = tmp_path / "site", tmp_path / "empty"
    empty.mkdir()
    # The Makefile's venv has uv and no pip when uv could be installed (as in CI); pip otherwise.
    uv = Path(sys.executable).parent / "uv"
    installer = ([str(uv), "pip", "install", "--python", sys.executable] if uv.exists()
                 else [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"])
    built = subprocess.run(installer + ["-q", "--no-deps", "--target", str(target), str(REPO)],
                           capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    env = {**os.environ, "PYTHONPATH": str(target)}
    ports = dict(zip(("api", "transcoder", "web", "prometheus", "locust"), free_ports(5)))
    argv = [sys.executable, "-c", "from toolkit.cli import main; main()", "lab", "--no-prometheus",
            "--port", str(ports["api"]), "--port-transcoder", str(ports["transcoder"]),
            "--port-web", str(ports["web"]), "--port-locust", str(ports["locust"])]
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, cwd=empty, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, f"the lab exited:\n{log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no outcome within 120 s:\n{log_path.read_text()[-3000:]}"
            try:
                snap = requests.get(f"http://127.0.0.1:{ports['web']}/api/snapshot", timeout=5).json()
                if snap["success"]["value"] is not None:
                    break
            except (requests.RequestException, ValueError, KeyError):
                pass
            time.sleep(1)
        banner = log_path.read_text()
        assert f"SLO spec       {target / 'toolkit' / 'slo' / 'default-slo.yaml'}" in banner, banner
        assert "packaged default" in banner
        page = requests.get(f"http://127.0.0.1:{ports['web']}/", timeout=5)
        assert page.status_code == 200 and "app.js" in page.text
        assert requests.get(f"http://127.0.0.1:{ports['web']}/static/app.js", timeout=5).status_code == 200
        drills = subprocess.run([sys.executable, "-c", "from toolkit.cli import main; main()", "drill", "list"],
                                cwd=empty, env=env, capture_output=True, text=True, timeout=60)
        assert drills.returncode == 0 and "regional-storage-outage" in drills.stdout, drills.stderr
        assert sorted(p.name for p in empty.iterdir()) == [".obslab"]  # everything it wrote is in its data dir
    finally:
        stop_lab(proc)
