"""CPU training-step time of the student under different memory allocators.

glibc's malloc serves blocks above its mmap threshold (128 KiB, raised at run time up to
32 MiB, see mallopt(3)) with fresh ``mmap`` calls and unmaps them on free. The large
tensors of a 224 px training step are therefore page-faulted in again on every step. Raising the
mmap and trim thresholds through the environment keeps freed memory in the process;
jemalloc and tcmalloc are loaded with ``LD_PRELOAD``. Each allocator runs in its own
process, started with its environment.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf

from brainkd.benchmarks.common import BenchSettings, Row, compose_config
from brainkd.data.folders import CLASS_NAMES

# Blocks below 4 GiB come from the heap and freed memory stays in the process. glibc 2.36
# takes thresholds above 32 MiB from these variables: with them, freeing and allocating
# 100 MB arrays again stops causing page faults. The Makefile exports the same values.
GLIBC_THRESHOLDS = {"MALLOC_MMAP_THRESHOLD_": "4294967296", "MALLOC_TRIM_THRESHOLD_": "4294967296"}
PRELOAD_LIBRARIES = {"jemalloc": "libjemalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib", "/usr/local/lib")
# Variables that change the allocator. The parent's values never reach a measured process.
ALLOCATOR_VARIABLES = ("LD_PRELOAD", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "MALLOC_TOP_PAD_", "MALLOC_CONF")
ALLOCATORS = ("glibc", "glibc-thresholds", "jemalloc", "tcmalloc")


def allocator_environment(name: str) -> dict[str, str] | None:
    """Return the environment variables that select an allocator, or None when its library is missing."""
    if name == "glibc":
        return {}
    if name == "glibc-thresholds":
        return dict(GLIBC_THRESHOLDS)
    if name not in PRELOAD_LIBRARIES:
        raise ValueError(f"unknown allocator {name!r}; choose from {', '.join(ALLOCATORS)}")
    for folder in LIBRARY_DIRS:
        path = Path(folder) / PRELOAD_LIBRARIES[name]
        if path.is_file():
            return {"LD_PRELOAD": str(path)}
    return None


def run(settings: BenchSettings) -> list[Row]:
    """Time the student's training steps once per allocator in ``settings.allocators``."""
    cfg = compose_config(settings)
    job = {
        "name": str(cfg.student.name),
        "in_chans": int(cfg.student.get("in_chans", 1)),
        "num_classes": len(CLASS_NAMES),
        "options": OmegaConf.to_container(cfg.student.get("options") or {}, resolve=True),
        "image_size": settings.image_size,
        "batch_size": settings.batch_size,
        "steps": settings.allocator_steps,
    }
    inherited = {key: value for key, value in os.environ.items() if key not in ALLOCATOR_VARIABLES}

    rows: list[Row] = []
    step_seconds: dict[str, float] = {}
    for name in settings.allocators:
        extra = allocator_environment(name)
        if extra is None:
            rows.append(Row("allocator", f"{name}: training step", None, "s", note="library not installed; skipped"))
            continue
        result = _run_worker(job, {**inherited, **extra}, name)
        step_seconds[name] = statistics.median(result["step_seconds"][1:] or result["step_seconds"])
        faults = statistics.median(result["minor_faults"][1:] or result["minor_faults"])
        rows.append(Row(
            "allocator", f"{name}: training step", step_seconds[name], "s",
            note=f"{faults:,.0f} minor page faults per step; {' '.join(f'{k}={v}' for k, v in extra.items()) or 'defaults'}",
        ))

    baseline = step_seconds.get("glibc")
    for name, seconds in step_seconds.items():
        if baseline is not None and name != "glibc":
            rows.append(Row("allocator", f"{name} speed-up over glibc defaults", baseline / seconds, "x"))
    return rows


def _run_worker(job: dict, environment: dict[str, str], name: str) -> dict:
    command = [sys.executable, "-m", "brainkd.benchmarks.train_steps", json.dumps(job)]
    completed = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"the training-step process with allocator {name} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
