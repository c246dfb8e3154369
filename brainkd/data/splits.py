"""Stratified, grouped train/validation splits of Training/ and the fold manifest."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from dataclasses import dataclass

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from brainkd.data.folders import Sample


@dataclass(frozen=True)
class Split:
    """Indices into a sample list for training and validation, and the manifest hash."""

    train: list[int]
    val: list[int]
    fold: int
    num_folds: int
    manifest_hash: str


def exact_duplicate_groups(samples: list[Sample]) -> list[int]:
    """Return one group id per sample; samples with identical bytes share an id."""
    ids: dict[str, int] = {}
    return [ids.setdefault(sample.content_hash, len(ids)) for sample in samples]


def assign_folds(labels: list[int], groups: list[int], num_folds: int, seed: int) -> np.ndarray:
    """Give each sample a fold in [0, num_folds), stratified by label, never splitting a group."""
    if num_folds < 2:
        raise ValueError(f"data.num_folds must be at least 2, got {num_folds}")
    if len(set(groups)) < num_folds:
        raise ValueError(
            f"{len(set(groups))} distinct image groups cannot fill data.num_folds={num_folds} folds; "
            "use fewer folds or more images"
        )
    largest_class = max(Counter(labels).values())
    if largest_class < num_folds:
        raise ValueError(
            f"the largest class has {largest_class} images, too few to stratify data.num_folds={num_folds} folds; "
            "use fewer folds (data.num_folds, or a larger data.val_fraction when data.fold is null) or more images"
        )
    splitter = StratifiedGroupKFold(n_splits=num_folds, shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, dtype=np.int64)
    placeholder = np.zeros((len(labels), 1))
    for fold, (_, val_index) in enumerate(splitter.split(placeholder, labels, groups)):
        folds[val_index] = fold
    return folds


def make_split(
    samples: list[Sample],
    groups: list[int],
    num_folds: int,
    fold: int,
    seed: int,
) -> Split:
    """Hold out fold ``fold`` of ``num_folds`` as validation and train on the rest."""
    if not 0 <= fold < num_folds:
        raise ValueError(f"data.fold must lie in [0, {num_folds - 1}] for data.num_folds={num_folds}, got {fold}")
    folds = assign_folds([s.label for s in samples], groups, num_folds, seed)
    train = [i for i, f in enumerate(folds) if f != fold]
    val = [i for i, f in enumerate(folds) if f == fold]
    manifest = build_manifest(samples, train, val)
    return Split(train=train, val=val, fold=fold, num_folds=num_folds, manifest_hash=manifest["hash"])


def build_manifest(samples: list[Sample], train: list[int], val: list[int]) -> dict:
    """List the train and validation files (relative paths) and hash that listing."""
    listing = {
        "train": sorted(samples[i].relpath for i in train),
        "val": sorted(samples[i].relpath for i in val),
    }
    digest = hashlib.sha256(json.dumps(listing, sort_keys=True).encode()).hexdigest()[:16]
    return {"hash": digest, **listing}
