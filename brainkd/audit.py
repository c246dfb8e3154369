"""Hydra entry point that audits a dataset for duplicates: ``python -m brainkd.audit data.root=...``.

Groups Training and Testing images as the folds do (``data.near_duplicate_distance``), logs
a summary and writes ``duplicate_groups.csv`` and ``duplicate_summary.json`` into the run's
output folder.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import hydra
from omegaconf import DictConfig

from brainkd.data.datamodule import PERCEPTUAL_HASH_SIZE
from brainkd.data.duplicates import (
    duplicate_groups,
    format_summary,
    perceptual_hashes,
    summarize_groups,
    write_groups_csv,
)
from brainkd.data.folders import scan_split
from brainkd.pipeline import resolve_data_root
from brainkd.results import write_json

log = logging.getLogger(__name__)


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    """Group every listed image of the dataset, log the summary and write the groups."""
    root = resolve_data_root(cfg.data)
    output_dir = Path(cfg.paths.output_dir)
    distance = int(cfg.data.near_duplicate_distance)
    samples = scan_split(root, "train") + scan_split(root, "test")
    log.info("Auditing %d images under %s (data.near_duplicate_distance=%d)", len(samples), root, distance)

    hashes = perceptual_hashes(samples, PERCEPTUAL_HASH_SIZE, cfg.data.get("preprocess_workers")) if distance >= 0 else None
    groups = duplicate_groups(samples, distance, hashes)
    report = summarize_groups(samples, groups)

    write_groups_csv(output_dir / "duplicate_groups.csv", samples, groups, hashes)
    summary = {"root": str(root), "near_duplicate_distance": distance, **dataclasses.asdict(report)}
    summary["twin_free"] = sorted(sample.relpath for sample in report.twin_free)
    write_json(output_dir / "duplicate_summary.json", summary)
    log.info("Duplicate audit of %s:\n%s", root, format_summary(report))
    log.info("Wrote duplicate_groups.csv and duplicate_summary.json to %s", output_dir)


if __name__ == "__main__":
    main()
