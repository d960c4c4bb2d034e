# Two commands on a fresh machine:
#   make demo   the Flask example under waitress + wsgi_covguard, its browser tests (headless
#               Chromium) against the live server, the shutdown route, a report and htmlcov/
#               (make demo-bottle, -pyramid, -falcon, -django: the other examples; make
#               demo-fastapi, demo-django-asgi: ASGI, under uvicorn)
#   make test   lint, types, and every test on Python 3.11 (ctrace), 3.12 and 3.13 (sysmon)
#               (those marked core_independent on 3.11 alone); the tests of coverage.py's
#               private parts also on the oldest coverage.py allowed (make test-fast: lint,
#               types and the in-process tests, in seconds), and builds the documentation
#               site (make docs: into site/, strict)
# Each sets itself up: virtual environments, `pip install -e .[test]`, Debian's chromium.

PYTHON ?= python3
# pip byte-compiles at install (half of a fresh environment's 29 s): keep it, a CI that sets
# PYTHONDONTWRITEBYTECODE (this one does) would compile every import of every test's server.
PIP_INSTALL := -q
PYENV_ROOT ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)
PY312 ?= $(PYENV_ROOT)/versions/3.12.1/bin/python3
PY313 ?= $(PYENV_ROOT)/versions/3.13.0/bin/python3
VENV := .venv
VENV312 := .venv-3.12
VENV313 := .venv-3.13
# Two test processes per CPU: the tests mostly wait on servers, starting and stopping (one per
# CPU kept them 101% busy of 200%, measured); the suite passes so beside two busy loops too.
WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) * 2 )))
# loadgroup: tests marked xdist_group share one worker (and its module fixtures), the rest
# are dealt out as they come.
PYTEST_ARGS ?= -n $(WORKERS) --dist loadgroup
# The oldest coverage.py pyproject.toml allows (the newest is what pip picks for the others),
# and the tests of what wsgi_covguard takes from its private parts, run against it too.
COVERAGE_OLDEST := 7.17.0
VENV_OLDEST := .venv-coverage-$(COVERAGE_OLDEST)
COVERAGE_PART_TESTS := tests/test_covcompat.py tests/test_entry_point.py tests/test_units.py \
	tests/test_report_shortcuts.py tests/test_live_control.py tests/test_numbers.py \
	tests/test_sysmon_contexts.py \
	tests/test_pytest_plugin.py::test_contexts_asked_of_a_server_are_recorded_whatever_its_core_or_refused
CHROMIUM ?= /usr/bin/chromium

.PHONY: docs setup demo demo-flask demo-bottle demo-pyramid demo-falcon demo-django demo-fastapi demo-django-asgi test lint venv chromium screenshot bench stress soak clean test-coverage-oldest test-fast

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_INSTALL) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_INSTALL) -e '.[test]'
	touch $@

# One virtual environment per other Python of the matrix: .venv-3.12, .venv-3.13.
.venv-%/.installed: pyproject.toml
	@test -x "$(PY$(subst .,,$*))" || { echo "make: Python $* not found at $(PY$(subst .,,$*)); install it (pyenv install $*) or set PY$(subst .,,$*)=/path/to/python$*"; exit 2; }
	$(PY$(subst .,,$*)) -m venv .venv-$*
	.venv-$*/bin/python -m pip install $(PIP_INSTALL) --upgrade pip
	.venv-$*/bin/python -m pip install $(PIP_INSTALL) -e '.[test]'
	touch $@

$(VENV_OLDEST)/.installed: pyproject.toml
	@test -x "$(PY312)" || { echo "make: Python 3.12 not found at $(PY312); install it (pyenv install 3.12) or set PY312=/path/to/python3.12"; exit 2; }
	$(PY312) -m venv $(VENV_OLDEST)
	$(VENV_OLDEST)/bin/python -m pip install $(PIP_INSTALL) --upgrade pip
	$(VENV_OLDEST)/bin/python -m pip install $(PIP_INSTALL) -e '.[test]' 'coverage==$(COVERAGE_OLDEST)'
	touch $@

