# The obslab images (docker-compose.yml, docs/compose.md), two targets of one file:
#   service  the demo service (publish API, transcoder) and the Locust load generator:
#            the base dependencies only, no analysis stack
#   toolkit  the same plus the `toolkit` extra: the obslab CLI, the web dashboard and drills
# Dependencies are installed from pyproject.toml alone before any source is copied, so an edit
# to the source rebuilds only the last, small layer. The command lines are the ones
# toolkit/lab/processes.py builds for `obslab serve` and the tests (tests/test_compose.py checks).
# PYTHON_IMAGE: any Debian-based Python 3.11+ with venv (compose/debian-images.sh builds one
# from Debian packages where Docker Hub cannot be reached).
ARG PYTHON_IMAGE=python:3.11-slim

FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    VIRTUAL_ENV=/opt/obslab \
    PATH=/opt/obslab/bin:$PATH
WORKDIR /app
RUN python3 -m venv /opt/obslab \
    && useradd --system --uid 10001 --home-dir /data obslab \
    && mkdir -p /data/prometheus-multiproc \
    && chown -R obslab /data
COPY pyproject.toml ./
# The base dependencies, read from pyproject.toml (setuptools: the build backend, for --no-build-isolation).
RUN python -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' > requirements.txt \
    && pip install -r requirements.txt "setuptools>=77"

# Everything `pip install .` needs, in one place.
FROM ${PYTHON_IMAGE} AS source
WORKDIR /app
COPY pyproject.toml README.md slo.yaml ./
COPY contract ./contract
COPY demo_service ./demo_service
COPY toolkit ./toolkit
COPY loadtests ./loadtests

FROM base AS service
COPY --from=source /app /app
RUN pip install --no-deps --no-build-isolation . && rm -rf build *.egg-info
USER obslab
# DATA_DIR: SQLite state (shared by the API workers and the transcoder), events, traces.
VOLUME ["/data"]
EXPOSE 8000 8001 8089
# The publish API, as toolkit.lab.processes.api_command(host="0.0.0.0", port=8000, ...) builds it.
CMD ["python", "-m", "gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--no-control-socket", "--graceful-timeout", "5", "--timeout", "60", "--config", "python:demo_service.gunicorn_conf", "demo_service.app:create_app()"]

FROM base AS toolkit-deps
RUN python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; print("\n".join(p["optional-dependencies"]["toolkit"]))' > requirements-toolkit.txt \
    && pip install -r requirements-toolkit.txt

FROM toolkit-deps AS toolkit
COPY --from=source /app /app
# `obslab …` run in /app finds the lab's data volume as its default data dir (.obslab).
RUN pip install --no-deps --no-build-isolation . && rm -rf build *.egg-info && ln -s /data /app/.obslab
USER obslab
VOLUME ["/data"]
EXPOSE 8050
CMD ["obslab", "dashboard", "--host", "0.0.0.0", "--data-dir", "/data", "--api-url", "http://api:8000"]
