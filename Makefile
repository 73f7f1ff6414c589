# Every target sets up .venv first. torch is pinned to the local CPU wheel and installed before
# the project, so pip never resolves torch from the registry (that pulls GBs of CUDA packages).
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_PIN ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: setup test demo run run-demo profile-demo lint bench bench-techniques bench-gui clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_PIN)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python -m pytest -q

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

lint: $(STAMP)
	$(BIN)/ruff check core app tests benchmarks

bench: $(STAMP)
	$(BIN)/python benchmarks/sampler_overhead.py

bench-techniques: $(STAMP)
	$(BIN)/python benchmarks/techniques.py

bench-gui: $(STAMP)
	QT_QPA_PLATFORM=offscreen $(BIN)/python benchmarks/gui.py

clean:
	rm -rf $(VENV) reports build dist *.egg-info
