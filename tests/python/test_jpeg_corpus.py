"""Which JPEGs are accepted: the same decision as Pillow, whatever the crop.

The default damage rule (``strict=None``) accepts exactly what Pillow
accepts (``Image.open`` + ``load``, without LOAD_TRUNCATED_IMAGES): data
that libjpeg recovers from decodes, data that ends before the last row is
refused.  Checked over every JPEG of Pillow's own test corpus (Tests/images
in the Pillow sdist of the installed version, downloaded once by pip into
build/), and on truncated photographs, with whole decodes and crop decodes
alike.  Pixel tolerance against Pillow: at most 1 level per channel
(libjpeg-turbo builds may round differently; identical here).
"""
import io
import os
import random
import subprocess
import sys
import tarfile
import warnings

import numpy as np
import pytest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "benchmarks"))
PIL = pytest.importorskip("PIL")
from PIL import Image  # noqa: E402

import photos  # noqa: E402

import dareblopy as db  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# Valid real-world files that libjpeg decodes with a warning (issue 10).
RECOVERED = ["hopper_bad_exif.jpg", "jpeg_ff00_header.jpg", "junk_jpeg_header.jpg",
             "photoshop-200dpi-broken.jpg", "truncated_app14.jpg"]


@pytest.fixture(scope="module")
def corpus():
    """{name: bytes} of every *.jpg / *.jpeg in the Pillow sdist's Tests/images."""
    version = PIL.__version__
    cache = os.path.join(ROOT, "build", "test-data", f"pillow-{version}-jpegs")
    done = os.path.join(cache, ".complete")
    if not os.path.exists(done):
        download = os.path.join(ROOT, "build", "test-data", "sdist")
        os.makedirs(download, exist_ok=True)
        cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--no-binary", ":all:", f"Pillow=={version}", "-d", download]
        try:
            subprocess.run(cmd, check=True, timeout=900, capture_output=True)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
            detail = getattr(err, "stderr", b"") or b""
            pytest.skip(f"cannot download the Pillow {version} sdist with pip (no PyPI "
                        f"access?): {err} {detail.decode(errors='replace')[-300:]}")
        sdist = [f for f in os.listdir(download) if f.lower().startswith(f"pillow-{version}")]
        assert sdist, f"pip reported success but left no sdist in {download}"
        os.makedirs(cache, exist_ok=True)
        with tarfile.open(os.path.join(download, sdist[0])) as tar:
            for member in tar.getmembers():
                name = member.name.replace("\\", "/")
                base = os.path.basename(name)
                if (member.isfile() and "/Tests/images/" in name
                        and base.lower().endswith((".jpg", ".jpeg"))):
                    with open(os.path.join(cache, base), "wb") as f:
                        f.write(tar.extractfile(member).read())
        with open(done, "w") as f:
            f.write(version)
    files = {}
    for name in sorted(os.listdir(cache)):
        if name.lower().endswith((".jpg", ".jpeg")):
            with open(os.path.join(cache, name), "rb") as f:
                files[name] = f.read()
    return files


