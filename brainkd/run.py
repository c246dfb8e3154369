"""Hydra entry point: ``python -m brainkd.run +experiment=distill``.

Composes the config, builds the data and the models, trains the teacher (or a single
classifier), distills the student, tests on ``Testing/`` and writes ``results.json``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from brainkd import pipeline
from brainkd.modules import DistillModule, TeacherModule
from brainkd.results import format_comparison, write_json
from brainkd.tracking.loggers import plain_config

log = logging.getLogger(__name__)

TASKS = ("classifier", "distill")


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job as the config says and return its results."""
    if cfg.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {cfg.task!r}")
    started = time.time()
    output_dir = Path(cfg.paths.output_dir)
    L.seed_everything(cfg.seed, workers=True)

    log.info("Preparing data from %s", cfg.data.root)
    datamodule = pipeline.build_datamodule(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")
    (output_dir / "fold_manifest.json").parent.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "fold_manifest.json", datamodule.manifest())

    class_names = list(datamodule.class_names)
    run_info = {
        "name": cfg.get("name") or output_dir.name,
        "group": cfg.get("group"),
        "tags": list(cfg.get("tags") or []),
        "config": plain_config(cfg),
    }
    models: dict[str, Any] = {}

    teacher_role = "teacher" if cfg.task == "distill" else cfg.get("role", "teacher")
    teacher, teacher_summary = _teacher(cfg, datamodule, output_dir, {**run_info, "role": teacher_role})
    models[teacher_role] = teacher_summary

    if cfg.task == "distill":
        log.info("Distilling %s into %s (T=%s, alpha=%s, %s form)", cfg.model.name, cfg.student.name,
                 cfg.distill.temperature, cfg.distill.alpha, cfg.distill.kd_form)
        student = pipeline.build_model(cfg.student, len(class_names), datamodule.image_size)
        module = DistillModule(
            student,
            teacher,
            class_names,
            temperature=cfg.distill.temperature,
            alpha=cfg.distill.alpha,
            kd_form=cfg.distill.kd_form,
            metadata=pipeline.model_metadata(cfg.student, "student", datamodule),
            **pipeline.optim_options(cfg),
        )
        trainer = pipeline.build_trainer(cfg, output_dir / "student", {**run_info, "role": "student"},
                                         max_epochs=cfg.distill.student_epochs)
        outcome = pipeline.fit_and_test(module, datamodule, trainer, ckpt_path=cfg.get("ckpt_path"))
        models["student"] = pipeline.summarize_model("student", cfg.student, student, outcome, class_names)

    results = {
        "task": cfg.task,
        "experiment": cfg.get("experiment_name"),
        "seed": cfg.seed,
        "status": "completed",
        "data": datamodule.summary,
        "models": models,
        "distill": plain_config(cfg.distill) if cfg.task == "distill" else None,
        "wall_time_s": round(time.time() - started, 1),
        "config": run_info["config"],
    }
    write_json(output_dir / "results.json", results)
    log.info("Results of %s job:\n%s", cfg.task, format_comparison(results))
    log.info("Wrote %s", output_dir / "results.json")
    return results


def _teacher(cfg: DictConfig, datamodule, output_dir: Path, run_info: dict[str, Any]):
    """Train the teacher (or the single classifier), or load it from ``distill.teacher_checkpoint``."""
    class_names = list(datamodule.class_names)
    role = run_info["role"]
    checkpoint = cfg.distill.get("teacher_checkpoint") if cfg.task == "distill" else None
    trainer_epochs = cfg.distill.teacher_epochs if cfg.task == "distill" else None

    if checkpoint:
        teacher = pipeline.load_teacher_checkpoint(checkpoint, cfg.model, datamodule)
        module = TeacherModule(teacher, class_names, metadata=pipeline.model_metadata(cfg.model, role, datamodule))
        trainer = pipeline.build_trainer(cfg, output_dir / role, run_info, max_epochs=0)
        outcome = pipeline.test_only(module, datamodule, trainer)
        outcome["checkpoint"] = checkpoint
    else:
        log.info("Training %s %s", role, cfg.model.name)
        teacher = pipeline.build_model(cfg.model, len(class_names), datamodule.image_size)
        module = TeacherModule(
            teacher,
            class_names,
            pretrain_options=cfg.model.get("pretrain"),
            metadata=pipeline.model_metadata(cfg.model, role, datamodule),
            **pipeline.optim_options(cfg),
        )
        trainer = pipeline.build_trainer(cfg, output_dir / role, run_info, max_epochs=trainer_epochs)
        resume = cfg.get("ckpt_path") if cfg.task != "distill" else None
        outcome = pipeline.fit_and_test(module, datamodule, trainer, ckpt_path=resume)

    return teacher, pipeline.summarize_model(role, cfg.model, teacher, outcome, class_names)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run a job and return the validation macro F1 of its final model, for sweepers."""
    results = train(cfg)
    final = results["models"]["student" if cfg.task == "distill" else next(iter(results["models"]))]
    return final["val"].get("val/f1_macro")


if __name__ == "__main__":
    main()
