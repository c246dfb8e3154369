"""A messy dataset: every file under a class folder is used or reported, and broken layouts raise clear errors."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.data.folders import scan_split
from brainkd.data.preprocess import PreprocessSettings, preprocess_image
from brainkd.data.reading import ImageReadError, read_gray
from job_helpers import read_results, run_in_process, tiny_overrides
from messy_data import CLASS_FOLDERS, make_messy_dataset, make_plain_dataset


def build_datamodule(root, cache_dir, **options) -> BrainMRIDataModule:
    settings = {"image_size": 16, "batch_size": 4, "val_fraction": 0.25, "preprocess_workers": 1}
    return BrainMRIDataModule(root=str(root), cache_dir=str(cache_dir), **{**settings, **options})


@pytest.fixture(scope="module")
def messy(tmp_path_factory):
    return make_messy_dataset(tmp_path_factory.mktemp("messy") / "dataset")


@pytest.fixture(scope="module")
def messy_setup(messy, tmp_path_factory):
    """Set up a DataModule on the messy dataset and keep the records that its logging emitted."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("brainkd")
    logger.addHandler(handler)
    previous_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        datamodule = build_datamodule(messy.root, tmp_path_factory.mktemp("messy-cache"))
        datamodule.prepare_data()
        datamodule.setup("fit")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous_level)
    return datamodule, records


def relpaths(datamodule: BrainMRIDataModule) -> set[str]:
    stages = ("train", "val", "test")
    return {sample.relpath for stage in stages for sample in datamodule.samples(stage)}


def test_scan_skips_only_hidden_files(messy):
    listed = {sample.relpath for split in ("train", "test") for sample in scan_split(messy.root, split)}
    assert listed == messy.used | set(messy.bad)
    assert not listed & messy.ignored


def test_messy_files_used_as_expected(messy, messy_setup):
    datamodule, _ = messy_setup
    assert relpaths(datamodule) == messy.used


def test_bad_files_reported_with_reasons(messy, messy_setup):
    datamodule, _ = messy_setup
    reported = {entry["path"]: entry["reason"] for entry in datamodule.summary["bad_files"]}
    assert set(reported) == {str(messy.root / relpath) for relpath in messy.bad}
    for relpath, fragment in messy.bad.items():
        assert fragment in reported[str(messy.root / relpath)], relpath
    assert datamodule.summary["num_bad_files"] == len(messy.bad)


def test_bad_files_get_one_warning(messy, messy_setup):
    _, records = messy_setup
    messages = [record.getMessage() for record in records if record.levelno == logging.WARNING]
    warnings = [message for message in messages if "unreadable" in message]
    assert len(warnings) == 1
    assert f"Skipped {len(messy.bad)} unreadable file(s)" in warnings[0]
    for relpath in messy.bad:
        assert str(messy.root / relpath) in warnings[0]


def test_hidden_files_counted_in_log(messy_setup):
    _, records = messy_setup
    messages = [record.getMessage() for record in records]
    assert any("Ignored" in message and "hidden or system file(s)" in message for message in messages)


def test_missing_test_class_warns(messy_setup):
    datamodule, records = messy_setup
    warnings = [record.getMessage() for record in records if record.levelno == logging.WARNING]
    missing = [message for message in warnings if "Testing has no folder for class(es) pituitary" in message]
    assert len(missing) == 1
    assert datamodule.summary["counts"]["test"]["pituitary"] == 0


def test_mask_fallbacks_counted(messy, messy_setup):
    datamodule, records = messy_setup
    assert datamodule.summary["mask_fallbacks"] == len(messy.fallback)
    messages = [record.getMessage() for record in records]
    assert any(f"{len(messy.fallback)} image(s) were used whole" in message for message in messages)


def test_training_images_are_finite(messy_setup):
    datamodule, _ = messy_setup
    for stage in ("train", "val", "test"):
        dataset = datamodule.dataset(stage)
        for index in range(len(dataset)):
            image, _, _ = dataset[index]
            assert image.isfinite().all(), (stage, index)


@pytest.mark.parametrize("value", [0, 1, 128, 255])
def test_constant_image_falls_back_without_nan(value):
    image = np.full((40, 40), value, dtype=np.uint8)
    result = preprocess_image(image, PreprocessSettings(image_size=16))
    assert result.mask_fallback
    assert np.isfinite(result.image).all()
    assert result.image.shape == (16, 16)


