"""Shared fixtures: the dataset root (real when present, generated otherwise) and tiny configs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from brainkd.data.synthetic import make_synthetic_dataset

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASET = PROJECT_ROOT.parent / "shared" / "data" / "brain-tumor-mri"


def real_dataset_root() -> Path | None:
    """Return the real dataset: BRAINKD_DATA if set and present, else ../shared's copy, else None."""
    candidates = [os.environ.get("BRAINKD_DATA"), str(SHARED_DATASET)]
    for candidate in candidates:
        if candidate and (Path(candidate) / "Training").is_dir():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def generated_root(tmp_path_factory) -> Path:
    """A small generated four-class dataset (12 train and 4 test images per class)."""
    return make_synthetic_dataset(tmp_path_factory.mktemp("generated") / "dataset", seed=0)


@pytest.fixture(scope="session")
def dataset_root(generated_root) -> Path:
    """The real dataset where present, the generated one elsewhere."""
    return real_dataset_root() or generated_root


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A preprocessing cache shared by the tests of one session."""
    return tmp_path_factory.mktemp("cache")
