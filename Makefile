# Two commands do everything on a fresh machine: `make demo` and `make test` (both set up first if needed).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-complete
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup test demo clean-demo

setup: $(STAMP)

# The stamp depends on the requirement files and setup.py: a ready machine skips this in seconds.
$(STAMP): requirements/stack.txt requirements/tfx.txt setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (the TFX 1.16 stack resolves only on CPython 3.11)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/stack.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python -r requirements/tfx.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

test: setup
	sh scripts/ensure_chromium.sh
	$(BIN)/pytest -q tests

demo: setup
	$(BIN)/mammo-tfx demo --out demo_out

clean-demo:
	rm -rf demo_out
