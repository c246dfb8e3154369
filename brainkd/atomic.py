"""Atomic file writes: a temporary file in the target's folder, renamed into place when whole."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_open(path: str | Path, mode: str = "wb", sync: bool = False, **open_options) -> Iterator[IO]:
    """Open a temporary file for writing and rename it over ``path`` once the block succeeds.

    A reader never sees half a file, and a writer killed midway leaves the old file whole.
    The file gets the permissions a plain ``open`` would give it (0666 less the umask),
    not the 0600 of ``tempfile.mkstemp``. With ``sync`` the data is flushed to disk first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, mode, **open_options) as stream:
            yield stream
            if sync:
                stream.flush()
                os.fsync(stream.fileno())
        os.chmod(temporary, 0o666 & ~_current_umask())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
