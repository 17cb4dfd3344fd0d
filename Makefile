# The two commands of the quick start, `make demo` and `make test`, install what they need.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV ?= .venv
BIN := $(VENV)/bin
# tf-keras must match TensorFlow's minor version: pin both to the same minor.
TF_PINS ?= "tensorflow==2.21.*" "tf-keras==2.21.*"
PYTEST_WORKERS ?= 2

.PHONY: install demo test bench sample-models lint clean port-demo

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet $(TF_PINS) -e ".[all,dev]"
	touch $@

demo: install
	$(BIN)/lstm-parity check sample_models/tutorial.keras sample_models/tutorial.input.npy
	$(BIN)/lstm-parity check sample_models/tutorial_keras2.h5 sample_models/tutorial_keras2.input.npy

# Lint first, so a regression in style or types fails the suite (and CI) before any test runs.
# pytest exits 5 when it collects no test: for this suite that means breakage, so fail loudly.
test: lint
	@$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -q; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

# Speed and memory against Keras, measured in the same run (not a test: nothing here is timed in CI).
# OpenBLAS tuning variables some machines set would skew the matmul rate: unset for this command only.
bench: install
	env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE $(BIN)/python benchmarks/bench.py

# The porting loop on the sample model: its weights as a C header, the hand-written C port in
# examples/c_port compiled against it and gated by check --expected/--expected-trace, then the same
# port with its input and forget gates swapped, which must fail and be named.
port-demo: install
	$(MAKE) -C examples/c_port demo LSTM_PARITY=$(abspath $(BIN))/lstm-parity BUILD=$(abspath build/c_port)

sample-models: install
	$(BIN)/python sample_models/make_sample_models.py

# ruff (rules and line length in pyproject.toml) over everything Python; mypy over the package.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
