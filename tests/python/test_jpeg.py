"""JPEG decoding against Pillow (the reference decoder) on real photographs.

Where Pillow runs the same libjpeg-turbo IDCT (accurate mode: islow IDCT,
fancy upsampling; scales 1/2, 1/4, 1/8 through draft()), pixels must be
identical.  Tolerances are stated where the computation differs on purpose:
fast mode (ifast IDCT, plain upsampling), DCT-domain scaling inside fused
crops (a sharper, Lanczos-like filter than a full decode plus a resize).
"""
import io
import os
import random
import sys
import threading
import time

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
PIL = pytest.importorskip("PIL")
from PIL import Image, ImageOps  # noqa: E402

import photos  # noqa: E402  (benchmarks/photos.py: real photos, seeded)

import dareblopy as db  # noqa: E402


def pillow_rgb(data, mode="RGB"):
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert(mode))


@pytest.fixture(scope="module")
def rng():
    return random.Random(20240601)


@pytest.fixture(scope="module")
def photo(rng):
    return photos.photo(rng, (500, 375))


@pytest.fixture(scope="module")
def jpeg(photo):
    return photos.encode(photo, quality=90)


# ---- differential against Pillow ---------------------------------------------

@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("quality", [50, 95])
def test_identical_to_pillow(photo, subsampling, progressive, quality):
    data = photos.encode(photo, quality=quality, subsampling=subsampling, progressive=progressive)
    np.testing.assert_array_equal(db.decode_jpeg(data), pillow_rgb(data))


@pytest.mark.parametrize("size", [(1, 1), (7, 3), (17, 13), (255, 257), (333, 211), (8, 64)])
@pytest.mark.parametrize("subsampling", [0, 2])
def test_odd_sizes(rng, size, subsampling):
    data = photos.encode(photos.photo(rng, size), subsampling=subsampling)
    out = db.decode_jpeg(data)
    assert out.shape == (size[1], size[0], 3)
    np.testing.assert_array_equal(out, pillow_rgb(data))


@pytest.mark.parametrize("mode, pil_mode", [("BGR", "RGB"), ("RGBA", "RGBA")])
def test_output_formats(jpeg, mode, pil_mode):
    ref = pillow_rgb(jpeg, pil_mode)
    got = db.decode_jpeg(jpeg, mode=mode)
    np.testing.assert_array_equal(got, ref[..., ::-1] if mode == "BGR" else ref)


def test_gray_output_of_color_jpeg_is_luma(jpeg):
    # libjpeg's gray output is the Y channel; Pillow's draft('L') asks libjpeg
    # for exactly that.
    with Image.open(io.BytesIO(jpeg)) as im:
        im.draft("L", im.size)
        ref = np.asarray(im.convert("L"))
    np.testing.assert_array_equal(db.decode_jpeg(jpeg, mode="L")[..., 0], ref)


def test_grayscale_jpeg(photo):
    data = photos.encode(photo.convert("L"))
    info = db.jpeg_info(data)
    assert (info.components, info.colorspace) == (1, "gray")
    np.testing.assert_array_equal(db.decode_jpeg(data), pillow_rgb(data))
    np.testing.assert_array_equal(db.decode_jpeg(data, mode="L")[..., 0], pillow_rgb(data, "L"))
    np.testing.assert_array_equal(db.decode_jpeg(data, mode="RGBA"), pillow_rgb(data, "RGBA"))


@pytest.mark.parametrize("mode", ["RGB", "BGR", "L", "RGBA"])
def test_cmyk_matches_pillow_convert(photo, mode):
    data = photos.encode(photo.convert("CMYK"), quality=92)
    info = db.jpeg_info(data)
    assert (info.components, info.colorspace) == (4, "CMYK")
    with Image.open(io.BytesIO(data)) as im:
        assert im.mode == "CMYK"
        ref = np.asarray(im.convert("RGB" if mode in ("RGB", "BGR") else mode))
    got = db.decode_jpeg(data, mode=mode)
    if mode == "BGR":
        ref = ref[..., ::-1]
    if mode == "L":
        got = got[..., 0]
    np.testing.assert_array_equal(got, ref)


