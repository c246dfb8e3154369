"""Record a failed job in ``failed.json`` and tell mistakes in the config or data from bugs."""

from __future__ import annotations

import logging
import traceback
from pathlib import Path

from brainkd.disk import WriteFailed
from brainkd.results import write_json

log = logging.getLogger(__name__)

FAILED_FILE = "failed.json"
PACKAGE_DIR = Path(__file__).resolve().parent

# Errors of these types raised by brainkd's own code are its checks of the config and data,
# and of the disk it writes to.
USER_ERROR_TYPES = (ValueError, FileNotFoundError, WriteFailed)


def is_user_error(error: BaseException) -> bool:
    """Tell whether one of brainkd's own checks raised ``error``.

    That is a ValueError, FileNotFoundError or WriteFailed whose innermost stack frame lies in
    the brainkd package. Its message names the setting and the fix, so a traceback adds nothing.
    """
    if not isinstance(error, USER_ERROR_TYPES):
        return False
    frames = traceback.extract_tb(error.__traceback__)
    return bool(frames) and Path(frames[-1].filename).resolve().is_relative_to(PACKAGE_DIR)


def write_failure(output_dir: Path, error: BaseException) -> Path | None:
    """Write ``failed.json`` (status, error type, message and traceback) into a job's output folder.

    Returns its path, or None when it cannot be written, because the job's own error matters more.
    """
    record = {
        "status": "failed",
        "error_type": type(error).__name__,
        "message": str(error),
        "user_error": is_user_error(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    try:
        return write_json(Path(output_dir) / FAILED_FILE, record)
    except OSError as write_error:
        log.warning("Could not write %s in %s: %s", FAILED_FILE, output_dir, write_error)
        return None


def clear_failure(output_dir: Path) -> None:
    """Delete the ``failed.json`` of an earlier attempt once the job has succeeded."""
    (Path(output_dir) / FAILED_FILE).unlink(missing_ok=True)
