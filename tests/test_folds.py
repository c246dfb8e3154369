"""Grouped, stratified folds: coverage, groups kept whole, class balance, seeds and the datamodule."""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from brainkd import pipeline
from brainkd.data.datamodule import PERCEPTUAL_HASH_SIZE, BrainMRIDataModule
from brainkd.data.duplicates import load_or_compute_groups
from brainkd.data.splits import assign_folds
from brainkd.data.synthetic import make_synthetic_dataset

NUM_FOLDS = 10
# Images per class, in about the proportions of the public dataset's Training/ folder.
CLASS_SIZES = (120, 118, 60, 121)


def grouped_labels(seed: int = 0) -> tuple[list[int], list[int]]:
    """Return labels and group ids with groups of 1 to 5 images, plus two groups that mix classes."""
    rng = np.random.default_rng(seed)
    labels: list[int] = []
    groups: list[int] = []
    group = 0
    for label, size in enumerate(CLASS_SIZES):
        remaining = size
        while remaining:
            members = int(min(remaining, rng.choice([1, 1, 1, 2, 3, 5])))
            labels += [label] * members
            groups += [group] * members
            group += 1
            remaining -= members
    labels += [0, 1, 2, 3]
    groups += [group, group, group + 1, group + 1]
    return labels, groups


@pytest.fixture(scope="module")
def folds() -> np.ndarray:
    labels, groups = grouped_labels()
    return assign_folds(labels, groups, NUM_FOLDS, seed=0)


def test_every_image_gets_one_fold(folds):
    assert folds.min() == 0
    assert folds.max() == NUM_FOLDS - 1
    assert len(folds) == len(grouped_labels()[0])


def test_fold_sizes_are_even(folds):
    sizes = np.bincount(folds, minlength=NUM_FOLDS)
    assert sizes.max() - sizes.min() <= 6


def test_groups_stay_in_one_fold(folds):
    _, groups = grouped_labels()
    for group in set(groups):
        members = [index for index, g in enumerate(groups) if g == group]
        assert len(set(folds[members])) == 1, f"group {group} is split over folds {sorted(set(folds[members]))}"


def test_class_shares_close_to_overall(folds):
    labels = np.array(grouped_labels()[0])
    overall = np.bincount(labels) / len(labels)
    for fold in range(NUM_FOLDS):
        in_fold = labels[folds == fold]
        share = np.bincount(in_fold, minlength=len(CLASS_SIZES)) / len(in_fold)
        assert np.abs(share - overall).max() < 0.05, f"fold {fold} class shares {share} vs {overall}"


def test_same_seed_same_folds(folds):
    labels, groups = grouped_labels()
    assert np.array_equal(assign_folds(labels, groups, NUM_FOLDS, seed=0), folds)


def test_other_seed_other_folds(folds):
    labels, groups = grouped_labels()
    assert not np.array_equal(assign_folds(labels, groups, NUM_FOLDS, seed=1), folds)


def test_too_small_classes_rejected():
    with pytest.raises(ValueError, match="data.num_folds=10"):
        assign_folds([0, 0, 1, 1, 2, 2], [0, 1, 2, 3, 4, 5], num_folds=10, seed=0)


# Planted duplicates in a generated dataset: an identical copy and a brightened copy inside
# Training/, and a brightened copy of a Training image in Testing/.
EXACT_PAIR = ("Training/glioma/glioma_0000.jpg", "Training/glioma/glioma_copy.jpg")
NEAR_PAIR = ("Training/pituitary/pituitary_0002.jpg", "Training/pituitary/pituitary_bright.jpg")
TEST_TWIN = ("Training/meningioma/meningioma_0001.jpg", "Testing/meningioma/meningioma_twin.jpg")
DATA_FOLDS = 3