def test_restart_markers(photo):
    data = photos.encode(photo, restart_marker_blocks=3)
    assert b"\xff\xd0" in data and b"\xff\xd1" in data
    np.testing.assert_array_equal(db.decode_jpeg(data), pillow_rgb(data))


def _widen_dqt(data, factor):
    """Rewrites every DQT segment with 16-bit entries (Pq = 1), each value
    multiplied by factor (Pillow's encoder only writes 8-bit tables)."""
    out, at = bytearray(data[:2]), 2
    while True:
        marker, length = data[at + 1], int.from_bytes(data[at + 2:at + 4], "big")
        seg = data[at + 4:at + 2 + length]
        if marker == 0xDB:
            body, i = bytearray(), 0
            while i < len(seg):
                pq, tq = seg[i] >> 4, seg[i] & 15
                size = 2 if pq else 1
                values = [int.from_bytes(seg[i + 1 + k * size:i + 1 + (k + 1) * size], "big")
                          for k in range(64)]
                body += bytes([0x10 | tq]) + b"".join(
                    min(v * factor, 65535).to_bytes(2, "big") for v in values)
                i += 1 + 64 * size
            seg = bytes(body)
        out += bytes([0xFF, marker]) + (len(seg) + 2).to_bytes(2, "big") + seg
        at += 2 + length
        if marker == 0xDA:
            return bytes(out) + data[at:]


def test_16bit_quantisation_tables(photo):
    data = photos.encode(photo, quality=90)
    wide = _widen_dqt(data, 1)
    assert wide[wide.index(b"\xff\xdb") + 4] >> 4 == 1  # Pq = 1: 16-bit entries
    np.testing.assert_array_equal(db.decode_jpeg(wide), db.decode_jpeg(data))
    big = _widen_dqt(data, 40)  # entries above 255, only expressible in 16 bits
    np.testing.assert_array_equal(db.decode_jpeg(big), pillow_rgb(big))


