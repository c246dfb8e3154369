"""Steps shared by the entry points: build data, models and trainers, fit, test, checkpoint I/O."""

from __future__ import annotations

import dataclasses
import logging
import pickle
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate, to_absolute_path
from lightning.pytorch.strategies.launchers import _SubprocessScriptLauncher
from omegaconf import DictConfig, OmegaConf
from torch import nn

from brainkd.checkpoints import (
    SAFE_LOADING_HINT,
    AtomicCheckpointIO,
    checkpoint_bytes,
    drop_training_state,
    load_weights_only,
    rejection_reason,
    warn_if_short_of_space,
)
from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.data.folders import DATA_SOURCE_HINT
from brainkd.data.synthetic import make_synthetic_dataset
from brainkd.disk import megabytes
from brainkd.models.factory import check_input_size, count_parameters, create_model
from brainkd.modules.base import ClassifierBase
from brainkd.modules.metrics import metrics_from_logits
from brainkd.resume import LAST_CHECKPOINT, RandomStateCallback, ResumeHint
from brainkd.tracking.csv_log import RestoreMetricRows
from brainkd.tracking.loggers import build_callbacks, build_loggers

log = logging.getLogger(__name__)

MODEL_KEYS = ("name", "pretrained", "weights_path", "in_chans", "options", "pretrain")
# Keys of the trainer config that brainkd applies to the models; they are not passed to the Trainer.
MODEL_SPEED_KEYS = ("channels_last", "compile")


def resolve_data_root(data_cfg: DictConfig) -> Path:
    """Return the dataset root as an absolute path, generating a small dataset if allowed.

    A relative ``data.root`` is resolved against the directory the run was launched from.
    """
    root = Path(to_absolute_path(str(Path(str(data_cfg.root)).expanduser())))
    if root.is_dir():
        return root
    if data_cfg.get("synthetic_fallback", False):
        generated = Path(str(data_cfg.cache_dir)).expanduser() / "synthetic-dataset"
        if not generated.is_dir():
            make_synthetic_dataset(generated, seed=0)
        log.warning("Dataset root %s does not exist; using generated images in %s", root, generated)
        return generated
    raise FileNotFoundError(f"dataset root {root} (data.root) does not exist. {DATA_SOURCE_HINT}")


def build_datamodule(data_cfg: DictConfig, seed: int = 0) -> BrainMRIDataModule:
    """Build the DataModule from the ``data`` config group; ``seed`` fixes the training order."""
    options = OmegaConf.to_container(data_cfg, resolve=True)
    options.pop("synthetic_fallback", None)
    options.pop("_target_", None)
    options["root"] = str(resolve_data_root(data_cfg))
    return BrainMRIDataModule(**options, seed=seed)


def build_model(model_cfg: DictConfig, num_classes: int, image_size: int, config_key: str = "model") -> nn.Module:
    """Create the network of a ``model`` or ``student`` config entry and check the input size fits.

    ``config_key`` is the config group of the entry, named in error messages.
    """
    unknown = sorted(set(model_cfg.keys()) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"unknown {config_key} config key(s) {unknown}; accepted keys: {list(MODEL_KEYS)}")
    options = OmegaConf.to_container(model_cfg.get("options") or {}, resolve=True)
    in_chans = int(model_cfg.get("in_chans", 1))
    try:
        model = create_model(
            str(model_cfg.name),
            num_classes=num_classes,
            in_chans=in_chans,
            image_size=image_size,
            pretrained=bool(model_cfg.get("pretrained", False)),
            weights_path=model_cfg.get("weights_path"),
            **options,
        )
    except (ValueError, TypeError) as error:
        # TypeError: an option that the model's constructor does not take.
        raise ValueError(
            f"cannot build {config_key}.name={model_cfg.name!r} with {config_key}.options={options}, "
            f"{config_key}.in_chans={in_chans} and data.image_size={image_size}: {error}"
        ) from error
    check_input_size(model, str(model_cfg.name), in_chans, image_size)
    return model


def model_metadata(model_cfg: DictConfig, role: str, datamodule: BrainMRIDataModule) -> dict[str, Any]:
    """Describe a model for its checkpoint: architecture, input, classes and the fold it saw.

    The preprocessing settings, ``mean`` and ``std`` let ``brainkd.predict`` and
    ``brainkd.export`` prepare new images exactly as the training images were prepared.
    """
    return {
        "role": role,
        "arch": str(model_cfg.name),
        "in_chans": int(model_cfg.get("in_chans", 1)),
        "options": OmegaConf.to_container(model_cfg.get("options") or {}, resolve=True),
        "num_classes": len(datamodule.class_names),
        "image_size": datamodule.image_size,
        "manifest_hash": datamodule.split.manifest_hash,
        "fold": datamodule.split.fold,
        "num_folds": datamodule.split.num_folds,
        "preprocess": dataclasses.asdict(datamodule.preprocess_settings),
        "mean": float(datamodule.mean),
        "std": float(datamodule.std),
    }


