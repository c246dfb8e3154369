"""Hydra entry point: ``python -m brainkd.run +experiment=distill``.

Composes the config, builds the data and the models, trains the teacher (or a single
classifier), distills the student, tests on ``Testing/`` and writes ``results.json``.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from pathlib import Path
from typing import Any

import hydra
import lightning as L
from omegaconf import DictConfig

from brainkd import checks, failures, hardware, pipeline, resume, teacher_logits, trainer_checks
from brainkd.distillation import check_settings
from brainkd.models.factory import check_model_name
from brainkd.modules import DistillModule, TeacherModule
from brainkd.modules.base import check_optim_options
from brainkd.results import format_comparison, write_json
from brainkd.tracking.loggers import plain_config
from brainkd.tracking.review import JobReview
from brainkd.tracking.run_info import build_run_info

log = logging.getLogger(__name__)

# Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates; the warning is
# about Lightning's code, not the user's, and repeats in every stage.
warnings.filterwarnings("ignore", message=r".*LeafSpec.* is deprecated")

TASKS = ("classifier", "distill")
# An absolute path, so that Hydra also finds the configs when main() is imported and called.
CONFIG_DIR = Path(__file__).resolve().parent.parent / "conf"


def train(cfg: DictConfig) -> dict[str, Any]:
    """Run one job as configured and return its results."""
    checks.choice("task", cfg.task, TASKS)
    checks.integer("seed", cfg.seed, 0, 2**32 - 1)
    for key in ("channels_last", "compile"):
        checks.flag(f"trainer.{key}", cfg.trainer.get(key, False))
    started = time.time()
    output_dir = Path(cfg.paths.output_dir)
    resume.check_resume_request(cfg.get("ckpt_path"), output_dir)
    L.seed_everything(cfg.seed, workers=True)
    if cfg.task == "distill":
        # Checked before the teacher's training, which a mistake here would otherwise waste.
        check_settings(cfg.distill.temperature, cfg.distill.alpha, cfg.distill.kd_form)
        teacher_logits.check_mode(cfg.distill.teacher_logits)
        check_model_name(str(cfg.student.name), "student.name")
    check_model_name(str(cfg.model.name), "model.name")
    check_optim_options(**pipeline.optim_options(cfg))
    # Lightning reads -1 as "no limit", which the cosine schedule over max_epochs cannot follow.
    checks.integer("trainer.max_epochs", cfg.trainer.get("max_epochs"), 1)
    if cfg.task == "distill":
        checks.integer("distill.teacher_epochs", cfg.distill.teacher_epochs, 1)
        checks.integer("distill.student_epochs", cfg.distill.student_epochs, 1)
    trainer_checks.check_trainer_config(cfg)

    log.info("Preparing data from %s", cfg.data.root)
    datamodule = pipeline.build_datamodule(cfg.data, seed=cfg.seed)
    # Built before the data is prepared, so that a mistake in the review config stops the job at once.
    review = JobReview(cfg.get("review"), datamodule, output_dir)
    logged = trainer_checks.logged_metrics(list(datamodule.class_names), _train_metrics(cfg))
    trainer_checks.check_monitors(cfg.get("callbacks"), logged)
    datamodule.prepare_data()
    datamodule.setup("fit")
    (output_dir / "fold_manifest.json").parent.mkdir(parents=True, exist_ok=True)
    write_json(output_dir / "fold_manifest.json", datamodule.manifest())

    review.plot_preprocessing()

    class_names = list(datamodule.class_names)
    run_info = build_run_info(cfg, datamodule.split.fold, datamodule.split.manifest_hash)
    models: dict[str, Any] = {}

    teacher_role = "teacher" if cfg.task == "distill" else cfg.get("role", "teacher")
    teacher, teacher_summary = _teacher(cfg, datamodule, output_dir, {**run_info, "role": teacher_role}, review)
    models[teacher_role] = teacher_summary

    distill_record = None
    if cfg.task == "distill":
        log.info("Distilling %s into %s (T=%s, alpha=%s, %s form)", cfg.model.name, cfg.student.name,
                 cfg.distill.temperature, cfg.distill.alpha, cfg.distill.kd_form)
        # Seeding each stage makes the student independent of whether the teacher was trained or reused.
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        student = pipeline.build_model(cfg.student, len(class_names), datamodule.image_size, config_key="student")
        hardware.apply_speed_options(student, cfg.trainer, "student")
        hardware.apply_speed_options(teacher, cfg.trainer, "teacher")
        teacher_logits_mode, cached_logits = teacher_logits.logits_for_training(
            cfg.distill.teacher_logits, teacher, datamodule, *hardware.inference_device(cfg.trainer)
        )
        distill_record = {**plain_config(cfg.distill), "teacher_logits_mode": teacher_logits_mode}
        module = DistillModule(
            student,
            teacher,
            class_names,
            temperature=cfg.distill.temperature,
            alpha=cfg.distill.alpha,
            kd_form=cfg.distill.kd_form,
            cached_teacher_logits=cached_logits,
            metadata=pipeline.model_metadata(cfg.student, "student", datamodule),
            **pipeline.optim_options(cfg),
        )
        trainer = pipeline.build_trainer(cfg, output_dir / "student", {**run_info, "role": "student"},
                                         max_epochs=cfg.distill.student_epochs)
        resume_from = resume.stage_checkpoint(cfg.get("ckpt_path"), output_dir / "student", final_stage=True)
        outcome = pipeline.fit_and_test(module, datamodule, trainer, ckpt_path=resume_from)
        models["student"] = pipeline.summarize_model("student", cfg.student, student, outcome, class_names)
        review.add_review(models["student"], module, trainer, reference="teacher")

    results = {
        "task": cfg.task,
        "experiment": cfg.get("experiment_name"),
        "seed": cfg.seed,
        "status": "completed",
        "data": datamodule.summary,
        "models": models,
        "distill": distill_record,
        "wall_time_s": round(time.time() - started, 1),
        "config": run_info["config"],
        "provenance": run_info["provenance"],
    }
    write_json(output_dir / "results.json", results)
    log.info("Results of %s job:\n%s", cfg.task, format_comparison(results))
    log.info("Wrote %s", output_dir / "results.json")
    return results


def _train_metrics(cfg: DictConfig) -> tuple[str, ...]:
    """Name the training metrics that every fitted stage of the job logs, for the callbacks that monitor one."""
    if cfg.task == "distill" and cfg.distill.get("teacher_checkpoint"):
        return DistillModule.TRAIN_METRICS
    # A distill job that trains its teacher fits a TeacherModule first, which logs a subset.
    return TeacherModule.TRAIN_METRICS


def _teacher(cfg: DictConfig, datamodule, output_dir: Path, run_info: dict[str, Any], review: JobReview):
    """Train the teacher (or the single classifier), or load it from ``distill.teacher_checkpoint``.

    A resumed distill job reuses the teacher that this run finished before it was interrupted.
    """
    class_names = list(datamodule.class_names)
    role = run_info["role"]
    stage_dir = output_dir / role
    distill = cfg.task == "distill"
    checkpoint = cfg.distill.get("teacher_checkpoint") if distill else None
    trainer_epochs = cfg.distill.teacher_epochs if distill else None

    finished = resume.read_stage_record(stage_dir) if distill and cfg.get("ckpt_path") else None
    if finished and not checkpoint:
        log.info("Reusing the %s that this run finished before: %s", role, finished["checkpoint"])
        teacher = pipeline.load_teacher_checkpoint(finished["checkpoint"], cfg.model, datamodule)
        return teacher, finished["summary"]

    if checkpoint:
        teacher = pipeline.load_teacher_checkpoint(checkpoint, cfg.model, datamodule)
        module = TeacherModule(teacher, class_names, metadata=pipeline.model_metadata(cfg.model, role, datamodule))
        trainer = pipeline.build_trainer(cfg, output_dir / role, run_info, max_epochs=0)
        outcome = pipeline.test_only(module, datamodule, trainer)
        outcome["checkpoint"] = checkpoint
    else:
        log.info("Training %s %s", role, cfg.model.name)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
        teacher = pipeline.build_model(cfg.model, len(class_names), datamodule.image_size)
        hardware.apply_speed_options(teacher, cfg.trainer, role)
        module = TeacherModule(
            teacher,
            class_names,
            pretrain_options=cfg.model.get("pretrain"),
            metadata=pipeline.model_metadata(cfg.model, role, datamodule),
            **pipeline.optim_options(cfg),
        )
        trainer = pipeline.build_trainer(cfg, stage_dir, run_info, max_epochs=trainer_epochs)
        resume_from = resume.stage_checkpoint(cfg.get("ckpt_path"), stage_dir, final_stage=not distill)
        outcome = pipeline.fit_and_test(module, datamodule, trainer, ckpt_path=resume_from)

    summary = pipeline.summarize_model(role, cfg.model, teacher, outcome, class_names)
    review.add_review(summary, module, trainer)
    if module.pretrain_history:
        summary["pretrain_history"] = module.pretrain_history
    if distill and not checkpoint:
        resume.write_stage_record(stage_dir, outcome["checkpoint"], summary)
    return teacher, summary


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="config")
def main(cfg: DictConfig) -> float | None:
    """Run a job and return the validation macro F1 of its final model, for sweepers.

    A job that raises writes ``failed.json`` into its output folder. With
    ``continue_on_error=true`` it then logs the error and returns None, so a multirun goes
    on with its other jobs. Otherwise a mistake found by brainkd's own checks ends the
    program with exit code 1 and a one-paragraph message, and any other error propagates
    with its traceback. HYDRA_FULL_ERROR=1 shows the traceback of every error.
    """
    output_dir = Path(cfg.paths.output_dir)
    try:
        results = train(cfg)
    except Exception as error:
        record = failures.write_failure(output_dir, error)
        user_error = failures.is_user_error(error)
        if cfg.get("continue_on_error", False):
            log.error("Job failed, recorded in %s; continuing (continue_on_error=true): %s: %s",
                      record, type(error).__name__, error, exc_info=not user_error)
            return None
        if user_error and os.environ.get("HYDRA_FULL_ERROR") != "1":
            log.error("%s", error)
            where = f"{record} records it" if record else f"{failures.FAILED_FILE} could not be written"
            raise SystemExit(f"error: {error}\n(HYDRA_FULL_ERROR=1 shows the traceback; {where})") from None
        raise
    failures.clear_failure(output_dir)
    final = results["models"]["student" if cfg.task == "distill" else next(iter(results["models"]))]
    return final["val"].get("val/f1_macro")


if __name__ == "__main__":
    main()
