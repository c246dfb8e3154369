"""How much faster the training loader delivers batches than the student trains on them."""

from __future__ import annotations

import logging
import statistics
import time

import torch

from brainkd.benchmarks.common import BenchSettings, Row, compose_config
from brainkd.benchmarks.train_steps import training_step
from brainkd.pipeline import build_datamodule, build_model

log = logging.getLogger(__name__)

MIN_LOADER_SPEEDUP = 20.0


def run(settings: BenchSettings) -> list[Row]:
    """Time two epochs of the training loader (the second is warm) and some student training steps."""
    cfg = compose_config(settings)
    datamodule = build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    loader = datamodule.train_dataloader()

    first_batches: list[tuple[torch.Tensor, torch.Tensor]] = []
    epoch_seconds = []
    for epoch in range(2):
        if hasattr(loader.sampler, "set_epoch"):
            loader.sampler.set_epoch(epoch)
        started = time.perf_counter()
        for images, labels, _ in loader:
            if len(first_batches) <= settings.model_steps:
                first_batches.append((images, labels))
        epoch_seconds.append(time.perf_counter() - started)
    batches = len(loader)
    batch_seconds = epoch_seconds[1] / batches

    step_seconds = _student_step_seconds(cfg, datamodule, first_batches)
    speedup = step_seconds / batch_seconds
    workers = f"{cfg.data.num_workers} workers, persistent_workers={cfg.data.persistent_workers}"
    return [
        Row("loader", f"warm epoch, {batches} batches of {cfg.data.batch_size}", epoch_seconds[1], "s", note=workers),
        Row("loader", "first epoch (workers start)", epoch_seconds[0], "s"),
        Row("loader", "loader time per batch, warm", 1000 * batch_seconds, "ms"),
        Row("loader", f"student training step ({cfg.student.name})", step_seconds, "s", note="median after a warm-up step"),
        Row(
            "loader", "student step / loader batch", speedup, "x",
            target=f">= {MIN_LOADER_SPEEDUP:g}x", passed=speedup >= MIN_LOADER_SPEEDUP,
        ),
    ]


def _student_step_seconds(cfg, datamodule, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """Return the median time of a forward, backward and AdamW step of the student after a warm-up step."""
    torch.manual_seed(0)
    student = build_model(cfg.student, len(datamodule.class_names), datamodule.image_size, config_key="student")
    student.train()
    optimizer = torch.optim.AdamW(student.parameters(), lr=float(cfg.optim.lr))

    durations = []
    for images, labels in batches:
        started = time.perf_counter()
        training_step(student, optimizer, images, labels)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations[1:] or durations)
