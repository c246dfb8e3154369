"""Command line: the cross-validation and sweep report of one or more multirun folders.

    python -m brainkd.report multirun/2026-01-31/12-00-00 [more folders] [--out DIR]

Writes folds.csv, summary.csv, paired.csv, jobs.csv and report.md (default: <first folder>/report).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from brainkd import report_tables, reporting

log = logging.getLogger(__name__)


def build_report(sources: list[Path], out_dir: Path) -> Path:
    """Read the jobs under ``sources``, write the CSV files and report.md into ``out_dir`` and return report.md's path."""
    jobs = reporting.find_jobs(sources)
    if not jobs:
        raise FileNotFoundError(
            f"no job folders under {', '.join(map(str, sources))}: expected folders with results.json, "
            "failed.json or .hydra/overrides.yaml, as brainkd.run writes them"
        )
    rows, notes = reporting.drop_repeated_folds(reporting.build_rows(jobs))
    summaries = reporting.summarize_models(rows)
    comparisons = reporting.compare_with_control(summaries)

    out_dir.mkdir(parents=True, exist_ok=True)
    report_tables.write_csv(out_dir / "folds.csv", report_tables.fold_records(rows))
    report_tables.write_csv(out_dir / "summary.csv", report_tables.summary_records(summaries))
    report_tables.write_csv(out_dir / "paired.csv", report_tables.paired_records(comparisons))
    report_tables.write_csv(out_dir / "jobs.csv", report_tables.job_records(jobs))
    markdown = report_tables.render_markdown(sources, jobs, summaries, comparisons, rows, notes)
    (out_dir / "report.md").write_text(markdown, encoding="utf-8")

    missing = sum(job.results is None for job in jobs)
    log.info("Read %d job(s) (%d without results) and wrote the report to %s", len(jobs), missing, out_dir)
    return out_dir / "report.md"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m brainkd.report",
        description="Write CSV and Markdown tables of the test metrics of multirun jobs per model, fold and setting.",
    )
    parser.add_argument("sources", nargs="+", type=Path, help="multirun folders (or single run folders) to read")
    parser.add_argument("--out", type=Path, default=None, help="folder for the report files (default: <first source>/report)")
    arguments = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        report = build_report(arguments.sources, arguments.out or arguments.sources[0] / "report")
    except FileNotFoundError as error:
        sys.exit(f"error: {error}")
    sys.stdout.write(report.read_text(encoding="utf-8"))


if __name__ == "__main__":
    main()
