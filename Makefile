# Every target sets up .venv first. torch is pinned to the local CPU wheel and installed before
# the project, so pip never resolves torch from the registry (that pulls GBs of CUDA packages).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test test-fast demo run run-demo profile-demo lint bench bench-techniques bench-gui clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: lint
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q --durations=15

# The fast tier: no process started (e2e) and no Qt (gui); under 30 s on 2 cores.
test-fast: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q -m "not e2e and not gui" --durations=10

# The demo model trains itself on first use (a minute or two on 2 cores, then cached), then the
# baseline and the optimized preset run interleaved, 3 times each; reports land in reports/.
demo: $(STAMP)
	$(BIN)/wattlab compare --demo --out reports

run: $(STAMP)
	$(BIN)/wattlab gui

run-demo: $(STAMP)
	$(BIN)/wattlab run --model demo --mode infer --infer-batches 200 --out reports/run

profile-demo: $(STAMP)
	$(BIN)/wattlab profile --idle 2 --out reports/profile -- $(BIN)/python -m wattlab.resources.workloads.cpu_burn --seconds 5

# import-linter needs a folder tree named like the package: link core/ and app/ under wattlab/.
IMPORTGRAPH := build/importgraph
$(IMPORTGRAPH)/wattlab/__init__.py:
	mkdir -p $(IMPORTGRAPH)/wattlab
	ln -sfn ../../../core $(IMPORTGRAPH)/wattlab/core
	ln -sfn ../../../app $(IMPORTGRAPH)/wattlab/app
	touch $@

lint: $(STAMP) $(IMPORTGRAPH)/wattlab/__init__.py
	$(BIN)/ruff check api core app tests benchmarks
	PYTHONPATH=$(IMPORTGRAPH) $(BIN)/lint-imports
	PYTHONPATH=$(IMPORTGRAPH) $(BIN)/mypy $(IMPORTGRAPH)/wattlab/core

bench: $(STAMP)
	$(BIN)/python benchmarks/sampler_overhead.py

bench-techniques: $(STAMP)
	$(BIN)/python benchmarks/techniques.py

bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python benchmarks/gui.py

clean:
	rm -rf $(VENV) reports build dist *.egg-info
