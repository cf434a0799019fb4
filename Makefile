# Two commands do all the set-up on a fresh machine (Python 3.10-3.12 with venv, Linux x86_64 or aarch64):
#   make demo   – installs exactly what CI tested (uv.lock, demo extra) into .venv and runs `inspection demo`
#   make test   – installs the locked dev extra (demo + analysis + test tools) into .venv and runs CI's test suite
# More:
#   make lock         – re-resolve uv.lock after changing pyproject.toml (newest versions its ranges allow)
#   make lock-check   – fail when pyproject.toml and uv.lock disagree (CI runs it)
#   make test-latest  – the whole suite in a fresh .venv-latest with the newest releases pyproject allows (no lock)
# uv (pinned below) resolves and installs; it lives in its own .tools venv so that syncing .venv never removes it.
PYTHON    ?= python3
VENV      ?= .venv
BIN       := $(VENV)/bin
UV_VERSION = 0.13.10
UV        := .tools/bin/uv
STAMP     := $(VENV)/.installed
# CI's flags: two workers, a test file's tests on one worker (their module fixtures: broker topics, browser)
PYTEST_FLAGS ?= -q -p no:cacheprovider -n 2 --dist loadfile
export UV_PYTHON_DOWNLOADS = never
export UV_PROJECT_ENVIRONMENT = $(VENV)

.PHONY: demo test test-latest install lock lock-check clean

$(UV):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install --quiet "uv==$(UV_VERSION)"

$(STAMP): pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --extra dev --python $(PYTHON) --quiet
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/inspection demo $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_FLAGS) $(ARGS)

lock: | $(UV)
	$(UV) lock --upgrade

lock-check: | $(UV)
	$(UV) lock --check

test-latest: | $(UV)
	rm -rf .venv-latest
	$(UV) venv --quiet --python $(PYTHON) .venv-latest
	VIRTUAL_ENV=.venv-latest $(UV) pip install --quiet --resolution highest --no-cache -e '.[dev]'
	VIRTUAL_ENV=.venv-latest $(UV) pip list --format freeze > .venv-latest/versions.txt
	.venv-latest/bin/python -m pytest $(PYTEST_FLAGS) $(ARGS)

clean:
	rm -rf $(VENV) .venv-latest .tools .pytest_cache .hypothesis
