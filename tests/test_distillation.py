"""Invariants of the knowledge-distillation loss."""

import math

import pytest
import torch
import torch.nn.functional as F

from brainkd.distillation import distillation_loss, soft_target_kl


@pytest.fixture
def logits():
    generator = torch.Generator().manual_seed(0)
    student = torch.randn(8, 4, generator=generator)
    teacher = torch.randn(8, 4, generator=generator)
    labels = torch.randint(0, 4, (8,), generator=generator)
    return student, teacher, labels


def test_alpha_zero_is_cross_entropy(logits):
    student, teacher, labels = logits
    losses = distillation_loss(student, teacher, labels, temperature=4.0, alpha=0.0)
    assert torch.allclose(losses["loss"], F.cross_entropy(student, labels))


def test_identical_logits_give_zero_kd(logits):
    student, _, labels = logits
    losses = distillation_loss(student, student.clone(), labels, temperature=3.0, alpha=1.0)
    assert losses["kd"].item() == pytest.approx(0.0, abs=1e-6)
    assert losses["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_kd_is_batch_mean_of_per_sample_kl(logits):
    student, teacher, _ = logits
    temperature = 2.0
    p_teacher = F.softmax(teacher / temperature, dim=1)
    log_p_student = F.log_softmax(student / temperature, dim=1)
    per_sample = (p_teacher * (p_teacher.log() - log_p_student)).sum(dim=1)
    kd = soft_target_kl(student, teacher, temperature, "paper")
    assert kd.item() == pytest.approx(per_sample.mean().item(), rel=1e-5)


def test_kd_does_not_grow_with_batch_size(logits):
    student, teacher, _ = logits
    single = soft_target_kl(student, teacher, 2.0)
    doubled = soft_target_kl(torch.cat([student, student]), torch.cat([teacher, teacher]), 2.0)
    assert doubled.item() == pytest.approx(single.item(), rel=1e-5)


def test_hinton_form_scales_by_t_squared(logits):
    student, teacher, _ = logits
    for temperature in (1.0, 2.0, 5.0):
        paper = soft_target_kl(student, teacher, temperature, "paper")
        hinton = soft_target_kl(student, teacher, temperature, "hinton")
        assert hinton.item() == pytest.approx(paper.item() * temperature**2, rel=1e-5)


def test_loss_mixes_terms_by_alpha(logits):
    student, teacher, labels = logits
    losses = distillation_loss(student, teacher, labels, temperature=4.0, alpha=0.3)
    expected = 0.3 * losses["kd"] + 0.7 * losses["ce"]
    assert losses["loss"].item() == pytest.approx(expected.item(), rel=1e-6)


def test_kd_of_known_distributions():
    # Teacher (1, 0) against uniform student logits: KL = log 2 at T = 1.
    student = torch.zeros(1, 2)
    teacher = torch.tensor([[100.0, 0.0]])
    assert soft_target_kl(student, teacher, 1.0).item() == pytest.approx(math.log(2), rel=1e-4)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0, "alpha": 0.5}, "distill.temperature"),
        ({"temperature": 1.0, "alpha": 1.5}, "distill.alpha"),
        ({"temperature": 1.0, "alpha": 0.5, "kd_form": "other"}, "distill.kd_form"),
    ],
)
def test_invalid_settings_name_the_key(logits, kwargs, message):
    student, teacher, labels = logits
    with pytest.raises(ValueError, match=message):
        distillation_loss(student, teacher, labels, **kwargs)


def test_mismatched_shapes_are_rejected(logits):
    student, teacher, _ = logits
    with pytest.raises(ValueError, match="same shape"):
        soft_target_kl(student, teacher[:, :3], 2.0)


def test_check_settings_names_the_key():
    from brainkd.distillation import check_settings

    with pytest.raises(ValueError, match="distill.alpha"):
        check_settings(temperature=2.0, alpha=-0.1, kd_form="paper")
