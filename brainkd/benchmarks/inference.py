"""CPU inference throughput, parameters and FLOPs of the teacher and the student choices."""

from __future__ import annotations

import time

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from brainkd.benchmarks.common import BenchSettings, Row, compose_config, time_calls
from brainkd.data.folders import CLASS_NAMES
from brainkd.models.factory import count_parameters
from brainkd.pipeline import build_model

MIN_STUDENT_SPEEDUP = 3.0
NUM_CLASSES = len(CLASS_NAMES)


def run(settings: BenchSettings) -> list[Row]:
    """Time eval-mode forward passes on the CPU, the models taking turns so that load hits each alike."""
    cfg = compose_config(settings)
    size = settings.image_size
    torch.manual_seed(0)
    models = {f"teacher {cfg.model.name}": build_model(cfg.model, NUM_CLASSES, size)}
    for choice in settings.students:
        student_cfg = compose_config(settings, f"student={choice}").student
        models[f"student={choice}"] = build_model(student_cfg, NUM_CLASSES, size, config_key="student")

    images = torch.randn(settings.batch_size, 1, size, size)
    best: dict[str, float] = {name: float("inf") for name in models}
    best_cpu: dict[str, float] = {name: float("inf") for name in models}
    with torch.inference_mode():
        for model in models.values():
            model.eval()(images)
        for _ in range(settings.inference_rounds):
            for name, model in models.items():
                cpu_started = time.process_time()
                best[name] = min(best[name], time_calls(lambda: model(images), 1)[0])
                best_cpu[name] = min(best_cpu[name], time.process_time() - cpu_started)

    teacher_name = next(iter(models))
    rows = []
    for name, model in models.items():
        rows += [
            Row("inference", f"{name}: parameters", count_parameters(model) / 1e6, "M"),
            Row("inference", f"{name}: forward FLOPs per image", _gflops(model, size), "GFLOP", note="2 per multiply-add"),
            Row("inference", f"{name}: throughput", settings.batch_size / best[name], "images/s"),
            Row("inference", f"{name}: CPU time per image", 1000 * best_cpu[name] / settings.batch_size, "ms"),
        ]
    for name in list(models)[1:]:
        speedup = best[teacher_name] / best[name]
        rows.append(Row(
            "inference", f"{name} / teacher throughput", speedup, "x",
            target=f">= {MIN_STUDENT_SPEEDUP:g}x", passed=speedup >= MIN_STUDENT_SPEEDUP,
            note=f"batch {settings.batch_size}, {size} px, {torch.get_num_threads()} threads, "
            f"best of {settings.inference_rounds}",
        ))
        rows.append(Row(
            "inference", f"{name} / teacher, by CPU time (estimate)", best_cpu[teacher_name] / best_cpu[name], "x",
            target=f">= {MIN_STUDENT_SPEEDUP:g}x", passed=best_cpu[teacher_name] / best_cpu[name] >= MIN_STUDENT_SPEEDUP,
            note="the throughput ratio on idle cores if threads scale alike",
        ))
    return rows


def _gflops(model: nn.Module, image_size: int) -> float:
    """Return the forward FLOPs of one image in billions, as torch.utils.flop_counter counts them."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.zeros(1, 1, image_size, image_size))
    return counter.get_total_flops() / 1e9