def optim_options(cfg: DictConfig) -> dict[str, Any]:
    """Return the optimiser settings from the ``optim`` config as keyword arguments."""
    return dict(OmegaConf.to_container(cfg.optim, resolve=True))


def build_trainer(cfg: DictConfig, stage_dir: Path, run_info: dict[str, Any], max_epochs: int | None = None) -> L.Trainer:
    """Instantiate the Lightning Trainer of one model, with its loggers and callbacks.

    Every trainer also keeps the random state in its checkpoints (RandomStateCallback), tells
    a ResumableCSVLogger the step it resumes at (RestoreMetricRows), logs how to resume after
    Ctrl-C (ResumeHint) and, unless ``trainer.plugins`` is set, writes checkpoints atomically
    (AtomicCheckpointIO).
    """
    stage_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        "default_root_dir": str(stage_dir),
        "logger": build_loggers(cfg.get("logger"), stage_dir, run_info) or False,
        "callbacks": [*build_callbacks(cfg.get("callbacks"), stage_dir), RandomStateCallback(), RestoreMetricRows(), ResumeHint()],
    }
    if not cfg.trainer.get("plugins"):
        overrides["plugins"] = [AtomicCheckpointIO()]
    if max_epochs is not None:
        overrides["max_epochs"] = max_epochs
    trainer_options = OmegaConf.to_container(cfg.trainer, resolve=True)
    for key in MODEL_SPEED_KEYS:
        trainer_options.pop(key, None)
    trainer = instantiate(trainer_options, **overrides)
    check_launch_in_multirun(trainer)
    return trainer


def check_launch_in_multirun(trainer: L.Trainer) -> None:
    """Raise ValueError when the trainer would start DDP processes itself inside a Hydra multirun.

    Lightning starts the other ranks by running the program's command line again
    (``sys.argv``), which in a multirun repeats the whole sweep in each new process and
    writes into other jobs' folders. Processes that SLURM or torchrun start are fine.
    """
    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return
    if isinstance(trainer.strategy.launcher, _SubprocessScriptLauncher):
        raise ValueError(
            f"{type(trainer.strategy).__name__} (trainer.strategy) on {trainer.world_size} devices cannot run "
            "inside a multirun (-m or a +sweep preset). Lightning would start the other processes by running "
            "the command line again, sweep included. Run the jobs one at a time, for example in a shell loop "
            "over data.fold, or use hydra/launcher=slurm with hydra.launcher.tasks_per_node equal to "
            "trainer.devices, so that SLURM starts the processes."
        )


