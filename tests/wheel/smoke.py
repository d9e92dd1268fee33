"""Smoke test of an INSTALLED dareblopy wheel: run from outside the source
tree by tests/wheel/check_wheel.sh in a fresh venv.  Exercises every
capability the wheel ships and checks that the packaged libdbr resolves
all its dependencies inside the wheel."""
import os
import subprocess
import sys
import tempfile

import numpy as np

import dareblopy as db

failures = []


def check(name, cond):
    print(("ok   " if cond else "FAIL ") + name)
    if not cond:
        failures.append(name)


pkg_dir = os.path.dirname(db.__file__)
check("imported from site-packages, not a checkout", "site-packages" in pkg_dir)
check("no DAREBLOPY_LIBDBR override: the packaged libdbr is the one loaded", "DAREBLOPY_LIBDBR" not in os.environ)
check("header and library versions agree", db.libdbr_version == db._lib.DBR_VERSION_NUMBER)

lib_path = os.path.join(pkg_dir, "libdbr.so")
# Under QEMU the host's ldd cannot read a foreign library: check_foreign_wheel.sh
# names the emulated dynamic loader's --list instead.
ldd_command = os.environ.get("DBR_SMOKE_LDD", "ldd").split()
ldd = subprocess.run(ldd_command + [lib_path], capture_output=True, text=True).stdout
print(ldd)
check("ldd: every dependency resolves", "not found" not in ldd)
# libjpeg-turbo, zlib and lz4 are linked statically into libdbr: only glibc
# is left to the system.
glibc = ("linux-vdso", "libc.so", "libm.so", "libpthread.so", "libdl.so", "librt.so", "ld-linux")
# (QEMU lists its vDSO as a bare address.)
others = [line.strip() for line in ldd.splitlines()
          if line.strip() and not line.strip().startswith("(") and not any(g in line for g in glibc)]
check("ldd: nothing but glibc from the system", not others)

with tempfile.TemporaryDirectory() as tmp:
    payload = os.urandom(5000)
    with open(os.path.join(tmp, "a.bin"), "wb") as fh:
        fh.write(payload)
    check("open_as_bytes", db.open_as_bytes(os.path.join(tmp, "a.bin")) == payload)
    fs = db.FileSystem()
    fs.push_search_path(tmp)
    check("FileSystem", fs.open_as_numpy_ubyte("a.bin").tobytes() == payload)
    try:
        fs.open("../x")
        check("VFS confinement", False)
    except ValueError:
        check("VFS confinement", True)

    # ZIP: write with every method, read back, mount into the VFS.
    zpath = os.path.join(tmp, "a.zip")
    with db.ZipWriter(zpath) as w:
        for method in ("stored", "deflate", "lz4"):
            w.write(f"{method}.bin", payload, method=method)
    with db.open_zip_archive(zpath) as z:
        check("zip: stored/deflate/lz4 round trip",
              all(z.open_as_bytes(f"{m}.bin") == payload for m in ("stored", "deflate", "lz4")))
        check("zip: read_many", z.read_many(["lz4.bin", "stored.bin"]) == [payload, payload])
        fs.mount_archive(z)
        check("zip: mounted in the VFS", fs.open_as_bytes("deflate.bin") == payload)

    # JPEG: check_wheel.sh puts a Pillow-made photo-like gradient beside us.
    jpeg = open("smoke.jpg", "rb").read()
    info = db.jpeg_info(jpeg)
    img = db.decode_jpeg(jpeg)
    check("jpeg: info and decode", (info.width, info.height) == (64, 48) and img.shape == (48, 64, 3)
          and abs(int(img[0, 0, 0]) - 0) < 8 and abs(int(img[0, -1, 0]) - 252) < 8)
    batch = db.decode_jpeg_batch([jpeg] * 4, size=(32, 32), crop="random", flip="random", seed=1)
    check("jpeg: batched random-resized crop", batch.shape == (4, 32, 32, 3))

    # TFRecord: write, index, read, parse.
    tpath = os.path.join(tmp, "a.tfrecord")
    with db.TFRecordWriter(tpath) as w:
        for i in range(10):
            w.write(db.serialize_example({"image": np.full(12, i, np.uint8), "label": i}))
    features = {"image": db.FixedLenFeature([3, 4], db.uint8), "label": db.FixedLenFeature([], db.int64)}
    images, labels = db.RecordParser(features).parse_example(list(db.RecordReader(tpath)))
    check("tfrecord: parse_example", images.shape == (10, 3, 4) and labels.tolist() == list(range(10)))
    check("tfrecord: random access", len(db.RecordReader(tpath)) == 10)

    # Data loading: a sharded, shuffled dataset over the zip.
    ds = db.ShardedDataset(db.zip_shards([zpath]), batch_size=2, seed=0, rank=0, world_size=1)
    check("dataset: every sample once", sorted(k for b in ds for k in b["keys"]) ==
          sorted(f"a.zip/{m}.bin" for m in ("stored", "deflate", "lz4")))

print(f"{len(failures)} failed" if failures else "smoke: all ok")
sys.exit(1 if failures else 0)
