"""Seekable JPEGs: the lossless restart-marker rewrite (jpeg_make_seekable)
and crops that decode only the restart intervals under them.

References: Pillow's whole decode of the original (then cropped) and our
own whole decode; the rewrite must not change one pixel, and a crop of the
rewrite must equal the same crop of the original.
"""
import io
import os
import random
import sys

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import photos  # noqa: E402  (benchmarks/photos.py: real photos, seeded)

import dareblopy as db  # noqa: E402

KINDS = ["420", "422", "444", "gray"]


def encoded(kind, size, seed, progressive=False, quality=90):
    img = photos.photo(random.Random(seed), size)
    if kind == "gray":
        return photos.encode(img.convert("L"), quality=quality, progressive=progressive)
    sub = {"420": 2, "422": 1, "444": 0}[kind]
    return photos.encode(img, quality=quality, subsampling=sub, progressive=progressive)


def pillow(data, mode):
    with Image.open(io.BytesIO(data)) as im:
        a = np.asarray(im.convert(mode))
    return a[..., None] if a.ndim == 2 else a


def restart_markers(data):
    """(restart interval from DRI, count of RSTn markers in the data)."""
    at = data.find(b"\xff\xdd")
    interval = int.from_bytes(data[at + 4:at + 6], "big") if at >= 0 else 0
    return interval, sum(data.count(bytes([0xFF, 0xD0 + i])) for i in range(8))


MCU = {"420": (16, 16), "422": (16, 8), "444": (8, 8), "gray": (8, 8)}  # pixels


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("progressive", [False, True])
def test_rewrite_is_lossless_and_has_markers(kind, progressive):
    data = encoded(kind, (500, 375), 1, progressive)
    seek = db.jpeg_make_seekable(data)
    mode = "L" if kind == "gray" else "RGB"
    np.testing.assert_array_equal(pillow(seek, mode), pillow(data, mode))
    np.testing.assert_array_equal(db.decode_jpeg(seek, mode=mode),
                                  db.decode_jpeg(data, mode=mode))
    info = db.jpeg_info(seek)
    assert not info.progressive and not info.arithmetic
    assert (info.width, info.height) == (500, 375)
    interval, count = restart_markers(seek)
    mcu_w, mcu_h = MCU[kind]
    per_row, rows = -(-500 // mcu_w), -(-375 // mcu_h)
    assert interval >= db_default() and per_row % interval == 0
    assert count == per_row * rows // interval - 1  # a marker between intervals


def db_default():
    from dareblopy._ffi import lib
    return lib.DBR_JPEG_SEEKABLE_MCUS


@pytest.mark.parametrize("want,expect", [(1, 1), (2, 2), (3, 4), (5, 8), (9, 16),
                                         (17, 32), (1000, 32)])
def test_interval_is_a_divisor_of_the_row(want, expect):
    data = encoded("420", (500, 375), 2)  # 32 MCUs per row
    assert restart_markers(db.jpeg_make_seekable(data, want))[0] == expect


def test_keeps_app_markers_and_exif_orientation():
    img = photos.photo(random.Random(3), (200, 120))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=85, exif=exif.tobytes(), comment=b"kept")
    data = buf.getvalue()
    seek = db.jpeg_make_seekable(data)
    assert db.jpeg_info(seek).orientation == 6 and b"kept" in seek
    np.testing.assert_array_equal(db.decode_jpeg(seek, apply_orientation=True),
                                  db.decode_jpeg(data, apply_orientation=True))


@pytest.mark.parametrize("kind", KINDS)
def test_box_crops_equal_the_whole_decode(kind):
    """At full scale a box crop of the box's own size is an exact copy, so
    every crop of the seekable file must equal Pillow's whole decode of the
    original, cropped; odd sizes put partial MCUs at the edges."""
    rng = random.Random(hash(kind) & 0xFFFF)
    mode = "L" if kind == "gray" else "RGB"
    for size in [(500, 375), (333, 211), (97, 130)]:
        data = encoded(kind, size, rng.randrange(1 << 30))
        seek = db.jpeg_make_seekable(data, rng.choice([1, 2, 4, 8]))
        whole = pillow(data, mode)
        ours = db.decode_jpeg(seek, mode=mode)
        np.testing.assert_array_equal(ours.reshape(whole.shape), whole)
        W, H = size
        for _ in range(60):
            w, h = rng.randint(1, W), rng.randint(1, H)
            x, y = rng.randint(0, W - w), rng.randint(0, H - h)
            got = db.decode_jpeg_batch([seek], size=(h, w), crop="box", box=(x, y, w, h),
                                       mode=mode)[0]
            np.testing.assert_array_equal(got, whole[y:y + h, x:x + w],
                                          err_msg=f"{kind} {size} box {(x, y, w, h)}")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("fast", [False, True])
def test_random_resized_crops_match_the_original(kind, fast):
    """RandomResizedCrop at every DCT scale (small outputs decode at 1/8..1/2):
    the seekable file gives exactly the original's crops."""
    datas = [encoded(kind, (500, 375), s) for s in range(4)]
    seeks = [db.jpeg_make_seekable(d) for d in datas]
    mode = "L" if kind == "gray" else "RGB"
    for size in [(224, 224), (64, 48), (24, 24)]:
        a = db.decode_jpeg_batch(datas * 10, size=size, crop="random", flip="random",
                                 seed=11, mode=mode, fast=fast)
        b = db.decode_jpeg_batch(seeks * 10, size=size, crop="random", flip="random",
                                 seed=11, mode=mode, fast=fast)
        np.testing.assert_array_equal(a, b)


