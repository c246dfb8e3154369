"""The teacher stays frozen while the student is distilled."""

import lightning as L
import pytest
import torch

from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.models import create_model
from brainkd.modules import DistillModule, TeacherModule


@pytest.fixture(scope="module")
def datamodule(generated_root, cache_dir):
    module = BrainMRIDataModule(
        root=str(generated_root), cache_dir=str(cache_dir), image_size=16, batch_size=8,
        num_workers=0, val_fraction=0.25, preprocess_workers=1,
    )
    module.prepare_data()
    module.setup("fit")
    return module


def tiny_trainer(tmp_path, epochs=2):
    return L.Trainer(
        max_epochs=epochs, accelerator="cpu", logger=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=str(tmp_path), num_sanity_val_steps=0,
        callbacks=[L.pytorch.callbacks.ModelCheckpoint(dirpath=str(tmp_path / "ckpt"), save_last=True)],
    )


def snapshot(model):
    return {name: value.detach().clone() for name, value in model.state_dict().items()}


@pytest.fixture
def distilled(datamodule, tmp_path):
    torch.manual_seed(0)
    teacher = create_model("plain_cnn", num_classes=4, image_size=16, channels=(8, 16))
    student = create_model("plain_cnn", num_classes=4, image_size=16, channels=(4, 8))
    before = snapshot(teacher)
    module = DistillModule(student, teacher, list(datamodule.class_names), temperature=2.0, alpha=0.5)
    trainer = tiny_trainer(tmp_path)
    trainer.fit(module, datamodule=datamodule)
    return module, trainer, before


def test_teacher_weights_and_batchnorm_unchanged(distilled):
    module, _, before = distilled
    after = snapshot(module.teacher)
    assert any("running_mean" in name for name in after)
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


def test_teacher_stays_in_eval_mode(distilled):
    module, _, _ = distilled
    assert not module.teacher.training
    assert all(not parameter.requires_grad for parameter in module.teacher.parameters())


def test_student_weights_change(distilled):
    module, _, _ = distilled
    fresh = create_model("plain_cnn", num_classes=4, image_size=16, channels=(4, 8))
    changed = [not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), module.student.state_dict().values())]
    assert any(changed)


def test_checkpoint_has_no_teacher_keys(distilled, tmp_path):
    _, trainer, _ = distilled
    checkpoint = torch.load(tmp_path / "ckpt" / "last.ckpt", map_location="cpu", weights_only=True)
    keys = list(checkpoint["state_dict"])
    assert keys
    assert all(key.startswith("model.") for key in keys)
    assert not any("teacher" in key for key in keys)


def test_optimizer_holds_only_student_parameters(distilled):
    module, trainer, _ = distilled
    optimized = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
    assert optimized == {id(p) for p in module.student.parameters()}
    assert not optimized & {id(p) for p in module.teacher.parameters()}


def test_teacher_module_learns_generated_data(datamodule, tmp_path):
    torch.manual_seed(0)
    model = create_model("plain_cnn", num_classes=4, image_size=16, channels=(8, 16))
    module = TeacherModule(model, list(datamodule.class_names), lr=3e-3)
    trainer = tiny_trainer(tmp_path, epochs=8)
    trainer.fit(module, datamodule=datamodule)
    trainer.test(module, datamodule=datamodule, verbose=False)
    predictions = module.test_predictions
    accuracy = (predictions["logits"].argmax(1) == predictions["labels"]).float().mean().item()
    assert len(predictions["indices"]) == len(datamodule.test_samples)
    assert accuracy > 0.5
