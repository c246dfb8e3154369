# brainkd: `make run` installs, fetches the data and runs the distill job sized for this
# machine; `make test` installs and runs the default test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data/brain-tumor-mri
DATA_REPO ?= https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet
# The sizes used on a machine without a GPU (about 20 minutes on 2 cores).
CPU_OVERRIDES ?= trainer=cpu data.image_size=64 trainer.max_epochs=3
GPU_OVERRIDES ?= trainer=gpu
# glibc unmaps every freed block above its mmap threshold (at most 32 MiB), so a CPU
# training step page-faults its large tensors in again on every step. These thresholds
# keep freed memory in the process (before and after: experiments/bench/RESULTS.md).
CPU_MALLOC_ENV ?= MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=4294967296

.PHONY: install data run smoke test test-all bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev,sweeps]"

# Does nothing when BRAINKD_DATA points at a copy or data/brain-tumor-mri exists.
data:
	@if [ -n "$$BRAINKD_DATA" ]; then \
		if [ -d "$$BRAINKD_DATA/Training" ]; then echo "Using the dataset in BRAINKD_DATA=$$BRAINKD_DATA"; \
		else echo "error: BRAINKD_DATA=$$BRAINKD_DATA has no Training/ folder" >&2; exit 1; fi; \
	elif [ -d "$(DATA_DIR)/Training" ]; then echo "Using the dataset in $(DATA_DIR)"; \
	else echo "Fetching $(DATA_REPO) into $(DATA_DIR)"; \
		git clone --depth 1 $(DATA_REPO) $(DATA_DIR) || { \
		echo "error: could not fetch the dataset. Download 'Brain Tumor Classification (MRI)' from Kaggle" \
		"and set BRAINKD_DATA to the folder that holds Training/ and Testing/." >&2; exit 1; }; \
	fi

run: install data
	@if $(BIN)/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then \
		echo "GPU found: full-size run"; $(BIN)/python -m brainkd.run +experiment=distill $(GPU_OVERRIDES); \
	else \
		echo "No GPU: CPU-sized run ($(CPU_OVERRIDES))"; \
		env $(CPU_MALLOC_ENV) $(BIN)/python -m brainkd.run +experiment=distill $(CPU_OVERRIDES); \
	fi

smoke: install
	$(BIN)/python -m brainkd.run +experiment=smoke

test: install
	$(BIN)/python -m pytest

# The default suite plus the tests marked slow.
test-all: install
	$(BIN)/python -m pytest -m "slow or not slow"

# The speed benchmarks on the dataset; the table lands in outputs/bench/. An estimate from
# the loaded 2-core runs in experiments/bench/RESULTS.md: 15 to 50 minutes on 2 cores.
# The allocator benchmark sets its own allocator for each measurement.
bench: install data
	env $(CPU_MALLOC_ENV) $(BIN)/python -m brainkd.bench $(BENCH_ARGS)

clean:
	rm -rf outputs multirun .pytest_cache
