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

from brainkd import checks
from brainkd.data.augment import build_train_augmentation, check_augment_options
from brainkd.data.cache import BAD_FILE_POLICIES, CachedImages, load_or_build
from brainkd.data.duplicates import DuplicateReport, load_or_compute_groups, summarize_groups, twin_free_mask
from brainkd.data.folders import CLASS_NAMES, Sample, scan_split
from brainkd.data.preprocess import PreprocessSettings
from brainkd.data.resumable import EpochShuffleSampler, ResumableDataLoader
from brainkd.data.splits import Split, build_manifest, make_split

log = logging.getLogger(__name__)

# Side of ImageHash's DCT perceptual hash, so hashes have 8 x 8 = 64 bits and
# data.near_duplicate_distance counts differing bits out of 64.
PERCEPTUAL_HASH_SIZE = 8
PHASH_BITS = PERCEPTUAL_HASH_SIZE**2
# The DataModule keeps every preprocessed image in memory as uint8: at 1,024 px the public
# dataset's 3,264 images take 3.4 GB, and 2,341 of them are 512 px slices to begin with.
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 1024
DEFAULT_NUM_FOLDS = 10
# A larger hold-out would leave less than half of Training/ to train on.
MAX_VAL_FRACTION = 0.5
# Bound of |data.mean| and 1 / data.std, far inside float32's range of about 3.4e38.
MAX_STANDARDISED = 1_000_000


