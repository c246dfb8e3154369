"""Checks of single config values, so that a mistyped setting fails before any work starts.

Each check raises ValueError naming the config key, the accepted range and the value given.
Hydra passes a command-line value such as ``data.batch_size=abc`` on as a string, and
without these checks it would fail much later, inside PyTorch or OpenCV.
"""

from __future__ import annotations

import math
import numbers
from typing import Any


def _describe_range(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high}"
    return "any value"


def _check_range(key: str, value: float, kind: str, low, high, low_open: bool, high_open: bool) -> None:
    too_low = low is not None and (value <= low if low_open else value < low)
    too_high = high is not None and (value >= high if high_open else value > high)
    if too_low or too_high:
        raise ValueError(f"{key} must be {kind} {_describe_range(low, high, low_open, high_open)}, got {value!r}")


def integer(key: str, value: Any, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` if it is an integer (NumPy's too) within [low, high], else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{key} must be an integer, got {value!r}")
    _check_range(key, value, "an integer", low, high, False, False)
    return value


def optional_integer(key: str, value: Any, low: int | None = None, high: int | None = None) -> int | None:
    """Like ``integer``, but also accept None (``null`` in YAML)."""
    return None if value is None else integer(key, value, low, high)


def number(
    key: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Return ``value`` if it is a finite number within the given bounds, else raise ValueError."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{key} must be a finite number, got {value!r}")
    _check_range(key, value, "a number", low, high, low_open, high_open)
    return value


def flag(key: str, value: Any) -> bool:
    """Return ``value`` if it is true or false, else raise ValueError."""
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, got {value!r}")
    return value


def choice(key: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ValueError."""
    if value not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, got {value!r}")
    return value
