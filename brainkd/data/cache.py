"""Content-keyed on-disk cache of preprocessed images.

Each entry is ``<cache_dir>/<settings key>/<sha256 of the file>.npz``, so a changed file
or changed settings never reuse a stale entry. Entries are written to a temporary file and
renamed into place, so jobs that build the same cache at once each leave a whole entry,
and a reader never sees half a file. An entry that fails to load is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from contextlib import closing
from dataclasses import asdict, dataclass, field
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from brainkd import checks
from brainkd.data.folders import Sample
from brainkd.data.preprocess import PreprocessSettings, preprocess_image
from brainkd.data.processes import main_module_hidden
from brainkd.data.reading import ImageReadError, read_gray
from brainkd.atomic import atomic_open

log = logging.getLogger(__name__)

# Version 2: constant images are marked as mask fallbacks.
CACHE_FORMAT_VERSION = 2
BAD_FILE_POLICIES = ("skip", "error")


@dataclass
class BadFile:
    """A file that was listed but could not be used, with the reason."""

    path: str
    reason: str


@dataclass
class CachedImages:
    """Preprocessed images of the usable samples, in the order of ``samples``."""

    images: np.ndarray
    samples: list[Sample]
    bad_files: list[BadFile] = field(default_factory=list)
    mask_fallbacks: int = 0


def settings_key(settings: PreprocessSettings) -> str:
    """Return a short hash of the preprocessing settings and the cache format."""
    payload = json.dumps({"version": CACHE_FORMAT_VERSION, **asdict(settings)}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def entry_path(cache_dir: Path, settings: PreprocessSettings, content_hash: str) -> Path:
    """Return where the entry of one file's content under these settings lives."""
    return cache_dir / settings_key(settings) / f"{content_hash}.npz"


def write_entry(path: Path, image: np.ndarray, mask_fallback: bool) -> None:
    """Write an entry atomically: to a temporary file in the same folder, then rename."""
    with atomic_open(path, "wb") as stream:
        np.savez(stream, image=image, mask_fallback=np.array(mask_fallback))


def read_entry(path: Path, image_size: int) -> tuple[np.ndarray, bool] | None:
    """Load an entry, or return None when it is missing, truncated or of the wrong shape."""
    try:
        with np.load(path) as entry:
            image = entry["image"]
            mask_fallback = bool(entry["mask_fallback"])
    except (FileNotFoundError, NotADirectoryError):
        # NotADirectoryError: data.cache_dir is a file, which check_writable reports.
        return None
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        log.warning("cache entry %s is corrupt; rebuilding it", path)
        return None
    if image.shape != (image_size, image_size) or image.dtype != np.uint8:
        log.warning("cache entry %s has shape %s, expected %s; rebuilding it", path, image.shape, (image_size, image_size))
        return None
    return image, mask_fallback


def _build_one(job: tuple[str, str, PreprocessSettings]) -> tuple[str, np.ndarray | None, bool, str | None]:
    """Preprocess one file and write its entry; runs in a worker process."""
    path, destination, settings = job
    try:
        gray = read_gray(path)
    except ImageReadError as error:
        return path, None, False, error.reason

    result = preprocess_image(gray, settings)
    image = np.round(result.image * 255.0).astype(np.uint8)
    write_entry(Path(destination), image, result.mask_fallback)
    return path, image, result.mask_fallback, None


def _init_worker() -> None:
    import cv2

    # One OpenCV thread per process: the pool already uses every core.
    cv2.setNumThreads(1)