def fit_and_test(
    module: ClassifierBase,
    datamodule: BrainMRIDataModule,
    trainer: L.Trainer,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Fit (resuming from ``ckpt_path`` if given), reload the best checkpoint and test on ``Testing/``.

    The best checkpoint is the one kept by the first ModelCheckpoint with a ``monitor``.
    """
    if ckpt_path:
        log.info("Resuming from %s", ckpt_path)
    _check_checkpoint_space(module, trainer)
    try:
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    except pickle.UnpicklingError as error:
        raise ValueError(f"rejected checkpoint {ckpt_path} (ckpt_path): {rejection_reason(error)}. {SAFE_LOADING_HINT}") from None
    validation = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}

    monitored = [callback for callback in trainer.checkpoint_callbacks if getattr(callback, "monitor", None)]
    best = monitored[0].best_model_path if monitored else ""
    if best:
        log.info("Testing the best checkpoint %s", best)
        checkpoint = load_weights_only(best, "best checkpoint")
        module.load_state_dict(checkpoint["state_dict"])
        if trainer.is_global_zero:
            _strip_optimiser_state(best, checkpoint)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return {
        "checkpoint": best or None,
        "val": validation,
        "test_predictions": module.test_predictions,
        "test_twin_free": datamodule.test_twin_free,
    }


def _check_checkpoint_space(module: ClassifierBase, trainer: L.Trainer) -> None:
    """Warn before training when a checkpoint folder's disk looks too small for the stage's checkpoints."""
    # last.ckpt and the best checkpoint keep the optimiser state until training ends, and a
    # save writes the new file before it replaces the old one: three files at the peak.
    needed = 3 * checkpoint_bytes(module.model, module.optim_options["optimizer"])
    for folder in {callback.dirpath for callback in trainer.checkpoint_callbacks if callback.dirpath}:
        warn_if_short_of_space(folder, needed)


def _strip_optimiser_state(path: str, checkpoint: dict[str, Any]) -> None:
    """Drop the optimiser state from the best checkpoint, already loaded as ``checkpoint``, once training is over.

    last.ckpt keeps it for resuming.
    """
    if Path(path).name == LAST_CHECKPOINT:
        return
    before, after = drop_training_state(path, checkpoint)
    if after < before:
        log.info("Dropped the optimiser state from %s (%s to %s). %s keeps it for resuming",
                 path, megabytes(before), megabytes(after), LAST_CHECKPOINT)


def test_only(module: ClassifierBase, datamodule: BrainMRIDataModule, trainer: L.Trainer) -> dict[str, Any]:
    """Test a trained module on ``Testing/`` without fitting."""
    trainer.test(module, datamodule=datamodule, verbose=False)
    return {
        "checkpoint": None,
        "val": {},
        "test_predictions": module.test_predictions,
        "test_twin_free": datamodule.test_twin_free,
    }


def summarize_model(
    role: str, model_cfg: DictConfig, model: nn.Module, outcome: dict[str, Any], class_names: list[str]
) -> dict[str, Any]:
    """Build the results entry of one model from its test predictions.

    ``test`` covers every test image. ``test_twin_free`` covers the test images that
    ``outcome["test_twin_free"]`` marks as having no duplicate in Training; it is absent
    when the outcome has no such mask.
    """
    predictions = outcome["test_predictions"]
    summary = {
        "role": role,
        "arch": str(model_cfg.name),
        "pretrained": bool(model_cfg.get("pretrained", False) or model_cfg.get("weights_path")),
        "parameters": count_parameters(model),
        "checkpoint": outcome.get("checkpoint"),
        "val": outcome.get("val", {}),
        "test": metrics_from_logits(predictions["logits"], predictions["labels"], class_names),
    }
    if outcome.get("test_twin_free") is not None:
        # The mask is in dataset order and the predictions carry their dataset indices.
        twin_free = torch.as_tensor(outcome["test_twin_free"], dtype=torch.bool)[predictions["indices"]]
        summary["test_twin_free"] = metrics_from_logits(
            predictions["logits"][twin_free], predictions["labels"][twin_free], class_names
        )
    return summary


def load_teacher_checkpoint(
    path: str, model_cfg: DictConfig, datamodule: BrainMRIDataModule
) -> nn.Module:
    """Load a teacher from a brainkd checkpoint, checking architecture, classes and fold.

    The file is read with ``weights_only=True``, so no arbitrary objects are unpickled.
    """
    path = to_absolute_path(path)
    checkpoint = load_weights_only(path, "distill.teacher_checkpoint")

    meta = checkpoint.get("brainkd") if isinstance(checkpoint, dict) else None
    if not isinstance(meta, dict) or "state_dict" not in checkpoint:
        raise ValueError(
            f"distill.teacher_checkpoint {path} is not a brainkd checkpoint (no 'brainkd' metadata or "
            "'state_dict'); give a checkpoint that a brainkd job saved under <run>/teacher/checkpoints/"
        )
    expected = {
        "arch": ("model.name", str(model_cfg.name)),
        "in_chans": ("model.in_chans", int(model_cfg.get("in_chans", 1))),
        "num_classes": ("the number of classes", len(datamodule.class_names)),
    }
    # A teacher trained at another input size was fitted to the anatomy at another scale.
    # Checkpoints written before image_size was recorded skip this check.
    if meta.get("image_size") is not None:
        expected["image_size"] = ("data.image_size", datamodule.image_size)
    for key, (setting, value) in expected.items():
        if meta.get(key) != value:
            raise ValueError(
                f"distill.teacher_checkpoint {path} has {key}={meta.get(key)!r}, but {setting} is {value!r}. "
                f"Change {setting} to match the checkpoint, or train a new teacher (distill.teacher_checkpoint=null)"
            )
    if meta.get("manifest_hash") != datamodule.split.manifest_hash:
        raise ValueError(
            f"teacher checkpoint {path} was trained on fold {meta.get('fold')} of {meta.get('num_folds')} "
            f"(manifest {meta.get('manifest_hash')}), but this run uses fold {datamodule.split.fold} of "
            f"{datamodule.split.num_folds} (manifest {datamodule.split.manifest_hash}). A teacher that saw "
            "this run's validation images would leak them; train a teacher on the same fold"
        )

    model = build_model(model_cfg, len(datamodule.class_names), datamodule.image_size)
    state = {key[len("model."):]: value for key, value in checkpoint["state_dict"].items() if key.startswith("model.")}
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        options = OmegaConf.to_container(model_cfg.get("options") or {}, resolve=True)
        raise ValueError(
            f"the weights in distill.teacher_checkpoint {path} do not fit model.name={model_cfg.name!r} with "
            f"model.options={options} (the checkpoint was saved with {meta.get('options')}): "
            + " ".join(line.strip() for line in str(error).strip().splitlines()[:3])
        ) from None
    log.info("Loaded teacher %s from %s (fold %s)", meta.get("arch"), path, meta.get("fold"))
    return model
