"""``size=32`` means (32, 32) in every JPEG batch call, as it does in
image_classification_dataset(size=224)."""
import numpy as np
import pytest
from PIL import Image

import dareblopy as db


@pytest.fixture
def jpegs(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i, (h, w) in enumerate([(90, 120), (120, 80)]):
        path = tmp_path / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("crop", ["random", "center", "resize"])
def test_int_size_is_a_square(jpegs, crop):
    data = [open(p, "rb").read() for p in jpegs]
    for size in (32, np.int64(32)):
        got = db.decode_jpeg_batch(data, size=size, crop=crop, seed=4, shorter=40)
        assert got.shape == (2, 32, 32, 3)
        np.testing.assert_array_equal(
            got, db.decode_jpeg_batch(data, size=(32, 32), crop=crop, seed=4, shorter=40))
        np.testing.assert_array_equal(
            got, db.decode_jpeg_files(jpegs, size=size, crop=crop, seed=4, shorter=40))
    assert db.crop_box(120, 90, index=1, size=32, seed=4) == \
        db.crop_box(120, 90, index=1, size=(32, 32), seed=4)


def test_bad_sizes_still_raise(jpegs):
    data = [open(jpegs[0], "rb").read()]
    for bad in ("32", (32, 32, 3), [32]):
        with pytest.raises(ValueError, match="size must be an int or"):
            db.decode_jpeg_batch(data, size=bad, crop="random")
