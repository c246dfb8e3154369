"""DistillModule: trains a student on a frozen teacher's soft targets and the labels."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from brainkd.distillation import check_settings, distillation_loss
from brainkd.modules.base import ClassifierBase


class DistillModule(ClassifierBase):
    """Train ``student`` on ``alpha * KL(teacher || student at T) + (1 - alpha) * CE``.

    The teacher is frozen: it is kept in eval mode for the whole fit and its parameters
    do not require gradients. It is held outside the module's registered children, so it
    is neither in the optimiser nor in the student's checkpoint.

    With ``cached_teacher_logits`` (one row per training image, in training dataset order,
    from ``brainkd.teacher_logits``) the teacher does not run during training: each batch
    looks its rows up by the dataset indices that the batch carries.
    """

    # What training_step logs, as callbacks see it: train/loss is logged per step and per epoch.
    TRAIN_METRICS = ("train/loss", "train/loss_step", "train/loss_epoch", "train/kd", "train/ce", "train/accuracy")

    def __init__(
        self,
        student: nn.Module,
        teacher: nn.Module,
        class_names: list[str],
        temperature: float = 4.0,
        alpha: float = 0.7,
        kd_form: str = "paper",
        cached_teacher_logits: torch.Tensor | None = None,
        **options: Any,
    ):
        super().__init__(student, class_names, **options)
        check_settings(temperature, alpha, kd_form)
        self.temperature = float(temperature)
        self.alpha = float(alpha)
        self.kd_form = kd_form

        teacher.eval()
        teacher.requires_grad_(False)
        # object.__setattr__ keeps the teacher out of self.children(), state_dict() and .to().
        object.__setattr__(self, "teacher", teacher)

        # One row per training image, looked up by dataset index. A non-persistent buffer
        # follows the module to its device and stays out of the checkpoint.
        self.teacher_logits_mode = "online" if cached_teacher_logits is None else "cached"
        self.register_buffer("cached_teacher_logits", cached_teacher_logits, persistent=False)

    @property
    def student(self) -> nn.Module:
        return self.model

    def teacher_logits(self, images: torch.Tensor) -> torch.Tensor:
        """Run the frozen teacher on ``images`` (moved to their device on first use)."""
        reference = next(self.teacher.parameters(), None)
        if reference is not None and reference.device != images.device:
            self.teacher.to(images.device)
        if self.teacher.training:
            self.teacher.eval()
        with torch.no_grad():
            return self.teacher(images)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, indices = batch
        student_logits = self(images)
        if self.cached_teacher_logits is None:
            teacher_logits = self.teacher_logits(images)
        else:
            teacher_logits = self.cached_teacher_logits[indices]
        losses = distillation_loss(student_logits, teacher_logits, labels, self.temperature, self.alpha, self.kd_form)
        accuracy = (student_logits.argmax(dim=1) == labels).float().mean()

        batch_size = len(labels)
        self.log("train/loss", losses["loss"], on_step=True, on_epoch=True, prog_bar=True, batch_size=batch_size)
        self.log("train/kd", losses["kd"], on_step=False, on_epoch=True, batch_size=batch_size)
        self.log("train/ce", losses["ce"], on_step=False, on_epoch=True, batch_size=batch_size)
        self.log("train/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=batch_size)
        return losses["loss"]

    def on_train_epoch_start(self) -> None:
        # Lightning's module.train() does not reach the teacher; this guards against other code that might.
        self.teacher.eval()
