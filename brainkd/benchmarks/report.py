"""The benchmark table, the machine description and the JSON record."""

from __future__ import annotations

import dataclasses
import os
import platform
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch

from brainkd.benchmarks.common import BenchSettings, Row
from brainkd.results import write_json

RESULT_WORDS = {True: "pass", False: "MISS", None: ""}


def format_table(rows: list[Row]) -> str:
    """Render the rows as a text table: benchmark, figure, value, target, result, note."""
    header = ["benchmark", "figure", "value", "target", "result", "note"]
    table = [header] + [
        [row.benchmark, row.figure, _value(row), row.target, RESULT_WORDS[row.passed], row.note] for row in rows
    ]
    widths = [max(len(line[column]) for line in table) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def _value(row: Row) -> str:
    if row.value is None:
        return "-"
    if isinstance(row.value, int) or abs(row.value) >= 100:
        number = f"{row.value:,.0f}"
    else:
        number = f"{row.value:.3g}"
    return f"{number} {row.unit}".strip()


def machine_description() -> dict[str, Any]:
    """Describe the processor, core count, load, libraries and allocator settings of this machine."""
    description = {
        "processor": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "libc": " ".join(platform.libc_ver()),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "allocator_environment": {
            key: value for key, value in os.environ.items() if key == "LD_PRELOAD" or key.startswith("MALLOC_")
        },
    }
    if hasattr(os, "getloadavg"):
        description["load_average_1min"] = round(os.getloadavg()[0], 2)
    return description


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_record(path: Path, rows: list[Row], settings: BenchSettings, before: dict, after: dict) -> Path:
    """Write the rows with the settings and the machine (load before and after) as JSON."""
    record = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {**before, "load_average_1min_after": after.get("load_average_1min")},
        "settings": {key: str(value) if isinstance(value, Path) else value for key, value in dataclasses.asdict(settings).items()},
        "rows": [dataclasses.asdict(row) for row in rows],
        "targets_missed": [row.figure for row in rows if row.passed is False],
    }
    return write_json(path, record)
