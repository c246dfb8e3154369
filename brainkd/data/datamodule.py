"""The LightningDataModule that scans, preprocesses (once, cached), splits and loads the data."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any, Callable

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from brainkd.data.augment import build_train_augmentation
from brainkd.data.cache import CachedImages, load_or_build
from brainkd.data.folders import CLASS_NAMES, Sample, scan_split
from brainkd.data.preprocess import PreprocessSettings
from brainkd.data.splits import Split, build_manifest, exact_duplicate_groups, make_split

log = logging.getLogger(__name__)


class CachedImageDataset(Dataset):
    """Preprocessed uint8 images in memory, returned as (image, label, index) tensors."""

    def __init__(
        self,
        images: np.ndarray,
        labels: list[int],
        mean: float,
        std: float,
        augmentation: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ):
        self.images = torch.from_numpy(images)
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.mean = mean
        self.std = std
        self.augmentation = augmentation

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, int]:
        image = self.images[index].unsqueeze(0).float() / 255.0
        if self.augmentation is not None:
            image = self.augmentation(image)
        image = (image - self.mean) / self.std
        return image, self.labels[index], index


def limit_per_class(samples: list[Sample], limit: int | None) -> list[Sample]:
    """Keep at most ``limit`` samples per class, chosen by content hash so the pick is stable."""
    if not limit:
        return samples
    kept: list[Sample] = []
    for label in sorted({s.label for s in samples}):
        of_class = sorted((s for s in samples if s.label == label), key=lambda s: s.content_hash)
        kept.extend(of_class[:limit])
    return sorted(kept, key=lambda s: s.relpath)


class BrainMRIDataModule(L.LightningDataModule):
    """Four-class MRI slices from a root with Training/ and Testing/ class folders.

    Validation is one fold of ``Training/``, stratified by class and grouped so that
    identical files never sit on both sides; the test set is ``Testing/``.
    """

    def __init__(
        self,
        root: str,
        cache_dir: str,
        image_size: int = 224,
        batch_size: int = 32,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        num_folds: int | None = None,
        fold: int | None = None,
        split_seed: int = 0,
        on_bad_file: str = "skip",
        preprocess: dict[str, Any] | None = None,
        augment: dict[str, Any] | None = None,
        mean: float = 0.5,
        std: float = 0.25,
        preprocess_workers: int | None = None,
        samples_per_class: int | None = None,
        pin_memory: bool = False,
        persistent_workers: bool = False,
    ):
        super().__init__()
        self.root = Path(root)
        self.cache_dir = Path(cache_dir).expanduser()
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.num_folds = num_folds
        self.fold = fold
        self.split_seed = split_seed
        self.on_bad_file = on_bad_file
        self.preprocess_settings = _preprocess_settings(image_size, preprocess or {})
        self.augment_options = dict(augment or {})
        self.mean = mean
        self.std = std
        self.preprocess_workers = preprocess_workers
        self.samples_per_class = samples_per_class
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0

        self.class_names: tuple[str, ...] = CLASS_NAMES
        self.split: Split | None = None
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []
        self.test_samples: list[Sample] = []
        self.summary: dict[str, Any] = {}
        self._datasets: dict[str, CachedImageDataset] = {}

    def _scan(self) -> tuple[list[Sample], list[Sample]]:
        train = limit_per_class(scan_split(self.root, "train"), self.samples_per_class)
        test = limit_per_class(scan_split(self.root, "test"), self.samples_per_class)
        return train, test

    def _load(self, samples: list[Sample], description: str) -> CachedImages:
        return load_or_build(
            samples,
            self.preprocess_settings,
            self.cache_dir,
            num_workers=self.preprocess_workers,
            on_bad_file=self.on_bad_file,
            description=description,
        )

    def prepare_data(self) -> None:
        """Build the preprocessing cache once, before any process reads it."""
        train, test = self._scan()
        self._load(train + test, "preprocessing")

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        train_all, test_all = self._scan()
        train_cached = self._load(train_all, "preprocessing Training")
        test_cached = self._load(test_all, "preprocessing Testing")
        _check_classes(train_cached.samples, "Training")

        usable = train_cached.samples
        num_folds, fold = self._fold_choice()
        self.split = make_split(usable, exact_duplicate_groups(usable), num_folds, fold, self.split_seed)
        self.train_samples = [usable[i] for i in self.split.train]
        self.val_samples = [usable[i] for i in self.split.val]
        self.test_samples = test_cached.samples

        augmentation = build_train_augmentation(**self.augment_options)
        images = train_cached.images
        self._datasets = {
            "train": self._dataset(images[self.split.train], self.train_samples, augmentation),
            "val": self._dataset(images[self.split.val], self.val_samples, None),
            "test": self._dataset(test_cached.images, self.test_samples, None),
        }
        self.summary = self._summarize(train_cached, test_cached)
        log.info(
            "Data: %d train, %d validation (fold %d of %d), %d test images; %d unreadable files skipped",
            len(self.train_samples), len(self.val_samples), fold, num_folds, len(self.test_samples),
            len(self.summary["bad_files"]),
        )

    def _fold_choice(self) -> tuple[int, int]:
        if self.fold is not None:
            return int(self.num_folds or 10), int(self.fold)
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"data.val_fraction must lie in (0, 1), got {self.val_fraction}")
        return max(2, round(1 / self.val_fraction)), 0

    def _dataset(self, images: np.ndarray, samples: list[Sample], augmentation) -> CachedImageDataset:
        return CachedImageDataset(images, [s.label for s in samples], self.mean, self.std, augmentation)

    def _summarize(self, train_cached: CachedImages, test_cached: CachedImages) -> dict[str, Any]:
        def per_class(samples: list[Sample]) -> dict[str, int]:
            counts = Counter(s.label for s in samples)
            return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

        bad_files = train_cached.bad_files + test_cached.bad_files
        return {
            "root": str(self.root),
            "image_size": self.image_size,
            "fold": self.split.fold,
            "num_folds": self.split.num_folds,
            "split_seed": self.split_seed,
            "manifest_hash": self.split.manifest_hash,
            "counts": {
                "train": per_class(self.train_samples),
                "val": per_class(self.val_samples),
                "test": per_class(self.test_samples),
            },
            "bad_files": [{"path": bad.path, "reason": bad.reason} for bad in bad_files],
            "mask_fallbacks": train_cached.mask_fallbacks + test_cached.mask_fallbacks,
        }

    def manifest(self) -> dict[str, Any]:
        """Return the fold manifest: hash, fold and the train and validation files."""
        train_cached_order = self.train_samples + self.val_samples
        train_index = list(range(len(self.train_samples)))
        val_index = list(range(len(self.train_samples), len(train_cached_order)))
        manifest = build_manifest(train_cached_order, train_index, val_index)
        return {"fold": self.split.fold, "num_folds": self.split.num_folds, "split_seed": self.split_seed, **manifest}

    def dataset(self, stage: str) -> CachedImageDataset:
        """Return the dataset of a stage: ``train``, ``val`` or ``test``."""
        return self._datasets[stage]

    def samples(self, stage: str) -> list[Sample]:
        """Return the samples of a stage, in dataset order."""
        return {"train": self.train_samples, "val": self.val_samples, "test": self.test_samples}[stage]

    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        return DataLoader(
            self._datasets[stage],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)


def _preprocess_settings(image_size: int, options: dict[str, Any]) -> PreprocessSettings:
    known = {f.name for f in fields(PreprocessSettings)} - {"image_size"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(f"unknown key(s) data.preprocess.{', '.join(unknown)}; accepted keys: {', '.join(sorted(known))}")
    return PreprocessSettings(image_size=image_size, **options)


def _check_classes(samples: list[Sample], split_name: str) -> None:
    counts = Counter(s.label for s in samples)
    if len(counts) < 2:
        raise ValueError(
            f"{split_name} has usable images of {len(counts)} class(es); training needs at least two classes"
        )
    empty = [name for i, name in enumerate(CLASS_NAMES) if counts.get(i, 0) == 0]
    if empty:
        log.warning("%s has no usable images of class(es): %s", split_name, ", ".join(empty))
