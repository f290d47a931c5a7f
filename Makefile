# Every target bootstraps .venv from pyproject.toml by itself: a fresh clone needs nothing else.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SHARED_TFDS := $(abspath ../shared/tfds)
export TFDS_DATA_DIR ?= $(if $(wildcard $(SHARED_TFDS)),$(SHARED_TFDS),$(HOME)/tensorflow_datasets)
export JAX_PLATFORMS ?= cpu

.PHONY: venv test test-slow bench run lint clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[experiments,dev]'
	touch $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q -n 2 --dist worksteal -m "not slow" -p no:cacheprovider --durations=15 --doctest-modules tests pruning_jax README.md

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow -p no:cacheprovider tests

bench: $(STAMP)
	$(PY) -m experiments.bench.thresholds --json experiments/results/bench_thresholds/summary.json
	mkdir -p experiments/results/bench_train_step
	$(PY) -m experiments.bench.train_step --json experiments/results/bench_train_step/summary.json
	$(PY) -m experiments.bench.structured_latency --json experiments/results/bench_structured/summary.json
	$(PY) -m experiments.bench.structured_latency --width-probe \
	  --json experiments/results/bench_structured/width_probe/summary.json
	$(PY) -m experiments.bench.mask_cost --json experiments/results/init_lottery/mask_cost.json
	mkdir -p experiments/results/bench_sparse_step
	$(PY) -m experiments.bench.sparse_step --json experiments/results/bench_sparse_step/summary.json
	mkdir -p experiments/results/bench_state_bytes
	$(PY) -m experiments.bench.state_bytes --json experiments/results/bench_state_bytes/summary.json

run: $(STAMP)
	$(PY) -m experiments.sweep --config experiments/configs/quickstart.py --grid main \
	  --runs runs/quickstart --results runs/quickstart/summaries
	$(PY) -m experiments.report runs/quickstart/summaries --config experiments/configs/quickstart.py
	@echo "report: runs/quickstart/summaries/RESULTS.md (plots beside it); committed: experiments/results/quickstart/"

lint: $(STAMP)
	$(VENV)/bin/ruff check pruning_jax experiments tests

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
