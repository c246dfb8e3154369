# brainkd: `make run` installs, fetches the data and runs the distill job sized for this
# machine; `make test` installs and runs the default test suite.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA_DIR ?= data/brain-tumor-mri
DATA_REPO ?= https://github.com/SartajBhuvaji/Brain-Tumor-Classification-DataSet
# The sizes used on a machine without a GPU (about 20 minutes on 2 cores).
CPU_OVERRIDES ?= trainer=cpu data.image_size=96 trainer.max_epochs=4
GPU_OVERRIDES ?= trainer=gpu

.PHONY: install data run smoke test test-all clean

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
		echo "No GPU: CPU-sized run ($(CPU_OVERRIDES))"; $(BIN)/python -m brainkd.run +experiment=distill $(CPU_OVERRIDES); \
	fi

smoke: install
	$(BIN)/python -m brainkd.run +experiment=smoke

test: install
	$(BIN)/python -m pytest

# The default suite plus the tests marked slow.
test-all: install
	$(BIN)/python -m pytest -m "slow or not slow"

clean:
	rm -rf outputs multirun .pytest_cache
