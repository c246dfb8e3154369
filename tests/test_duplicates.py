"""Duplicate grouping on a generated dataset with planted exact and near duplicates."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import random
import shutil
from pathlib import Path

import imagehash
import numpy as np
import pytest
from PIL import Image

from brainkd.data import duplicates
from brainkd.data.duplicates import (
    DuplicateReport,
    duplicate_groups,
    format_summary,
    load_or_compute_groups,
    near_pairs,
    perceptual_hashes,
    summarize_groups,
    twin_free_mask,
    write_groups_csv,
)
from brainkd.data.folders import Sample, scan_split

# Originals: smooth random textures, whose perceptual hashes differ in about 30 of 64 bits.
ORIGINALS = {
    "Training/glioma": ["g0", "g1", "g2", "g3"],
    "Training/meningioma": ["m0", "m1", "m2", "m3"],
    "Training/no_tumor": ["n0", "n1", "n2", "n3"],
    "Training/pituitary": ["p0", "p1", "p2", "p3"],
    "Testing/glioma": ["tg0", "tg1"],
    "Testing/meningioma": ["tm0", "tm1"],
    "Testing/no_tumor": ["tn0", "tn1"],
    "Testing/pituitary": ["tp0", "tp1"],
}

EXACT_IN_TRAIN = frozenset({"Training/glioma/g0.png", "Training/glioma/g0_copy.png"})
EXACT_CROSS = frozenset({"Training/meningioma/m0.png", "Testing/meningioma/m0_copy.png"})
NEAR_CROSS = frozenset({"Training/pituitary/p1.png", "Testing/pituitary/p1_resized.jpg"})
NEAR_CONFLICT = frozenset({"Training/no_tumor/n2.png", "Training/meningioma/n2_noisy.png"})
EXACT_IN_TEST = frozenset({"Testing/no_tumor/tn0.png", "Testing/no_tumor/tn0_copy.png"})
PLANTED = {EXACT_IN_TRAIN, EXACT_CROSS, NEAR_CROSS, NEAR_CONFLICT, EXACT_IN_TEST}
EXACT_PLANTED = {EXACT_IN_TRAIN, EXACT_CROSS, EXACT_IN_TEST}
BROKEN = "Training/glioma/broken.jpg"
TEST_WITH_TWIN = {"Testing/meningioma/m0_copy.png", "Testing/pituitary/p1_resized.jpg"}


def smooth_texture(rng: np.random.Generator, size: int = 96) -> np.ndarray:
    coarse = rng.integers(0, 256, (12, 12), dtype=np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.BICUBIC))


def brighten_with_noise(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    shifted = image.astype(np.int16) + 6 + rng.integers(-2, 3, image.shape)
    return np.clip(shifted, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("mri")
    rng = np.random.default_rng(0)
    for folder, stems in ORIGINALS.items():
        (root / folder).mkdir(parents=True)
        for stem in stems:
            Image.fromarray(smooth_texture(rng)).save(root / folder / f"{stem}.png")

    shutil.copyfile(root / "Training/glioma/g0.png", root / "Training/glioma/g0_copy.png")
    shutil.copyfile(root / "Training/meningioma/m0.png", root / "Testing/meningioma/m0_copy.png")
    shutil.copyfile(root / "Testing/no_tumor/tn0.png", root / "Testing/no_tumor/tn0_copy.png")

    pituitary = Image.open(root / "Training/pituitary/p1.png").resize((80, 80), Image.BILINEAR)
    pituitary.save(root / "Testing/pituitary/p1_resized.jpg", quality=90)
    no_tumor = np.asarray(Image.open(root / "Training/no_tumor/n2.png"))
    Image.fromarray(brighten_with_noise(no_tumor, rng)).save(root / "Training/meningioma/n2_noisy.png")

    (root / BROKEN).write_bytes(b"not an image")
    return root


@pytest.fixture(scope="module")
def samples(root: Path) -> list[Sample]:
    return scan_split(root, "train") + scan_split(root, "test")


@pytest.fixture(scope="module")
def hashes(samples: list[Sample]) -> dict:
    return perceptual_hashes(samples)


@pytest.fixture(scope="module")
def groups(samples: list[Sample], hashes: dict) -> list[int]:
    return duplicate_groups(samples, max_distance=4, hashes=hashes)


def multi_member_groups(samples: list[Sample], groups: list[int]) -> set[frozenset[str]]:
    members: dict[int, set[str]] = {}
    for sample, group in zip(samples, groups):
        members.setdefault(group, set()).add(sample.relpath)
    return {frozenset(relpaths) for relpaths in members.values() if len(relpaths) > 1}


def test_hashes_one_per_content(samples, hashes):
    assert len(hashes) == len({sample.content_hash for sample in samples})


def test_hashes_none_for_broken_file(samples, hashes):
    broken = next(sample for sample in samples if sample.relpath == BROKEN)
    assert hashes[broken.content_hash] is None


def test_hashes_for_readable_files(samples, hashes):
    readable = [sample for sample in samples if sample.relpath != BROKEN]
    assert all(isinstance(hashes[sample.content_hash], imagehash.ImageHash) for sample in readable)


def test_textures_far_apart(samples, hashes):
    originals = [sample for sample in samples if Path(sample.relpath).stem in set(itertools.chain(*ORIGINALS.values()))]
    distances = [hashes[a.content_hash] - hashes[b.content_hash] for a, b in itertools.combinations(originals, 2)]
    assert min(distances) > 12


def test_groups_match_planted(samples, groups):
    assert multi_member_groups(samples, groups) == PLANTED


def test_broken_file_alone(samples, groups):
    index = next(i for i, sample in enumerate(samples) if sample.relpath == BROKEN)
    assert groups.count(groups[index]) == 1


def test_group_ids_in_first_order(groups):
    seen: list[int] = []
    for group in groups:
        if group not in seen:
            seen.append(group)
    assert seen == list(range(len(seen)))


def test_negative_distance_exact_only(samples, monkeypatch):
    monkeypatch.setattr(duplicates, "perceptual_hashes", lambda *args, **kwargs: pytest.fail("hashes computed"))
    exact = duplicate_groups(samples, max_distance=-1)
    assert multi_member_groups(samples, exact) == EXACT_PLANTED


def test_missing_hash_rejected(samples, hashes):
    partial = dict(list(hashes.items())[1:])
    with pytest.raises(ValueError, match="missing from hashes"):
        duplicate_groups(samples, hashes=partial)


def test_misaligned_groups_rejected(samples, groups):
    with pytest.raises(ValueError, match="group ids for"):
        twin_free_mask(samples, groups[:-1])


def test_near_pairs_threshold():
    bits = np.zeros((4, 64), dtype=bool)
    bits[1, :3] = True
    bits[2, :4] = True
    bits[3, :5] = True
    pairs = near_pairs(np.packbits(bits, axis=1), max_distance=4)
    assert sorted(pairs) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]


def test_near_pairs_blocks_match(monkeypatch):
    rng = np.random.default_rng(1)
    packed = np.packbits(rng.random((40, 16)) < 0.5, axis=1)
    monkeypatch.setattr(duplicates, "DISTANCE_BLOCK_BYTES", 7)
    expected = [
        (i, j)
        for i, j in itertools.combinations(range(len(packed)), 2)
        if np.unpackbits(packed[i] ^ packed[j]).sum() <= 5
    ]
    assert sorted(near_pairs(packed, max_distance=5)) == expected


def test_summary_counts(samples, groups):
    report = summarize_groups(samples, groups)
    assert isinstance(report, DuplicateReport)
    assert report.num_images == 30
    assert report.num_train == 19
    assert report.num_test == 11
    assert report.num_groups == 5
    assert report.images_in_groups == 10
    assert report.exact_groups == 3
    assert report.repeated_contents == 3
    assert report.cross_split_groups == 2
    assert report.label_conflict_groups == 1


def test_summary_by_class(samples, groups):
    report = summarize_groups(samples, groups)
    assert report.images_in_groups_by_class == {"glioma": 2, "meningioma": 3, "no_tumor": 3, "pituitary": 2}
    assert report.test_by_class == {"glioma": 2, "meningioma": 3, "no_tumor": 3, "pituitary": 3}
    assert report.twin_free_by_class == {"glioma": 2, "meningioma": 2, "no_tumor": 3, "pituitary": 2}


def test_twin_free_samples(samples, groups):
    report = summarize_groups(samples, groups)
    expected = {sample.relpath for sample in samples if sample.split == "test"} - TEST_WITH_TWIN
    assert report.num_twin_free == 9
    assert {sample.relpath for sample in report.twin_free} == expected


def test_twin_free_mask_matches(samples, groups):
    mask = twin_free_mask(samples, groups)
    report = summarize_groups(samples, groups)
    assert [sample for sample, free in zip(samples, mask) if free] == report.twin_free


def test_twin_free_excludes_train(samples, groups):
    mask = twin_free_mask(samples, groups)
    assert not any(free for sample, free in zip(samples, mask) if sample.split == "train")


def test_format_summary_lines(samples, groups):
    text = format_summary(summarize_groups(samples, groups))
    assert "duplicate groups: 5 holding 10 images" in text
    assert "groups spanning train and test: 2" in text
    assert "groups with conflicting labels: 1" in text
    assert "twin-free test images: 9 of 11" in text


def test_csv_rows(tmp_path, samples, groups, hashes):
    path = tmp_path / "reports" / "groups.csv"
    write_groups_csv(path, samples, groups, hashes)
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))

    assert len(rows) == 10
    assert list(rows[0]) == list(duplicates.CSV_COLUMNS)
    assert {row["relpath"] for row in rows} == set().union(*PLANTED)
    assert [int(row["group"]) for row in rows] == sorted(int(row["group"]) for row in rows)
    assert not list(path.parent.glob(".*.tmp"))


def test_csv_flags(tmp_path, samples, groups, hashes):
    path = tmp_path / "groups.csv"
    write_groups_csv(path, samples, groups, hashes)
    with path.open(newline="") as stream:
        rows = {row["relpath"]: row for row in csv.DictReader(stream)}

    noisy = rows["Training/meningioma/n2_noisy.png"]
    resized = rows["Testing/pituitary/p1_resized.jpg"]
    copy = rows["Training/glioma/g0_copy.png"]
    assert noisy["class_name"] == "meningioma"
    assert noisy["label_conflict"] == "True"
    assert noisy["exact_only"] == "False"
    assert noisy["cross_split"] == "False"
    assert resized["cross_split"] == "True"
    assert resized["split"] == "test"
    assert copy["exact_only"] == "True"
    assert copy["label_conflict"] == "False"
    assert len(copy["perceptual_hash"]) == 16


def test_csv_without_hashes(tmp_path, samples, groups):
    path = tmp_path / "groups.csv"
    write_groups_csv(path, samples, groups)
    with path.open(newline="") as stream:
        rows = list(csv.DictReader(stream))
    assert {row["perceptual_hash"] for row in rows} == {""}


def test_cache_matches_direct(tmp_path, samples, groups):
    cached = load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8)
    assert cached == groups
    assert len(list((tmp_path / "duplicates").glob("*.json"))) == 1


def test_cache_reused(tmp_path, samples, groups, monkeypatch):
    load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8)
    monkeypatch.setattr(duplicates, "duplicate_groups", lambda *args, **kwargs: pytest.fail("groups recomputed"))
    assert load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8) == groups


def test_cache_reused_for_shuffled(tmp_path, samples, hashes):
    load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8)
    shuffled = list(samples)
    random.Random(3).shuffle(shuffled)
    expected = duplicate_groups(shuffled, max_distance=4, hashes=hashes)
    assert load_or_compute_groups(shuffled, tmp_path, max_distance=4, hash_size=8) == expected


def test_cache_keyed_by_distance(tmp_path, samples):
    exact = load_or_compute_groups(samples, tmp_path, max_distance=-1, hash_size=8)
    load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8)
    assert multi_member_groups(samples, exact) == EXACT_PLANTED
    assert len(list((tmp_path / "duplicates").glob("*.json"))) == 2


@pytest.mark.parametrize("content", ["{not json", json.dumps({"groups": [0, 1, 2]}), json.dumps([1, 2])])
def test_cache_recovers_from_corruption(tmp_path, samples, groups, content, caplog):
    load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8)
    (cache_file,) = (tmp_path / "duplicates").glob("*.json")
    cache_file.write_text(content)

    with caplog.at_level(logging.WARNING, logger="brainkd.data.duplicates"):
        recovered = load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8)
    assert recovered == groups
    assert "recomputed" in caplog.text
    assert len(json.loads(cache_file.read_text())["groups"]) == len(samples)


def test_parallel_matches_serial(samples, hashes, monkeypatch, caplog):
    monkeypatch.setattr(duplicates, "PARALLEL_MIN_IMAGES", 0)
    with caplog.at_level(logging.INFO, logger="brainkd.data.duplicates"):
        parallel = perceptual_hashes(samples, num_workers=2)
    assert "with 2 process(es)" in caplog.text
    assert parallel == hashes