test-coverage-oldest: $(VENV_OLDEST)/.installed
	$(VENV_OLDEST)/bin/python -m pytest $(PYTEST_ARGS) $(COVERAGE_PART_TESTS)

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The browser tests drive Debian's Chromium (Playwright's own download cannot work here).
chromium:
	@if ! command -v chromium >/dev/null 2>&1 && [ ! -x "$(CHROMIUM)" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "make: installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else \
	    echo "make: Chromium is missing; run 'sudo apt-get install chromium' (or set CHROMIUM=/path/to/chromium)"; \
	    exit 2; \
	  fi; \
	fi

# Every environment the suite needs, made side by side: a fresh one's pip waits on the network
# most of its 60-95 s (a third of it on the CPU, measured), four in turn took some five minutes.
SETUP := chromium $(VENV)/.installed $(VENV312)/.installed $(VENV313)/.installed \
	$(VENV_OLDEST)/.installed
setup:
	@$(MAKE) --no-print-directory -j $(words $(SETUP)) $(SETUP)

# The suite in tiers (markers in pyproject.toml): every test on 3.11; on 3.12 and 3.13, all but
# those marked core_independent (the examples in Chromium, the plugin's wiring, packaging),
# whose subject is the same whatever Python and core measure.
# The package is byte-compiled first for each Python: where PYTHONDONTWRITEBYTECODE is set (as
# here), each of the suite's thousand server processes compiled it again (30-40 ms each).
COMPILE := -m compileall -q wsgi_covguard
test: setup lint docs
	$(VENV)/bin/python $(COMPILE) && $(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(VENV312)/bin/python $(COMPILE) && $(VENV312)/bin/python -m pytest $(PYTEST_ARGS) -m "not core_independent"
	$(VENV313)/bin/python $(COMPILE) && $(VENV313)/bin/python -m pytest $(PYTEST_ARGS) -m "not core_independent"
	$(VENV_OLDEST)/bin/python -m pytest $(PYTEST_ARGS) $(COVERAGE_PART_TESTS)

# The documentation site, into site/: strict (a broken link, a missing page or an anchor that
# does not resolve fails it); tests/test_docs.py builds it again and follows every link.
docs: $(VENV)/.installed
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --quiet

# Seconds: lint, types and the tests that start no server (marked in_process), on 3.11.
test-fast: lint
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS) -m in_process

demo: demo-flask

demo-flask demo-bottle demo-pyramid demo-falcon demo-django: demo-%: $(VENV)/.installed chromium
	rm -rf htmlcov .coverage .coverage.*
	COVERAGE_RCFILE=examples/$*/.coveragerc $(VENV)/bin/covguard run wsgi:application \
		--app-dir examples/$* --server waitress --html htmlcov \
		-- $(VENV)/bin/python -m pytest -p no:cacheprovider examples/$*/tests

# The ASGI examples, under uvicorn, measured by CovGuardASGI: FastAPI, and the Django project
# through its asgi.py (the same browser tests as through wsgi.py).
demo-fastapi: $(VENV)/.installed chromium
	rm -rf htmlcov .coverage .coverage.*
	COVERAGE_RCFILE=examples/fastapi/.coveragerc $(VENV)/bin/covguard run asgi:app \
		--app-dir examples/fastapi --server uvicorn --html htmlcov \
		-- $(VENV)/bin/python -m pytest -p no:cacheprovider examples/fastapi/tests

demo-django-asgi: $(VENV)/.installed chromium
	rm -rf htmlcov .coverage .coverage.*
	COVERAGE_RCFILE=examples/django/.coveragerc $(VENV)/bin/covguard run asgi:application \
		--app-dir examples/django --server uvicorn --html htmlcov \
		-- $(VENV)/bin/python -m pytest -p no:cacheprovider examples/django/tests

# Overhead, measured side by side (benchmarks/bench.py), and how reading the coverage grows with
# the code and the workers (benchmarks/scale.py), and how long choosing the affected tests takes
# (benchmarks/impact.py), and per-test contexts' CPU cost, sysmon against ctrace
# (benchmarks/contexts.py); prints tables, checks nothing.
bench: $(VENV)/.installed $(VENV313)/.installed
	@command -v wrk >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null; \
	  else echo "make: wrk is missing; run 'sudo apt-get install wrk'"; exit 2; fi; }
	$(VENV)/bin/python benchmarks/bench.py
	$(VENV)/bin/python benchmarks/scale.py
	$(VENV)/bin/python benchmarks/impact.py
	$(VENV)/bin/python benchmarks/contexts.py

# Races show only on a busy machine: every load-during-stop test ROUNDS times per server
# (waitress, werkzeug, cheroot, wsgiref, gunicorn, granian; uvicorn and granian serving ASGI)
# beside two busy loops (ours, by pid).
ROUNDS ?= 20
stress: $(VENV)/.installed
	@busy=""; for cpu in 1 2; do $(VENV)/bin/python -c 'while True: pass' & busy="$$busy $$!"; done; \
	COVGUARD_STOP_ROUNDS=$(ROUNDS) $(VENV)/bin/python -m pytest -p no:cacheprovider -q \
		-k under_load tests/test_reliability.py; status=$$?; kill $$busy; exit $$status

# Memory over a long run: the Flask example under waitress and the FastAPI example under
# uvicorn for SOAK_MINUTES, a dashboard polling every 2 s, a reset and a save every 10 s;
# prints each server's resident memory from the end of its warm-up on; checks nothing.
SOAK_MINUTES ?= 20
soak: $(VENV)/.installed
	$(VENV)/bin/python benchmarks/soak.py --minutes $(SOAK_MINUTES)

# Retake the pictures the README shows: docs/report-contexts.png and docs/dashboard.png.
screenshot: $(VENV)/.installed chromium
	COVGUARD_UPDATE_DOCS=1 $(VENV)/bin/python -m pytest -q tests/test_report_screenshot.py \
		tests/test_dashboard.py -k "html_report or dashboard_shows"

clean:
	rm -rf $(VENV) $(VENV312) $(VENV313) $(VENV_OLDEST) htmlcov site .coverage .coverage.* *.egg-info
