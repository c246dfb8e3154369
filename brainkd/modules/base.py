"""The base of the teacher and distillation modules: metrics, test predictions, the optimiser."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from brainkd import checks
from brainkd.modules.metrics import flatten_metrics, metric_collection

OPTIMIZERS = ("adamw", "sgd")
SCHEDULERS = ("cosine", "none")


def check_optim_options(
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    optimizer: str = "adamw",
    momentum: float = 0.9,
    scheduler: str = "cosine",
) -> None:
    """Raise ValueError naming the ``optim`` key whose value cannot be used."""
    checks.choice("optim.optimizer", optimizer, OPTIMIZERS)
    checks.choice("optim.scheduler", scheduler, SCHEDULERS)
    checks.number("optim.lr", lr, 0, low_open=True)
    checks.number("optim.weight_decay", weight_decay, 0)
    checks.number("optim.momentum", momentum, 0, 1, high_open=True)


class ClassifierBase(L.LightningModule):
    """A LightningModule around one trainable classifier, ``self.model``.

    Subclasses define ``training_step``. Validation and test compute the same metrics;
    the test stage also keeps every logit with its dataset index in ``test_predictions``.
    """

    def __init__(
        self,
        model: nn.Module,
        class_names: list[str],
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: str = "adamw",
        momentum: float = 0.9,
        scheduler: str = "cosine",
        metadata: dict[str, Any] | None = None,
    ):
        super().__init__()
        check_optim_options(lr=lr, weight_decay=weight_decay, optimizer=optimizer, momentum=momentum, scheduler=scheduler)
        self.model = model
        self.class_names = list(class_names)
        self.metadata = dict(metadata or {})
        self.optim_options = {
            "lr": lr, "weight_decay": weight_decay, "optimizer": optimizer, "momentum": momentum, "scheduler": scheduler
        }
        num_classes = len(self.class_names)
        self.val_metrics = metric_collection(num_classes)
        self.test_metrics = metric_collection(num_classes)
        self._test_batches: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self.test_predictions: dict[str, torch.Tensor] | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(images)

    def _evaluate(self, batch, stage: str) -> torch.Tensor:
        images, labels, indices = batch
        logits = self(images)
        loss = F.cross_entropy(logits.float(), labels)
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        metrics.update(logits.detach(), labels)
        self.log(f"{stage}/loss", loss, on_epoch=True, on_step=False, sync_dist=True, batch_size=len(labels))
        if stage == "test":
            self._test_batches.append((logits.detach().float(), labels.detach(), indices.detach()))
        return loss

    def validation_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "val")

    def test_step(self, batch, batch_idx: int) -> torch.Tensor:
        return self._evaluate(batch, "test")

    def _log_metrics(self, stage: str) -> None:
        metrics = self.val_metrics if stage == "val" else self.test_metrics
        scalars = flatten_metrics(metrics.compute(), self.class_names)
        self.log_dict({f"{stage}/{name}": value for name, value in scalars.items()}, sync_dist=False)
        metrics.reset()

    def on_validation_epoch_end(self) -> None:
        self._log_metrics("val")

    def on_test_epoch_start(self) -> None:
        self._test_batches = []

    def on_test_epoch_end(self) -> None:
        self._log_metrics("test")
        self.test_predictions = self._gather_test_predictions()

    def _gather_test_predictions(self) -> dict[str, torch.Tensor]:
        """Collect test logits from every process, each dataset index once, sorted by index."""
        logits = torch.cat([b[0] for b in self._test_batches])
        labels = torch.cat([b[1] for b in self._test_batches])
        indices = torch.cat([b[2] for b in self._test_batches])
        self._test_batches = []
        if self.trainer is not None and self.trainer.world_size > 1:
            logits = self.all_gather(logits).flatten(0, 1)
            labels = self.all_gather(labels).flatten(0, 1)
            indices = self.all_gather(indices).flatten(0, 1)

        # Distributed samplers pad the last batch with repeats, so keep one row per index.
        order = torch.argsort(indices, stable=True)
        indices, logits, labels = indices[order], logits[order], labels[order]
        first = torch.ones_like(indices, dtype=torch.bool)
        first[1:] = indices[1:] != indices[:-1]
        return {"logits": logits[first].cpu(), "labels": labels[first].cpu(), "indices": indices[first].cpu()}

    def trainable_parameters(self):
        """Return the parameters the optimiser updates."""
        return self.model.parameters()

    def configure_optimizers(self):
        options = self.optim_options
        if options["optimizer"] == "adamw":
            optimizer = torch.optim.AdamW(self.trainable_parameters(), lr=options["lr"], weight_decay=options["weight_decay"])
        else:
            optimizer = torch.optim.SGD(
                self.trainable_parameters(), lr=options["lr"], momentum=options["momentum"],
                weight_decay=options["weight_decay"], nesterov=True,
            )
        if options["scheduler"] == "none":
            return optimizer
        max_epochs = max(1, self.trainer.max_epochs or 1)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["brainkd"] = {**self.metadata, "class_names": self.class_names}
