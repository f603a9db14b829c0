# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PROTO := src/tezzeret/leyline/proto/leyline.proto

.PHONY: run test system-deps proto bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# The CPU build of torch 2.13.0 is on disk on our machines; any other version downloads gigabytes.
	$(BIN)/python -m pip install -q torch==2.13.0
	# The Ray extra too: the executor tests run a real local Ray cluster.
	$(BIN)/python -m pip install -q -e '.[test,ray]'
	touch $(STAMP)

# System packages the tests and the sandbox use, installed when running as root: redis-server and
# bubblewrap for the forge, prometheus (with promtool) for the dashboard and alert tests, chromium
# for the status page's browser test.
SYSTEM_PACKAGES := redis-server bubblewrap prometheus chromium
system-deps:
	@if command -v redis-server >/dev/null && command -v bwrap >/dev/null && command -v prometheus >/dev/null \
		&& command -v promtool >/dev/null && command -v chromium >/dev/null; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $(SYSTEM_PACKAGES) >/dev/null; \
	else \
		echo "note: install $(SYSTEM_PACKAGES) for the full test suite"; \
	fi

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -Isrc/tezzeret/leyline/proto \
		--python_out=src/tezzeret/leyline --pyi_out=src/tezzeret/leyline $(PROTO)

run: $(STAMP) system-deps
	$(BIN)/tezzeret forge

# Pyflakes' rules only (undefined names, unused imports and variables, syntax): mistakes, not style.
# mypy checks src/ as configured in pyproject.toml ([tool.mypy]).
test: $(STAMP) system-deps
	$(BIN)/ruff check --quiet --no-cache --select F,E9 src tests bench
	$(BIN)/mypy
	$(BIN)/python -m pytest -q -n auto --dist loadfile

bench: $(STAMP)
	for b in bench/*.py; do $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
