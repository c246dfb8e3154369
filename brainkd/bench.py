"""Benchmark command: ``python -m brainkd.bench [--only cache,loader,...] [--quick] [key=value ...]``.

Measures the cache build, the loader, the distill epoch, inference and the memory
allocator on the dataset in ``--data-root``, prints a table with each target and whether
it was met, and writes the figures as JSON. ``key=value`` arguments are Hydra overrides
of the config that the benchmarks compose (``data.num_workers=0``, ``student=...``).
``--quick`` runs every benchmark at tiny sizes on generated images, for tests.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
import tempfile
from datetime import datetime
from pathlib import Path

from brainkd.benchmarks import allocator, cache, distill, inference, loader
from brainkd.benchmarks.common import BenchSettings
from brainkd.benchmarks.report import format_table, machine_description, write_record
from brainkd.cli import run_tool
from brainkd.data.synthetic import make_synthetic_dataset

log = logging.getLogger(__name__)

BENCHMARKS = {
    "cache": cache.run,
    "loader": loader.run,
    "distill": distill.run,
    "inference": inference.run,
    "allocator": allocator.run,
}


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m brainkd.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(BENCHMARKS), help=f"comma-separated benchmarks (default: all: {', '.join(BENCHMARKS)})")
    parser.add_argument("--data-root", help="dataset root with Training/ and Testing/ (default: BRAINKD_DATA, else data/brain-tumor-mri; generated images with --quick)")
    parser.add_argument("--cache-dir", help="preprocessing cache reused by the loader and distill benchmarks (default: BRAINKD_CACHE, else ~/.cache/brainkd)")
    parser.add_argument("--image-size", type=int, help="side of the model input in pixels (default: 224; 32 with --quick)")
    parser.add_argument("--batch-size", type=int, help="images per batch (default: 32; 8 with --quick)")
    parser.add_argument("--working-scales", help="data.preprocess.working_scale values to build the cache with (default: 2,0)")
    parser.add_argument("--students", help="student config choices to compare with the teacher (default: resnext26ts,resnext26_half)")
    parser.add_argument("--allocators", help="allocators to compare (default: glibc,glibc-thresholds,jemalloc,tcmalloc)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes on generated images: checks that every benchmark runs")
    parser.add_argument("--output", help="JSON file to write (default: outputs/bench/bench-<date>-<time>.json)")
    parser.add_argument("overrides", nargs="*", help="Hydra overrides, key=value")
    return parser.parse_args(argv)


def build_settings(args: argparse.Namespace, work_dir: Path) -> BenchSettings:
    """Turn the arguments into settings. ``--quick`` shrinks the defaults and generates its data."""
    if args.quick:
        data_root = Path(args.data_root) if args.data_root else make_synthetic_dataset(
            work_dir / "data", train_per_class=8, test_per_class=2, size=64, seed=0
        )
        settings = BenchSettings(
            data_root=data_root, cache_dir=work_dir / "cache", work_dir=work_dir, image_size=32, batch_size=8,
            model_steps=2, distill_samples_per_class=8, distill_epochs=2, inference_rounds=2,
            students=("plain_cnn",), allocators=("glibc-thresholds",), allocator_steps=1,
            # Small models; 10 folds cannot be stratified with 8 images per class.
            overrides=["model=plain_cnn", "student=plain_cnn", "data.val_fraction=0.25"],
        )
    else:
        data_root = Path(args.data_root or os.environ.get("BRAINKD_DATA") or "data/brain-tumor-mri")
        cache_dir = Path(args.cache_dir or os.environ.get("BRAINKD_CACHE") or "~/.cache/brainkd").expanduser()
        settings = BenchSettings(data_root=data_root.resolve(), cache_dir=cache_dir, work_dir=work_dir)

    settings.overrides += args.overrides
    if args.cache_dir:
        settings.cache_dir = Path(args.cache_dir).expanduser()
    if args.image_size:
        settings.image_size = args.image_size
    if args.batch_size:
        settings.batch_size = args.batch_size
    if args.working_scales:
        settings.working_scales = tuple(float(value) for value in args.working_scales.split(","))
    if args.students:
        settings.students = tuple(args.students.split(","))
    if args.allocators:
        settings.allocators = tuple(args.allocators.split(","))
    return settings


def main(argv: list[str]) -> int:
    """Run the chosen benchmarks, print the table and write the JSON record."""
    args = parse_arguments(argv)
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in names if name not in BENCHMARKS]
    if unknown:
        raise ValueError(f"unknown benchmark(s) {', '.join(unknown)} in --only; choose from {', '.join(BENCHMARKS)}")
    output = Path(args.output or f"outputs/bench/bench-{datetime.now():%Y%m%d-%H%M%S}.json")

    work_dir = Path(tempfile.mkdtemp(prefix="brainkd-bench-"))
    try:
        settings = build_settings(args, work_dir)
        before = machine_description()
        rows = []
        for name in names:
            log.info("Running the %s benchmark", name)
            rows += BENCHMARKS[name](settings)
        after = machine_description()
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    sys.stdout.write(format_table(rows) + "\n")
    sys.stdout.write(
        f"\n{before['processor']}, {before['cores']} cores; 1-minute load average {before.get('load_average_1min')} "
        f"before, {after.get('load_average_1min')} after (above the core count, other jobs shared the cores)\n"
    )
    write_record(output, rows, settings, before, after)
    log.info("Wrote %s", output)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_tool(main))
