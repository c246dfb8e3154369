"""Caches written atomically: concurrent builders, corrupt entries, checkpoints cut short."""

from __future__ import annotations

import errno
import json
import logging
import os
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from brainkd import checkpoints, disk, failures
from brainkd.checkpoints import AtomicCheckpointIO
from brainkd.disk import WriteFailed
from brainkd.data import cache
from brainkd.data.cache import entry_path, load_or_build, read_entry
from brainkd.data.duplicates import load_or_compute_groups
from brainkd.data.folders import scan_split
from brainkd.data.preprocess import PreprocessSettings
from messy_data import make_plain_dataset

SETTINGS = PreprocessSettings(image_size=16, denoise_strength=0.0)


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    root = make_plain_dataset(tmp_path_factory.mktemp("cache-data") / "dataset", train_per_class=3, test_per_class=1)
    return scan_split(root, "train") + scan_split(root, "test")


def build_cache(arguments: tuple[list, str]) -> list[bytes]:
    """Build the cache in a separate process and return the preprocessed images as bytes."""
    samples, cache_dir = arguments
    cached = load_or_build(samples, SETTINGS, cache_dir, num_workers=1)
    return [image.tobytes() for image in cached.images]


def group_duplicates(arguments: tuple[list, str]) -> list[int]:
    samples, cache_dir = arguments
    return load_or_compute_groups(samples, cache_dir, max_distance=4, hash_size=8, num_workers=1)


def leftover_temporary_files(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


def test_concurrent_builds_leave_valid_cache(samples, tmp_path):
    cache_dir = str(tmp_path / "cache")
    with get_context("forkserver").Pool(2) as pool:
        first, second = pool.map(build_cache, [(samples, cache_dir), (samples, cache_dir)])
    assert first == second

    reread = load_or_build(samples, SETTINGS, cache_dir, num_workers=1)
    assert [image.tobytes() for image in reread.images] == first
    for sample in samples:
        assert read_entry(entry_path(Path(cache_dir), SETTINGS, sample.content_hash), 16) is not None
    assert leftover_temporary_files(tmp_path) == []


def test_concurrent_grouping_leaves_valid_cache(samples, tmp_path):
    cache_dir = str(tmp_path / "cache")
    with get_context("forkserver").Pool(2) as pool:
        first, second = pool.map(group_duplicates, [(samples, cache_dir), (samples, cache_dir)])
    assert first == second
    (cache_file,) = (tmp_path / "cache" / "duplicates").glob("*.json")
    assert len(json.loads(cache_file.read_text())["groups"]) == len(samples)
    assert leftover_temporary_files(tmp_path) == []


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def empty(path: Path) -> None:
    path.write_bytes(b"")


def garble(path: Path) -> None:
    path.write_bytes(b"\x93NUMPY garbage" * 10)


def shrink(path: Path) -> None:
    with path.open("wb") as stream:
        np.savez(stream, image=np.zeros((8, 8), np.uint8), mask_fallback=np.array(False))


def rename_key(path: Path) -> None:
    with path.open("wb") as stream:
        np.savez(stream, pixels=np.zeros((16, 16), np.uint8))


@pytest.mark.parametrize("damage", [truncate, empty, garble, shrink, rename_key])
def test_damaged_entry_is_rebuilt(samples, tmp_path, caplog, damage):
    cache_dir = tmp_path / "cache"
    expected = load_or_build(samples, SETTINGS, cache_dir, num_workers=1).images
    entry = entry_path(cache_dir, SETTINGS, samples[0].content_hash)
    damage(entry)

    with caplog.at_level(logging.WARNING, logger="brainkd.data.cache"):
        rebuilt = load_or_build(samples, SETTINGS, cache_dir, num_workers=1)
    assert str(entry) in caplog.text
    assert "rebuilding it" in caplog.text
    assert np.array_equal(rebuilt.images, expected)
    assert read_entry(entry, 16) is not None


def test_cache_under_file_names_setting(samples, tmp_path):
    (tmp_path / "not-a-folder").write_text("")
    with pytest.raises(ValueError) as error:
        load_or_build(samples, SETTINGS, tmp_path / "not-a-folder" / "cache", num_workers=1)
    message = str(error.value)
    assert message.startswith(f"cannot write the preprocessing cache in {tmp_path / 'not-a-folder' / 'cache'} (data.cache_dir)")
    assert "Not a directory" in message
    assert "BRAINKD_CACHE" in message


def test_cache_dir_that_is_a_file_is_named(samples, tmp_path, caplog):
    (tmp_path / "afile").write_text("")
    with pytest.raises(ValueError) as error:
        load_or_build(samples, SETTINGS, tmp_path / "afile", num_workers=1)
    assert str(error.value).startswith(f"cannot write the preprocessing cache in {tmp_path / 'afile'} (data.cache_dir): it is not a folder")
    assert "corrupt" not in caplog.text


def test_full_disk_names_cache_setting(samples, tmp_path, monkeypatch):
    def full_disk(path, image, mask_fallback):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(cache, "write_entry", full_disk)
    with pytest.raises(ValueError) as error:
        load_or_build(samples, SETTINGS, tmp_path / "cache", num_workers=1)
    assert "cannot write the preprocessing cache" in str(error.value)
    assert "No space left on device" in str(error.value)
    assert leftover_temporary_files(tmp_path) == []


class FillingStream:
    """A file whose disk fills up after ``room`` bytes, as ENOSPC does to a real write."""

    def __init__(self, stream, room):
        self.stream, self.room = stream, room

    def write(self, data):
        size = memoryview(data).nbytes
        if size > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= size
        return self.stream.write(data)

    def __getattr__(self, name):
        return getattr(self.stream, name)


def test_full_disk_checkpoint_save_error(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)
    real_open = checkpoints.atomic_open

    @contextmanager
    def filling_open(target, mode, sync=False):
        with real_open(target, mode, sync=sync) as stream:
            yield FillingStream(stream, room=4096)

    monkeypatch.setattr(checkpoints, "atomic_open", filling_open)
    with pytest.raises(WriteFailed) as error:
        io.save_checkpoint({"global_step": 2, "weights": torch.zeros(1_000_000)}, path)
    message = str(error.value)
    assert message.startswith(f"could not write the checkpoint {path} (about 4.0 MB): No space left on device, with ")
    assert f"MB free in {tmp_path}. Free space there, or set hydra.run.dir" in message
    assert error.value.errno == errno.ENOSPC
    # torch's own "unexpected pos" error is not what the user reads.
    assert "unexpected pos" not in message
    assert failures.is_user_error(error.value)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert leftover_temporary_files(tmp_path) == []


def test_checkpoint_size_estimate_matches_file(tmp_path):
    model = torch.nn.Linear(1000, 500)
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.ones(2, 1000)).sum().backward()
    optimizer.step()
    path = tmp_path / "model.ckpt"
    torch.save({"state_dict": model.state_dict(), "optimizer_states": [optimizer.state_dict()]}, path)
    estimate = checkpoints.checkpoint_bytes(model, "adamw")
    assert estimate == 3 * 500_500 * 4
    assert abs(path.stat().st_size - estimate) < 0.01 * estimate


