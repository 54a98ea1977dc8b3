# Every target sets up .venv itself: `make run` and `make test` work on a fresh clone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# The checkout comes first on the path, so the code that runs is always the working tree;
# the project is also installed normally, which is how twistd finds the plugin in production.
RUNENV := PYTHONPATH=$(CURDIR)

.PHONY: install run test lint bench clean

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

test: lint
	$(RUNENV) $(BIN)/python -m pytest -q

clean:
	rm -rf $(VENV) build *.egg-info
