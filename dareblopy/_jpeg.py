"""JPEG decoding into numpy: one C call per image or per batch.

Arrays are always ``H x W x C`` uint8 (``C`` is 1 for gray), batches
``N x H x W x C``.

Damaged data (``strict=``), the same rule for single images, batches and
crops of any box:

- ``strict=None`` (default): accept exactly what Pillow accepts.  Data
  libjpeg recovers from (extraneous bytes before a marker, a stray FF 00 in
  the header, corrupt entropy codes) decodes; data that ends before the last
  row raises :class:`CorruptDataError`, as Pillow does without
  ``LOAD_TRUNCATED_IMAGES``.
- ``strict=True``: refuse every libjpeg warning (before 0.2 this was the
  default, so old explicit ``strict=True`` calls keep their meaning).
- ``strict=False``: also decode truncated data (missing rows gray) and
  return a warning flag beside the pixels.
"""
from __future__ import annotations

import math
import os
import threading
from fractions import Fraction
from typing import NamedTuple, Optional, Sequence

import numpy as np

from ._batch import Outcomes, check_errors_mode
from ._buffers import as_uint8_out, encode_path
from ._errors import DbrError, InvalidArgumentError, check, error_from_code
from ._ffi import ffi, lib
from ._files import open_as_bytes

_FORMATS = {"RGB": lib.DBR_PIXEL_RGB, "BGR": lib.DBR_PIXEL_BGR, "L": lib.DBR_PIXEL_GRAY,
            "GRAY": lib.DBR_PIXEL_GRAY, "RGBA": lib.DBR_PIXEL_RGBA}
_CHANNELS = {lib.DBR_PIXEL_RGB: 3, lib.DBR_PIXEL_BGR: 3, lib.DBR_PIXEL_GRAY: 1,
             lib.DBR_PIXEL_RGBA: 4}
_COLORSPACES = {lib.DBR_JPEG_CS_UNKNOWN: "unknown", lib.DBR_JPEG_CS_GRAY: "gray",
                lib.DBR_JPEG_CS_YCBCR: "YCbCr", lib.DBR_JPEG_CS_RGB: "RGB",
                lib.DBR_JPEG_CS_CMYK: "CMYK", lib.DBR_JPEG_CS_YCCK: "YCCK"}
_CROPS = {None: lib.DBR_CROP_NONE, "none": lib.DBR_CROP_NONE, "resize": lib.DBR_CROP_RESIZE,
          "center": lib.DBR_CROP_CENTER, "random": lib.DBR_CROP_RANDOM, "box": lib.DBR_CROP_BOX}
_INTERPS = {"bilinear": lib.DBR_INTERP_BILINEAR, "area": lib.DBR_INTERP_AREA}
_FLIPS = {False: lib.DBR_FLIP_NONE, True: lib.DBR_FLIP_ALWAYS, "random": lib.DBR_FLIP_RANDOM}
_POLICIES = {None: lib.DBR_JPEG_RECOVER, True: lib.DBR_JPEG_STRICT, False: lib.DBR_JPEG_LENIENT}


class JpegInfo(NamedTuple):
    """What a JPEG header says (sizes as stored, before EXIF orientation)."""

    width: int
    height: int
    components: int
    colorspace: str
    progressive: bool
    orientation: int
    arithmetic: bool


class _Cells(threading.local):
    """Per-thread out-parameters, so hot calls skip ffi.new."""

    def __init__(self):
        self.info = ffi.new("dbr_jpeg_info *")
        self.result = ffi.new("dbr_jpeg_result *")


_cells = _Cells()
_output_size = lib.dbr_jpeg_output_size
_decode = lib.dbr_jpeg_decode


def _source(buffer):
    """A pointer C can read and the byte count, without copying."""
    if type(buffer) is bytes:
        return buffer, len(buffer)
    try:
        src = ffi.from_buffer(buffer)
    except TypeError:
        raise InvalidArgumentError(
            f"expected bytes, bytearray, memoryview or a uint8 array, not "
            f"{type(buffer).__name__}") from None
    return src, len(src)


def _format(mode: str) -> int:
    try:
        return _FORMATS[mode.upper()]
    except (KeyError, AttributeError):
        raise InvalidArgumentError(f"mode must be one of {sorted(_FORMATS)}, not {mode!r}") from None


