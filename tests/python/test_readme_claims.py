"""Claims the README makes in prose, checked against the code, so that the
text stays true when either changes (the code blocks run in test_readme)."""
import inspect
import io
import os
import re
import zipfile

import numpy as np
import pytest
from PIL import Image

import dareblopy as db
from dareblopy import _errors

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def readme():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as fh:
        return fh.read()


def test_error_table_lists_every_exception(readme):
    """Each DbrError class is a row, with the builtin it also is and its
    C status."""
    rows = {m.group(1): (m.group(2), m.group(3))
            for m in re.finditer(r"^\| `(\w+)`[^|]*\| `(\w+)` \| ([^|]+) \|$", readme, re.M)}
    classes = [_errors.DbrError, *_errors.DbrError.__subclasses__()]
    for cls in classes:
        if not cls.__name__.startswith("_") and cls.__module__ == _errors.__name__:
            assert cls.__name__ in rows, f"{cls.__name__} is missing from the error table"
            builtin, status = rows[cls.__name__]
            assert builtin in [b.__name__ for b in cls.__mro__], cls
            if cls.code is not None:
                name = next(n for n in dir(db._lib) if n.startswith("DBR_E_")
                            and getattr(db._lib, n) == cls.code)
                assert f"`{name}`" in status, (cls, status)


def test_data_loader_signature_is_the_one_written(readme):
    params = inspect.signature(db.data_loader).parameters.values()
    written = ", ".join(p.name if p.default is p.empty else f"{p.name}={p.default!r}"
                        for p in params)
    assert f"`db.data_loader({written})`" in readme


def test_make_test_builds_the_python38_peer(readme):
    """`make test` depends on `make peers`, as the README says."""
    with open(os.path.join(ROOT, "Makefile")) as fh:
        make = fh.read()
    assert re.search(r"^test-python:.*\bpeers\b", make, re.M)
    assert re.search(r"^test:.*\btest-python\b", make, re.M)
    assert "Both also make a Python 3.8 venv with DareBlopy 0.0.5 (`make peers`)" in readme


def test_max_entry_size_is_exactly_as_stated(tmp_path, readme):
    """Compressed entries over the limit raise before any allocation; stored
    entries are held to the bytes present, not to the limit."""
    assert "Stored entries are not held to that limit" in readme
    path = tmp_path / "sizes.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("stored.bin", b"s" * 100, compress_type=zipfile.ZIP_STORED)
        z.writestr("deflated.bin", b"d" * 100, compress_type=zipfile.ZIP_DEFLATED)
    with db.Archive(path, max_entry_size=10) as archive:
        assert archive.read("stored.bin") == b"s" * 100
        with pytest.raises(db.LimitExceededError, match="max_entry_size"):
            archive.read("deflated.bin")
    with db.Archive(path, max_entry_size=100) as archive:
        assert archive.read("deflated.bin") == b"d" * 100


@pytest.fixture
def jpeg(tmp_path):
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:240, 0:320]
    img = np.stack([x * 255 // 320, y * 255 // 240, (x * y) % 256], -1)
    img = (img + rng.integers(0, 8, img.shape)).clip(0, 255).astype(np.uint8)
    path = tmp_path / "p.jpg"
    Image.fromarray(img).save(path, quality=92)
    return path.read_bytes()


def test_roi_is_in_output_pixels_after_scaling(jpeg, readme):
    assert "`roi=(x, y, w, h)` is in output pixels, after `scale`" in readme
    whole = db.decode_jpeg(jpeg, scale=(1, 4))
    assert whole.shape == (60, 80, 3)
    part = db.decode_jpeg(jpeg, scale=(1, 4), roi=(8, 8, 32, 24))
    assert part.shape == (24, 32, 3)
    # The same pixels as the box cut from the scaled image (block edges may
    # round by one level).
    diff = np.abs(part.astype(int) - whole[8:32, 8:40].astype(int))
    assert diff.max() <= 2


def test_mode_l_keeps_a_channel_axis(jpeg, readme):
    assert '"L" gives H x W x 1' in readme
    gray = db.decode_jpeg(jpeg, mode="L")
    assert gray.shape == (240, 320, 1)
    pillow = np.asarray(Image.open(io.BytesIO(jpeg)).convert("L"))
    assert pillow.shape == gray.shape[:2]


def test_command_line_examples_parse(readme):
    """Each `dareblopy ...` line of the command-line section names real
    subcommands and flags (the commands themselves run in test_cli)."""
    import shlex

    from dareblopy.__main__ import build_parser
    section = readme.split("## Command line", 1)[1].split("\n## ", 1)[0]
    lines = [ln for block in re.findall(r"```sh\n(.*?)```", section, re.S)
             for ln in block.splitlines() if ln.startswith("dareblopy ")]
    assert len(lines) >= 5
    parser = build_parser()
    for line in lines:
        words = shlex.split(re.split(r"[|>]", line)[0], comments=True)
        args = parser.parse_args(words[1:])  # exits (failing the test) on a bad flag
        assert args.command == words[1]
