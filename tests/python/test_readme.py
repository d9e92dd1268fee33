"""Every ```python block of README.md runs as written.

The blocks run in order and in one namespace, as a reader pasting them into
one session would, in a temporary directory that holds small data under the
names the README uses (see ``make_readme_data``).  A block may be skipped
only with an HTML comment on the line before its fence:

    <!-- readme-test: skip (needs an S3 bucket) -->

The test runs the others, and reports the skipped ones with their reasons.

The README leaves a few inputs to the reader; ``PRELUDE`` defines them, and
nothing else:
  - ``list_of_paths``: two JPEG files;
  - ``list_of_bytes``: their contents;
  - ``my_preallocated_buffer``: a bytearray the size of ``blob.bin``.
"""
import os
import re
import sys
import textwrap
import traceback

import numpy as np
import pytest
from PIL import Image

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
README = os.path.join(ROOT, "README.md")

PRELUDE = """
list_of_paths = ["images/0001.jpg", "images/0002.jpg"]
list_of_bytes = [open(p, "rb").read() for p in list_of_paths]
my_preallocated_buffer = bytearray(os.path.getsize("blob.bin"))
"""

_FENCE = re.compile(r"^([ \t]*)```python[ \t]*\n(.*?)^\1```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*readme-test:\s*skip\s*\((.*)\)\s*-->\s*$")


def readme_blocks(text):
    """(line of the fence, code, skip reason or None) for each ```python
    block; indented blocks (inside list items) are dedented."""
    blocks = []
    for m in _FENCE.finditer(text):
        before = [ln for ln in text[:m.start()].split("\n") if ln.strip()]
        skip = _SKIP.search(before[-1]) if before else None
        line = text.count("\n", 0, m.start()) + 1
        code = textwrap.dedent(m.group(2))
        blocks.append((line, code, skip.group(1).strip() if skip else None))
    return blocks


def _jpeg(path, width, height, seed):
    """A smooth colour gradient with a little noise, as a photo-like JPEG."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    img = np.stack([x * 255 // width, y * 255 // height, (x + y + seed * 40) % 256], -1)
    img = (img + rng.integers(0, 16, img.shape)).clip(0, 255).astype(np.uint8)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    Image.fromarray(img).save(path, quality=90)


def make_readme_data(folder):
    """The files the README's blocks open, under the names they use:
    JPEGs in images/, data/ and photos/<class>/, blob.bin, train.zip, the
    eight zip shards and manifest of `dareblopy pack photos/ train.zip
    --shards 8`, and two WebDataset tar shards shard-00000N.tar."""
    from dareblopy import _pack
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        for i, name in enumerate(["images/0001.jpg", "images/0002.jpg", "a.jpg",
                                  "data/train/0001.jpg", "data/extra/0002.jpg"]):
            _jpeg(name, 320, 240, i)
        with open("blob.bin", "wb") as fh:
            fh.write(bytes(range(256)) * 16)
        for c, cls in enumerate(["cat", "dog"]):  # photos/<class>/NNNN.jpg, ImageFolder style
            for i in range(40):
                _jpeg(f"photos/{cls}/{i + 1:04d}.jpg", 96, 72, 10 + 40 * c + i)
        items, classes = _pack.imagefolder_items("photos")
        # train.zip for the ZIP section, then the eight shards (and their
        # manifest) that `dareblopy pack photos/ train.zip --shards 8` makes.
        _pack.pack(items, "train.zip", progress=False, classes=classes)
        _pack.pack(items, "train.zip", shards=8, shuffle=True, progress=False,
                   classes=classes)
        # WebDataset tar shards for the tar section (`dareblopy pack photos/
        # shard-{shard:06d}.tar --format tar --labels imagefolder --shards 2`).
        _pack.pack(items, "shard-{shard:06d}.tar", format="tar", shards=2, progress=False,
                   classes=classes)
    finally:
        os.chdir(cwd)


def test_readme_blocks_parse():
    """The extraction itself: fences, indentation, skip markers, lines."""
    text = textwrap.dedent("""\
        # t
        ```python
        a = 1
        ```
        <!-- readme-test: skip (needs an S3 bucket) -->

        ```python
        raise SystemExit
        ```
        - item:

          ```python
          if a:
              b = 2
          ```
        ```sh
        echo no
        ```
        """)
    assert readme_blocks(text) == [
        (2, "a = 1\n", None),
        (7, "raise SystemExit\n", "needs an S3 bucket"),
        (12, "if a:\n    b = 2\n", None)]


def test_every_python_block_of_the_readme_runs(tmp_path, monkeypatch, capsys):
    with open(README, encoding="utf-8") as fh:
        blocks = readme_blocks(fh.read())
    assert blocks, "README.md has no ```python blocks"
    make_readme_data(str(tmp_path))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(ROOT)
    # Index files and other caches go to the test's folder, not the user's.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / ".cache"))
    namespace = {"__name__": "__readme__"}
    exec(compile("import os\n" + PRELUDE, "test_readme.PRELUDE", "exec"), namespace)
    skipped = []
    for line, code, skip in blocks:
        if skip is not None:
            assert skip, f"README.md:{line}: a skipped block must say why"
            skipped.append(f"README.md:{line} ({skip})")
            continue
        try:
            exec(compile(code, f"README.md:{line}", "exec"), namespace)
        except BaseException:  # SystemExit too: a block must not end the session
            pytest.fail(f"the ```python block at README.md:{line} failed as written:\n"
                        f"{traceback.format_exc()}", pytrace=False)
    ran = len(blocks) - len(skipped)
    with capsys.disabled():
        sys.stdout.write(f"\nREADME.md: {ran} python blocks ran, {len(skipped)} skipped"
                         + "".join(f"\n  skipped {s}" for s in skipped) + "\n")
    assert ran > 0