def damaged_interval(seek, which):
    """seek with restart interval number `which` (0-based) cut short."""
    starts = [i for i in range(len(seek) - 1)
              if seek[i] == 0xFF and 0xD0 <= seek[i + 1] <= 0xD7]
    begin, end = starts[which - 1] + 2, starts[which]
    return seek[:begin] + seek[begin:begin + (end - begin) // 3] + seek[end:]


def test_only_intervals_under_the_crop_are_decoded():
    """Damage in an interval above a bottom-right crop: the ordinary crop
    path entropy-decodes the rows above the crop and reports it (strict=
    False gives status 1); the seeking crop never reads those bytes, so it
    reports nothing and equals the crop of the clean file."""
    data = encoded("420", (500, 375), 4)
    seek = db.jpeg_make_seekable(data)
    bad = damaged_interval(seek, 3)  # row 0, MCUs 12..15
    box = (380, 270, 120, 105)
    clean = db.decode_jpeg_batch([seek], size=(105, 120), crop="box", box=box)[0]
    img, status = db.decode_jpeg_batch([bad], size=(105, 120), crop="box", box=box,
                                       strict=False)
    assert db.decode_jpeg(bad, strict=False)[1]  # the whole decode does warn
    np.testing.assert_array_equal(img[0], clean)
    assert status[0] == 0
    # strict mode must see every warning, so it decodes the whole scan
    with pytest.raises(db.CorruptDataError):
        db.decode_jpeg_batch([bad], size=(105, 120), crop="box", box=box, strict=True)


def test_truncated_seekable_file_is_refused_like_the_whole_decode():
    data = encoded("420", (500, 375), 5)
    seek = db.jpeg_make_seekable(data)
    for cut in (len(seek) // 2, len(seek) - 200, len(seek) - 2):
        short = seek[:cut]
        with pytest.raises(db.CorruptDataError):
            db.decode_jpeg(short)
        with pytest.raises(db.CorruptDataError, match="truncated"):
            db.decode_jpeg_batch([short], size=(50, 50), crop="box", box=(0, 0, 50, 50))


def test_broken_marker_sequence_falls_back_to_the_whole_scan():
    """A renumbered marker makes the stream unusable for seeking: the crop
    takes the ordinary path and equals the whole decode of the same bytes."""
    data = encoded("444", (300, 200), 6)
    seek = bytearray(db.jpeg_make_seekable(data))
    at = seek.index(bytes([0xFF, 0xD3]))
    seek[at + 1] = 0xD6
    seek = bytes(seek)
    whole, _ = db.decode_jpeg(seek, strict=False)
    got = db.decode_jpeg_batch([seek], size=(80, 90), crop="box", box=(200, 100, 90, 80))[0]
    np.testing.assert_array_equal(got, whole[100:180, 200:290])


def test_bad_input_gives_clean_errors():
    data = encoded("420", (200, 150), 7)
    with pytest.raises(db.CorruptDataError, match="not a JPEG"):
        db.jpeg_make_seekable(b"GIF89a" + bytes(100))
    with pytest.raises(db.CorruptDataError):
        db.jpeg_make_seekable(b"")
    with pytest.raises(db.CorruptDataError, match="lossless rewrite refuses"):
        db.jpeg_make_seekable(data[:len(data) // 2])
    with pytest.raises(db.CorruptDataError):
        db.jpeg_make_seekable(data[:300])
    with pytest.raises(db.InvalidArgumentError):
        db.jpeg_make_seekable("not bytes")
    with pytest.raises(db.InvalidArgumentError):
        db.jpeg_make_seekable(data, -1)
    # a rewrite of a rewrite is the same file
    once = db.jpeg_make_seekable(data)
    assert db.jpeg_make_seekable(once) == once


def test_pack_seekable_jpeg_cli(tmp_path):
    """dareblopy pack --seekable-jpeg rewrites the JPEGs (same pixels, with
    markers), leaves other files alone, keeps a damaged JPEG as it is and
    says so in the manifest."""
    import subprocess
    import zipfile
    src = tmp_path / "src"
    src.mkdir()
    datas = {f"p{i}.jpg": encoded("420", (160, 120), 20 + i) for i in range(3)}
    datas["broken.jpg"] = datas["p0.jpg"][:700]
    datas["notes.txt"] = b"not an image\n"
    for name, data in datas.items():
        (src / name).write_bytes(data)
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = tmp_path / "d.zip"
    run = subprocess.run([sys.executable, "-m", "dareblopy", "pack", str(src), str(out),
                          "--seekable-jpeg"], capture_output=True, text=True, env=env)
    assert run.returncode == 0, run.stderr
    with zipfile.ZipFile(out) as z:
        packed = {n: z.read(n) for n in z.namelist()}
    assert packed["notes.txt"] == datas["notes.txt"]
    assert packed["broken.jpg"] == datas["broken.jpg"]
    for i in range(3):
        name = f"p{i}.jpg"
        assert packed[name] != datas[name] and restart_markers(packed[name])[1] > 0
        np.testing.assert_array_equal(pillow(packed[name], "RGB"), pillow(datas[name], "RGB"))
    manifest = (tmp_path / "d.zip.manifest.tsv").read_text().splitlines()
    assert manifest[0].startswith("# seekable-jpeg\t")
    kept = [line.split("\t") for line in manifest if line.startswith("# kept-original")]
    assert [k[1:3] for k in kept] == [["d.zip", "broken.jpg"]]
    assert "cannot be made seekable" in kept[0][3]
