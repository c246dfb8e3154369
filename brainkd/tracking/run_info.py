"""Job identity for the loggers and results.json: name, group, tags, config and provenance."""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from brainkd.tracking.loggers import plain_config

log = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[2]
GIT_TIMEOUT_S = 10


def build_run_info(cfg: DictConfig, fold: int, manifest_hash: str) -> dict[str, Any]:
    """Describe one job for ``build_loggers``; the role of each model is added by the caller.

    ``name`` is ``cfg.name`` or the output folder's name. ``group`` is ``cfg.group`` or,
    in a multirun, ``sweep_group()``. ``tags`` are ``cfg.tags`` plus ``fold=<fold>`` and
    ``experiment=<experiment_name>``. ``config`` is the resolved config as plain values.
    """
    tags = list(cfg.get("tags") or [])
    extra_tags = [f"fold={fold}"]
    if cfg.get("experiment_name"):
        extra_tags.append(f"experiment={cfg.experiment_name}")
    tags += [tag for tag in extra_tags if tag not in tags]

    return {
        "name": cfg.get("name") or Path(cfg.paths.output_dir).name,
        "group": cfg.get("group") or sweep_group(),
        "tags": tags,
        "config": plain_config(cfg),
        "provenance": {**git_state(), "manifest_hash": manifest_hash},
    }


def sweep_group() -> str | None:
    """Return a group name shared by the jobs of one multirun, or None outside a multirun.

    The name joins the last two parts of ``hydra.sweep.dir`` with "_", which is
    ``<date>_<time>`` with brainkd's default sweep folders.
    """
    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    if hydra_cfg.mode != RunMode.MULTIRUN:
        return None
    return "_".join(Path(str(hydra_cfg.sweep.dir)).parts[-2:])


def git_state(repository: Path = PROJECT_ROOT) -> dict[str, Any]:
    """Return ``git_commit`` (the checked-out commit) and ``git_dirty`` (tracked files changed since).

    Both are None when ``repository`` is not a git checkout or git is not installed.
    """
    try:
        commit = _git(repository, "rev-parse", "HEAD")
        changes = _git(repository, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError) as error:
        log.info("No git commit recorded for this run (%s)", error)
        return {"git_commit": None, "git_dirty": None}
    return {"git_commit": commit, "git_dirty": bool(changes)}


def _git(repository: Path, *arguments: str) -> str:
    completed = subprocess.run(
        ["git", *arguments], cwd=repository, capture_output=True, text=True, timeout=GIT_TIMEOUT_S, check=True
    )
    return completed.stdout.strip()