def _scale(scale):
    if scale is None:
        return 0, 0
    if isinstance(scale, tuple):
        num, den = scale
    else:
        frac = Fraction(scale).limit_denominator(1 << 16)
        num, den = frac.numerator, frac.denominator
    return int(num), int(den)


def _policy(strict) -> int:
    try:
        return _POLICIES[strict]
    except (KeyError, TypeError):
        raise InvalidArgumentError(f"strict must be None (Pillow's rule), True or False, "
                                   f"not {strict!r}") from None


def _options(mode="RGB", fast=False, strict=None, apply_orientation=False, max_pixels=None,
             scale=None, roi=None):
    """The C options, or NULL when everything is the default."""
    fmt = _format(mode)
    policy = _policy(strict)
    if (fmt == 0 and not fast and policy == lib.DBR_JPEG_RECOVER and not apply_orientation
            and max_pixels is None and scale is None and roi is None):
        return ffi.NULL
    o = ffi.new("dbr_jpeg_options *")
    o.format = fmt
    o.fast = bool(fast)
    o.lenient = policy
    o.apply_orientation = bool(apply_orientation)
    if max_pixels is not None:
        if max_pixels <= 0:
            raise InvalidArgumentError(f"max_pixels must be positive, not {max_pixels}")
        o.max_pixels = max_pixels
    o.scale_num, o.scale_denom = _scale(scale)
    if roi is not None:
        x, y, w, h = (int(v) for v in roi)
        if min(x, y, w, h) < 0 or w == 0 or h == 0:
            raise InvalidArgumentError(f"roi {roi!r} must be (x, y, width, height), all "
                                       f"non-negative, with a non-empty size")
        o.roi_x, o.roi_y, o.roi_w, o.roi_h = x, y, w, h
    return o


def _out_array(out, shape, what):
    """A new array of shape, or the caller's checked one, and a pointer."""
    if out is None:
        out = np.empty(shape, dtype=np.uint8)
        return out, ffi.from_buffer(out)
    if getattr(out, "shape", None) != shape:
        raise InvalidArgumentError(f"{what}: out= has shape {getattr(out, 'shape', None)}, "
                                   f"{shape} is needed")
    return out, as_uint8_out(out, out.nbytes, what)


def jpeg_info(buffer) -> JpegInfo:
    """Reads the header only: size, components, colour space, coding and
    EXIF orientation."""
    src, n = _source(buffer)
    info = _cells.info
    rc = lib.dbr_jpeg_read_header(src, n, info)
    if rc < 0:
        raise error_from_code(rc)
    return JpegInfo(info.width, info.height, info.components,
                    _COLORSPACES.get(info.colorspace, "unknown"), bool(info.progressive),
                    info.orientation, bool(info.arithmetic))


def decode_jpeg(buffer, out: Optional[np.ndarray] = None, mode: str = "RGB", scale=None,
                roi=None, strict: Optional[bool] = None, fast: bool = False,
                apply_orientation: bool = False, max_pixels: Optional[int] = None):
    """Decodes a JPEG held in ``buffer`` (bytes, bytearray, memoryview or a
    uint8 array) into an ``H x W x C`` uint8 array.

    mode: "RGB", "BGR", "L" (gray) or "RGBA".  scale: a factor in (0, 2]
    (float, Fraction or (num, denom)), rounded up to a multiple of 1/8 and
    applied in the DCT domain.  roi: (x, y, width, height) in output pixels;
    only the blocks under it are decoded.  out: an array of exactly the
    output shape to fill in place.  fast: the fast integer IDCT without
    fancy upsampling.  apply_orientation: rotate/flip by the EXIF tag.
    max_pixels: the largest stored image accepted (default 128 Mpixel).

    strict: None accepts what Pillow accepts and raises CorruptDataError
    for truncated data; True raises for any corrupt data; with False the
    result is ``(image, warned)``, where ``warned`` says that libjpeg
    recovered from corrupt or truncated data (see the module docstring)."""
    src, n = _source(buffer)
    opts = _options(mode, fast, strict, apply_orientation, max_pixels, scale, roi)
    res = _cells.result
    rc = _output_size(src, n, opts, res)
    if rc < 0:
        raise error_from_code(rc)
    out, dst = _out_array(out, (res.height, res.width, res.channels), "decode_jpeg")
    rc = _decode(src, n, opts, dst, 0, out.nbytes, res)
    if rc < 0:
        raise error_from_code(rc)
    if strict is False:
        return out, bool(res.warnings)
    return out


