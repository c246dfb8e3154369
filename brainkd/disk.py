"""Free disk space, and the error for a file that could not be written."""

from __future__ import annotations

import shutil
from pathlib import Path

OUTPUT_SPACE_HINT = "Free space there, or set hydra.run.dir to a folder on another disk."


class WriteFailed(OSError):
    """An error for a file that could not be written, usually because its disk is full.

    The message names the file, its size, the free space and what to do.
    """

    def __str__(self) -> str:
        return self.strerror or super().__str__()


def write_error(cause: OSError, subject: str, path: str | Path, hint: str) -> WriteFailed:
    """Build the WriteFailed for ``cause``, naming the file (``subject``), the free space beside ``path``, and ``hint``."""
    reason = cause.strerror or str(cause)
    return WriteFailed(cause.errno, f"could not write the {subject}: {reason}{_free_space(path)}. {hint}")


def _free_space(path: str | Path) -> str:
    folder = Path(path).parent
    free = free_bytes(folder)
    return "" if free is None else f", with {megabytes(free)} free in {folder}"


def megabytes(size: int) -> str:
    """Format a byte count in MB, with one decimal below 10 MB so that small files do not read as 0 MB."""
    return f"{size / 1e6:.1f} MB" if size < 10_000_000 else f"{size / 1e6:.0f} MB"


def free_bytes(folder: str | Path) -> int | None:
    """Return the free space on the disk of ``folder``, or of its nearest existing parent, or None when unknown."""
    folder = Path(folder).absolute()
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            try:
                return shutil.disk_usage(candidate).free
            except OSError:
                return None
    return None