def pillow_decode(data):
    """Pillow's pixels as RGB, or None where Pillow refuses the file."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                im.load()
                return np.asarray(im.convert("RGB"))
    except Exception:  # Pillow refuses with OSError, SyntaxError, ValueError...
        return None


def accepted(call):
    try:
        call()
        return True
    except db.DbrError:
        return False


def crop_decisions(data):
    """Acceptance by crop decodes that read only part of the image: a box
    and a region at the top, random crops, and the fused centre crop."""
    try:
        info = db.jpeg_info(data)
    except db.DbrError:
        return {"header": False}
    w, h = info.width, info.height
    top = (0, 0, max(1, w // 8), max(1, h // 8))
    decisions = {
        "box": accepted(lambda: db.decode_jpeg_batch([data], size=(8, 8), crop="box",
                                                     box=top)),
        "roi": accepted(lambda: db.decode_jpeg(data, roi=top)),
        "scaled roi": accepted(lambda: db.decode_jpeg(data, scale=0.25, roi=(0, 0, 1, 1))),
        "center": accepted(lambda: db.decode_jpeg_batch([data], size=(16, 16),
                                                        crop="center")),
    }
    _, errors = db.decode_jpeg_batch([data] * 6, size=(16, 16), crop="random", seed=5,
                                     errors="return")
    for k, err in enumerate(errors):
        decisions[f"random {k}"] = err is None
    return decisions


def test_same_decision_and_pixels_as_pillow_on_its_corpus(corpus):
    assert len(corpus) >= 40, f"only {len(corpus)} JPEGs in the Pillow corpus"
    assert set(RECOVERED) <= set(corpus)
    disagreements, refused = [], []
    for name, data in corpus.items():
        ref = pillow_decode(data)
        try:
            got = db.decode_jpeg(data)
        except db.DbrError as err:
            got = None
            refused.append(name)
            message = str(err)
        if (got is None) != (ref is None):
            disagreements.append(f"{name}: Pillow {'refuses' if ref is None else 'accepts'}, "
                                 f"dareblopy {message if got is None else 'accepts'}")
            continue
        if got is not None:
            assert got.shape == ref.shape, name
            diff = np.abs(got.astype(int) - ref).max()
            assert diff <= 1, f"{name}: pixels differ from Pillow's by up to {diff}"
        crops = crop_decisions(data)
        wrong = [k for k, ok in crops.items() if ok != (ref is not None)]
        if wrong:
            disagreements.append(f"{name}: crop decodes {wrong} decide otherwise than the "
                                 f"whole decode")
    assert disagreements == []
    # The corpus holds refused files too (truncated ones), so both answers
    # are exercised.
    assert refused and len(refused) < len(corpus) // 4, refused


def test_recovered_files_in_each_mode(corpus):
    for name in RECOVERED:
        data = corpus[name]
        with pytest.raises(db.CorruptDataError, match="strict mode"):
            db.decode_jpeg(data, strict=True)  # the old default, now an opt-in
        img, warned = db.decode_jpeg(data, strict=False)
        assert warned
        np.testing.assert_array_equal(img, db.decode_jpeg(data))
        _, errors = db.decode_jpeg_batch([data], size=(32, 32), crop="random", strict=True,
                                         errors="return")
        assert isinstance(errors[0], db.CorruptDataError), name
        assert db.decode_jpeg_batch([data], size=(32, 32), crop="random").shape == (1, 32, 32, 3)


# ---- truncation, whatever the crop ----------------------------------------------------

def test_half_length_jpegs_refused_by_crop_and_whole_decodes_alike():
    rng = random.Random(10)
    valid, cut = [], []
    for k in range(50):
        size = (rng.randint(160, 640), rng.randint(120, 480))
        options = dict(quality=rng.choice([75, 90]), subsampling=rng.choice([0, 2]))
        if k % 5 == 3:
            options["progressive"] = True
        if k % 5 == 4:
            options["restart_marker_blocks"] = rng.choice([1, 4])
        data = photos.encode(photos.photo(rng, size), **options)
        valid.append(data)
        cut.append(data[:len(data) // 2])
    for data in cut:
        assert pillow_decode(data) is None
    for name, datas, ok in (("valid", valid, True), ("half", cut, False)):
        for k, data in enumerate(datas):
            assert accepted(lambda: db.decode_jpeg(data)) is ok, (name, k)
            decisions = crop_decisions(data)
            assert set(decisions.values()) == {ok}, (name, k, decisions)
            for strict in (True, False):
                _, errors = db.decode_jpeg_batch([data] * 3, size=(24, 24), crop="random",
                                                 seed=k, strict=strict, errors="return")
                # strict=False accepts truncated data by design.
                assert all((e is None) is (ok or not strict) for e in errors), (name, k)
    # And through one batch call with per-item outcomes.
    out, errors = db.decode_jpeg_batch(valid + cut, size=(32, 32), crop="random", seed=1,
                                       flip="random", errors="return")
    assert [e is None for e in errors] == [True] * 50 + [False] * 50
    assert all("truncated" in str(e) for e in errors[50:])


@pytest.mark.parametrize("restart", [0, 2])
@pytest.mark.parametrize("progressive", [False, True])
def test_damaged_tails_decided_as_pillow_decides(progressive, restart):
    # Cuts near the end (the EOI missing, part of the last MCU row missing)
    # and odd endings: whole and crop decodes both follow Pillow.
    rng = random.Random(restart * 2 + progressive)
    for _ in range(4):
        photo = photos.photo(rng, (rng.randint(64, 300), rng.randint(64, 240)))
        data = photos.encode(photo, progressive=progressive,
                             **({"restart_marker_blocks": restart} if restart else {}))
        n = len(data)
        variants = [data[:n - k] for k in (1, 2, 3, 5, 20, 200)] + [
            data[:-2] + bytes(5), data[:-2] + b"garbage!" * 10, data + b"trailing bytes"]
        for v in variants:
            pil = pillow_decode(v) is not None
            whole = accepted(lambda: db.decode_jpeg(v))
            assert whole == pil, (len(v), n, pil)
            decisions = crop_decisions(v)
            assert set(decisions.values()) == {pil}, (len(v), n, decisions)
            # Strict mode decides alike for crops and whole images too.
            assert (accepted(lambda: db.decode_jpeg(v, strict=True)) ==
                    accepted(lambda: db.decode_jpeg(v, strict=True, roi=(0, 0, 8, 8))))