def jpeg_make_seekable(buffer, restart_mcus: int = 0) -> bytes:
    """Rewrites a JPEG losslessly (the same DCT coefficients, so every
    decoder gives the same pixels) as a baseline JPEG with a restart marker
    every few MCUs, so that crops decode only the intervals under them.
    restart_mcus: the interval in MCUs (rounded up to a divisor of the MCUs
    per row; 0 picks the measured default).  Damaged or truncated input
    raises CorruptDataError."""
    src, n = _source(buffer)
    if not 0 <= restart_mcus <= 0xFFFF:
        raise InvalidArgumentError(f"restart_mcus must be in [0, 65535], not {restart_mcus}")
    out_len = ffi.new("size_t *")
    cap = n + n // 16 + 4096  # markers cost a few percent; retry once if not enough
    for _ in range(2):
        dst = ffi.new("unsigned char[]", cap)
        rc = lib.dbr_jpeg_make_seekable(src, n, restart_mcus, dst, cap, out_len)
        if rc != lib.DBR_E_TOO_SMALL or out_len[0] <= cap:
            break
        cap = out_len[0]
    check(rc)
    return ffi.buffer(dst, out_len[0])[:]


def read_jpg_as_numpy(filename, use_turbo: bool = False) -> np.ndarray:
    """DareBlopy's name (and keywords): decodes a JPEG file to ``H x W x 3``
    RGB.  The accurate decoder is used either way; ``use_turbo`` is accepted
    for compatibility (libjpeg-turbo's SIMD is always on)."""
    data = open_as_bytes(filename)
    try:
        return decode_jpeg(data)
    except DbrError as err:
        raise type(err)(f"{os.fsdecode(encode_path(filename))}: {err}") from None


def _displayed_size(buffer, apply_orientation):
    """(height, width) of the image as decode_jpeg would return it."""
    info = jpeg_info(buffer)
    if apply_orientation and info.orientation >= 5:
        return info.width, info.height
    return info.height, info.width


def _crop(size, crop, interp, flip, seed, scale_range, ratio, shorter, box):
    c = ffi.new("dbr_jpeg_crop *")
    try:
        c.mode = _CROPS[crop]
        c.interp = _INTERPS[interp]
        c.flip = _FLIPS[flip]
    except (KeyError, TypeError):
        raise InvalidArgumentError(
            f"crop must be one of {[k for k in _CROPS if k]}, interp one of {list(_INTERPS)}, "
            f"flip False, True or 'random' (got {crop!r}, {interp!r}, {flip!r})") from None
    ranges = tuple(scale_range) + tuple(ratio)
    if len(ranges) != 4 or not all(math.isfinite(v) for v in ranges):
        raise InvalidArgumentError(f"scale {scale_range!r} and ratio {ratio!r} must be "
                                   f"(min, max) pairs of finite numbers")
    if isinstance(size, (int, np.integer)):  # a square, as the image pipeline takes it
        size = (size, size)
    if isinstance(size, (str, bytes)) or len(size) != 2:
        raise InvalidArgumentError(f"size must be an int or (height, width), not {size!r}")
    c.out_h, c.out_w = map(int, size)
    c.seed = seed & 0xFFFFFFFFFFFFFFFF
    c.scale_min, c.scale_max = scale_range
    c.ratio_min, c.ratio_max = ratio
    c.shorter = shorter or 0
    if box is not None:
        c.box_x, c.box_y, c.box_w, c.box_h = box
    return c


def crop_box(width: int, height: int, index: int = 0, crop: str = "random",
             size=(224, 224), flip=False, seed: int = 0, scale=(0.08, 1.0),
             ratio=(3 / 4, 4 / 3), shorter: Optional[int] = None, box=None):
    """The crop box (x, y, w, h, in displayed pixels) and flip that the
    batch decoder picks for item ``index`` of a width x height image, so
    labels such as bounding boxes can follow the same transform."""
    c = _crop(size, crop, "bilinear", flip, seed, scale, ratio, shorter, box)
    out = ffi.new("double[4]")
    flipped = ffi.new("int *")
    rc = lib.dbr_jpeg_crop_box(c, width, height, index, out, flipped)
    if rc < 0:
        raise error_from_code(rc)
    return tuple(out), bool(flipped[0])


