"""The duplicate audit command on generated images with planted duplicates."""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CLASSES = ("glioma", "meningioma", "no_tumor", "pituitary")
EXACT_CROSS = {"Training/glioma/image_0.png", "Testing/glioma/copy.png"}
NEAR_CROSS = {"Training/pituitary/image_1.png", "Testing/pituitary/resized.jpg"}
EXACT_TRAIN = {"Training/meningioma/image_2.png", "Training/meningioma/copy.png"}


def random_texture(rng: np.random.Generator) -> np.ndarray:
    """Return a smooth random image, far in perceptual hash from every other such image."""
    coarse = rng.integers(0, 256, (8, 8)).astype(np.uint8)
    return cv2.resize(coarse, (64, 64), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def audit_run(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("audit")
    dataset = root / "dataset"
    rng = np.random.default_rng(3)
    for split, count in (("Training", 4), ("Testing", 2)):
        for class_name in CLASSES:
            (dataset / split / class_name).mkdir(parents=True)
            for index in range(count):
                cv2.imwrite(str(dataset / split / class_name / f"image_{index}.png"), random_texture(rng))

    shutil.copyfile(dataset / "Training/glioma/image_0.png", dataset / "Testing/glioma/copy.png")
    shutil.copyfile(dataset / "Training/meningioma/image_2.png", dataset / "Training/meningioma/copy.png")
    resized = cv2.resize(cv2.imread(str(dataset / "Training/pituitary/image_1.png")), (56, 56), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(dataset / "Testing/pituitary/resized.jpg"), resized, [cv2.IMWRITE_JPEG_QUALITY, 90])

    run_dir = root / "run"
    command = [
        sys.executable, "-m", "brainkd.audit", f"data.root={dataset}", f"data.cache_dir={root / 'cache'}",
        "data.preprocess_workers=1", f"hydra.run.dir={run_dir}",
    ]
    completed = subprocess.run(command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr[-3000:]
    return run_dir, completed


def planted_groups(run_dir: Path) -> list[set[str]]:
    with (run_dir / "duplicate_groups.csv").open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    groups: dict[str, set[str]] = {}
    for row in rows:
        groups.setdefault(row["group"], set()).add(row["relpath"])
    return list(groups.values())


def summary(run_dir: Path) -> dict:
    return json.loads((run_dir / "duplicate_summary.json").read_text())


@pytest.mark.parametrize("pair", [EXACT_CROSS, NEAR_CROSS, EXACT_TRAIN], ids=["exact-cross", "near-cross", "exact-train"])
def test_audit_finds_planted_pair(audit_run, pair):
    run_dir, _ = audit_run
    assert pair in planted_groups(run_dir)


def test_audit_finds_nothing_else(audit_run):
    run_dir, _ = audit_run
    assert len(planted_groups(run_dir)) == 3


def test_audit_counts_cross_split_groups(audit_run):
    run_dir, _ = audit_run
    assert summary(run_dir)["cross_split_groups"] == 2


def test_audit_counts_twin_free(audit_run):
    run_dir, _ = audit_run
    record = summary(run_dir)
    assert record["num_twin_free"] == record["num_test"] - 2
    assert "Testing/glioma/copy.png" not in record["twin_free"]


def test_audit_logs_summary(audit_run):
    _, completed = audit_run
    output = completed.stdout + completed.stderr
    assert "groups spanning train and test: 2" in output
    assert "twin-free test images: 8 of 10" in output
