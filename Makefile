# Every target sets up .venv itself: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The checkout comes first on the path, so the code that runs is always the working tree;
# the project is also installed normally, which is how twistd finds the plugin in production.
RUNENV := PYTHONPATH=$(CURDIR)

.PHONY: install run test lint bench bench-smoke bench-peers soak clean test-deps

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q '.[test]'
	touch $@

install: $(STAMP)

run: $(STAMP)
	$(RUNENV) $(BIN)/twistd -n --pidfile= litegate --config config.example.yaml

lint: $(STAMP)
	$(BIN)/ruff check gatewaylib tests twisted bench
	$(BIN)/mypy

# Real components the tests use: Debian's prometheus (server + promtool), and nginx and wrk
# for the benchmark smoke test. Installed when
# missing and we may (root with apt-get); otherwise those tests skip and say why.
test-deps:
	@if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null || ! command -v wrk >/dev/null || ! test -x /usr/sbin/nginx; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's prometheus package for the metrics tests"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus nginx-light wrk) >/dev/null \
	      || echo "could not install prometheus: its tests will be skipped"; \
	  else echo "prometheus not installed and cannot install it: its tests will be skipped"; fi; \
	fi

test: lint test-deps
	$(RUNENV) $(BIN)/python -m pytest -q -rs

# Benchmarks print figures (bench/run.py); LiteLLM joins when bench-peers was run once.
bench: $(STAMP)
	$(RUNENV) $(BIN)/python bench/run.py

bench-smoke: $(STAMP)
	$(RUNENV) $(BIN)/python bench/run.py --smoke

# 50,000 mixed requests with faults and aborts: leaks, counts, memory growth (bench/soak.py).
soak: $(STAMP)
	$(RUNENV) $(BIN)/python bench/soak.py

bench-peers:
	test -x bench/.venv-peers/bin/python || $(PYTHON) -m venv bench/.venv-peers
	bench/.venv-peers/bin/python -m pip install -q -r bench/requirements-peers.txt

clean:
	rm -rf $(VENV) build *.egg-info