def _item_errors(outcomes: Outcomes):
    """None or the exception of each item, from the C per-item outcome,
    worded like the raising mode's ("batch item i: ...")."""
    errors = [None] * outcomes.n
    for i, err in outcomes.errors().items():
        err = error_from_code(err.code, f"batch item {i}: {err}")
        err.index = i
        errors[i] = err
    return errors


def _run_batch(call, n, first_size, out, size, mode, crop, interp, flip, seed, index_offset,
               scale, ratio, shorter, box, strict, fast, apply_orientation, max_pixels,
               threads, errors):
    check_errors_mode(errors)
    fmt = _format(mode)
    if size is None:
        if crop not in (None, "none") or n == 0:
            raise InvalidArgumentError("decode_jpeg_batch: size=(height, width) is needed "
                                       "with a crop or an empty batch")
        size = first_size()
    c = _crop(size, crop, interp, flip, seed, scale, ratio, shorter, box)
    out, dst = _out_array(out, (n, c.out_h, c.out_w, _CHANNELS[fmt]), "decode_jpeg_batch")
    opts = _options(mode, fast, strict, apply_orientation, max_pixels)
    outcomes = Outcomes(n)
    results = ffi.new("dbr_jpeg_result[]", n) if strict is False else ffi.NULL
    statuses, messages, message_cap = outcomes.args
    if errors != "return":
        messages, message_cap = ffi.NULL, 0
    rc = call(opts, c, index_offset, dst, out.nbytes, threads, statuses, results, messages,
              message_cap)
    if rc < 0 and not len(outcomes.failed()):
        raise error_from_code(rc)  # the call itself was refused before any item ran
    if errors == "return":
        return out, _item_errors(outcomes)
    if strict is not False:
        if rc < 0:
            raise error_from_code(rc)
        return out
    statuses = np.frombuffer(ffi.buffer(statuses), np.intc)[:n].copy()
    for i in range(n):
        if statuses[i] == 0 and results[i].warnings:
            statuses[i] = 1
    return out, statuses


def decode_jpeg_batch(buffers: Sequence, size=None, out: Optional[np.ndarray] = None,
                      mode: str = "RGB", crop: Optional[str] = None,
                      interp: str = "bilinear", flip=False, seed: int = 0,
                      index_offset: int = 0, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3),
                      shorter: Optional[int] = None, box=None,
                      strict: Optional[bool] = None, fast: bool = False,
                      apply_orientation: bool = False, max_pixels: Optional[int] = None,
                      threads: int = 0, errors: str = "raise"):
    """Decodes a list of JPEG buffers into one ``N x H x W x C`` array in a
    single C call on ``threads`` threads (0: one per CPU), GIL released.

    size: (height, width) of every slot, or one int for a square; without a
    crop every image must have that size (default: the first image's).
    crop: None, "resize" (the
    whole image), "center" (resize the shorter side to ``shorter``, then
    take the centre), "random" (torchvision's RandomResizedCrop with
    ``scale`` and ``ratio``, finite (min, max) pairs) or "box" (``box`` =
    (x, y, w, h)).  The crop is decoded at the smallest DCT scale covering
    the target, from only the blocks under it, then resized with ``interp``
    ("bilinear" or "area").  flip: False, True or "random".  Random choices
    come from (seed, index_offset + i), the same on every machine and
    thread count.  strict: the damage rule of the module docstring; an item
    is accepted or refused exactly as a whole decode of it would be,
    whatever its crop.

    errors="raise" (default) raises for the first failing item (its index
    in the message).  errors="return" returns ``(array, errors)``: errors[i]
    is None, or the exception item i would raise (``.index`` is i; the
    message names the item); a failed item's slot is zero-filled.  The
    outcomes come from the one C call: nothing is decoded twice.
    ``strict=False`` without errors="return" returns ``(array, status)``:
    status[i] is 0 (ok), 1 (decoded, recovered from corrupt data) or a
    negative libdbr status (slot zero-filled)."""
    items = [_source(b) for b in buffers]
    n = len(items)
    srcs = ffi.new("void *[]", n)
    keep = []  # pointers cffi made for bytes objects
    for i, (src, _) in enumerate(items):
        if type(src) is bytes:
            src = ffi.from_buffer(src)
            keep.append(src)
        srcs[i] = src
    lens = ffi.new("size_t[]", [length for _, length in items])

    def first_size():
        return _displayed_size(buffers[0], apply_orientation)

    def call(opts, c, first, dst, cap, nthreads, statuses, results, messages, message_cap):
        return lib.dbr_jpeg_decode_batch(n, srcs, lens, opts, c, first, dst, cap, nthreads,
                                         statuses, results, messages, message_cap)

    return _run_batch(call, n, first_size, out, size, mode, crop, interp, flip, seed,
                      index_offset, scale, ratio, shorter, box, strict, fast,
                      apply_orientation, max_pixels, threads, errors)


