"""Decoding of oversized images."""

import pytest
from PIL import Image

from brainkd.data.reading import ImageReadError, read_gray


def test_decompression_bomb_is_a_read_error(tmp_path):
    # Over twice Pillow's pixel limit, Pillow raises an error rather than a warning.
    side = int((2 * Image.MAX_IMAGE_PIXELS) ** 0.5) + 100
    path = tmp_path / "huge.png"
    Image.new("1", (side, side)).save(path)
    with pytest.raises(ImageReadError) as error:
        read_gray(path)
    assert "huge.png" in str(error.value)
    assert "unreadable image" in error.value.reason
