"""``key=value`` command lines for brainkd's tools (predict, export, explain)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from brainkd.failures import is_user_error

log = logging.getLogger(__name__)

REQUIRED = object()


@dataclass(frozen=True)
class Option:
    """One ``key=value`` argument: its help text, default (REQUIRED if none) and parser.

    ``default_help`` describes a default that the tool computes, such as a path next to
    another argument; the default value is then None.
    """

    help: str
    default: Any = REQUIRED
    parse: Callable[[str], Any] = str
    default_help: str | None = None


def parse_options(argv: Sequence[str], options: dict[str, Option], usage: str) -> dict[str, Any]:
    """Parse ``key=value`` arguments into a dict with a value for every option.

    ``-h``/``--help`` prints ``usage`` and the options and exits. Raises SystemExit with a
    message for arguments without "=", unknown or repeated keys, unparsable values and
    missing required keys.
    """
    if any(argument in ("-h", "--help") for argument in argv):
        sys.stdout.write(_help_text(options, usage))
        raise SystemExit(0)

    values: dict[str, Any] = {}
    for argument in argv:
        key, separator, text = argument.partition("=")
        if not separator:
            raise SystemExit(f"error: expected key=value, got {argument!r}\n{usage}")
        if key not in options:
            raise SystemExit(f"error: unknown key {key!r}; accepted keys: {', '.join(options)}")
        if key in values:
            raise SystemExit(f"error: {key} is given twice")
        try:
            values[key] = options[key].parse(text)
        except ValueError as error:
            raise SystemExit(f"error: invalid value {key}={text!r}: {error}") from None

    missing = [key for key, option in options.items() if option.default is REQUIRED and key not in values]
    if missing:
        raise SystemExit(f"error: missing {', '.join(f'{key}=...' for key in missing)}\n{usage}")
    return {key: values.get(key, option.default) for key, option in options.items()}


def positive_int(text: str) -> int:
    """Parse a positive integer."""
    value = int(text)
    if value <= 0:
        raise ValueError("must be a positive integer")
    return value


def run_tool(tool: Callable[[list[str]], int], argv: Sequence[str] | None = None) -> int:
    """Run a tool's main function with logging set up, and turn brainkd's own checks into exit code 1.

    A ValueError or FileNotFoundError raised by brainkd's checks is logged as one line;
    any other exception propagates with its traceback.
    """
    # Other libraries (the ONNX exporter in particular) log only warnings and errors.
    logging.basicConfig(level=logging.WARNING, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    for name in ("brainkd", "__main__"):
        logging.getLogger(name).setLevel(logging.INFO)
    # The model factory's note on pretrained weights describes training, not loading a checkpoint.
    logging.getLogger("brainkd.models.factory").setLevel(logging.WARNING)
    try:
        return tool(list(sys.argv[1:] if argv is None else argv))
    except Exception as error:
        if not is_user_error(error):
            raise
        log.error("%s", error)
        return 1


def _help_text(options: dict[str, Option], usage: str) -> str:
    width = max(len(key) for key in options) + 2
    lines = [usage, "", "keys:"]
    for key, option in options.items():
        if option.default is REQUIRED:
            default = "required"
        else:
            default = f"default: {option.default_help or option.default}"
        lines.append(f"  {key.ljust(width)}{option.help} ({default})")
    return "\n".join(lines) + "\n"
