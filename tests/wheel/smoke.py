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
check("header and library versions agree", db.libdbr_version == db._lib.DBR_VERSION_NUMBER)

lib_path = os.path.join(pkg_dir, "libdbr.so")
ldd = subprocess.run(["ldd", lib_path], capture_output=True, text=True).stdout
print(ldd)
check("ldd: every dependency resolves", "not found" not in ldd)
for name in ("libjpeg", "liblz4", "libz."):
    lines = [line for line in ldd.splitlines() if name in line]
    check(f"ldd: {name} comes from the wheel", bool(lines) and all(".libs/" in line for line in lines))

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

    # Capabilities added by later modules are exercised when present.
    extra = os.path.join(os.path.dirname(os.path.abspath(__file__)), "smoke_extra.py")
    if os.path.exists(extra):
        import runpy
        runpy.run_path(extra, init_globals={"check": check, "tmp": tmp, "db": db, "np": np})

print(f"{len(failures)} failed" if failures else "smoke: all ok")
sys.exit(1 if failures else 0)
