"""Cached teacher logits: equal to the online teacher on un-augmented images, keyed, reused, recorded."""

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir

from brainkd import teacher_logits
from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.models import create_model
from brainkd.modules import DistillModule
from brainkd.run import train

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"
NO_AUGMENTATION = {"horizontal_flip": 0.0, "rotation_degrees": 0.0, "intensity_scale": 0.0, "intensity_shift": 0.0}


def make_datamodule(root, cache_dir, augment):
    datamodule = BrainMRIDataModule(
        root=str(root), cache_dir=str(cache_dir), image_size=16, batch_size=8, num_workers=0,
        val_fraction=0.25, preprocess_workers=1, augment=augment,
    )
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@pytest.fixture(scope="module")
def plain_data(generated_root, tmp_path_factory):
    return make_datamodule(generated_root, tmp_path_factory.mktemp("plain-cache"), NO_AUGMENTATION)


@pytest.fixture(scope="module")
def augmented_data(generated_root, tmp_path_factory):
    return make_datamodule(generated_root, tmp_path_factory.mktemp("augmented-cache"), None)


def small_cnn(seed, channels=(8, 16)):
    torch.manual_seed(seed)
    return create_model("plain_cnn", num_classes=4, image_size=16, channels=channels)


def test_cached_logits_equal_online_teacher(plain_data):
    teacher = small_cnn(0)
    mode, logits = teacher_logits.logits_for_training("auto", teacher, plain_data)
    module = DistillModule(small_cnn(1, (4, 8)), teacher, list(plain_data.class_names), cached_teacher_logits=logits)

    assert mode == "cached"
    assert module.teacher_logits_mode == "cached"
    assert logits.shape == (len(plain_data.dataset("train")), 4)
    # The training loader shuffles, so the lookup by dataset index is exercised too.
    for images, _, indices in plain_data.train_dataloader():
        torch.testing.assert_close(module.cached_teacher_logits[indices], module.teacher_logits(images))


def test_cached_mode_never_runs_teacher(plain_data, tmp_path):
    teacher = small_cnn(0)
    _, logits = teacher_logits.logits_for_training("cached", teacher, plain_data)
    module = DistillModule(small_cnn(1, (4, 8)), teacher, list(plain_data.class_names), cached_teacher_logits=logits)
    calls = []
    teacher.register_forward_hook(lambda *_: calls.append(1))
    trainer = L.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, limit_val_batches=0, default_root_dir=str(tmp_path),
    )
    trainer.fit(module, datamodule=plain_data)
    assert trainer.global_step > 0
    assert calls == []


def test_auto_mode_follows_augmentation(plain_data, augmented_data):
    assert not teacher_logits.is_augmented(plain_data.dataset("train"))
    assert teacher_logits.is_augmented(augmented_data.dataset("train"))
    mode, logits = teacher_logits.logits_for_training("auto", small_cnn(0), augmented_data)
    assert mode == "online"
    assert logits is None


@pytest.mark.parametrize(
    "requested, augmented, expected",
    [("auto", False, "cached"), ("auto", True, "online"), ("cached", True, "cached"), ("online", False, "online")],
)
def test_resolve_mode(requested, augmented, expected):
    assert teacher_logits.resolve_mode(requested, augmented) == expected


def test_resolve_mode_rejects_unknown():
    with pytest.raises(ValueError, match="distill.teacher_logits"):
        teacher_logits.resolve_mode("sometimes", False)


def test_logits_reused_from_disk(plain_data, monkeypatch):
    teacher = small_cnn(2)
    _, first = teacher_logits.logits_for_training("cached", teacher, plain_data)
    assert list((plain_data.cache_dir / teacher_logits.CACHE_FOLDER).glob("*.pt"))

    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran although its logits were on disk")

    monkeypatch.setattr(teacher_logits, "compute_teacher_logits", fail)
    _, second = teacher_logits.logits_for_training("cached", teacher, plain_data)
    torch.testing.assert_close(first, second)


def test_cache_key_covers_every_input():
    base = {
        "content_hashes": ["a", "b"], "preprocess_key": "p", "teacher_hash": "t",
        "fold": {"fold": 0, "num_folds": 4}, "normalization": (0.5, 0.25), "precision": "float32",
    }
    changes = {
        "content_hashes": ["b", "a"], "preprocess_key": "q", "teacher_hash": "u",
        "fold": {"fold": 1, "num_folds": 4}, "normalization": (0.5, 0.3), "precision": "torch.bfloat16",
    }
    key = teacher_logits.cache_key(**base)
    for name, value in changes.items():
        assert teacher_logits.cache_key(**{**base, name: value}) != key, name


def test_weights_hash_follows_weights():
    teacher = small_cnn(0)
    before = teacher_logits.weights_hash(teacher)
    assert teacher_logits.weights_hash(small_cnn(0)) == before
    with torch.no_grad():
        next(teacher.parameters()).add_(1e-3)
    assert teacher_logits.weights_hash(teacher) != before


def test_results_record_mode(generated_root, tmp_path):
    overrides = [
        "+experiment=smoke", "model=plain_cnn", "student=plain_cnn", "distill.teacher_logits=cached",
        f"data.root={generated_root}", f"data.cache_dir={tmp_path / 'cache'}", "data.image_size=16",
        "data.samples_per_class=4", "trainer.max_epochs=1", "review.plots=false", "logger=none",
        f"paths.output_dir={tmp_path / 'out'}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    results = train(cfg)
    assert results["distill"]["teacher_logits"] == "cached"
    assert results["distill"]["teacher_logits_mode"] == "cached"
