"""Cost of a distill epoch against a student-only epoch, with online and with cached teacher logits."""

from __future__ import annotations

import logging
import statistics
import time

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from brainkd.benchmarks.common import BenchSettings, Row, compose_config
from brainkd.hardware import inference_device
from brainkd.modules import DistillModule, TeacherModule
from brainkd.pipeline import build_datamodule, build_model, optim_options
from brainkd.teacher_logits import compute_teacher_logits, is_augmented, resolve_mode

log = logging.getLogger(__name__)

MAX_DISTILL_COST = 1.15  # a distill epoch over a student-only epoch


class EpochTimer(Callback):
    """Record the wall time of every training epoch."""

    def __init__(self):
        self.seconds: list[float] = []
        self._started = 0.0

    def on_train_epoch_start(self, trainer, module) -> None:
        self._started = time.perf_counter()

    def on_train_epoch_end(self, trainer, module) -> None:
        self.seconds.append(time.perf_counter() - self._started)


def run(settings: BenchSettings) -> list[Row]:
    """Train a student alone, distilled online and distilled from cached logits, on the same images."""
    cfg = compose_config(
        settings, "+experiment=distill", f"data.samples_per_class={settings.distill_samples_per_class}"
    )
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    num_classes = len(datamodule.class_names)
    class_names = list(datamodule.class_names)
    torch.manual_seed(0)
    teacher = build_model(cfg.model, num_classes, datamodule.image_size)

    device, autocast_dtype = inference_device(cfg.trainer)
    started = time.perf_counter()
    logits = compute_teacher_logits(teacher, datamodule.dataset("train"), datamodule.batch_size, device, autocast_dtype)
    pass_seconds = time.perf_counter() - started

    def student():
        torch.manual_seed(0)
        return build_model(cfg.student, num_classes, datamodule.image_size, config_key="student")

    distill_options = {"temperature": cfg.distill.temperature, "alpha": cfg.distill.alpha, "kd_form": cfg.distill.kd_form}
    modules = {
        "student only": lambda: TeacherModule(student(), class_names, **optim_options(cfg)),
        "distill, online": lambda: DistillModule(student(), teacher, class_names, **distill_options, **optim_options(cfg)),
        "distill, cached": lambda: DistillModule(
            student(), teacher, class_names, cached_teacher_logits=logits, **distill_options, **optim_options(cfg)
        ),
    }
    epoch_seconds = {name: _epoch_seconds(build(), datamodule, cfg, settings.distill_epochs) for name, build in modules.items()}
    return _rows(epoch_seconds, pass_seconds, cfg, datamodule)


def _epoch_seconds(module, datamodule, cfg, epochs: int) -> float:
    """Fit without validation or checkpoints and return the median epoch time after the first."""
    timer = EpochTimer()
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision, max_epochs=epochs,
        limit_val_batches=0, num_sanity_val_steps=0, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer],
    )
    trainer.fit(module, datamodule=datamodule)
    return statistics.median(timer.seconds[1:] or timer.seconds)


def _rows(epoch_seconds: dict[str, float], pass_seconds: float, cfg, datamodule) -> list[Row]:
    baseline = epoch_seconds["student only"]
    images = len(datamodule.dataset("train"))
    augmented = is_augmented(datamodule.dataset("train"))
    auto = resolve_mode("auto", augmented)
    rows = [
        Row("distill", f"{name} epoch", seconds, "s", note=f"{images} training images, {cfg.data.image_size} px")
        for name, seconds in epoch_seconds.items()
    ]
    online = epoch_seconds["distill, online"] / baseline
    cached = epoch_seconds["distill, cached"] / baseline
    student_epochs = int(cfg.distill.student_epochs)
    amortized = (epoch_seconds["distill, cached"] * student_epochs + pass_seconds) / (baseline * student_epochs)
    rows += [
        Row("distill", "teacher-logits pass (once per run)", pass_seconds, "s", note=f"{images} un-augmented images"),
        Row("distill", "online / student-only epoch", online, "x", note="exact with augmentation"),
        Row(
            "distill", "cached / student-only epoch", cached, "x",
            target=f"<= {MAX_DISTILL_COST:g}x", passed=cached <= MAX_DISTILL_COST,
        ),
        Row(
            "distill", f"cached incl. the pass, over {student_epochs} epochs", amortized, "x",
            note="the pass is skipped when its logits are on disk",
        ),
        Row(
            "distill", "mode that distill.teacher_logits=auto picks", None, "",
            note=f"{auto} (training augmentation {'on' if augmented else 'off'})",
        ),
    ]
    return rows
