"""Real photographs for JPEG tests and benchmarks, generated deterministically.

The sources are the photos that ship inside scikit-learn's wheel
(``china.jpg``, ``flower.jpg``) and matplotlib's (``grace_hopper.jpg``).
Distinct images come from seeded random crops, rescales and flips of those,
re-encoded by Pillow with varied quality, chroma subsampling and
progressive coding.  Used by ``tests/python`` (through ``sys.path``) and by
the benchmarks; nothing here is part of the dareblopy package.
"""
from __future__ import annotations

import io
import os
import random
from functools import lru_cache
from typing import List, Tuple


@lru_cache(maxsize=1)
def sources():
    """The source photographs as RGB Pillow images.  They must be real
    photos, so a missing package is an error, never a fallback."""
    try:
        import matplotlib
        import sklearn
        from PIL import Image
    except ImportError as err:  # pragma: no cover
        raise ImportError("photos need Pillow, scikit-learn and matplotlib: "
                          "pip install -r requirements-dev.txt") from err
    paths = [os.path.join(os.path.dirname(sklearn.__file__), "datasets", "images", name)
             for name in ("china.jpg", "flower.jpg")]
    paths.append(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data",
                              "sample_data", "grace_hopper.jpg"))
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    return images


def photo(rng: random.Random, size: Tuple[int, int]):
    """A random crop of a random source, rescaled to size = (w, h), maybe
    mirrored: a distinct, real-looking photograph."""
    from PIL import Image
    src = rng.choice(sources())
    w, h = size
    aspect = w / h
    sw, sh = src.size
    frac = rng.uniform(0.45, 1.0)
    cw = min(sw, int(sh * frac * aspect), int(sw * frac))
    ch = max(1, min(sh, int(cw / aspect)))
    cw = max(1, cw)
    x, y = rng.randint(0, sw - cw), rng.randint(0, sh - ch)
    img = src.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    return img


def encode(img, quality: int = 90, subsampling: int = 2, progressive: bool = False,
           **kwargs) -> bytes:
    """Pillow's JPEG encoding (subsampling 0: 4:4:4, 1: 4:2:2, 2: 4:2:0)."""
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality, subsampling=subsampling, progressive=progressive,
             **kwargs)
    return buf.getvalue()


def photo_set(count: int, size: Tuple[int, int], seed: int = 0) -> List[bytes]:
    """count distinct JPEGs of size (w, h), quality 85-95, mixed 4:2:0 /
    4:2:2 / 4:4:4, one in eight progressive."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        img = photo(rng, size)
        out.append(encode(img, quality=rng.randint(85, 95), subsampling=rng.choice((2, 2, 1, 0)),
                          progressive=i % 8 == 7))
    return out


def write_photo_dir(folder: str, count: int, size: Tuple[int, int], seed: int = 0) -> List[str]:
    """photo_set written as folder/photo_00000.jpg ...; reused if present."""
    names = [os.path.join(folder, f"photo_{i:05d}.jpg") for i in range(count)]
    if all(os.path.exists(n) for n in names):
        return names
    os.makedirs(folder, exist_ok=True)
    for name, data in zip(names, photo_set(count, size, seed)):
        with open(name, "wb") as fh:
            fh.write(data)
    return names