def write_brightened(source: Path, target: Path) -> None:
    image = cv2.imread(str(source), cv2.IMREAD_GRAYSCALE)
    cv2.imwrite(str(target), np.clip(image.astype(np.int16) + 4, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def planted_root(tmp_path_factory) -> Path:
    root = make_synthetic_dataset(tmp_path_factory.mktemp("folds") / "dataset", train_per_class=10, test_per_class=3, size=32)
    shutil.copyfile(root / EXACT_PAIR[0], root / EXACT_PAIR[1])
    write_brightened(root / NEAR_PAIR[0], root / NEAR_PAIR[1])
    write_brightened(root / TEST_TWIN[0], root / TEST_TWIN[1])
    return root


@pytest.fixture(scope="module")
def datamodules(planted_root, tmp_path_factory) -> list[BrainMRIDataModule]:
    cache_dir = tmp_path_factory.mktemp("folds-cache")
    modules = []
    for fold in range(DATA_FOLDS):
        datamodule = BrainMRIDataModule(
            root=str(planted_root),
            cache_dir=str(cache_dir),
            image_size=16,
            batch_size=4,
            num_folds=DATA_FOLDS,
            fold=fold,
            preprocess={"denoise_strength": 0.0},
            preprocess_workers=1,
        )
        datamodule.prepare_data()
        datamodule.setup("fit")
        modules.append(datamodule)
    return modules


def val_paths(datamodule: BrainMRIDataModule) -> set[str]:
    return {sample.relpath for sample in datamodule.val_samples}


def test_validation_folds_disjoint(datamodules):
    for first in range(DATA_FOLDS):
        for second in range(first + 1, DATA_FOLDS):
            assert not val_paths(datamodules[first]) & val_paths(datamodules[second])


def test_validation_folds_cover_training(datamodules):
    every_training_image = {s.relpath for s in datamodules[0].train_samples + datamodules[0].val_samples}
    covered = set().union(*(val_paths(datamodule) for datamodule in datamodules))
    assert covered == every_training_image


def test_train_and_validation_disjoint(datamodules):
    for datamodule in datamodules:
        assert not {s.relpath for s in datamodule.train_samples} & val_paths(datamodule)


@pytest.mark.parametrize("pair", [EXACT_PAIR, NEAR_PAIR, TEST_TWIN], ids=["exact", "near", "test-twin"])
def test_planted_pair_grouped(datamodules, pair):
    datamodule = datamodules[0]
    samples = datamodule.train_samples + datamodule.val_samples + datamodule.test_samples
    groups = load_or_compute_groups(samples, datamodule.cache_dir, max_distance=4, hash_size=PERCEPTUAL_HASH_SIZE)
    group_of = {sample.relpath: group for sample, group in zip(samples, groups)}
    assert group_of[pair[0]] == group_of[pair[1]]


@pytest.mark.parametrize("pair", [EXACT_PAIR, NEAR_PAIR], ids=["exact", "near"])
def test_planted_pair_in_one_fold(datamodules, pair):
    holding = [fold for fold, datamodule in enumerate(datamodules) if set(pair) & val_paths(datamodule)]
    assert len(holding) == 1
    assert set(pair) <= val_paths(datamodules[holding[0]])


def test_test_twin_not_twin_free(datamodules):
    datamodule = datamodules[0]
    by_path = {sample.relpath: free for sample, free in zip(datamodule.test_samples, datamodule.test_twin_free)}
    assert by_path[TEST_TWIN[1]] is False


def test_twin_free_counts_in_summary(datamodules):
    datamodule = datamodules[0]
    counts = datamodule.summary["counts"]["test_twin_free"]
    assert sum(counts.values()) == sum(datamodule.test_twin_free)
    assert counts["meningioma"] < datamodule.summary["counts"]["test"]["meningioma"]


def test_manifest_differs_by_fold(datamodules):
    hashes = {datamodule.split.manifest_hash for datamodule in datamodules}
    assert len(hashes) == DATA_FOLDS


def test_teacher_from_other_fold_rejected(datamodules, tmp_path):
    model_cfg = OmegaConf.create({"name": "plain_cnn", "in_chans": 1, "options": {"channels": [4]}})
    checkpoint = tmp_path / "teacher.ckpt"
    metadata = pipeline.model_metadata(model_cfg, "teacher", datamodules[0])
    torch.save({"brainkd": metadata, "state_dict": {}}, checkpoint)

    with pytest.raises(ValueError) as error:
        pipeline.load_teacher_checkpoint(str(checkpoint), model_cfg, datamodules[1])
    assert f"trained on fold 0 of {DATA_FOLDS}" in str(error.value)
    assert f"uses fold 1 of {DATA_FOLDS}" in str(error.value)
