# Two commands on a fresh machine:
#   make demo   the Flask example under waitress + wsgi_covguard, its end-to-end tests
#               against the live server, the shutdown route, a report and htmlcov/
#   make test   lint, types, and every test on Python 3.11 and 3.13
# Each sets itself up: virtual environments, `pip install -e .[test]`.

PYTHON ?= python3
PY313 ?= $(shell pyenv root 2>/dev/null || echo $$HOME/.pyenv)/versions/3.13.0/bin/python3
VENV := .venv
VENV313 := .venv-3.13
PYTEST_ARGS ?= -n 2

.PHONY: demo test lint venv clean

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	$(VENV)/bin/python -m pip install -q -e '.[test]'
	touch $@

$(VENV313)/.installed: pyproject.toml
	@test -x "$(PY313)" || { echo "make: Python 3.13 not found at $(PY313); install it (pyenv install 3.13.0) or set PY313=/path/to/python3.13"; exit 2; }
	$(PY313) -m venv $(VENV313)
	$(VENV313)/bin/python -m pip install -q --upgrade pip
	$(VENV313)/bin/python -m pip install -q -e '.[test]'
	touch $@

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

test: lint $(VENV313)/.installed
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)
	$(VENV313)/bin/python -m pytest $(PYTEST_ARGS)

demo: $(VENV)/.installed
	rm -rf htmlcov .coverage .coverage.*
	COVERAGE_RCFILE=examples/flask/.coveragerc $(VENV)/bin/covguard run wsgi:application \
		--app-dir examples/flask --server waitress --html htmlcov \
		-- $(VENV)/bin/python -m pytest -p no:cacheprovider examples/flask/tests

clean:
	rm -rf $(VENV) $(VENV313) htmlcov .coverage .coverage.* *.egg-info
