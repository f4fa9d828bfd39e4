# obslab: the two quickstart commands are `make lab` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# Debian packages the test suite drives for real: Prometheus + promtool, headless
# Chromium, docker-compose (to validate docker-compose.yml), wrk (benchmarks).
SYSTEM_TOOLS := promtool:prometheus chromium:chromium docker-compose:docker-compose wrk:wrk
PYTEST_ARGS ?=
# Extra options for `obslab lab`, e.g. make lab LAB_ARGS=--fresh
LAB_ARGS ?=

.PHONY: lab test lessons chaos compose-test venv dev-venv system-tools clean

lab: venv
	@echo "starting the lab (first figures on the dashboard about 10 s after its banner) ..."
	$(BIN)/obslab lab $(LAB_ARGS)

# Two passes: the in-process tests on both cores (pytest-xdist), then the ones that start real processes
# (marked slow) one at a time, since their timings and load figures need the machine to themselves.
# Exit code 5 (nothing selected, e.g. PYTEST_ARGS=-k for one pass only) is not a failure.
test: dev-venv system-tools
	@status=0; \
	$(BIN)/python -m pytest -m "not slow" -n 2 --durations=10 $(PYTEST_ARGS) --ignore=tests/test_compose_live.py \
	  || [ $$? = 5 ] || status=1; \
	$(BIN)/python -m pytest -m slow --durations=25 $(PYTEST_ARGS) --ignore=tests/test_compose_live.py \
	  || [ $$? = 5 ] || status=1; \
	exit $$status
	@$(MAKE) --no-print-directory compose-test

# Every catalogue drill at its default speed (1) over two seeds, four at a time (tests/test_drill_lessons.py):
# about 85 minutes of real lab time, so `make test` runs the same checks at --speed 10 instead. The measured
# table (a spoiler list: key figures with their cohorts) is written to LESSON_TABLE.
LESSON_SEEDS ?= 20261130,20261201
LESSON_TABLE ?= lessons-speed-1.md
lessons: dev-venv
	OBSLAB_DRILL_LESSON_SPEED=1 OBSLAB_DRILL_LESSON_SEEDS=$(LESSON_SEEDS) OBSLAB_DRILL_LESSON_TABLE=$(LESSON_TABLE) \
	  $(BIN)/python -m pytest tests/test_drill_lessons.py --durations=5 $(PYTEST_ARGS)

# The compose lab against a real Docker engine (tests/test_compose_live.py, docs/compose.md).
# Root with apt: installs the engine, mmdebstrap and docker-compose from Debian when missing.
COMPOSE_TOOLS := dockerd:docker.io mmdebstrap:mmdebstrap docker-compose:docker-compose
compose-test: dev-venv
	@if [ "$$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then \
	  echo "compose-test skipped: it needs root and apt-get (installs docker.io, starts dockerd)"; exit 0; fi; \
	missing=""; for pair in $(COMPOSE_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing for compose-test:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi; \
	$(BIN)/python -m pytest tests/test_compose_live.py -s -p no:cacheprovider

# The fault-injection tests alone (full disk, short writes, SIGKILLs; results in docs/reliability.md).
# `make test` runs them too. The full-disk ones mount a tmpfs: as root, else they skip saying why.
chaos: dev-venv
	$(BIN)/python -m pytest -m chaos $(PYTEST_ARGS)

venv: $(VENV)/.installed
dev-venv: $(VENV)/.installed-dev

# uv (from PyPI, into the venv) installs the dependencies in seconds instead of minutes; plain pip
# is the fallback when uv cannot be installed (no wheel for this platform, an offline mirror).
$(VENV)/bin/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "obslab needs Python 3.11+; set PYTHON=python3.11" >&2; exit 1; }
	@echo "creating the virtualenv $(VENV) ..."
	$(PYTHON) -m venv --without-pip $(VENV)
	@echo "installing uv, a fast installer, into $(VENV) (a few seconds) ..."
	@# The system's pip installs uv into the venv (bootstrapping pip into it costs ~5-15 s); without a
	@# system pip, the venv gets its own first. Without uv, everything below uses the venv's pip.
	@$(PYTHON) -m pip --python $(BIN)/python install -q --disable-pip-version-check uv 2>/dev/null \
	  || { $(BIN)/python -m ensurepip >/dev/null && $(BIN)/python -m pip install -q --disable-pip-version-check uv; } \
	  || echo "uv could not be installed: using pip (slower)"

# pip_install: uv when the venv has it, else pip (progress shown either way: no -q on the long step).
# uv does not read pip's configuration (pip.conf index mirrors, find-links): when it fails, pip tries.
pip_install = if [ -x $(BIN)/uv ] && $(BIN)/uv pip install --python $(BIN)/python $(1); then :; \
	else { [ ! -x $(BIN)/uv ] || echo "uv failed; installing with pip instead (slower) ..."; } && \
	{ $(BIN)/python -m pip --version >/dev/null 2>&1 || $(BIN)/python -m ensurepip >/dev/null; } && \
	$(BIN)/python -m pip install --disable-pip-version-check $(1); fi

$(VENV)/.installed: pyproject.toml $(VENV)/bin/python
	@echo "installing obslab and its dependencies into $(VENV): about 20-40 s with uv, 2-3 min with pip ..."
	@$(call pip_install,-e '.[toolkit]')
	@touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/bin/python
	@echo "installing obslab with its test dependencies into $(VENV) ..."
	@$(call pip_install,-e '.[dev]')
	@touch $@ $(VENV)/.installed

system-tools:
	@missing=""; for pair in $(SYSTEM_TOOLS); do \
	  command -v $${pair%%:*} >/dev/null 2>&1 || missing="$$missing $${pair#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system tools:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else \
	    echo "missing system tools:$$missing -- run: sudo apt-get install$$missing" >&2; exit 1; \
	  fi; \
	fi

clean:
	rm -rf $(VENV) .obslab build *.egg-info