def test_exif_orientation_applied(messy):
    gray = read_gray(messy.root / messy.exif_rotated)
    assert gray.shape == (48, 24)
    assert gray[:24].mean() > 200
    assert gray[24:].mean() < 50


def test_sixteen_bit_png_keeps_content(messy):
    gray = read_gray(messy.root / "Training" / CLASS_FOLDERS["pituitary"] / "sixteen_bit.png")
    assert gray.dtype == np.uint8
    assert gray.min() == 0
    assert gray.max() == 255


def test_png_named_jpg_is_read(messy):
    assert read_gray(messy.root / "Training" / CLASS_FOLDERS["glioma"] / "png_inside.jpg").shape == (48, 48)


def test_text_named_jpg_is_rejected(messy):
    with pytest.raises(ImageReadError, match="not an image format"):
        read_gray(messy.root / "Training" / CLASS_FOLDERS["meningioma"] / "notes_named_as_image.jpg")


def test_error_policy_names_first_bad_file(messy, tmp_path):
    datamodule = build_datamodule(messy.root, tmp_path / "cache", on_bad_file="error")
    with pytest.raises(ImageReadError) as error:
        datamodule.prepare_data()
    # Files are read in path order, and upper-case folder names sort first.
    first_bad = messy.root / "Training" / CLASS_FOLDERS["meningioma"] / "labels.csv"
    assert str(first_bad) in str(error.value)
    assert "data.on_bad_file=skip" in str(error.value)


def test_empty_class_folder_raises(tmp_path):
    root = make_plain_dataset(tmp_path / "dataset", classes=("glioma", "meningioma", "no_tumor"))
    empty = root / "Training" / "pituitary_tumor"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"\x00")
    with pytest.raises(ValueError) as error:
        scan_split(root, "train")
    assert str(empty) in str(error.value)
    assert "pituitary" in str(error.value)


def test_absent_class_folder_only_warns(tmp_path, caplog):
    root = make_plain_dataset(tmp_path / "dataset", classes=("glioma", "meningioma", "no_tumor"))
    datamodule = build_datamodule(root, tmp_path / "cache")
    with caplog.at_level(logging.WARNING, logger="brainkd"):
        datamodule.setup("fit")
    assert "has no folder for class(es) pituitary" in caplog.text
    assert datamodule.summary["counts"]["train"]["pituitary"] == 0


def test_class_of_unreadable_files_raises(tmp_path):
    root = make_plain_dataset(tmp_path / "dataset", classes=("glioma", "meningioma", "no_tumor"))
    broken = root / "Training" / "pituitary_tumor"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"")
    (broken / "b.jpg").write_text("not an image")
    datamodule = build_datamodule(root, tmp_path / "cache")
    with pytest.raises(ValueError) as error:
        datamodule.setup("fit")
    assert "pituitary (2 file(s))" in str(error.value)
    assert "Training" in str(error.value)


def test_single_class_dataset_raises(tmp_path):
    root = make_plain_dataset(tmp_path / "dataset", classes=("glioma",))
    datamodule = build_datamodule(root, tmp_path / "cache")
    with pytest.raises(ValueError, match="at least 2 are needed"):
        datamodule.setup("fit")


def test_missing_testing_folder_raises(tmp_path):
    dataset = make_messy_dataset(tmp_path / "dataset", with_testing=False)
    with pytest.raises(FileNotFoundError) as error:
        build_datamodule(dataset.root, tmp_path / "cache").setup("fit")
    assert "Testing/" in str(error.value)
    assert str(dataset.root) in str(error.value)


def test_unknown_class_folder_raises(tmp_path):
    root = make_plain_dataset(tmp_path / "dataset")
    shutil.copytree(root / "Training" / CLASS_FOLDERS["glioma"], root / "Training" / "astrocytoma")
    with pytest.raises(ValueError) as error:
        build_datamodule(root, tmp_path / "cache").setup("fit")
    assert "'astrocytoma'" in str(error.value)
    assert "Rename the folder" in str(error.value)


def test_results_count_bad_files(messy, tmp_path):
    overrides = [*tiny_overrides(messy.root, tmp_path / "cache"), "trainer.max_epochs=1"]
    run_in_process(overrides, tmp_path / "run")
    data = read_results(tmp_path / "run")["data"]
    assert data["num_bad_files"] == len(messy.bad)
    assert {entry["path"] for entry in data["bad_files"]} == {str(messy.root / relpath) for relpath in messy.bad}
    assert data["mask_fallbacks"] == len(messy.fallback)
