"""Class-folder matching and file listing."""

import os
from pathlib import Path

import pytest

from brainkd.data.folders import CLASS_NAMES, canonical_class, find_class_folders, scan_split


@pytest.mark.parametrize(
    "folder, expected",
    [
        ("glioma_tumor", "glioma"),
        ("glioma", "glioma"),
        ("Meningioma", "meningioma"),
        ("meningioma_tumor", "meningioma"),
        ("notumor", "no_tumor"),
        ("no_tumor", "no_tumor"),
        ("No Tumor", "no_tumor"),
        ("pituitary_tumor", "pituitary"),
        ("pituitary-tumour", "pituitary"),
    ],
)
def test_public_names_map_to_classes(folder, expected):
    assert canonical_class(folder) == expected


def test_unknown_folder_lists_accepted_names():
    with pytest.raises(ValueError) as error:
        canonical_class("astrocytoma")
    message = str(error.value)
    assert "astrocytoma" in message
    assert "notumor" in message
    assert "pituitarytumor" in message


def make_tree(root: Path, layout: dict[str, list[str]]) -> Path:
    for folder, files in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for name in files:
            (root / folder / name).write_bytes(name.encode())
    return root


def test_hidden_folders_are_not_classes(tmp_path):
    split = make_tree(tmp_path / "Training", {"glioma_tumor": ["a.jpg"], ".ipynb_checkpoints": ["b.jpg"]})
    assert list(find_class_folders(split)) == ["glioma"]


def test_two_folders_of_one_class_rejected(tmp_path):
    split = make_tree(tmp_path / "Training", {"notumor": ["a.jpg"], "no_tumor": ["b.jpg"]})
    with pytest.raises(ValueError, match="both map to class 'no_tumor'"):
        find_class_folders(split)


def test_scan_skips_hidden_files(tmp_path):
    make_tree(
        tmp_path / "Training",
        {"glioma": ["a.jpg", ".DS_Store", "Thumbs.db"], "glioma/.cache": ["c.jpg"], "notumor": ["b.jpg"]},
    )
    samples = scan_split(tmp_path, "train")
    assert [s.relpath for s in samples] == ["Training/glioma/a.jpg", "Training/notumor/b.jpg"]
    assert [CLASS_NAMES[s.label] for s in samples] == ["glioma", "no_tumor"]


def test_scan_names_non_file_entries(tmp_path, caplog):
    make_tree(tmp_path / "Training", {"glioma": ["a.jpg"]})
    make_tree(tmp_path / "elsewhere", {"more": ["c.jpg"]})
    glioma = tmp_path / "Training" / "glioma"
    (glioma / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    (glioma / "loop.jpg").symlink_to(glioma / "loop.jpg")
    (glioma / "linked").symlink_to(tmp_path / "elsewhere" / "more", target_is_directory=True)
    os.mkfifo(glioma / "pipe.jpg")
    (glioma / "to-pipe.jpg").symlink_to(glioma / "pipe.jpg")

    samples = scan_split(tmp_path, "train")

    assert [s.relpath for s in samples if s.label == 0] == ["Training/glioma/a.jpg"]
    assert "Skipped 5 entr(ies)" in caplog.text
    assert f"{glioma / 'gone.jpg'}: broken or looping symbolic link" in caplog.text
    assert f"{glioma / 'loop.jpg'}: broken or looping symbolic link" in caplog.text
    assert f"{glioma / 'linked'}: symbolic link to a folder" in caplog.text
    assert f"{glioma / 'pipe.jpg'}: not a regular file" in caplog.text
    assert f"{glioma / 'to-pipe.jpg'}: symbolic link to a pipe, socket or device" in caplog.text


def test_scan_hashes_content(tmp_path):
    make_tree(tmp_path / "Testing", {"glioma": ["same.jpg"], "pituitary": ["same.jpg"]})
    samples = scan_split(tmp_path, "test")
    assert samples[0].content_hash == samples[1].content_hash


def test_missing_split_folder_explains_source(tmp_path):
    make_tree(tmp_path / "Training", {"glioma": ["a.jpg"]})
    with pytest.raises(FileNotFoundError) as error:
        scan_split(tmp_path, "test")
    assert "Testing/" in str(error.value)
    assert "Brain Tumor Classification (MRI)" in str(error.value)


def test_missing_root_explains_source(tmp_path):
    with pytest.raises(FileNotFoundError, match="BRAINKD_DATA"):
        scan_split(tmp_path / "absent", "train")


def test_real_dataset_counts(dataset_root):
    if "brain-tumor-mri" not in str(dataset_root):
        pytest.skip("the real dataset is not present")
    train = scan_split(dataset_root, "train")
    test = scan_split(dataset_root, "test")
    assert len(train) == 2870
    assert len(test) == 394
