"""Steps shared by the entry points: build data, models and trainers, fit, test, checkpoint I/O."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate, to_absolute_path
from omegaconf import DictConfig, OmegaConf
from torch import nn

from brainkd.data.datamodule import BrainMRIDataModule
from brainkd.data.folders import DATA_SOURCE_HINT
from brainkd.data.synthetic import make_synthetic_dataset
from brainkd.models.factory import check_input_size, count_parameters, create_model
from brainkd.modules.base import ClassifierBase
from brainkd.modules.metrics import metrics_from_logits
from brainkd.tracking.loggers import build_callbacks, build_loggers

log = logging.getLogger(__name__)

MODEL_KEYS = ("name", "pretrained", "weights_path", "in_chans", "options", "pretrain")


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


def build_datamodule(data_cfg: DictConfig) -> BrainMRIDataModule:
    """Build the DataModule from the ``data`` config group."""
    options = OmegaConf.to_container(data_cfg, resolve=True)
    options.pop("synthetic_fallback", None)
    options.pop("_target_", None)
    options["root"] = str(resolve_data_root(data_cfg))
    return BrainMRIDataModule(**options)


def build_model(model_cfg: DictConfig, num_classes: int, image_size: int) -> nn.Module:
    """Create the network of a ``model`` or ``student`` config entry and check the input size fits."""
    unknown = sorted(set(model_cfg.keys()) - set(MODEL_KEYS))
    if unknown:
        raise ValueError(f"unknown model config key(s) {unknown}; accepted keys: {list(MODEL_KEYS)}")
    options = OmegaConf.to_container(model_cfg.get("options") or {}, resolve=True)
    in_chans = int(model_cfg.get("in_chans", 1))
    model = create_model(
        str(model_cfg.name),
        num_classes=num_classes,
        in_chans=in_chans,
        image_size=image_size,
        pretrained=bool(model_cfg.get("pretrained", False)),
        weights_path=model_cfg.get("weights_path"),
        **options,
    )
    check_input_size(model, str(model_cfg.name), in_chans, image_size)
    return model


def model_metadata(model_cfg: DictConfig, role: str, datamodule: BrainMRIDataModule) -> dict[str, Any]:
    """Describe a model for its checkpoint: architecture, input, classes and the fold it saw."""
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
    }


def optim_options(cfg: DictConfig) -> dict[str, Any]:
    """Return the optimiser settings from the ``optim`` config as keyword arguments."""
    return dict(OmegaConf.to_container(cfg.optim, resolve=True))


def build_trainer(cfg: DictConfig, stage_dir: Path, run_info: dict[str, Any], max_epochs: int | None = None) -> L.Trainer:
    """Instantiate the Lightning Trainer of one model, with its loggers and callbacks."""
    stage_dir.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, Any] = {
        "default_root_dir": str(stage_dir),
        "logger": build_loggers(cfg.get("logger"), stage_dir, run_info) or False,
        "callbacks": build_callbacks(cfg.get("callbacks"), stage_dir),
    }
    if max_epochs is not None:
        overrides["max_epochs"] = max_epochs
    return instantiate(cfg.trainer, **overrides)


def fit_and_test(
    module: ClassifierBase,
    datamodule: BrainMRIDataModule,
    trainer: L.Trainer,
    ckpt_path: str | None = None,
) -> dict[str, Any]:
    """Fit, reload the best checkpoint (by validation macro F1) and test on ``Testing/``."""
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    validation = {key: float(value) for key, value in trainer.callback_metrics.items() if key.startswith("val/")}

    best = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if best:
        log.info("Testing the best checkpoint %s", best)
        state = torch.load(best, map_location="cpu", weights_only=True)["state_dict"]
        module.load_state_dict(state)
    trainer.test(module, datamodule=datamodule, verbose=False)
    return {"checkpoint": best or None, "val": validation, "test_predictions": module.test_predictions}


def test_only(module: ClassifierBase, datamodule: BrainMRIDataModule, trainer: L.Trainer) -> dict[str, Any]:
    """Test a trained module on ``Testing/`` without fitting."""
    trainer.test(module, datamodule=datamodule, verbose=False)
    return {"checkpoint": None, "val": {}, "test_predictions": module.test_predictions}


def summarize_model(
    role: str, model_cfg: DictConfig, model: nn.Module, outcome: dict[str, Any], class_names: list[str]
) -> dict[str, Any]:
    """Build the results entry of one model from its test predictions."""
    predictions = outcome["test_predictions"]
    return {
        "role": role,
        "arch": str(model_cfg.name),
        "pretrained": bool(model_cfg.get("pretrained", False) or model_cfg.get("weights_path")),
        "parameters": count_parameters(model),
        "checkpoint": outcome.get("checkpoint"),
        "val": outcome.get("val", {}),
        "test": metrics_from_logits(predictions["logits"], predictions["labels"], class_names),
    }


def load_teacher_checkpoint(
    path: str, model_cfg: DictConfig, datamodule: BrainMRIDataModule
) -> nn.Module:
    """Load a teacher from a brainkd checkpoint, checking architecture, classes and fold.

    The file is read with ``weights_only=True``, so no arbitrary objects are unpickled.
    """
    path = to_absolute_path(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"distill.teacher_checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises UnpicklingError, RuntimeError or others here
        raise ValueError(
            f"refusing to load {path}: it is not a plain weights checkpoint ({type(error).__name__}: "
            f"{str(error).splitlines()[0]}). Only checkpoints that load with torch.load(weights_only=True) are accepted."
        ) from None

    meta = checkpoint.get("brainkd")
    if not isinstance(meta, dict):
        raise ValueError(f"{path} is not a brainkd checkpoint (no 'brainkd' metadata)")
    expected = {"arch": str(model_cfg.name), "num_classes": len(datamodule.class_names)}
    for key, value in expected.items():
        if meta.get(key) != value:
            raise ValueError(
                f"teacher checkpoint {path} has {key}={meta.get(key)!r} but the config asks for {value!r}; "
                f"set model= to match the checkpoint or train a new teacher"
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
    model.load_state_dict(state)
    log.info("Loaded teacher %s from %s (fold %s)", meta.get("arch"), path, meta.get("fold"))
    return model
