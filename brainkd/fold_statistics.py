"""Mean, standard deviation and t-distribution confidence interval of a metric over folds."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """Summary of one metric over folds; ``std`` and the interval need at least two folds."""

    n: int
    mean: float | None
    std: float | None
    ci_low: float | None
    ci_high: float | None

    @property
    def half_width(self) -> float | None:
        return None if self.ci_high is None else self.ci_high - self.mean


def estimate(values: Sequence[float | None], confidence: float = CONFIDENCE) -> Estimate:
    """Estimate the mean of ``values`` with a two-sided t interval on n - 1 degrees of freedom.

    The interval is mean ± t((1 + confidence) / 2, n - 1) * s / sqrt(n), where s is the
    sample standard deviation. None and NaN values (a metric a fold has no images for)
    are left out, so ``n`` counts the values used.
    """
    present = [float(value) for value in values if value is not None and not math.isnan(value)]
    if not present:
        return Estimate(0, None, None, None, None)
    mean = statistics.fmean(present)
    if len(present) == 1:
        return Estimate(1, mean, None, None, None)

    std = statistics.stdev(present)
    half_width = float(stats.t.ppf((1 + confidence) / 2, len(present) - 1)) * std / math.sqrt(len(present))
    return Estimate(len(present), mean, std, mean - half_width, mean + half_width)


def paired_differences(first: dict, second: dict) -> list[float | None]:
    """Return ``first[key] - second[key]`` for every key present in both, in sorted key order.

    A difference is None where either value is None.
    """
    shared = sorted(set(first) & set(second), key=str)
    return [None if first[key] is None or second[key] is None else first[key] - second[key] for key in shared]


def format_estimate(value: Estimate) -> str:
    """Format as ``mean ± half-width`` of the interval, the mean alone for one fold, or ``n/a``."""
    if value.mean is None:
        return "n/a"
    if value.half_width is None:
        return f"{value.mean:.4f}"
    return f"{value.mean:.4f} ± {value.half_width:.4f}"