class CachedImageDataset(Dataset):
    """Preprocessed uint8 images in memory, returned as (image, label, index) tensors.

    A key is an index, or an ``(index, augmentation_seed)`` pair from EpochShuffleSampler.
    With a seed, the augmentation draws from a generator seeded with it and leaves the
    global random state alone, so the draws do not depend on worker processes or resumes.
    """

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

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int]:
        index, augmentation_seed = key if isinstance(key, tuple) else (key, None)
        image = self.images[index].unsqueeze(0).float() / 255.0
        if self.augmentation is not None and augmentation_seed is None:
            image = self.augmentation(image)
        elif self.augmentation is not None:
            # torchvision's random transforms draw from the global generator; fork it for this sample.
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(augmentation_seed)
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

    Validation is one fold of ``Training/``, stratified by class and grouped, so no
    duplicate group sits on both sides. A group joins identical files and images whose
    perceptual hashes differ in at most ``near_duplicate_distance`` bits. The test set is
    ``Testing/``, and ``test_twin_free`` marks its images whose group has no Training image. ``seed`` fixes
    the training order and augmentation draws of every epoch (see ``ResumableDataLoader``).
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
        seed: int = 0,
        near_duplicate_distance: int = 4,
    ):
        super().__init__()
        self.root = Path(root)
        if not isinstance(cache_dir, str) or not cache_dir.strip():
            raise ValueError(
                f"data.cache_dir must be a folder path, got {cache_dir!r}. Set BRAINKD_CACHE or data.cache_dir."
            )
        self.cache_dir = Path(cache_dir).expanduser()
        self.image_size = checks.integer("data.image_size", image_size, MIN_IMAGE_SIZE, MAX_IMAGE_SIZE)
        self.batch_size = checks.integer("data.batch_size", batch_size, 1)
        self.num_workers = checks.integer("data.num_workers", num_workers, 0)
        self.val_fraction = checks.number("data.val_fraction", val_fraction, 0, MAX_VAL_FRACTION, low_open=True)
        self.num_folds = checks.optional_integer("data.num_folds", num_folds, 2)
        self.fold = checks.optional_integer("data.fold", fold, 0, (num_folds or DEFAULT_NUM_FOLDS) - 1)
        self.split_seed = checks.integer("data.split_seed", split_seed, 0)
        self.on_bad_file = checks.choice("data.on_bad_file", on_bad_file, BAD_FILE_POLICIES)
        self.preprocess_settings = _preprocess_settings(image_size, preprocess or {})
        self.augment_options = check_augment_options(augment or {})
        # Inputs lie in [0, 1] before (x - mean) / std, which must stay finite in float32.
        self.mean = checks.number("data.mean", mean, -MAX_STANDARDISED, MAX_STANDARDISED)
        self.std = checks.number("data.std", std, 1 / MAX_STANDARDISED)
        self.preprocess_workers = checks.optional_integer("data.preprocess_workers", preprocess_workers, 1)
        self.samples_per_class = checks.optional_integer("data.samples_per_class", samples_per_class, 1)
        self.pin_memory = checks.flag("data.pin_memory", pin_memory)
        self.persistent_workers = checks.flag("data.persistent_workers", persistent_workers) and num_workers > 0
        self.seed = seed
        self.near_duplicate_distance = checks.integer(
            "data.near_duplicate_distance", near_duplicate_distance, -1, PHASH_BITS
        )

        self.class_names: tuple[str, ...] = CLASS_NAMES
        self.split: Split | None = None
        self.train_samples: list[Sample] = []
        self.val_samples: list[Sample] = []
        self.test_samples: list[Sample] = []
        self.test_twin_free: list[bool] = []
        self.duplicates: DuplicateReport | None = None
        self.summary: dict[str, Any] = {}
        self._datasets: dict[str, CachedImageDataset] = {}
        self._scanned: tuple[list[Sample], list[Sample]] | None = None

    def _scan(self) -> tuple[list[Sample], list[Sample]]:
        # Scanned once per process, so prepare_data and setup hash the files and warn only once.
        if self._scanned is None:
            train = limit_per_class(scan_split(self.root, "train"), self.samples_per_class)
            test = limit_per_class(scan_split(self.root, "test"), self.samples_per_class)
            self._scanned = (train, test)
        return self._scanned

    def _load(self, samples: list[Sample], warn_bad_files: bool) -> CachedImages:
        return load_or_build(
            samples,
            self.preprocess_settings,
            self.cache_dir,
            num_workers=self.preprocess_workers,
            on_bad_file=self.on_bad_file,
            warn_bad_files=warn_bad_files,
        )

    def prepare_data(self) -> None:
        """Build the preprocessing and duplicate-group caches once, before any process reads them.

        ``setup`` reports bad files.
        """
        train, test = self._scan()
        cached = self._load(train + test, warn_bad_files=False)
        if self.duplicates is None:
            self._duplicate_groups(cached.samples)

    def _duplicate_groups(self, samples: list[Sample]) -> list[int]:
        """Return a group id per sample, grouping Training and Testing together so that groups can span both.

        The groups are cached under ``cache_dir``.
        """
        return load_or_compute_groups(
            samples,
            self.cache_dir,
            max_distance=self.near_duplicate_distance,
            hash_size=PERCEPTUAL_HASH_SIZE,
            num_workers=self.preprocess_workers,
        )

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        train_listed, test_listed = self._scan()
        cached = self._load(train_listed + test_listed, warn_bad_files=True)
        in_train = np.array([sample.split == "train" for sample in cached.samples], dtype=bool)
        usable = [sample for sample in cached.samples if sample.split == "train"]
        test_usable = [sample for sample in cached.samples if sample.split == "test"]
        _check_classes(train_listed, usable, "Training", min_classes=2)
        _check_classes(test_listed, test_usable, "Testing", min_classes=1)

        groups = self._duplicate_groups(cached.samples)
        train_groups = [group for group, train in zip(groups, in_train) if train]
        self.duplicates = summarize_groups(cached.samples, groups)
        twin_free = twin_free_mask(cached.samples, groups)

        num_folds, fold = self._fold_choice()
        self.split = make_split(usable, train_groups, num_folds, fold, self.split_seed)
        self.train_samples = [usable[i] for i in self.split.train]
        self.val_samples = [usable[i] for i in self.split.val]
        self.test_samples = test_usable
        self.test_twin_free = [free for free, train in zip(twin_free, in_train) if not train]

        augmentation = build_train_augmentation(**self.augment_options)
        images = cached.images[in_train]
        self._datasets = {
            "train": self._dataset(images[self.split.train], self.train_samples, augmentation),
            "val": self._dataset(images[self.split.val], self.val_samples, None),
            "test": self._dataset(cached.images[~in_train], self.test_samples, None),
        }
        self.summary = self._summarize(cached)
        log.info(
            "Data: %d train, %d validation (fold %d of %d), %d test images; %d unreadable files skipped",
            len(self.train_samples), len(self.val_samples), fold, num_folds, len(self.test_samples),
            self.summary["num_bad_files"],
        )
        log.info(
            "Duplicate groups (data.near_duplicate_distance=%d): %d, %d of them spanning Training and Testing; "
            "%d of %d test images have no twin in Training",
            self.near_duplicate_distance, self.duplicates.num_groups, self.duplicates.cross_split_groups,
            self.duplicates.num_twin_free, len(self.test_samples),
        )
        if cached.mask_fallbacks:
            log.warning(
                "%d image(s) were used whole, without masking or cropping, because their brain mask covered "
                "less than data.preprocess.min_mask_fraction=%s of the image or the image was constant",
                cached.mask_fallbacks, self.preprocess_settings.min_mask_fraction,
            )

    def _fold_choice(self) -> tuple[int, int]:
        if self.fold is not None:
            return self.num_folds or DEFAULT_NUM_FOLDS, self.fold
        # The hold-out is fold 0 of round(1 / val_fraction) grouped folds, so only fractions
        # 1/2, 1/3, 1/4, ... are met exactly. A warning states any other fraction's rounding.
        num_folds = round(1 / self.val_fraction)
        if abs(1 / num_folds - self.val_fraction) > 0.005:
            log.warning("data.val_fraction=%s is taken as 1/%d = %.3f: the hold-out is one of %d grouped folds",
                        self.val_fraction, num_folds, 1 / num_folds, num_folds)
        return num_folds, 0

    def _dataset(self, images: np.ndarray, samples: list[Sample], augmentation) -> CachedImageDataset:
        return CachedImageDataset(images, [s.label for s in samples], self.mean, self.std, augmentation)

    def _summarize(self, cached: CachedImages) -> dict[str, Any]:
        def per_class(samples: list[Sample]) -> dict[str, int]:
            counts = Counter(s.label for s in samples)
            return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

        twin_free = [sample for sample, free in zip(self.test_samples, self.test_twin_free) if free]
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
                "test_twin_free": per_class(twin_free),
            },
            "duplicates": {
                "near_duplicate_distance": self.near_duplicate_distance,
                "perceptual_hash_bits": PERCEPTUAL_HASH_SIZE**2,
                "groups": self.duplicates.num_groups,
                "images_in_groups": self.duplicates.images_in_groups,
                "cross_split_groups": self.duplicates.cross_split_groups,
                "label_conflict_groups": self.duplicates.label_conflict_groups,
            },
            "num_bad_files": len(cached.bad_files),
            "bad_files": [{"path": bad.path, "reason": bad.reason} for bad in cached.bad_files],
            "mask_fallbacks": cached.mask_fallbacks,
        }

    def manifest(self) -> dict[str, Any]:
        """Return the fold manifest: hash, fold and the train and validation files."""
        train_cached_order = self.train_samples + self.val_samples
        train_index = list(range(len(self.train_samples)))
        val_index = list(range(len(self.train_samples), len(train_cached_order)))
        manifest = build_manifest(train_cached_order, train_index, val_index)
        return {
            "fold": self.split.fold,
            "num_folds": self.split.num_folds,
            "split_seed": self.split_seed,
            "near_duplicate_distance": self.near_duplicate_distance,
            **manifest,
        }

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
            # A private generator for the worker base seed keeps the global random state untouched.
            generator=torch.Generator().manual_seed(self.seed),
        )

    def train_dataloader(self) -> DataLoader:
        """Return the shuffled training loader, which on one device resumes mid-epoch exactly.

        Under several processes Lightning replaces the sampler with a DistributedSampler,
        so the plain shuffled loader is used there.
        """
        # NOTE: under DDP, a run resumed mid-epoch trains on the first batches of the epoch's
        # order again instead of the ones it missed, and Lightning warns about it.
        if self.trainer is not None and self.trainer.world_size > 1:
            return self._loader("train", shuffle=True)
        dataset = self._datasets["train"]
        return ResumableDataLoader(
            dataset,
            sampler=EpochShuffleSampler(len(dataset), self.seed),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            generator=torch.Generator().manual_seed(self.seed),
        )

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


def _check_classes(listed: list[Sample], usable: list[Sample], split_name: str, min_classes: int) -> None:
    """Raise ValueError when a class folder has files but no readable image, or too few classes remain.

    A class without a folder is allowed here; ``scan_split`` has already warned about it.
    """
    listed_counts = Counter(sample.label for sample in listed)
    usable_counts = Counter(sample.label for sample in usable)
    unreadable = [label for label in sorted(listed_counts) if usable_counts[label] == 0]
    if unreadable:
        details = ", ".join(f"{CLASS_NAMES[label]} ({listed_counts[label]} file(s))" for label in unreadable)
        raise ValueError(
            f"no file of {split_name} class(es) {details} is a readable image; the warning above names "
            "each file and its reason. Replace the files, or delete the class folder to go without that class."
        )
    if len(usable_counts) < min_classes:
        present = ", ".join(CLASS_NAMES[label] for label in sorted(usable_counts)) or "none"
        raise ValueError(
            f"{split_name} has readable images of {len(usable_counts)} class(es) ({present}), but at least "
            f"{min_classes} are needed. Add class folders under {split_name}/ (names: {', '.join(CLASS_NAMES)})."
        )
