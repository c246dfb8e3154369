"""TeacherModule: a classifier trained with plain cross-entropy (teachers and baselines)."""

from __future__ import annotations

import logging
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from brainkd.modules.base import ClassifierBase

log = logging.getLogger(__name__)


class TeacherModule(ClassifierBase):
    """Train ``model`` with cross-entropy.

    Models with a ``pretrain(batches, **options)`` method, such as the deep belief
    network, are pre-trained on the training images before the first epoch.
    ``pretrain_options`` is passed on to that method.
    """

    # What training_step logs, as callbacks see it: train/loss is logged per step and per epoch.
    TRAIN_METRICS = ("train/loss", "train/loss_step", "train/loss_epoch", "train/accuracy")

    def __init__(
        self,
        model: nn.Module,
        class_names: list[str],
        pretrain_options: dict[str, Any] | None = None,
        **options: Any,
    ):
        super().__init__(model, class_names, **options)
        self.pretrain_options = dict(pretrain_options or {})
        self.pretrain_history: list[dict] = []

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        images, labels, _ = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), labels)
        accuracy = (logits.argmax(dim=1) == labels).float().mean()
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=len(labels))
        self.log("train/accuracy", accuracy, on_step=False, on_epoch=True, batch_size=len(labels))
        return loss

    def on_train_start(self) -> None:
        pretrain = getattr(self.model, "pretrain", None)
        # A resumed run has already pre-trained; its weights come from the checkpoint.
        if pretrain is None or self.trainer.global_step > 0 or not self.pretrain_options.get("epochs", 1):
            return
        loader = self.trainer.train_dataloader

        def image_batches():
            return (batch[0].to(self.device) for batch in loader)

        log.info("Pre-training %s layer by layer before fine-tuning", type(self.model).__name__)
        self.pretrain_history = pretrain(image_batches, **self.pretrain_options)
        for entry in self.pretrain_history:
            self.print(
                f"pretrain layer {entry['layer']} epoch {entry['epoch']}: "
                f"reconstruction error {entry['reconstruction_error']:.5f}"
            )

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)
        # Kept so that a resumed run, which skips pre-training, still reports it.
        checkpoint["pretrain_history"] = self.pretrain_history

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.pretrain_history = list(checkpoint.get("pretrain_history", []))
