"""Settings, result rows, timers and the composed config that the sub-benchmarks share."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


@dataclass
class BenchSettings:
    """Inputs and sizes of one benchmark run."""

    data_root: Path
    cache_dir: Path             # preprocessing cache that the loader and distill benchmarks reuse
    work_dir: Path              # scratch folder for fresh caches and generated data
    image_size: int = 224
    batch_size: int = 32
    overrides: list[str] = field(default_factory=list)  # Hydra overrides of the composed config
    working_scales: tuple[float, ...] = (2.0, 0.0)
    model_steps: int = 3        # timed training steps after one warm-up step
    distill_samples_per_class: int = 16
    distill_epochs: int = 3     # the first epoch is a warm-up and is not counted
    inference_rounds: int = 5
    students: tuple[str, ...] = ("resnext26ts", "resnext26_half")
    allocators: tuple[str, ...] = ("glibc", "glibc-thresholds", "jemalloc", "tcmalloc")
    allocator_steps: int = 3


@dataclass
class Row:
    """One measured figure, with its target and whether it was met (None: no target)."""

    benchmark: str
    figure: str
    value: float | None
    unit: str = ""
    target: str = ""
    passed: bool | None = None
    note: str = ""


def compose_config(settings: BenchSettings, *overrides: str) -> DictConfig:
    """Compose brainkd's config for the benchmark data, then ``overrides``, then the user's overrides.

    A later ``key=value`` for the same key replaces an earlier one.
    """
    base = [
        f"data.root={settings.data_root}",
        f"data.cache_dir={settings.cache_dir}",
        f"data.image_size={settings.image_size}",
        f"data.batch_size={settings.batch_size}",
        f"paths.output_dir={settings.work_dir / 'outputs'}",
    ]
    merged: dict[str, str] = {}
    for override in [*base, *overrides, *settings.overrides]:
        merged[override.split("=", 1)[0]] = override
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=list(merged.values()))


def time_calls(function: Callable[[], object], repeats: int) -> list[float]:
    """Call ``function`` ``repeats`` times and return each call's wall time in seconds."""
    durations = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        durations.append(time.perf_counter() - started)
    return durations


class ProcessTreeCpu:
    """CPU seconds that this process and its descendants use inside a ``with`` block.

    Descendants are found in ``/proc`` every ``interval`` seconds, so a process that starts
    and ends between two samples is missed and the last ``interval`` of a process that
    ends inside the block is not counted. ``cpu_seconds`` is None where ``/proc`` is missing.
    ``busy_processes`` counts the descendants that used at least a quarter of the CPU time
    of the busiest one.
    """

    def __init__(self, interval: float = 0.1):
        self.interval = interval
        self.cpu_seconds: float | None = None
        self.busy_processes = 0
        self._ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self._start: dict[int, int] = {}
        self._latest: dict[int, int] = {}
        self._own_start = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample_until_stopped, daemon=True)

    def __enter__(self) -> ProcessTreeCpu:
        if Path("/proc/self/stat").exists():
            self._start = self._descendant_ticks()
            self._latest = dict(self._start)
            self._own_start = time.process_time()
            self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        if not self._thread.is_alive():
            return
        self._stop.set()
        self._thread.join()
        self._record(self._descendant_ticks())
        used = {pid: ticks - self._start.get(pid, 0) for pid, ticks in self._latest.items()}
        # Helpers such as the fork server use a little CPU, and each worker a similar share.
        busiest = max(used.values(), default=0)
        self.busy_processes = sum(1 for ticks in used.values() if busiest and ticks >= 0.25 * busiest)
        self.cpu_seconds = time.process_time() - self._own_start + sum(used.values()) / self._ticks

    def _sample_until_stopped(self) -> None:
        while not self._stop.wait(self.interval):
            self._record(self._descendant_ticks())

    def _record(self, ticks: dict[int, int]) -> None:
        for pid, value in ticks.items():
            self._latest[pid] = max(value, self._latest.get(pid, 0))

    @staticmethod
    def _descendant_ticks() -> dict[int, int]:
        """Return user plus system clock ticks of every living descendant of this process."""
        parents: dict[int, int] = {}
        ticks: dict[int, int] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            # The command name in brackets may contain spaces, but the fields after it do not.
            fields = stat[stat.rindex(")") + 2 :].split()
            pid = int(entry.name)
            parents[pid] = int(fields[1])
            ticks[pid] = int(fields[11]) + int(fields[12])

        found: dict[int, int] = {}
        frontier = [os.getpid()]
        while frontier:
            parent = frontier.pop()
            for pid, ppid in parents.items():
                if ppid == parent and pid not in found:
                    found[pid] = ticks[pid]
                    frontier.append(pid)
        return found