def test_optimized_huffman_and_arithmetic_flags(photo):
    data = photos.encode(photo, optimize=True)
    np.testing.assert_array_equal(db.decode_jpeg(data), pillow_rgb(data))
    assert db.jpeg_info(data).arithmetic is False


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation(photo, orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = photos.encode(photo.crop((0, 0, 203, 131)), exif=exif.tobytes())
    assert db.jpeg_info(data).orientation == orientation
    with Image.open(io.BytesIO(data)) as im:
        ref = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(db.decode_jpeg(data, apply_orientation=True), ref)
    stored = db.decode_jpeg(data)
    assert stored.shape == (131, 203, 3)
    # A region and a scale are in displayed coordinates and agree with slicing.
    h, w = ref.shape[:2]
    roi = (w // 5, h // 7, w // 2, h // 3)
    x, y, rw, rh = roi
    np.testing.assert_array_equal(db.decode_jpeg(data, apply_orientation=True, roi=roi),
                                  ref[y:y + rh, x:x + rw])
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (im.width // 2, im.height // 2))
        half = np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    np.testing.assert_array_equal(db.decode_jpeg(data, apply_orientation=True, scale=0.5), half)


# ---- scaling and regions ------------------------------------------------------

@pytest.mark.parametrize("denom", [2, 4, 8])
@pytest.mark.parametrize("progressive", [False, True])
def test_dct_scaling_matches_pillow_draft(photo, denom, progressive):
    data = photos.encode(photo, progressive=progressive)
    with Image.open(io.BytesIO(data)) as im:
        im.draft("RGB", (im.width // denom, im.height // denom))
        ref = np.asarray(im.convert("RGB"))
    np.testing.assert_array_equal(db.decode_jpeg(data, scale=(1, denom)), ref)


@pytest.mark.parametrize("eighths", range(1, 17))
def test_scale_sizes_round_up(jpeg, eighths):
    out = db.decode_jpeg(jpeg, scale=(eighths, 8))
    assert out.shape == (-(-375 * eighths // 8), -(-500 * eighths // 8), 3)
    assert db.decode_jpeg(jpeg, scale=eighths / 8 - 0.01).shape == out.shape


@pytest.mark.parametrize("subsampling", [0, 1, 2])
@pytest.mark.parametrize("fast", [False, True])
def test_roi_equals_slice_of_full_decode(photo, subsampling, fast):
    data = photos.encode(photo, subsampling=subsampling)
    full = db.decode_jpeg(data, fast=fast)
    for x, y, w, h in [(0, 0, 100, 100), (37, 53, 101, 99), (16, 16, 64, 64), (15, 15, 66, 66),
                       (480, 360, 20, 15), (1, 1, 498, 373), (499, 0, 1, 375)]:
        np.testing.assert_array_equal(db.decode_jpeg(data, roi=(x, y, w, h), fast=fast),
                                      full[y:y + h, x:x + w])
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg(data, roi=(450, 0, 51, 10))


def test_fast_mode_is_close(jpeg):
    fast = db.decode_jpeg(jpeg, fast=True).astype(int)
    accurate = db.decode_jpeg(jpeg).astype(int)
    # ifast IDCT and box upsampling of chroma: small, bounded differences.
    assert fast.shape == accurate.shape
    assert np.abs(fast - accurate).mean() < 2.0
    assert np.abs(fast - accurate).mean() > 0


# ---- buffers --------------------------------------------------------------------

def test_out_is_filled_in_place_and_inputs_of_any_buffer_type(jpeg):
    ref = db.decode_jpeg(jpeg)
    out = np.zeros_like(ref)
    assert db.decode_jpeg(jpeg, out=out) is out
    np.testing.assert_array_equal(out, ref)
    for buf in (bytearray(jpeg), memoryview(jpeg), np.frombuffer(jpeg, np.uint8)):
        np.testing.assert_array_equal(db.decode_jpeg(buf), ref)
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg(jpeg, out=np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg(jpeg, out=np.zeros(ref.shape, np.float32))
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg("not bytes")
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg(jpeg, mode="XYZ")


def test_read_jpg_as_numpy(tmp_path, jpeg):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg)
    np.testing.assert_array_equal(db.read_jpg_as_numpy(str(path)), pillow_rgb(jpeg))
    np.testing.assert_array_equal(db.read_jpg_as_numpy(path, use_turbo=True), pillow_rgb(jpeg))
    (tmp_path / "bad.jpg").write_bytes(jpeg[:1000])
    with pytest.raises(db.CorruptDataError, match="bad.jpg"):
        db.read_jpg_as_numpy(tmp_path / "bad.jpg")
    with pytest.raises(db.NotFoundError):
        db.read_jpg_as_numpy(tmp_path / "missing.jpg")


def test_info(photo):
    data = photos.encode(photo, progressive=True)
    info = db.jpeg_info(data)
    assert (info.width, info.height, info.components) == (500, 375, 3)
    assert info.colorspace == "YCbCr" and info.progressive and info.orientation == 1


# ---- malformed input -------------------------------------------------------------

def test_truncated_refused_unless_lenient(jpeg):
    # Refused by default (as Pillow refuses it) and in strict mode; lenient
    # mode fills the missing rows and says so.
    for cut in (len(jpeg) // 3, len(jpeg) - 10, len(jpeg) - 2):
        with pytest.raises(db.CorruptDataError, match="Premature end.*truncated"):
            db.decode_jpeg(jpeg[:cut])
        with pytest.raises(db.CorruptDataError, match="Premature end"):
            db.decode_jpeg(jpeg[:cut], strict=True)
        img, warned = db.decode_jpeg(jpeg[:cut], strict=False)
        assert warned and img.shape == (375, 500, 3)
    img, warned = db.decode_jpeg(jpeg, strict=False)
    assert not warned


@pytest.mark.parametrize("data", [b"", b"\xff", b"\xff\xd8", b"GIF89a" + bytes(100),
                                  b"\xff\xd8\xff\xd9", b"\xff\xd8\xff\xe0\x00\x10JFIF"])
def test_not_a_jpeg(data):
    with pytest.raises(db.CorruptDataError):
        db.decode_jpeg(data)
    with pytest.raises(db.CorruptDataError):
        db.jpeg_info(data)


def _replace_sof_size(data, width, height):
    sof = data.index(b"\xff\xc0")
    return (data[:sof + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big")
            + data[sof + 9:])


def test_bomb_header_refused_before_allocation(jpeg):
    bomb = _replace_sof_size(jpeg, 60000, 60000)
    assert db.jpeg_info(bomb).width == 60000
    with pytest.raises(db.LimitExceededError, match="max_pixels"):
        db.decode_jpeg(bomb)
    with pytest.raises(db.LimitExceededError):
        db.decode_jpeg_batch([bomb], size=(10, 10), crop="resize")
    with pytest.raises(db.LimitExceededError):
        db.decode_jpeg(jpeg, max_pixels=1000)


def test_corrupt_huffman_table(jpeg):
    dht = jpeg.index(b"\xff\xc4")
    counts = dht + 5  # after marker, length, Tc/Th
    bad = jpeg[:counts] + bytes([255] * 16) + jpeg[counts + 16:]
    with pytest.raises(db.CorruptDataError, match="Huffman"):
        db.decode_jpeg(bad)


def test_unsupported_processes(jpeg):
    sof = jpeg.index(b"\xff\xc0")
    lossless = jpeg[:sof + 1] + b"\xc3" + jpeg[sof + 2:]
    with pytest.raises(db.UnsupportedError, match="lossless"):
        db.decode_jpeg(lossless)
    twelve = jpeg[:sof + 4] + b"\x0c" + jpeg[sof + 5:]
    with pytest.raises(db.UnsupportedError, match="12-bit"):
        db.decode_jpeg(twelve)


def test_progressive_scan_limit(photo):
    # The scan cap is a C option (dbr_jpeg_options.max_scans); a normal
    # progressive file has about 10 scans, so a cap of 2 must trip.
    data = photos.encode(photo, progressive=True)
    ffi, lib = db._ffi, db._lib
    opts = ffi.new("dbr_jpeg_options *")
    opts.max_scans = 2
    res = ffi.new("dbr_jpeg_result *")
    out = np.empty((375, 500, 3), np.uint8)
    rc = lib.dbr_jpeg_decode(data, len(data), opts, ffi.from_buffer(out), 0, out.nbytes, res)
    assert rc == lib.DBR_E_LIMIT
    assert "progressive scans" in ffi.string(lib.dbr_last_error()).decode()
    opts.max_scans = 0
    assert lib.dbr_jpeg_decode(data, len(data), opts, ffi.from_buffer(out), 0, out.nbytes,
                               res) == 0


def test_corrupt_scan_data_never_crashes(jpeg):
    rng = random.Random(7)
    sos = jpeg.index(b"\xff\xda")
    raised = 0
    for trial in range(60):
        data = bytearray(jpeg)
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(2, len(data))] = rng.randrange(256)
        if trial % 3 == 0:  # in the scan only
            for _ in range(5):
                data[rng.randrange(sos + 20, len(data) - 2)] = 0xFF
        try:
            db.decode_jpeg(bytes(data))
        except db.DbrError:
            raised += 1
        try:
            img, _ = db.decode_jpeg(bytes(data), strict=False)
        except db.DbrError:
            pass
    assert raised > 0


# ---- threads ----------------------------------------------------------------------

def test_thread_stress():
    datas = photos.photo_set(24, (256, 256), seed=3)
    refs = [db.decode_jpeg(d) for d in datas]
    errors = []

    def work(k):
        try:
            for rep in range(6):
                for i in range(k % 4, len(datas), 3):
                    if not np.array_equal(db.decode_jpeg(datas[i]), refs[i]):
                        errors.append(("single", i))
                batch = db.decode_jpeg_batch(datas, size=(256, 256), threads=3)
                if not np.array_equal(batch, np.stack(refs)):
                    errors.append(("batch", k))
        except Exception as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ---- batches and fused crops ------------------------------------------------------

def test_batch_plain_decode_and_per_index_failures(rng):
    datas = photos.photo_set(6, (64, 48), seed=11)
    refs = np.stack([pillow_rgb(d) for d in datas])
    np.testing.assert_array_equal(db.decode_jpeg_batch(datas), refs)
    np.testing.assert_array_equal(db.decode_jpeg_batch(datas, threads=1), refs)
    broken = list(datas)
    broken[2] = datas[2][:-100]  # truncated in the scan: recoverable
    broken[4] = b"nope"
    with pytest.raises(db.CorruptDataError, match="batch item 2"):
        db.decode_jpeg_batch(broken)
    with pytest.raises(db.InvalidArgumentError, match="strict"):
        db.decode_jpeg_batch(broken, strict="yes")
    out, status = db.decode_jpeg_batch(broken, strict=False)
    assert status.tolist() == [0, 0, 1, 0, db._lib.DBR_E_CORRUPT, 0]
    assert not out[4].any()
    np.testing.assert_array_equal(out[5], refs[5])
    wrong_size = datas + [photos.photo_set(1, (30, 30))[0]]
    with pytest.raises(db.InvalidArgumentError, match="batch item 6"):
        db.decode_jpeg_batch(wrong_size)


def test_batch_out_and_gray(rng):
    datas = photos.photo_set(3, (40, 24), seed=12)
    out = np.empty((3, 24, 40, 1), np.uint8)
    assert db.decode_jpeg_batch(datas, out=out, mode="L") is out
    np.testing.assert_array_equal(out[1], db.decode_jpeg(datas[1], mode="L"))


def test_decode_files_from_paths_and_filesystem(tmp_path):
    datas = photos.photo_set(5, (64, 48), seed=13)
    names = []
    for i, d in enumerate(datas):
        (tmp_path / f"{i}.jpg").write_bytes(d)
        names.append(f"{i}.jpg")
    refs = np.stack([pillow_rgb(d) for d in datas])
    np.testing.assert_array_equal(db.decode_jpeg_files([tmp_path / n for n in names]), refs)
    fs = db.FileSystem()
    fs.push_search_path(tmp_path)
    np.testing.assert_array_equal(db.decode_jpeg_files(names, filesystem=fs, threads=2), refs)
    with pytest.raises(db.NotFoundError, match="missing.jpg"):
        db.decode_jpeg_files(names + ["missing.jpg"], filesystem=fs)
    out, status = db.decode_jpeg_files(names + ["missing.jpg"], filesystem=fs, strict=False)
    assert status[-1] == db._lib.DBR_E_NOT_FOUND and status[:-1].tolist() == [0] * 5


def test_crop_box_without_dct_scaling_matches_pillow_resize(jpeg):
    # A 250x200 box to 224x224 decodes at full scale: only the resize differs
    # from Pillow's, and it follows Pillow's filter (rounding: +-1).
    ref = Image.fromarray(pillow_rgb(jpeg)).resize((224, 224), Image.BILINEAR,
                                                   box=(100, 50, 350, 250))
    got = db.decode_jpeg_batch([jpeg], size=(224, 224), crop="box",
                               box=(100, 50, 250, 200))[0]
    assert np.abs(got.astype(int) - np.asarray(ref)).max() <= 1
    flipped = db.decode_jpeg_batch([jpeg], size=(224, 224), crop="box", box=(100, 50, 250, 200),
                                   flip=True)[0]
    np.testing.assert_array_equal(flipped, got[:, ::-1])


def test_area_matches_opencv_inter_area(rng):
    cv2 = pytest.importorskip("cv2")
    # 512x384 (whole blocks) to 200x150: decoded at scale 4/8 in the DCT
    # domain (256x192), then area; compare with OpenCV's area resize of
    # the same DCT-scaled pixels.
    jpeg = photos.encode(photos.photo(rng, (512, 384)))
    half = db.decode_jpeg(jpeg, scale=0.5)
    got = db.decode_jpeg_batch([jpeg], size=(150, 200), crop="resize", interp="area")[0]
    ref = cv2.resize(half, (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(got.astype(int) - ref).max() <= 1
    # Against a full decode the difference is the DCT scaling's filter.
    ref_full = cv2.resize(pillow_rgb(jpeg), (200, 150), interpolation=cv2.INTER_AREA)
    assert np.abs(got.astype(int) - ref_full).mean() < 6


def test_dct_scaled_crop_is_close_to_full_decode_and_resize(jpeg):
    got = db.decode_jpeg_batch([jpeg], size=(224, 224), crop="box", box=(10, 5, 450, 360))[0]
    ref = Image.fromarray(pillow_rgb(jpeg)).resize((224, 224), Image.LANCZOS,
                                                   box=(10, 5, 460, 365))
    diff = np.abs(got.astype(int) - np.asarray(ref))
    # Decoded at 5/8 scale: the scaled IDCT is a sharp low-pass filter, close
    # to Lanczos; mean error stays within a few levels on a detailed photo.
    assert diff.mean() < 6


def test_random_crop_is_reproducible_and_matches_its_box(jpeg):
    datas = [jpeg] * 6
    a = db.decode_jpeg_batch(datas, size=(224, 224), crop="random", flip="random", seed=42)
    b = db.decode_jpeg_batch(datas, size=(224, 224), crop="random", flip="random", seed=42,
                             threads=1)
    np.testing.assert_array_equal(a, b)
    tail = db.decode_jpeg_batch(datas[3:], size=(224, 224), crop="random", flip="random",
                                seed=42, index_offset=3)
    np.testing.assert_array_equal(a[3:], tail)
    c = db.decode_jpeg_batch(datas, size=(224, 224), crop="random", flip="random", seed=43)
    assert not np.array_equal(a, c)
    boxes = set()
    flips = set()
    for i in range(6):
        box, flip = db.crop_box(500, 375, i, crop="random", flip="random", seed=42)
        boxes.add(box)
        flips.add(flip)
        x, y, w, h = box
        assert 0 <= x and 0 <= y and x + w <= 500 and y + h <= 375
        assert 0.08 * 500 * 375 * 0.95 <= w * h <= 500 * 375
        assert 3 / 4 * 0.95 <= w / h <= 4 / 3 * 1.05
        same = db.decode_jpeg_batch([jpeg], size=(224, 224), crop="box", box=box, flip=flip)[0]
        np.testing.assert_array_equal(a[i], same)
    assert len(boxes) == 6 and flips == {True, False}


def test_center_crop_and_resize_modes(jpeg):
    # torchvision's Resize(256) + CenterCrop(224) takes this box of the
    # source (without rounding the offset to whole resized pixels).
    box, flip = db.crop_box(500, 375, crop="center", size=(224, 224), shorter=256)
    side = 224 * 375 / 256
    assert box == pytest.approx(((500 - side) / 2, (375 - side) / 2, side, side))
    assert flip is False
    got = db.decode_jpeg_batch([jpeg], size=(224, 224), crop="center", shorter=256)[0]
    x, y, w, h = box
    ref = Image.fromarray(pillow_rgb(jpeg)).resize((224, 224), Image.LANCZOS,
                                                   box=(x, y, x + w, y + h))
    assert np.abs(got.astype(int) - np.asarray(ref)).mean() < 6  # DCT scale 6/8
    whole = db.decode_jpeg_batch([jpeg], size=(100, 120), crop="resize")
    assert whole.shape == (1, 100, 120, 3)
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg_batch([jpeg], size=(10, 10), crop="box", box=(400, 0, 200, 10))
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg_batch([jpeg], size=(10, 10), crop="sideways")


def test_random_crop_ranges_must_be_finite(jpeg):
    for bad in [dict(scale=(float("nan"), 1.0)), dict(scale=(0.08, float("inf"))),
                dict(ratio=(float("-inf"), 1.0)), dict(ratio=(0.75, float("nan")))]:
        with pytest.raises(db.InvalidArgumentError, match="finite"):
            db.decode_jpeg_batch([jpeg], size=(32, 32), crop="random", **bad)
        with pytest.raises(db.InvalidArgumentError, match="finite"):
            db.crop_box(500, 375, crop="random", **bad)
    # The C library refuses them too, for callers that bypass Python.
    ffi, lib = db._ffi, db._lib
    c = ffi.new("dbr_jpeg_crop *")
    c.mode, c.out_w, c.out_h = lib.DBR_CROP_RANDOM, 32, 32
    box, flip = ffi.new("double[4]"), ffi.new("int *")
    assert lib.dbr_jpeg_crop_box(c, 500, 375, 0, box, flip) == 0
    for field in ("scale_min", "scale_max", "ratio_min", "ratio_max"):
        for value in (float("nan"), float("inf")):
            c2 = ffi.new("dbr_jpeg_crop *", c[0])
            setattr(c2, field, value)
            assert lib.dbr_jpeg_crop_box(c2, 500, 375, 0, box, flip) == lib.DBR_E_ARG
            assert "finite" in ffi.string(lib.dbr_last_error()).decode()
            out = np.zeros((1, 32, 32, 3), np.uint8)
            statuses = ffi.new("int[]", [7])
            srcs, lens = ffi.new("void *[]", [ffi.from_buffer(jpeg)]), ffi.new("size_t[]", [len(jpeg)])
            assert lib.dbr_jpeg_decode_batch(1, srcs, lens, ffi.NULL, c2, 0, ffi.from_buffer(out),
                                             out.nbytes, 1, statuses, ffi.NULL, ffi.NULL,
                                             0) == lib.DBR_E_ARG
            assert statuses[0] == 7  # refused as a whole: no item ran


# ---- per-item outcomes and archive entries -----------------------------------------

def _batch_inputs():
    datas = photos.photo_set(6, (64, 48), seed=21)
    broken = list(datas)
    broken[1] = datas[1][:len(datas[1]) // 2]  # truncated: refused by default
    broken[3] = b"nope"
    return datas, broken


def test_batch_errors_return_one_outcome_per_item():
    datas, broken = _batch_inputs()
    refs = np.stack([pillow_rgb(d) for d in datas])
    out, errors = db.decode_jpeg_batch(broken, errors="return")
    assert [e is None for e in errors] == [True, False, True, False, True, True]
    assert isinstance(errors[1], db.CorruptDataError) and errors[1].index == 1
    assert "batch item 1" in str(errors[1]) and "truncated" in str(errors[1])
    assert isinstance(errors[3], db.CorruptDataError) and "batch item 3" in str(errors[3])
    for i in (0, 2, 4, 5):
        np.testing.assert_array_equal(out[i], refs[i])
    assert not out[1].any() and not out[3].any()
    # The raising default stops at the first failure, with the same text.
    with pytest.raises(db.CorruptDataError) as raised:
        db.decode_jpeg_batch(broken)
    assert str(raised.value) == str(errors[1])
    assert db.decode_jpeg_batch(datas, errors="return")[1] == [None] * 6
    with pytest.raises(db.InvalidArgumentError, match="errors"):
        db.decode_jpeg_batch(datas, errors="ignore")
    # A mistake of the whole call raises whatever errors= says.
    with pytest.raises(db.InvalidArgumentError):
        db.decode_jpeg_batch(datas, size=(10, 10), crop="random", scale=(0.9, 0.1),
                             errors="return")


def test_decode_files_errors_return(tmp_path):
    datas, broken = _batch_inputs()
    for i, d in enumerate(broken):
        (tmp_path / f"{i}.jpg").write_bytes(d)
    paths = [tmp_path / f"{i}.jpg" for i in range(6)] + [tmp_path / "missing.jpg"]
    out, errors = db.decode_jpeg_files(paths, size=(48, 64), crop="resize", errors="return")
    assert [e is None for e in errors] == [True, False, True, False, True, True, False]
    assert "1.jpg" in str(errors[1]) and "3.jpg" in str(errors[3])
    assert isinstance(errors[6], db.NotFoundError) and "missing.jpg" in str(errors[6])
    ref = db.decode_jpeg_batch([datas[0]], size=(48, 64), crop="resize")
    np.testing.assert_array_equal(out[0], ref[0])


@pytest.fixture(scope="module")
def shard(tmp_path_factory):
    """A zip of photos of several sizes, stored and deflated, some broken."""
    import zipfile
    rng = random.Random(33)
    datas = [photos.encode(photos.photo(rng, (rng.randint(60, 300), rng.randint(60, 300))),
                           progressive=i % 4 == 3) for i in range(12)]
    datas[5] = datas[5][:len(datas[5]) // 2]
    datas[9] = b"\xff\xd8 not a jpeg"
    path = tmp_path_factory.mktemp("shard") / "shard.zip"
    with zipfile.ZipFile(path, "w") as z:
        for i, d in enumerate(datas):
            z.writestr(f"img{i:02d}.jpg", d, zipfile.ZIP_DEFLATED if i % 2 else zipfile.ZIP_STORED)
    return path, datas


def test_decode_entries_match_pillow_and_the_bytes_path(shard):
    path, datas = shard
    good = [i for i in range(12) if i not in (5, 9)]
    with db.open_zip_archive(path) as archive:
        for crop in ("random", "center", "resize"):
            got = db.decode_jpeg_entries(archive, good, size=(56, 64), crop=crop, seed=7,
                                         flip="random", threads=3)
            ref = db.decode_jpeg_batch([datas[i] for i in good], size=(56, 64), crop=crop,
                                       seed=7, flip="random")
            np.testing.assert_array_equal(got, ref)
        # Against Pillow: the same boxes, resized by Pillow from its own
        # decode (DCT scaling inside the crop: mean error of a few levels).
        got = db.decode_jpeg_entries(archive, [f"img{i:02d}.jpg" for i in good], size=(56, 64),
                                     crop="random", seed=3)
        for k, i in enumerate(good):
            w, h = Image.open(io.BytesIO(datas[i])).size
            (x, y, bw, bh), _ = db.crop_box(w, h, k, crop="random", size=(56, 64), seed=3)
            ref = Image.fromarray(pillow_rgb(datas[i])).resize((64, 56), Image.LANCZOS,
                                                               box=(x, y, x + bw, y + bh))
            assert np.abs(got[k].astype(int) - np.asarray(ref)).mean() < 8
        # Same-size entries without a crop: identical to Pillow.
        same = [datas[0]] * 3
        with db.ZipWriter(path.parent / "same.zip", method="stored") as w:
            for i, d in enumerate(same):
                w.write(f"{i}.jpg", d)
    with db.open_zip_archive(path.parent / "same.zip") as same_archive:
        np.testing.assert_array_equal(db.decode_jpeg_entries(same_archive, [0, 1, 2]),
                                      np.stack([pillow_rgb(d) for d in same]))


def test_decode_entries_errors_name_archive_and_entry(shard):
    path, datas = shard
    with db.open_zip_archive(path) as archive:
        out, errors = db.decode_jpeg_entries(archive, list(range(12)) + [99], size=(32, 32),
                                             crop="random", errors="return")
        assert [i for i, e in enumerate(errors) if e is not None] == [5, 9, 12]
        assert isinstance(errors[5], db.CorruptDataError)
        assert "shard.zip:img05.jpg" in str(errors[5]) and "truncated" in str(errors[5])
        assert "img09.jpg" in str(errors[9])
        assert isinstance(errors[12], db.InvalidArgumentError) and "99" in str(errors[12])
        assert not out[5].any() and out[4].any()
        with pytest.raises(db.CorruptDataError, match=r"batch item 5: '.*shard\.zip:img05\.jpg'"):
            db.decode_jpeg_entries(archive, range(12), size=(32, 32), crop="random")
        with pytest.raises(db.NotFoundError):
            db.decode_jpeg_entries(archive, ["nope.jpg"], size=(32, 32), crop="random")
        with pytest.raises(TypeError):
            db.decode_jpeg_entries(archive, [0], size=(32, 32), colour="red")
        assert db.decode_jpeg_entries(archive, [], size=(8, 8), crop="resize").shape == (0, 8, 8, 3)
    with pytest.raises(ValueError, match="closed"):
        db.decode_jpeg_entries(archive, [0], size=(8, 8), crop="resize")


def test_archive_closed_while_entries_decode(tmp_path):
    # Closing the archive from another thread mid-batch leaves the running
    # call intact: it holds its own references (the binding's and libdbr's).
    datas = photos.photo_set(4, (320, 240), seed=41)
    path = tmp_path / "many.zip"
    with db.ZipWriter(path, method="stored") as w:
        for i in range(160):
            w.write(f"{i}.jpg", datas[i % 4])
    ref = db.decode_jpeg_batch([datas[i % 4] for i in range(160)], size=(32, 32), crop="random")
    for _ in range(3):
        archive = db.open_zip_archive(path)
        result = {}

        def decode():
            result["out"] = db.decode_jpeg_entries(archive, range(160), size=(32, 32),
                                                   crop="random", threads=2)
        worker = threading.Thread(target=decode)
        worker.start()
        time.sleep(0.02)
        archive.close()
        worker.join()
        np.testing.assert_array_equal(result["out"], ref)