def load_or_build(
    samples: list[Sample],
    settings: PreprocessSettings,
    cache_dir: str | Path,
    num_workers: int | None = None,
    on_bad_file: str = "skip",
    description: str = "preprocessing",
    warn_bad_files: bool = True,
) -> CachedImages:
    """Return the preprocessed images of ``samples``, building missing cache entries in parallel.

    Unreadable files are skipped and listed in ``bad_files`` (``on_bad_file="skip"``), with
    one warning naming them unless ``warn_bad_files`` is false, or raise ImageReadError at
    the first one (``on_bad_file="error"``). No entry is written for an unreadable file.
    """
    checks.choice("data.on_bad_file", on_bad_file, BAD_FILE_POLICIES)
    cache_dir = Path(cache_dir)
    size = settings.image_size

    images: dict[str, np.ndarray] = {}
    fallbacks: dict[str, bool] = {}
    missing: list[Sample] = []
    for sample in samples:
        entry = read_entry(entry_path(cache_dir, settings, sample.content_hash), size)
        if entry is None:
            missing.append(sample)
        else:
            images[sample.path], fallbacks[sample.path] = entry

    bad_files: list[BadFile] = []
    if missing:
        workers = max(1, min(num_workers or os.cpu_count() or 1, len(missing)))
        check_writable(cache_dir)
        log.info("Preprocessing %d of %d images with %d processes into %s", len(missing), len(samples), workers, cache_dir)
        jobs = [(s.path, str(entry_path(cache_dir, settings, s.content_hash)), settings) for s in missing]
        try:
            with closing(_iter_results(jobs, workers, description)) as results:
                for path, image, mask_fallback, reason in results:
                    if image is None:
                        if on_bad_file == "error":
                            raise ImageReadError(path, f"{reason} (set data.on_bad_file=skip to skip such files)")
                        bad_files.append(BadFile(path=path, reason=reason))
                    else:
                        images[path], fallbacks[path] = image, mask_fallback
        except OSError as error:
            # Reading errors become ImageReadError inside the workers, so this one came from a write.
            raise ValueError(_unwritable_message(cache_dir, error)) from error

    bad_files.sort(key=lambda bad: bad.path)
    if bad_files and warn_bad_files:
        log.warning("%s", _bad_files_message(bad_files))

    usable = [sample for sample in samples if sample.path in images]
    stacked = np.stack([images[s.path] for s in usable]) if usable else np.zeros((0, size, size), dtype=np.uint8)
    return CachedImages(
        images=stacked,
        samples=usable,
        bad_files=bad_files,
        mask_fallbacks=sum(fallbacks[s.path] for s in usable),
    )


def check_writable(cache_dir: Path) -> None:
    """Raise ValueError with a fix when no file can be created in ``cache_dir``."""
    problem = None
    if cache_dir.is_symlink() and not cache_dir.exists():
        problem = "it is a broken symbolic link"
    elif cache_dir.exists() and not cache_dir.is_dir():
        problem = "it is not a folder"
    if problem:
        raise ValueError(
            f"cannot write the preprocessing cache in {cache_dir} (data.cache_dir): {problem}. "
            "Set BRAINKD_CACHE or data.cache_dir to a folder path."
        )
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=cache_dir):
            pass
    except OSError as error:
        raise ValueError(_unwritable_message(cache_dir, error)) from error


def _unwritable_message(cache_dir: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename else ""
    return (
        f"cannot write the preprocessing cache in {cache_dir} (data.cache_dir): {reason}{where}. "
        "Set BRAINKD_CACHE or data.cache_dir to a writable folder with free space: each image "
        "takes image_size x image_size bytes, 164 MB for the public dataset's 3,264 images at 224 px."
    )


def _bad_files_message(bad_files: list[BadFile]) -> str:
    """Return one message that counts the unreadable files and names each with its reason."""
    listing = "\n".join(f"  {bad.path}: {bad.reason}" for bad in bad_files)
    return (
        f"Skipped {len(bad_files)} unreadable file(s) (set data.on_bad_file=error to stop at the first):\n{listing}"
    )


def _iter_results(jobs: list, workers: int, description: str):
    """Yield the result of each job as it finishes; closing the generator stops the workers."""
    progress = tqdm(total=len(jobs), desc=description, unit="img")
    try:
        if workers == 1:
            _init_worker()
            for job in jobs:
                yield _build_one(job)
                progress.update()
        else:
            # An executor, unlike multiprocessing.Pool, raises BrokenProcessPool when a worker
            # dies (killed, out of memory) instead of waiting for its results forever.
            with main_module_hidden():
                pool = ProcessPoolExecutor(workers, mp_context=get_context("forkserver"), initializer=_init_worker)
                # The executor starts its processes while map() submits the work.
                results = pool.map(_build_one, jobs, chunksize=4)
            with pool:
                try:
                    for result in results:
                        yield result
                        progress.update()
                except BrokenProcessPool as error:
                    raise RuntimeError(
                        f"a preprocessing worker process died ({error}); finished entries are kept, so run "
                        "again, with fewer data.preprocess_workers if memory ran out"
                    ) from None
    finally:
        progress.close()
