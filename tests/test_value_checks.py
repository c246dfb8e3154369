"""Out-of-range or mistyped config values fail at once, with the key, the range and the value."""

from __future__ import annotations

import pytest

from brainkd import checks
from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.data.preprocess import PreprocessSettings
from brainkd.modules.base import check_optim_options
from job_helpers import run_in_process, tiny_overrides


def datamodule(tmp_path, **options):
    options = {"cache_dir": str(tmp_path / "cache"), **options}
    return BrainMRIDataModule(root=str(tmp_path / "data"), **options)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"batch_size": 0}, "data.batch_size must be an integer >= 1, got 0"),
        ({"image_size": "abc"}, "data.image_size must be an integer, got 'abc'"),
        ({"image_size": -5}, "data.image_size must be an integer in [8, 1024], got -5"),
        ({"image_size": 4096}, "data.image_size must be an integer in [8, 1024], got 4096"),
        ({"num_workers": -1}, "data.num_workers must be an integer >= 0, got -1"),
        ({"val_fraction": 0.9}, "data.val_fraction must be a number in (0, 0.5], got 0.9"),
        ({"val_fraction": 0}, "data.val_fraction must be a number in (0, 0.5], got 0"),
        ({"num_folds": 1, "fold": 0}, "data.num_folds must be an integer >= 2, got 1"),
        ({"num_folds": 5, "fold": 5}, "data.fold must be an integer in [0, 4], got 5"),
        ({"fold": 10}, "data.fold must be an integer in [0, 9], got 10"),
        ({"std": 0}, "data.std must be a number >= 1e-06, got 0"),
        ({"mean": float("nan")}, "data.mean must be a finite number, got nan"),
        ({"on_bad_file": "ignore"}, "data.on_bad_file must be one of skip, error, got 'ignore'"),
        ({"samples_per_class": 0}, "data.samples_per_class must be an integer >= 1, got 0"),
        ({"preprocess_workers": 0}, "data.preprocess_workers must be an integer >= 1, got 0"),
        ({"pin_memory": "yes"}, "data.pin_memory must be true or false, got 'yes'"),
        ({"near_duplicate_distance": 65}, "data.near_duplicate_distance must be an integer in [-1, 64], got 65"),
        ({"batch_size": True}, "data.batch_size must be an integer, got True"),
        ({"std": 1e-50}, "data.std must be a number >= 1e-06, got 1e-50"),
        ({"mean": 1e39}, "data.mean must be a number in [-1000000, 1000000], got 1e+39"),
        ({"cache_dir": ""}, "data.cache_dir must be a folder path, got ''. Set BRAINKD_CACHE or data.cache_dir."),
    ],
)
def test_datamodule_rejects_bad_value(tmp_path, options, expected):
    with pytest.raises(ValueError) as error:
        datamodule(tmp_path, **options)
    assert str(error.value) == expected


@pytest.mark.parametrize(
    ("augment", "expected"),
    [
        ({"horizontal_flip": 2}, "data.augment.horizontal_flip must be a number in [0.0, 1.0], got 2"),
        ({"rotation_degrees": -1}, "data.augment.rotation_degrees must be a number in [0.0, 180.0], got -1"),
        ({"intensity_scale": 1.0}, "data.augment.intensity_scale must be a number in [0.0, 1.0), got 1.0"),
        ({"intensity_shift": "0.1"}, "data.augment.intensity_shift must be a finite number, got '0.1'"),
        ({"vertical_flip": 0.5}, "unknown key(s) data.augment.vertical_flip; accepted keys: horizontal_flip"),
    ],
)
def test_datamodule_rejects_bad_augmentation(tmp_path, augment, expected):
    with pytest.raises(ValueError) as error:
        datamodule(tmp_path, augment=augment)
    assert str(error.value).startswith(expected)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"threshold": "mean"}, "data.preprocess.threshold must be 'otsu' or a grey level 0-255, got 'mean'"),
        ({"threshold": 300}, "data.preprocess.threshold must be a number in [0, 255], got 300"),
        ({"opening_radius": -1}, "data.preprocess.opening_radius must be an integer >= 0, got -1"),
        ({"min_mask_fraction": 1.5}, "data.preprocess.min_mask_fraction must be a number in [0, 1), got 1.5"),
        ({"denoise_strength": -3}, "data.preprocess.denoise_strength must be a number >= 0, got -3"),
        ({"denoise_template_window": 6}, "data.preprocess.denoise_template_window must be odd, got 6"),
        ({"working_scale": 0.5}, "data.preprocess.working_scale must be 0 (keep the full size) or at least 1, got 0.5"),
        ({"apply_mask": "no"}, "data.preprocess.apply_mask must be true or false, got 'no'"),
    ],
)
def test_preprocess_settings_reject_bad_value(settings, expected):
    with pytest.raises(ValueError) as error:
        PreprocessSettings(**settings)
    assert str(error.value) == expected


def test_preprocess_accepts_grey_level_threshold():
    assert PreprocessSettings(threshold=30, working_scale=0).threshold == 30


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"lr": -1}, "optim.lr must be a number > 0, got -1"),
        ({"lr": "fast"}, "optim.lr must be a finite number, got 'fast'"),
        ({"weight_decay": -0.1}, "optim.weight_decay must be a number >= 0, got -0.1"),
        ({"momentum": 1.0}, "optim.momentum must be a number in [0, 1), got 1.0"),
        ({"optimizer": "adam"}, "optim.optimizer must be one of adamw, sgd, got 'adam'"),
    ],
)
def test_optim_options_reject_bad_value(options, expected):
    with pytest.raises(ValueError) as error:
        check_optim_options(**options)
    assert str(error.value) == expected


def test_inexact_val_fraction_is_logged(tmp_path, caplog):
    module = datamodule(tmp_path, val_fraction=0.3)
    assert module._fold_choice() == (3, 0)
    assert "data.val_fraction=0.3 is taken as 1/3 = 0.333" in caplog.text


def test_integer_check_accepts_bounds():
    assert checks.integer("key", 8, 8, 8) == 8
    assert checks.optional_integer("key", None, 1) is None


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("optim.lr=-1", "optim.lr must be a number > 0, got -1"),
        ("trainer.max_epochs=-1", "trainer.max_epochs must be an integer >= 1, got -1"),
        ("data.batch_size=0", "data.batch_size must be an integer >= 1, got 0"),
        ("seed=true", "seed must be an integer, got True"),
        ("trainer.compile=abc", "trainer.compile must be true or false, got 'abc'"),
        ("distill.temperature=abc", "distill.temperature must be a finite number, got 'abc'"),
        ("distill.alpha=null", "distill.alpha must be a finite number, got None"),
        ("review.plots=abc", "review.plots must be true or false, got 'abc'"),
    ],
)
def test_job_stops_before_preparing_data(tmp_path, dataset_root, override, expected):
    overrides = tiny_overrides(dataset_root, tmp_path / "cache", task="distill")
    with pytest.raises(ValueError) as error:
        run_in_process([*overrides, override], tmp_path / "out")
    assert str(error.value) == expected
    # No cache was built: the check came before any image was read.
    assert not (tmp_path / "cache").exists()
