"""Knowledge-distillation losses as pure functions of logits and labels.

Two forms of the soft-target term are offered, chosen by ``distill.kd_form``:

``paper``
    The formula of the distillation method that brainkd reproduces, as written there,
    ``loss = alpha * KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) * CE(s, y)``,
    with the KL divergence averaged over the batch and no further scaling.
``hinton``
    The usual form of Hinton et al. (2015), "Distilling the Knowledge in a Neural
    Network": the same KL divergence with batch-mean reduction, multiplied by ``T**2``
    so that its gradient keeps the same magnitude as the temperature changes.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from brainkd import checks

KDForm = Literal["paper", "hinton"]
KD_FORMS: tuple[str, ...] = ("paper", "hinton")


def check_settings(temperature: float, alpha: float, kd_form: str) -> None:
    """Raise ValueError naming the ``distill`` key of an invalid temperature, alpha or form."""
    checks.number("distill.temperature", temperature, 0, low_open=True)
    checks.number("distill.alpha", alpha, 0, 1)
    checks.choice("distill.kd_form", kd_form, KD_FORMS)


def soft_target_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    kd_form: KDForm = "paper",
) -> torch.Tensor:
    """Compute KL(softmax(t/T) || softmax(s/T)), summed over classes, averaged over the batch.

    With ``kd_form="hinton"`` the result is multiplied by ``temperature ** 2``.
    """
    checks.number("distill.temperature", temperature, 0, low_open=True)
    checks.choice("distill.kd_form", kd_form, KD_FORMS)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student and teacher logits must have the same shape, got "
            f"{tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )

    student_log_probs = F.log_softmax(student_logits.float() / temperature, dim=1)
    teacher_log_probs = F.log_softmax(teacher_logits.float() / temperature, dim=1)
    kl = F.kl_div(student_log_probs, teacher_log_probs, reduction="batchmean", log_target=True)

    if kd_form == "hinton":
        kl = kl * temperature**2
    return kl


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    temperature: float,
    alpha: float,
    kd_form: KDForm = "paper",
) -> dict[str, torch.Tensor]:
    """Combine the soft-target KL term and the hard-label cross-entropy.

    Returns a dict with ``loss`` (what is optimised), ``kd`` and ``ce`` (its two parts,
    before weighting), so that both can be logged.
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"distill.alpha must lie in [0, 1], got {alpha}")

    kd = soft_target_kl(student_logits, teacher_logits, temperature, kd_form)
    ce = F.cross_entropy(student_logits.float(), labels)
    loss = alpha * kd + (1.0 - alpha) * ce
    return {"loss": loss, "kd": kd, "ce": ce}
