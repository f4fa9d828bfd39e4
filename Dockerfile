# The obslab image: the demo service (publish API, transcoder) and the Locust load generator.
# One image, several commands (docker-compose.yml); the command lines are the ones
# toolkit/processes.py builds for `obslab serve` and the tests (tests/test_compose.py checks).
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md slo.yaml ./
COPY demo_service ./demo_service
COPY toolkit ./toolkit
COPY loadtests ./loadtests
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /data obslab \
    && mkdir -p /data/prometheus-multiproc \
    && chown -R obslab /data

USER obslab
# DATA_DIR: SQLite state (shared by the API workers and the transcoder), events, traces.
VOLUME ["/data"]
EXPOSE 8000 8001 8089

# The publish API, as toolkit.processes.api_command(host="0.0.0.0", port=8000, ...) builds it.
CMD ["python", "-m", "gunicorn", "--bind", "0.0.0.0:8000", "--workers", "2", "--worker-class", "gthread", "--threads", "4", "--no-control-socket", "--graceful-timeout", "5", "--timeout", "60", "--config", "python:demo_service.gunicorn_conf", "demo_service.app:create_app()"]