def test_short_disk_warns_before_training(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(disk.shutil, "disk_usage", lambda folder: SimpleNamespace(free=50_000_000))
    folder = tmp_path / "teacher" / "checkpoints"
    with caplog.at_level(logging.WARNING, logger="brainkd.checkpoints"):
        assert not checkpoints.warn_if_short_of_space(folder, 40_000_000)
        assert checkpoints.warn_if_short_of_space(folder, 300_000_000)
    assert f"{folder} has 50 MB free, and this stage's checkpoints take about 300 MB while it trains" in caplog.text
    assert len(caplog.records) == 1


def test_corrupt_group_cache_is_recomputed(samples, tmp_path, caplog):
    expected = load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8, num_workers=1)
    (cache_file,) = (tmp_path / "duplicates").glob("*.json")
    cache_file.write_text('{"groups": [0, 1')
    with caplog.at_level(logging.WARNING, logger="brainkd.data.duplicates"):
        assert load_or_compute_groups(samples, tmp_path, max_distance=4, hash_size=8, num_workers=1) == expected
    assert "is corrupt" in caplog.text
    assert json.loads(cache_file.read_text())["groups"]


def test_checkpoint_save_replaces_whole_file(tmp_path):
    path = tmp_path / "checkpoints" / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1, "weights": torch.ones(3)}, path)
    io.save_checkpoint({"global_step": 2, "weights": torch.zeros(3)}, path)
    assert io.load_checkpoint(path)["global_step"] == 2
    assert leftover_temporary_files(tmp_path) == []


def test_failed_checkpoint_save_keeps_previous(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"global_step": 1}, path)
    with pytest.raises(Exception):
        # A lambda cannot be pickled, so torch.save fails part way through writing.
        io.save_checkpoint({"global_step": 2, "broken": lambda: None}, path)
    assert io.load_checkpoint(path)["global_step"] == 1
    assert leftover_temporary_files(tmp_path) == []
