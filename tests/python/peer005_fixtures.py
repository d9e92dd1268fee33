"""Fixture files for the DareBlopy 0.0.5 compatibility tests, in the layout
of 0.0.5's own test suite (``test_utils/`` beside a ``README.md``).

0.0.5's repository ships these as binary files; here they are generated:
four TFRecord files of 50 records each (``shape`` int64[3] and ``data``,
the bytes of a 3x32x32 uint8 image), their GZIP twins, ``mixed.tfrecords``
(a scalar int64, two floats, a name and six uint8 values per record), pickles of the raw
records and of the images (the ground truth the suite compares with), a
JPEG photograph, a zip holding that JPEG and one holding ``test.txt``.
Records are written with dareblopy's writer, whose framing is checked
against TensorFlow and the spec in test_tfrecord.py."""
import io
import os
import pickle
import random
import subprocess
import sys
import zipfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))

RECORD_FILES = 4
RECORDS_PER_FILE = 50


def _images(seed):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (3, 32, 32), dtype=np.uint8) for _ in range(RECORDS_PER_FILE)]


class _PortablePickler(pickle.Pickler):
    """Pickles arrays as ``numpy.ndarray(shape, dtype, buffer)`` so that the
    numpy 1.x beside DareBlopy 0.0.5 loads what numpy 2 wrote."""

    def reducer_override(self, obj):
        if isinstance(obj, np.ndarray):
            return np.ndarray, (obj.shape, obj.dtype.str, obj.tobytes())
        return NotImplemented


def _zip_with_info_zip(target, folder, names):
    """A zip written by Info-ZIP's ``zip`` (what 0.0.5's own fixtures were)
    when it is installed, else by zipfile without an archive comment."""
    try:
        subprocess.run(["zip", "-q", "-X", os.path.abspath(target)] + names, cwd=folder,
                       check=True)
    except (OSError, subprocess.CalledProcessError):
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
            for n in names:
                z.write(os.path.join(folder, n), n)


def make(root):
    """Writes the fixtures under ``root`` (a fresh folder); returns it."""
    import dareblopy as db
    import photos
    from PIL import Image

    utils = os.path.join(root, "test_utils")
    os.makedirs(utils, exist_ok=True)
    with open(os.path.join(root, "README.md"), "w") as fh:
        fh.write("DareBlopy 0.0.5 compatibility fixtures\n")
    for k in range(RECORD_FILES):
        images = _images(1000 + k)
        records = [db.serialize_example({"shape": np.array(im.shape, np.int64), "data": im.tobytes()})
                   for im in images]
        for name, comp in ((f"test-small-r{k:02d}.tfrecords", None),
                           (f"test-small-gzip-r{k:02d}.tfrecords", "GZIP")):
            with db.TFRecordWriter(os.path.join(utils, name), comp) as w:
                for r in records:
                    w.write(r)
        for name, obj in ((f"test-small-records-r{k:02d}.pth", records),
                          (f"test-small-images-r{k:02d}.pth", images)):
            with open(os.path.join(utils, name), "wb") as fh:
                _PortablePickler(fh, protocol=4).dump(obj)

    mixed = [db.serialize_example({"label": k * 7 - 20, "weights": [k / 4, -k * 1.5],
                                   "name": f"sample {k}".encode(),
                                   "pixels": np.arange(6, dtype=np.uint8) * k})
             for k in range(12)]
    with db.TFRecordWriter(os.path.join(utils, "mixed.tfrecords")) as w:
        for r in mixed:
            w.write(r)
    with open(os.path.join(utils, "mixed-records.pth"), "wb") as fh:
        pickle.dump(mixed, fh, protocol=4)

    photo = photos.photo(random.Random(5), (256, 192))
    with open(os.path.join(utils, "test_image.jpg"), "wb") as fh:
        fh.write(photos.encode(photo, quality=90))
    gray = io.BytesIO()
    photo.convert("L").save(gray, "JPEG", quality=90)
    with open(os.path.join(utils, "gray.jpg"), "wb") as fh:
        fh.write(gray.getvalue())
    cmyk = io.BytesIO()
    photo.convert("CMYK").save(cmyk, "JPEG", quality=90)
    with open(os.path.join(utils, "cmyk.jpg"), "wb") as fh:
        fh.write(cmyk.getvalue())

    staging = os.path.join(root, "staging")
    os.makedirs(staging, exist_ok=True)
    with open(os.path.join(staging, "test.txt"), "w") as fh:
        fh.write("asdasdasd")
    os.makedirs(os.path.join(staging, "sub"), exist_ok=True)
    with open(os.path.join(staging, "sub", "inner.bin"), "wb") as fh:
        fh.write(bytes(range(256)) * 3)
    _zip_with_info_zip(os.path.join(utils, "test_archive.zip"), staging,
                       ["test.txt", "sub/inner.bin"])
    with open(os.path.join(staging, "0.jpg"), "wb") as fh:
        fh.write(photos.encode(photos.photo(random.Random(6), (160, 120)), quality=85))
    _zip_with_info_zip(os.path.join(utils, "test_image_archive.zip"), staging, ["0.jpg"])

    # Written by CPython's zipfile with an archive comment: 0.0.5 crashes on it.
    with zipfile.ZipFile(os.path.join(utils, "cpython_comment.zip"), "w") as z:
        z.writestr("a.txt", b"abcdef")
        z.comment = b"written by zipfile"
    with open(os.path.join(utils, "not_a_record.bin"), "wb") as fh:
        fh.write(b"this is not a TFRecord file at all")
    return root