# The keyword options of decode_jpeg_files and decode_jpeg_entries, with
# decode_jpeg_batch's defaults.
_BATCH_OPTIONS = dict(size=None, out=None, mode="RGB", crop=None, interp="bilinear",
                      flip=False, seed=0, index_offset=0, scale=(0.08, 1.0),
                      ratio=(3 / 4, 4 / 3), shorter=None, box=None, strict=None, fast=False,
                      apply_orientation=False, max_pixels=None, threads=0)


def _batch_options(what, kwargs, errors):
    unknown = set(kwargs) - set(_BATCH_OPTIONS)
    if unknown:
        raise TypeError(f"{what}: unexpected arguments {sorted(unknown)}")
    return {**_BATCH_OPTIONS, **kwargs, "errors": errors}


def decode_jpeg_files(paths: Sequence, filesystem=None, *, errors: str = "raise", **kwargs):
    """Like :func:`decode_jpeg_batch` (same keyword options, errors="return"
    included), for files: OS paths, or paths in a :class:`FileSystem`
    (directories and mounted archives).  Each C worker reads its own file,
    so reading overlaps decoding."""
    options = _batch_options("decode_jpeg_files", kwargs, errors)
    strings = [ffi.new("char[]", encode_path(p)) for p in paths]  # kept alive here
    cpaths = ffi.new("char *[]", strings)
    n = len(strings)
    vfs = ffi.NULL
    if filesystem is not None and filesystem.mount_count:
        vfs = filesystem._v()

    def first_size():
        reader = filesystem.open_as_bytes if vfs != ffi.NULL else open_as_bytes
        return _displayed_size(reader(paths[0]), options["apply_orientation"])

    def call(opts, c, first, dst, cap, nthreads, statuses, results, messages, message_cap):
        return lib.dbr_jpeg_decode_files(vfs, n, cpaths, opts, c, first, dst, cap, nthreads,
                                         statuses, results, messages, message_cap)

    return _run_batch(call, n, first_size, **options)


def decode_jpeg_entries(archive, entries: Sequence, *, errors: str = "raise", **kwargs):
    """Like :func:`decode_jpeg_batch` (same keyword options, errors="return"
    included), for entries of an :class:`Archive`, given by index (ints, as
    in ``archive.infolist()``) or by name.  C workers read each entry
    straight from the archive (CRC-checked) into their own buffers and
    decode it into the batch array: the compressed bytes never become
    Python objects, and reading overlaps decoding.  Refused items' messages
    name the archive and the entry."""
    options = _batch_options("decode_jpeg_entries", kwargs, errors)
    h = archive._h()
    indices = [int(e) if isinstance(e, (int, np.integer)) else archive._index(e)
               for e in entries]
    n = len(indices)
    cindices = ffi.new("size_t[]", indices) if n else ffi.NULL
    if min(indices, default=0) < 0:
        raise InvalidArgumentError(f"decode_jpeg_entries: negative entry index "
                                   f"{min(indices)}")

    def first_size():
        size = lib.dbr_zip_entry_size(h, indices[0])
        data = bytearray(size)
        check(lib.dbr_zip_read(h, indices[0], ffi.from_buffer(data), size,
                               ffi.new("size_t *")))
        return _displayed_size(data, options["apply_orientation"])

    def call(opts, c, first, dst, cap, nthreads, statuses, results, messages, message_cap):
        return lib.dbr_jpeg_decode_entries(h, n, cindices, opts, c, first, dst, cap, nthreads,
                                           statuses, results, messages, message_cap)

    return _run_batch(call, n, first_size, **options)


__all__ = ["JpegInfo", "jpeg_info", "decode_jpeg", "decode_jpeg_batch", "decode_jpeg_files",
           "decode_jpeg_entries", "read_jpg_as_numpy", "crop_box"]
