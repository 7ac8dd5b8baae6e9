# Two commands do everything on a fresh machine: `make demo` and `make test` (both set up first if needed).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-complete
# The stack takes about 3.5 GB in $(VENV) and pip needs room to unpack wheels (a fresh `make test` peaked at 4.5 GB).
SETUP_NEEDS_GB := 5
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: setup test test-fast demo clean-demo

setup: $(STAMP)

# The stamp depends on the requirement files and setup.py: a ready machine skips this in seconds.
$(STAMP): requirements/stack.txt requirements/tfx.txt setup.py
	@command -v $(PYTHON) >/dev/null || { echo "need $(PYTHON) (the TFX 1.16 stack resolves only on CPython 3.11)"; exit 1; }
	@free_kb=$$(df -Pk . | awk 'NR==2 {print $$4}'); \
	if ! test -x $(BIN)/python && [ "$$free_kb" -lt $$(( $(SETUP_NEEDS_GB) * 1024 * 1024 )) ]; then \
	  echo "setup needs about $(SETUP_NEEDS_GB) GB free on the disk of $$(pwd); $$((free_kb / 1024)) MB are free." \
	       "Free some space (old runs in demo_out/, $${TMPDIR:-/tmp}) and run it again."; exit 1; fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements/stack.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python -r requirements/tfx.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(BIN)/pip check
	touch $(STAMP)

# Two workers, a test file per work unit (module fixtures run once); tests/conftest.py starts the longest first.
TEST_WORKERS ?= 2

test: setup
	sh scripts/ensure_chromium.sh
	$(BIN)/pytest -q -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests

# The unit tests only, without the end-to-end ones (pytest.ini's e2e marker): for the edit-test loop.
test-fast: setup
	$(BIN)/pytest -q -m "not e2e" tests

demo: setup
	$(BIN)/mammo-tfx demo --out demo_out

clean-demo:
	rm -rf demo_out
