"""Group exact and near-duplicate images, summarise the groups and cache the grouping.

Cross-validation keeps each group inside one fold, and the test stage also reports the
Testing images whose group has no Training image ("twin-free").
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import time
from collections import Counter
from dataclasses import dataclass, field
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import imagehash
import numpy as np
from PIL import Image
from tqdm.auto import tqdm

from brainkd.data.folders import CLASS_NAMES, Sample
from brainkd.data.processes import main_module_hidden
from brainkd.data.reading import ImageReadError, read_gray
from brainkd.atomic import atomic_open

log = logging.getLogger(__name__)

GROUPS_CACHE_VERSION = 1

# Below this many distinct files the hashing runs in this process. This is an estimate: starting
# forkserver workers takes about a second, the time to hash some 64 full-size MRI slices.
PARALLEL_MIN_IMAGES = 64

# Maximum size in bytes (16 MiB) of the XOR array that one block of the pairwise Hamming distance builds.
DISTANCE_BLOCK_BYTES = 1 << 24

# Number of set bits in each byte value, for the Hamming distance of packed hashes.
POPCOUNT_TABLE = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def _hash_file(job: tuple[str, str, int]) -> tuple[str, imagehash.ImageHash | None, str | None]:
    """Hash one file and return (content hash, perceptual hash or None, read error or None)."""
    content_hash, path, hash_size = job
    try:
        gray = read_gray(path)
    except ImageReadError as error:
        return content_hash, None, str(error)
    return content_hash, imagehash.phash(Image.fromarray(gray), hash_size=hash_size), None


def perceptual_hashes(
    samples: list[Sample],
    hash_size: int = 8,
    num_workers: int | None = None,
) -> dict[str, imagehash.ImageHash | None]:
    """Compute the DCT perceptual hash (ImageHash ``phash``) of each distinct file content.

    Returns a dict keyed by ``content_hash``. The image is read as gray with ``read_gray``.
    Unreadable files map to None. Lists of at least PARALLEL_MIN_IMAGES distinct contents
    are hashed by ``num_workers`` processes (default: one per CPU core).
    """
    if hash_size < 2:
        raise ValueError(f"hash_size must be at least 2, got {hash_size}")

    first_paths: dict[str, str] = {}
    for sample in samples:
        first_paths.setdefault(sample.content_hash, sample.path)
    jobs = [(content_hash, path, hash_size) for content_hash, path in first_paths.items()]

    workers = max(1, min(num_workers or os.cpu_count() or 1, len(jobs)))
    if len(jobs) < PARALLEL_MIN_IMAGES:
        workers = 1
    log.info("Computing perceptual hashes of %d distinct files with %d process(es)", len(jobs), workers)

    results = []
    progress = tqdm(total=len(jobs), desc="perceptual hashes", unit="img", disable=len(jobs) < PARALLEL_MIN_IMAGES)
    try:
        if workers == 1:
            for job in jobs:
                results.append(_hash_file(job))
                progress.update()
        else:
            chunk_size = max(1, min(32, len(jobs) // (workers * 8)))
            # An executor raises BrokenProcessPool when a worker dies, where Pool would wait forever.
            with main_module_hidden():
                pool = ProcessPoolExecutor(workers, mp_context=get_context("forkserver"))
                hashed = pool.map(_hash_file, jobs, chunksize=chunk_size)
            with pool:
                for result in hashed:
                    results.append(result)
                    progress.update()
    finally:
        progress.close()

    errors = sorted(error for _, _, error in results if error is not None)
    if errors:
        listing = "\n".join(f"  {error}" for error in errors)
        log.warning("%d unreadable file(s) get no perceptual hash and join only exact duplicates:\n%s", len(errors), listing)
    by_content = {content_hash: image_hash for content_hash, image_hash, _ in results}
    return {content_hash: by_content[content_hash] for content_hash in first_paths}


def _pack_hashes(image_hashes: list[imagehash.ImageHash]) -> np.ndarray:
    """Pack hashes of one size into an (n, bytes) uint8 array of their bits."""
    sizes = {image_hash.hash.size for image_hash in image_hashes}
    if len(sizes) > 1:
        raise ValueError(
            f"perceptual hashes of different sizes ({sorted(sizes)} bits) cannot be compared. "
            "Compute all of them with the same hash_size."
        )
    bits = np.stack([image_hash.hash.reshape(-1) for image_hash in image_hashes]).astype(bool)
    return np.packbits(bits, axis=1)


def near_pairs(packed: np.ndarray, max_distance: int) -> list[tuple[int, int]]:
    """Return the index pairs (i < j) of packed hashes within ``max_distance`` bits of each other.

    All pairs are compared, in row blocks so that memory stays near DISTANCE_BLOCK_BYTES.
    """
    count, width = packed.shape
    block_rows = max(1, DISTANCE_BLOCK_BYTES // max(1, count * width))
    pairs: list[tuple[int, int]] = []
    for start in range(0, count, block_rows):
        stop = min(start + block_rows, count)
        differing = packed[start:stop, None, :] ^ packed[None, :, :]
        distances = POPCOUNT_TABLE[differing].sum(axis=2, dtype=np.int32)

        rows, columns = np.nonzero(distances <= max_distance)
        rows = rows + start
        later = columns > rows
        pairs.extend(zip(rows[later].tolist(), columns[later].tolist()))
    return pairs


def _find_root(parents: list[int], node: int) -> int:
    root = node
    while parents[root] != root:
        root = parents[root]
    while parents[node] != root:
        parents[node], node = root, parents[node]
    return root


def duplicate_groups(
    samples: list[Sample],
    max_distance: int = 4,
    hashes: dict[str, imagehash.ImageHash | None] | None = None,
) -> list[int]:
    """Return a group id per sample, joining identical bytes and near-identical images.

    Two files are joined when their content hashes are equal or their perceptual hashes
    differ in at most ``max_distance`` bits. Joining is transitive (single linkage), so a
    chain of close pairs can join images that are not close themselves. A negative
    ``max_distance`` joins exact duplicates only. ImageHash's phash sets the bits above the
    median, so half the bits of a hash are set and most distances are even. ``hashes``
    defaults to ``perceptual_hashes(samples)``. Group ids count from 0 in order of each
    group's first sample.
    """
    contents = list(dict.fromkeys(sample.content_hash for sample in samples))
    node_of = {content_hash: node for node, content_hash in enumerate(contents)}
    parents = list(range(len(contents)))

    if max_distance >= 0 and contents:
        if hashes is None:
            hashes = perceptual_hashes(samples)
        missing = [content_hash for content_hash in contents if content_hash not in hashes]
        if missing:
            raise ValueError(
                f"{len(missing)} sample content hash(es), such as {missing[0]}, are missing from hashes. "
                "Pass the hashes that perceptual_hashes() computed for the same samples."
            )

        hashed = [content_hash for content_hash in contents if hashes[content_hash] is not None]
        if hashed:
            packed = _pack_hashes([hashes[content_hash] for content_hash in hashed])
            for first, second in near_pairs(packed, max_distance):
                root_first = _find_root(parents, node_of[hashed[first]])
                root_second = _find_root(parents, node_of[hashed[second]])
                parents[max(root_first, root_second)] = min(root_first, root_second)

    group_ids: dict[int, int] = {}
    return [group_ids.setdefault(_find_root(parents, node_of[sample.content_hash]), len(group_ids)) for sample in samples]


@dataclass(frozen=True)
class GroupFlags:
    """Properties of one group of more than one image."""

    exact_only: bool
    cross_split: bool
    label_conflict: bool


def describe_groups(samples: list[Sample], groups: list[int]) -> dict[int, GroupFlags]:
    """Return the flags of every group that contains more than one sample, keyed by group id."""
    _check_aligned(samples, groups)
    members: dict[int, list[Sample]] = {}
    for sample, group in zip(samples, groups):
        members.setdefault(group, []).append(sample)

    return {
        group: GroupFlags(
            exact_only=len({sample.content_hash for sample in group_samples}) == 1,
            cross_split=len({sample.split for sample in group_samples}) > 1,
            label_conflict=len({sample.label for sample in group_samples}) > 1,
        )
        for group, group_samples in members.items()
        if len(group_samples) > 1
    }


def twin_free_mask(samples: list[Sample], groups: list[int]) -> list[bool]:
    """Return True for each test sample whose group contains no train sample."""
    _check_aligned(samples, groups)
    groups_with_train = {group for sample, group in zip(samples, groups) if sample.split == "train"}
    return [sample.split == "test" and group not in groups_with_train for sample, group in zip(samples, groups)]


@dataclass
class DuplicateReport:
    """Counts of duplicate groups (groups of more than one image) in a list of samples."""

    num_images: int
    num_train: int
    num_test: int
    # Groups of more than one image, and the images in them.
    num_groups: int
    images_in_groups: int
    # Groups whose members all have identical bytes.
    exact_groups: int
    # Distinct byte contents stored in more than one file, whatever the near-duplicate threshold.
    repeated_contents: int
    cross_split_groups: int
    label_conflict_groups: int
    images_in_groups_by_class: dict[str, int]
    num_twin_free: int
    twin_free_by_class: dict[str, int]
    test_by_class: dict[str, int]
    twin_free: list[Sample] = field(default_factory=list, repr=False)


def summarize_groups(samples: list[Sample], groups: list[int]) -> DuplicateReport:
    """Count the duplicate groups, their images and the twin-free test samples."""
    flags = describe_groups(samples, groups)
    in_groups = [sample for sample, group in zip(samples, groups) if group in flags]
    twin_free = [sample for sample, free in zip(samples, twin_free_mask(samples, groups)) if free]
    file_counts = Counter(sample.content_hash for sample in samples)

    def count_by_class(subset: list[Sample]) -> dict[str, int]:
        counts = Counter(sample.label for sample in subset)
        return {name: counts.get(label, 0) for label, name in enumerate(CLASS_NAMES)}

    return DuplicateReport(
        num_images=len(samples),
        num_train=sum(sample.split == "train" for sample in samples),
        num_test=sum(sample.split == "test" for sample in samples),
        num_groups=len(flags),
        images_in_groups=len(in_groups),
        exact_groups=sum(group.exact_only for group in flags.values()),
        repeated_contents=sum(count > 1 for count in file_counts.values()),
        cross_split_groups=sum(group.cross_split for group in flags.values()),
        label_conflict_groups=sum(group.label_conflict for group in flags.values()),
        images_in_groups_by_class=count_by_class(in_groups),
        num_twin_free=len(twin_free),
        twin_free_by_class=count_by_class(twin_free),
        test_by_class=count_by_class([sample for sample in samples if sample.split == "test"]),
        twin_free=twin_free,
    )


def format_summary(report: DuplicateReport) -> str:
    """Format the report as a few lines of text for a log or a terminal."""
    in_groups = ", ".join(f"{name} {count}" for name, count in report.images_in_groups_by_class.items())
    twin_free = ", ".join(
        f"{name} {report.twin_free_by_class[name]}/{total}" for name, total in report.test_by_class.items()
    )
    return "\n".join(
        [
            f"{report.num_images} images ({report.num_train} train, {report.num_test} test)",
            f"duplicate groups: {report.num_groups} holding {report.images_in_groups} images "
            f"({report.exact_groups} of identical files only, {report.repeated_contents} byte contents stored more than once)",
            f"groups spanning train and test: {report.cross_split_groups}",
            f"groups with conflicting labels: {report.label_conflict_groups}",
            f"images in duplicate groups by class: {in_groups}",
            f"twin-free test images: {report.num_twin_free} of {report.num_test} ({twin_free})",
        ]
    )


def _write_atomically(path: Path, text: str) -> None:
    """Write text to a temporary file in the same folder, then rename it over ``path``."""
    with atomic_open(path, "w", newline="", encoding="utf-8") as stream:
        stream.write(text)


CSV_COLUMNS = (
    "group",
    "relpath",
    "split",
    "class_name",
    "content_hash",
    "perceptual_hash",
    "exact_only",
    "cross_split",
    "label_conflict",
)


def write_groups_csv(
    path: str | Path,
    samples: list[Sample],
    groups: list[int],
    hashes: dict[str, imagehash.ImageHash | None] | None = None,
) -> None:
    """Write one CSV row per image in a group of more than one image, sorted by group.

    The perceptual hash column contains the hex hash. It is empty without ``hashes`` and for
    an unreadable file. The flag columns contain ``True`` or ``False``.
    """
    flags = describe_groups(samples, groups)
    rows = sorted(
        ((group, sample) for sample, group in zip(samples, groups) if group in flags),
        key=lambda row: (row[0], row[1].relpath),
    )

    lines = []
    for group, sample in rows:
        image_hash = hashes.get(sample.content_hash) if hashes is not None else None
        lines.append(
            [
                group,
                sample.relpath,
                sample.split,
                CLASS_NAMES[sample.label],
                sample.content_hash,
                "" if image_hash is None else str(image_hash),
                flags[group].exact_only,
                flags[group].cross_split,
                flags[group].label_conflict,
            ]
        )

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(lines)
    _write_atomically(Path(path), buffer.getvalue())
    log.info("Wrote %d rows of %d duplicate groups to %s", len(lines), len(flags), path)


def groups_cache_key(samples: list[Sample], max_distance: int, hash_size: int) -> str:
    """Return the SHA-256 hex digest of the sorted (relpath, content_hash) list and the settings."""
    payload = {
        "version": GROUPS_CACHE_VERSION,
        "imagehash": imagehash.__version__,
        "max_distance": max_distance,
        "hash_size": hash_size,
        "samples": sorted([sample.relpath, sample.content_hash] for sample in samples),
    }
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()


def _renumber(groups: list[int]) -> list[int]:
    """Renumber group ids from 0 in order of first appearance."""
    new_ids: dict[int, int] = {}
    return [new_ids.setdefault(group, len(new_ids)) for group in groups]


def _read_cached_groups(path: Path, expected_length: int) -> list[int] | None:
    """Load cached groups, or return None when the file is missing or corrupt."""
    try:
        groups = json.loads(path.read_text(encoding="utf-8"))["groups"]
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as error:
        log.warning("Duplicate-group cache %s is corrupt (%s), so the groups are recomputed", path, error)
        return None

    valid = isinstance(groups, list) and all(isinstance(group, int) and not isinstance(group, bool) for group in groups)
    if not valid or len(groups) != expected_length:
        log.warning(
            "Duplicate-group cache %s does not contain %d integer group ids, so the groups are recomputed",
            path,
            expected_length,
        )
        return None
    return groups


def load_or_compute_groups(
    samples: list[Sample],
    cache_dir: str | Path,
    max_distance: int,
    hash_size: int,
    num_workers: int | None = None,
) -> list[int]:
    """Return ``duplicate_groups`` of the samples, reading or writing ``<cache_dir>/duplicates/<key>.json``.

    The key covers the relative paths, content hashes and settings but not the order of
    ``samples``, so the cache stores groups in relpath order and maps them back here.
    A corrupt cache file is logged and overwritten.
    """
    key = groups_cache_key(samples, max_distance, hash_size)
    path = Path(cache_dir) / "duplicates" / f"{key}.json"
    order = sorted(range(len(samples)), key=lambda index: (samples[index].relpath, samples[index].content_hash))

    cached = _read_cached_groups(path, len(samples))
    if cached is not None:
        groups = [0] * len(samples)
        for position, index in enumerate(order):
            groups[index] = cached[position]
        log.info("Loaded duplicate groups of %d images from %s", len(samples), path)
        return _renumber(groups)

    started = time.perf_counter()
    hashes = perceptual_hashes(samples, hash_size, num_workers) if max_distance >= 0 else None
    groups = duplicate_groups(samples, max_distance, hashes)
    log.info(
        "Grouped %d images into %d groups (max_distance=%d) in %.1f s",
        len(samples),
        len(set(groups)),
        max_distance,
        time.perf_counter() - started,
    )

    payload = {"max_distance": max_distance, "hash_size": hash_size, "groups": [groups[index] for index in order]}
    _write_atomically(path, json.dumps(payload))
    return groups


def _check_aligned(samples: list[Sample], groups: list[int]) -> None:
    if len(samples) != len(groups):
        raise ValueError(
            f"got {len(groups)} group ids for {len(samples)} samples. Pass the groups that "
            "duplicate_groups() returned for this same sample list."
        )
