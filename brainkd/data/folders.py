"""Find class folders, map public folder names to the four classes and list the files."""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

CLASS_NAMES: tuple[str, ...] = ("glioma", "meningioma", "no_tumor", "pituitary")

# Folder names seen in public releases of this task, compared after lower-casing and
# dropping every character that is not a letter or digit ("No Tumor" -> "notumor").
CLASS_ALIASES: dict[str, tuple[str, ...]] = {
    "glioma": ("glioma", "gliomas", "gliomatumor", "gliomatumour"),
    "meningioma": ("meningioma", "meningiomas", "meningiomatumor", "meningiomatumour"),
    "no_tumor": ("notumor", "notumour", "notumors", "nontumor", "normal", "healthy", "no"),
    "pituitary": ("pituitary", "pituitarytumor", "pituitarytumour", "pituitaryadenoma"),
}

SPLIT_FOLDERS = {"train": "Training", "test": "Testing"}
# The warning names this many entries and counts the rest.
MAX_LISTED = 10

DATA_SOURCE_HINT = (
    "Download the public Kaggle dataset 'Brain Tumor Classification (MRI)' (also published "
    "as the GitHub repository SartajBhuvaji/Brain-Tumor-Classification-DataSet), or use any "
    "folder with Training/ and Testing/ folders of class folders, and point data.root or "
    "the BRAINKD_DATA environment variable at it."
)


@dataclass(frozen=True)
class Sample:
    """One image file with its label and the hash of its bytes."""

    path: str
    relpath: str
    label: int
    split: str
    content_hash: str


def _folder_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def canonical_class(folder_name: str) -> str:
    """Return the canonical class of a class folder name, or raise ValueError."""
    key = _folder_key(folder_name)
    for class_name, aliases in CLASS_ALIASES.items():
        if key in aliases:
            return class_name

    accepted = ", ".join(f"{name}: {'/'.join(aliases)}" for name, aliases in CLASS_ALIASES.items())
    raise ValueError(
        f"unknown class folder {folder_name!r}. Accepted names, compared without case, "
        f"spaces, '_' or '-': {accepted}. Rename the folder or remove it from the dataset."
    )


def is_hidden(path: Path) -> bool:
    """Tell whether a file or folder is hidden or is operating-system clutter."""
    return path.name.startswith(".") or path.name.lower() in {"thumbs.db", "desktop.ini", "__macosx"}


def file_sha256(path: Path, chunk_size: int = 1 << 20) -> str:
    """Return the SHA-256 hex digest of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def find_class_folders(split_dir: Path) -> dict[str, Path]:
    """Map each canonical class to its folder under ``split_dir``.

    Raises ValueError on an unknown folder name or on two folders of the same class.
    """
    folders: dict[str, Path] = {}
    for child in sorted(split_dir.iterdir()):
        if not child.is_dir() or is_hidden(child):
            continue
        class_name = canonical_class(child.name)
        if class_name in folders:
            raise ValueError(
                f"folders {folders[class_name].name!r} and {child.name!r} in {split_dir} both "
                f"map to class {class_name!r}. Keep one of them."
            )
        folders[class_name] = child
    return folders


def resolve_split_dir(root: Path, split: str) -> Path:
    """Return the folder of a split (``train`` or ``test``), matched without case."""
    expected_name = SPLIT_FOLDERS[split]
    if not root.is_dir():
        raise FileNotFoundError(f"dataset root {root} does not exist. {DATA_SOURCE_HINT}")
    for child in root.iterdir():
        if child.is_dir() and child.name.lower() == expected_name.lower():
            return child
    raise FileNotFoundError(
        f"no {expected_name}/ folder in dataset root {root}. The root must hold Training/ and "
        f"Testing/, each with one folder per class. {DATA_SOURCE_HINT}"
    )


def not_a_file_reason(path: Path) -> str | None:
    """Return the reason an entry that is not a regular file cannot be an image, or None for a plain folder."""
    if path.is_symlink():
        if not path.exists():
            return "broken or looping symbolic link"
        if path.is_dir():
            return "symbolic link to a folder, which the scan does not follow; link the files instead"
        return "symbolic link to a pipe, socket or device, not to a regular file"
    if path.is_dir():
        return None
    return "not a regular file (a pipe, socket or device)"


def _warn_not_files(not_files: list[str], split_dir: Path) -> None:
    listing = "\n".join(f"  {line}" for line in not_files[:MAX_LISTED])
    more = f"\n  ... and {len(not_files) - MAX_LISTED} more" if len(not_files) > MAX_LISTED else ""
    log.warning("Skipped %d entr(ies) in the class folders of %s that are not image files:\n%s%s",
                len(not_files), split_dir, listing, more)


def scan_split(root: Path, split: str) -> list[Sample]:
    """List every non-hidden file under the class folders of one split, sorted by path.

    Files are not decoded here; preprocessing reports those that are not readable images.
    Hidden files and system clutter (``is_hidden``) are skipped and counted in one log line.
    Broken links, pipes and linked folders are skipped and named in a warning.
    A class without a folder only gives a warning, but a class folder with no other files
    raises ValueError, since an empty folder usually means a failed copy or extraction.
    """
    split_dir = resolve_split_dir(root, split)
    folders = find_class_folders(split_dir)
    if not folders:
        raise ValueError(f"no class folders in {split_dir}. {DATA_SOURCE_HINT}")

    samples = []
    hidden_files = 0
    not_files: list[str] = []
    for class_name, folder in folders.items():
        label = CLASS_NAMES.index(class_name)
        listed = 0
        for path in sorted(folder.rglob("*")):
            relative_parts = path.relative_to(folder).parts
            if any(is_hidden(Path(part)) for part in relative_parts):
                hidden_files += path.is_file()
                continue
            if not path.is_file():
                reason = not_a_file_reason(path)
                if reason:
                    not_files.append(f"{path}: {reason}")
                continue
            samples.append(
                Sample(
                    path=str(path),
                    relpath=path.relative_to(root).as_posix(),
                    label=label,
                    split=split,
                    content_hash=file_sha256(path),
                )
            )
            listed += 1
        if listed == 0:
            if not_files:
                _warn_not_files(not_files, split_dir)
            raise ValueError(
                f"class folder {folder} ({class_name}) has no regular files apart from hidden or system files. "
                f"Put the {class_name} images in it, or delete the folder to train without that class."
            )

    samples.sort(key=lambda sample: sample.relpath)
    if not_files:
        _warn_not_files(not_files, split_dir)
    if hidden_files:
        log.info("Ignored %d hidden or system file(s) in the class folders of %s", hidden_files, split_dir)
    missing = [name for name in CLASS_NAMES if name not in folders]
    if missing:
        log.warning("%s has no folder for class(es) %s, so that split has no images of them", split_dir, ", ".join(missing))
    return samples
